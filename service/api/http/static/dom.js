// Building the page from data with text nodes only (never HTML strings), so a name from
// the ledger can never become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** An HTML element: h("a", {href: "#/map"}, "Map"). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A table with a caption and column headers; rows are arrays of cells (node or text). */
export function table(caption, headers, rows, { className = "", empty = "None." } = {}) {
  const body = rows.length
    ? rows.map((row) =>
        h("tr", row.attrs || {}, (row.cells || row).map((cell, index) => {
          const header = headers[index];
          const label = typeof header === "string" ? header : header.label;
          const numeric = typeof header === "object" && header.numeric;
          return h("td", { "data-label": label, class: numeric ? "num" : (header.className || undefined) }, cell);
        })),
      )
    : [h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, empty))];
  return h("div", { class: "table-wrap" },
    h("table", { class: className || undefined },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((header) => {
        const label = typeof header === "string" ? header : header.label;
        const numeric = typeof header === "object" && header.numeric;
        return h("th", { scope: "col", class: numeric ? "num" : undefined }, label);
      }))),
      h("tbody", {}, body)));
}

/** "2025-09-13 12:00Z" from a proto3 JSON timestamp (or a Date). */
export function when(value) {
  if (!value) return "—";
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return `${date.toISOString().slice(0, 16).replace("T", " ")}Z`;
}

export function day(value) {
  if (!value) return "—";
  return new Date(value).toISOString().slice(0, 10);
}

export function number(value, digits = 1) {
  return Number(value || 0).toFixed(digits);
}

/** A level chip: its number and name in text, its colour as a class. */
export function levelChip(level, name) {
  return h("span", { class: `level level-${level || 0}` }, level ? `${level} · ${name}` : "no data");
}

export function idOf(resource) {
  return String(resource || "").split("/").pop();
}

/** A link to a resource's page, given "incidents/{id}", "negotiations/{id}", ... */
export function resourceLink(resource, text) {
  const [collection, id] = String(resource || "").split("/");
  const label = text || resource;
  if (collection === "incidents") return h("a", { href: `#/incidents/${id}` }, label);
  if (collection === "negotiations") return h("a", { href: `#/negotiations?track=${id}` }, label);
  if (collection === "sanctions") return h("a", { href: `#/sanctions?regime=${id}` }, label);
  return label;
}

export function party(value) {
  if (!value) return "—";
  if (value.unknown) return "unknown";
  return value.country || value.organisation || "—";
}

export function countryLink(code) {
  if (!code) return "—";
  return /^[A-Z]{3}$/.test(code) ? h("a", { href: `#/country/${code}` }, code) : code;
}
