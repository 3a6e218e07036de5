// The choropleth map and the history chart, drawn as SVG from the committed assets.
import { h, s, number, day } from "./dom.js";

let worldPromise;
let levelsPromise;

export function world() {
  worldPromise ??= fetch("world.json").then((response) => response.json());
  return worldPromise;
}

export function levels() {
  levelsPromise ??= fetch("levels.json").then((response) => response.json());
  return levelsPromise;
}

const COLOURS = { 1: "#ffffb2", 2: "#fecc5c", 3: "#fd8d3c", 4: "#f03b20", 5: "#bd0026" };

/** Each level's fill: its colour with a denser hatch the higher it is (a cue besides hue). */
function patterns(prefix) {
  return s("defs", {}, [1, 2, 3, 4, 5].map((level) => {
    const spacing = { 1: 0, 2: 8, 3: 6, 4: 4, 5: 3 }[level];
    return s("pattern", { id: `${prefix}-${level}`, patternUnits: "userSpaceOnUse", width: spacing || 8, height: spacing || 8, patternTransform: "rotate(45)" },
      s("rect", { width: spacing || 8, height: spacing || 8, fill: COLOURS[level] }),
      spacing ? s("line", { x1: 0, y1: 0, x2: 0, y2: spacing, stroke: level >= 4 ? "#ffffff" : "#000000", "stroke-opacity": level >= 4 ? 0.55 : 0.35, "stroke-width": 1 }) : null);
  }));
}

export function swatch(level) {
  const id = `swatch-${level}`;
  return s("svg", { viewBox: "0 0 16 12", "aria-hidden": "true", focusable: "false" },
    patterns(id), s("rect", { width: 16, height: 12, fill: level ? `url(#${id}-${level})` : "#d9d9d9" }));
}

export function legend(table) {
  return h("ul", { class: "legend", "aria-label": "Legend: escalation levels" },
    table.levels.map((entry) => h("li", {}, swatch(entry.level),
      `${entry.level} ${entry.name} (score ≥ ${entry.min_score})`)),
    h("li", {}, swatch(0), "no data"));
}

/**
 * The world map: one path per country, filled by level. `figures` maps alpha-3 to an
 * Escalation; `onOpen(code)` opens a country. Returns {element, update(figures)}.
 */
export function worldMap(geometry, figures, onOpen) {
  const paths = new Map();
  const svg = s("svg", { viewBox: `0 0 ${geometry.width} ${geometry.height}`, role: "img", "aria-labelledby": "map-title map-desc", id: "world-map" },
    s("title", { id: "map-title" }, "World map of escalation levels"),
    s("desc", { id: "map-desc" }, "Each country is coloured and hatched by its level; the ranking beside the map lists the same figures."),
    patterns("level"));
  const group = s("g", {});
  for (const country of geometry.countries) {
    const path = s("path", { d: country.d, class: "country no-data", "data-country": country.id || undefined });
    const title = s("title", {}, country.name);
    path.append(title);
    if (country.id) {
      path.addEventListener("click", () => {
        if (path.dataset.level) onOpen(country.id);
      });
      paths.set(country.id, { path, title, name: country.name });
    }
    group.append(path);
  }
  svg.append(group);

  function update(next) {
    for (const [code, { path, title, name }] of paths) {
      const figure = next.get(code);
      if (figure) {
        path.setAttribute("fill", `url(#level-${figure.level})`);
        path.setAttribute("class", `country level-${figure.level}`);
        path.dataset.level = String(figure.level);
        title.textContent = `${name} (${code}): level ${figure.level} ${figure.levelName}, score ${number(figure.score)}, ${figure.trend || "unchanged"}`;
      } else {
        path.removeAttribute("fill");
        path.setAttribute("class", "country no-data");
        delete path.dataset.level;
        title.textContent = `${name} (${code}): no data`;
      }
    }
  }
  update(figures);
  return { element: h("figure", { class: "map-figure" }, svg), update };
}

/** The score over time with a dashed line at each level's threshold. */
export function historyChart(points, table, subject) {
  const width = 760;
  const height = 260;
  const pad = { left: 44, right: 150, top: 12, bottom: 28 };
  const scores = points.map((point) => Number(point.score || 0));
  const thresholds = table.levels.filter((entry) => entry.min_score > 0);
  const top = Math.max(10, ...scores) * 1.1;
  const visible = thresholds.filter((entry) => entry.min_score <= top);
  const times = points.map((point) => new Date(point.at).getTime());
  const first = Math.min(...times);
  const last = Math.max(...times);
  const x = (t) => pad.left + ((t - first) / Math.max(1, last - first)) * (width - pad.left - pad.right);
  const y = (v) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom);
  const line = points.map((point, index) => `${index ? "L" : "M"}${x(times[index]).toFixed(1)},${y(scores[index]).toFixed(1)}`).join("");
  const highest = scores.length ? Math.max(...scores) : 0;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-title chart-desc" },
    s("title", { id: "chart-title" }, `Escalation score of ${subject} over time`),
    s("desc", { id: "chart-desc" }, `${points.length} daily points from ${day(first)} to ${day(last)}; highest score ${number(highest)}. Dashed lines mark the level thresholds.`),
    s("line", { class: "axis", x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0) }),
    s("line", { class: "axis", x1: pad.left, y1: pad.top, x2: pad.left, y2: y(0) }),
    visible.map((entry) => [
      s("line", { class: "threshold", x1: pad.left, x2: width - pad.right, y1: y(entry.min_score), y2: y(entry.min_score), stroke: COLOURS[entry.level] === "#ffffb2" ? "#b3a100" : COLOURS[entry.level] }),
      s("text", { class: "threshold-label", x: width - pad.right + 6, y: y(entry.min_score) + 4 }, `${entry.level} ${entry.name} ≥ ${entry.min_score}`),
    ]),
    s("text", { class: "tick", x: pad.left - 6, y: y(0) + 4, "text-anchor": "end" }, "0"),
    s("text", { class: "tick", x: pad.left - 6, y: pad.top + 10, "text-anchor": "end" }, number(top, 0)),
    s("text", { class: "tick", x: pad.left, y: height - 8 }, day(first)),
    s("text", { class: "tick", x: width - pad.right, y: height - 8, "text-anchor": "end" }, day(last)),
    points.length ? s("path", { class: "series", d: line }) : null);
  return h("figure", { class: "chart" }, svg);
}
