// The dashboard: hash routes, one render function per page, all data from the JSON API.
import { ApiError, call, download, setToken, stream, token } from "./api.js";
import { historyChart, legend, levels, world, worldMap } from "./charts.js";
import {
  countryLink, day, h, idOf, levelChip, number, party, resourceLink, table, when,
} from "./dom.js";

const main = document.getElementById("main");
const announcer = document.getElementById("announcer");
const HOUR = 3600 * 1000;
const SLIDER_HOURS = 2 * 365 * 24;
const KINDS = [
  "airspace_incursion", "strike", "armed_clash", "military_exercise", "troop_deployment",
  "alert", "threat", "statement", "condemnation", "envoy_summoned", "diplomats_expelled",
  "cyber_attack", "ceasefire_violation", "naval_blockade",
];

/** What the current page must undo when the route changes (open streams, timers). */
let teardown = [];
let renderCount = 0;

/** The page's content; absent parts (null, false) are left out, not written as text. */
function show(...nodes) {
  main.replaceChildren(...nodes.flat().filter((node) => node !== null && node !== undefined && node !== false));
}

/** Adds a line to the live region (polite: read out after what is being read); the last
 * few stay, so two changes close together are both announced, neither replaces the other. */
function announce(text) {
  announcer.append(h("p", {}, text));
  while (announcer.childElementCount > 5) announcer.firstElementChild.remove();
}

function route() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query) };
}

function hashOf(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) query.set(key, value);
  const text = query.toString();
  return `#/${path}${text ? `?${text}` : ""}`;
}

/** A time from the URL (ISO 8601) as proto3 JSON, or undefined for "now". */
function timeParam(value) {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

function localValue(iso) {
  return iso ? new Date(iso).toISOString().slice(0, 16) : "";
}

function countryNames(geometry) {
  return new Map(geometry.countries.filter((c) => c.id).map((c) => [c.id, c.name]));
}

// ---------------------------------------------------------------------------- errors

function errorView(error, { role } = {}) {
  if (error instanceof ApiError && error.status === 401) return tokenForm(error);
  if (error instanceof ApiError && error.status === 403) {
    return h("div", { class: "notice error", role: "alert" },
      h("p", {}, h("strong", {}, "Permission denied. "),
        role ? `This page needs the ${role} role; your token does not have it.` : "Your token lacks the role this needs."),
      h("p", { class: "muted break" }, `The server said: ${error.message}`),
      h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => { setToken(""); render(); } }, "Use another token")));
  }
  const what = error instanceof ApiError ? `${error.code || `HTTP ${error.status}`}: ${error.message}` : String(error);
  return h("div", { class: "notice error", role: "alert" }, h("p", { class: "break" }, `Could not load this: ${what}`));
}

function tokenForm(error) {
  const input = h("input", { type: "password", id: "token-input", name: "token", autocomplete: "off", required: true });
  return h("form", { class: "panel", id: "token-form", onsubmit: (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    render();
  } },
  h("h2", {}, "This server needs a bearer token"),
  h("p", {}, token() ? "The token given was not accepted. " : "", "Enter a token from the server's tokens file; it is kept for this tab only."),
  error?.message ? h("p", { class: "muted break" }, `The server said: ${error.message}`) : null,
  h("div", { class: "field" }, h("label", { for: "token-input" }, "Bearer token"), input),
  h("p", { class: "buttons" }, h("button", { type: "submit" }, "Use token")));
}

// ---------------------------------------------------------------------------- map

function timeControl(id, label, hint, iso, onChange) {
  const slider = h("input", { type: "range", id: `${id}-slider`, min: -SLIDER_HOURS, max: 0, step: 1, value: 0, "aria-describedby": `${id}-hint` });
  const picker = h("input", { type: "datetime-local", id: `${id}-picker`, step: 60 });
  const shown = h("span", { id: `${id}-hint`, class: "hint" });
  let timer;

  function show(value) {
    const text = value ? when(value) : "now";
    slider.setAttribute("aria-valuetext", text);
    shown.textContent = `${hint}: ${text}`;
    picker.value = value ? localValue(value) : "";
  }
  function set(value) {
    show(value);
    slider.value = value ? String(Math.max(-SLIDER_HOURS, Math.round((new Date(value) - Date.now()) / HOUR))) : "0";
  }
  slider.addEventListener("input", () => {
    const offset = Number(slider.value);
    const value = offset === 0 ? "" : new Date(Date.now() + offset * HOUR).toISOString();
    show(value);
    clearTimeout(timer);
    timer = setTimeout(() => onChange(value), 250);
  });
  picker.addEventListener("change", () => {
    const value = picker.value ? new Date(`${picker.value}:00Z`).toISOString() : "";
    set(value);
    onChange(value);
  });
  set(iso);
  return {
    element: h("div", { class: "field" },
      h("label", { for: slider.id }, label),
      slider,
      h("label", { for: picker.id, class: "visually-hidden" }, `${label}, as a date and time (UTC)`),
      picker,
      shown),
    set,
  };
}

async function mapPage(params) {
  const [geometry, table_] = await Promise.all([world(), levels()]);
  const names = countryNames(geometry);
  const state = { at: timeParam(params.get("at")), asOf: timeParam(params.get("asof")) };
  let figures = new Map();
  let position = "0";
  let stopLive = null;

  const map = worldMap(geometry, figures, (code) => { location.hash = hashOf(`country/${code}`, { at: state.at, asof: state.asOf }); });
  const status = h("p", { class: "live-status", id: "live-status" });
  const ranking = h("div", { id: "ranking" });
  const controls = h("div", { class: "time-controls" });
  const valid = timeControl("valid-time", "Valid time (when in the world)", "Figures for", state.at, (value) => { state.at = value || undefined; changed(); });
  const known = timeControl("knowledge-time", "Knowledge time (what the ledger knew)", "As known at", state.asOf, (value) => { state.asOf = value || undefined; changed(); });
  const now = h("button", { type: "button", class: "secondary", id: "back-to-now", onclick: () => {
    state.at = undefined; state.asOf = undefined; valid.set(""); known.set(""); changed();
  } }, "Back to now (live)");
  controls.append(valid.element, known.element, h("div", { class: "field" }, h("span", { class: "label" }, "Live updates"), now));

  show(
    h("h1", {}, "Escalation map"),
    controls,
    status,
    h("div", { class: "map-layout" },
      h("section", { "aria-labelledby": "map-heading" }, h("h2", { id: "map-heading", class: "visually-hidden" }, "Map"), map.element, legend(table_)),
      h("section", { "aria-labelledby": "ranking-heading" }, h("h2", { id: "ranking-heading" }, "Ranking"), ranking)),
  );

  function live() { return !state.at && !state.asOf; }

  function showStatus(text) {
    status.className = `live-status${live() ? "" : " paused"}`;
    status.replaceChildren(h("span", { class: "dot", "aria-hidden": "true" }), text);
  }

  function drawRanking(list, changedCodes = new Set()) {
    const rows = list.map((figure, index) => ({
      attrs: { class: changedCodes.has(figure.subject) ? "changed" : undefined, "data-country": figure.subject },
      cells: [
        String(index + 1),
        h("a", { href: hashOf(`country/${figure.subject}`, { at: state.at, asof: state.asOf }), class: "ranking-link" },
          names.has(figure.subject) ? `${names.get(figure.subject)} (${figure.subject})` : figure.subject),
        levelChip(figure.level, figure.levelName),
        number(figure.score),
        figure.trend || "unchanged",
      ],
    }));
    const caption = `Countries by escalation score, at ${state.at ? when(state.at) : "now"}, as known ${state.asOf ? `at ${when(state.asOf)}` : "now"}`;
    ranking.replaceChildren(table(caption, ["#", "Country", "Level", { label: "Score", numeric: true }, "Trend"], rows,
      { className: "ranking", empty: "No country has any development counted at this time." }));
  }

  async function refresh(minPosition, changedCodes) {
    const mine = ++refresh.generation;
    const answer = await call("QueryService", "ListEscalations", { at: state.at, asOf: state.asOf, minPosition });
    if (mine !== refresh.generation) return;
    const list = (answer.escalations || []).filter((figure) => Number(figure.score) > 0 || figure.level > 1);
    position = answer.position || "0";
    figures = new Map(list.map((figure) => [figure.subject, figure]));
    map.update(figures);
    drawRanking(list, changedCodes);
    main.dataset.position = position;
  }
  refresh.generation = 0;

  function startLive() {
    stopLive?.();
    let pending = new Map();
    let timer;
    stopLive = stream("QueryService", "WatchEscalation", { fromPosition: position }, {
      onMessage(change) {
        if (Number(change.position || 0) <= Number(position)) return;
        pending.set(change.country, `${names.get(change.country) || change.country} is now level ${change.level}, ${change.levelName}.`);
        clearTimeout(timer);
        // Changes of one report arrive together: one refresh and one announcement for them.
        timer = setTimeout(() => {
          const changes = pending;
          pending = new Map();
          announce([...changes.values()].join(" "));
          refresh(change.position, new Set(changes.keys())).catch((error) => showStatus(`Live update failed: ${error.message}`));
        }, 50);
      },
      onState(value) {
        showStatus(value === "open" ? "Live: the map follows new reports as they arrive." : "Live updates interrupted; reconnecting…");
      },
      onError(error) {
        if (error instanceof ApiError && error.status >= 400) showStatus(`Live updates stopped: ${error.message}`);
      },
      resume: (lastId) => ({ fromPosition: lastId }),
    });
  }

  async function changed() {
    history.replaceState(null, "", hashOf("map", { at: state.at, asof: state.asOf }));
    if (live()) {
      await refresh();
      startLive();
    } else {
      stopLive?.();
      stopLive = null;
      showStatus("Live updates paused while you look at another time; use “Back to now” to resume.");
      await refresh();
    }
  }

  teardown.push(() => stopLive?.());
  showStatus(live() ? "Live: connecting…" : "Live updates paused while you look at another time; use “Back to now” to resume.");
  await refresh();
  if (live()) startLive();
}

// ---------------------------------------------------------------------------- country

async function pairs(code, at, asOf) {
  // No RPC ranks a country's pairs, so the candidates are the parties its incidents name.
  const answer = await call("QueryService", "ListIncidents", { country: code, pageSize: 500, asOf });
  const counts = new Map();
  for (const incident of answer.incidents || []) {
    for (const other of [incident.actor?.country, incident.target?.country, incident.location?.country]) {
      if (other && other !== code && /^[A-Z]{3}$/.test(other)) counts.set(other, (counts.get(other) || 0) + 1);
    }
  }
  const candidates = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([other]) => other);
  const figure = (actor, target) => call("QueryService", "GetPairEscalation", { actor, target, at, asOf })
    .then((reply) => ({ other: actor === code ? target : actor, escalation: reply.escalation }));
  const [towards, from] = await Promise.all([
    Promise.all(candidates.map((other) => figure(other, code))),
    Promise.all(candidates.map((other) => figure(code, other))),
  ]);
  const top = (list) => list.filter((entry) => Number(entry.escalation?.score || 0) > 0)
    .sort((a, b) => b.escalation.score - a.escalation.score).slice(0, 5);
  return { towards: top(towards), from: top(from) };
}

function pairTable(caption, entries, names, direction) {
  return table(caption, ["Country", "Level", { label: "Score", numeric: true }, "Trend"], entries.map((entry) => [
    h("a", { href: `#/country/${entry.other}` }, names.get(entry.other) ? `${names.get(entry.other)} (${entry.other})` : entry.other),
    levelChip(entry.escalation.level, entry.escalation.levelName),
    number(entry.escalation.score),
    entry.escalation.trend || "unchanged",
  ]), { className: "stack-on-phone", empty: `No hostility ${direction} found.` });
}

async function countryPage(code, params) {
  code = code.toUpperCase();
  const [geometry, table_] = await Promise.all([world(), levels()]);
  const names = countryNames(geometry);
  const at = timeParam(params.get("at"));
  const asOf = timeParam(params.get("asof"));
  const name = names.get(code) || code;
  const end = at ? new Date(at) : new Date();
  const start = new Date(end.getTime() - 90 * 24 * HOUR);
  const [figure, series] = await Promise.all([
    call("QueryService", "GetEscalation", { country: code, at, asOf }),
    call("QueryService", "GetEscalationHistory", { country: code, startTime: start.toISOString(), endTime: end.toISOString(), step: "86400s", asOf }),
  ]);
  const escalation = figure.escalation || {};
  const contributions = escalation.contributions || [];
  const pairSection = h("div", { class: "two-col", id: "pairs" }, h("p", { class: "muted" }, "Loading pairs…"));
  show(
    h("p", {}, h("a", { href: hashOf("map", { at, asof: asOf }) }, "← Back to the map")),
    h("h1", {}, `${name} (${code})`),
    h("dl", { class: "facts", id: "country-facts" },
      h("div", {}, h("dt", {}, "Level"), h("dd", { id: "country-level" }, levelChip(escalation.level, escalation.levelName))),
      h("div", {}, h("dt", {}, "Score"), h("dd", { id: "country-score" }, number(escalation.score))),
      h("div", {}, h("dt", {}, "Trend (30 days)"), h("dd", { id: "country-trend" }, `${escalation.trend || "unchanged"} (was ${number(escalation.earlierScore)})`)),
      h("div", {}, h("dt", {}, "As actor / as target"), h("dd", {}, `${number(escalation.actorScore)} / ${number(escalation.targetScore)}`)),
      h("div", {}, h("dt", {}, "Valid at"), h("dd", {}, when(escalation.at))),
      h("div", {}, h("dt", {}, "As known at"), h("dd", {}, when(escalation.asOf)))),
    h("section", { "aria-labelledby": "history-heading" },
      h("h2", { id: "history-heading" }, "History (90 days)"),
      historyChart(series.points || [], table_, name),
      h("details", {}, h("summary", {}, "The chart's points as a table (weekly)"),
        table(`${name}'s score, every seventh day`, ["Day", "Level", { label: "Score", numeric: true }],
          (series.points || []).filter((point, index, all) => (all.length - 1 - index) % 7 === 0)
            .map((point) => [day(point.at), String(point.level || 1), number(point.score)])))),
    h("section", { "aria-labelledby": "contrib-heading" },
      h("h2", { id: "contrib-heading" }, "Top contributing developments"),
      table(`What makes up ${name}'s score`, ["Development", "Kind", "Occurred", { label: "Contribution", numeric: true }],
        contributions.map((entry) => [
          resourceLink(entry.resource, entry.development && entry.development !== idOf(entry.resource) ? `${entry.resource} (${entry.development})` : entry.resource),
          entry.kind.replaceAll("_", " "),
          when(entry.occurredAt),
          number(entry.contribution, 2),
        ]), { className: "stack-on-phone contributions", empty: "Nothing contributes at this time." })),
    h("section", { "aria-labelledby": "pairs-heading" },
      h("h2", { id: "pairs-heading" }, "Pairs with the most hostility"), pairSection),
  );
  document.title = `${name} · Flashpoint`;
  try {
    const found = await pairs(code, at, asOf);
    pairSection.replaceChildren(
      h("div", {}, pairTable(`Towards ${code} (they → ${code})`, found.towards, names, `towards ${code}`)),
      h("div", {}, pairTable(`From ${code} (${code} → them)`, found.from, names, `from ${code}`)));
  } catch (error) {
    pairSection.replaceChildren(errorView(error));
  }
}

// ---------------------------------------------------------------------------- incidents

function grade(evidence) {
  return evidence ? `${evidence.reliability || "?"}${evidence.credibility ?? "?"}` : "—";
}

function statusBadges(incident) {
  return [
    incident.retracted ? h("span", { class: "badge bad" }, "retracted") : null,
    incident.disputes?.length ? h("span", { class: "badge" }, `${incident.disputes.length} disputed`) : null,
    incident.corrections ? h("span", { class: "badge" }, `${incident.corrections} corrected`) : null,
    incident.corroborations ? h("span", { class: "badge good" }, `${incident.corroborations} corroborated`) : null,
  ].filter(Boolean);
}

function field(id, label, control) {
  control.id = id;
  control.name = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

async function incidentsPage(params) {
  const values = Object.fromEntries(["country", "kind", "after", "before", "minconf", "retracted"].map((key) => [key, params.get(key) || ""]));
  const kind = h("select", {}, h("option", { value: "" }, "any kind"), KINDS.map((k) => h("option", { value: k, selected: values.kind === k }, k.replaceAll("_", " "))));
  const form = h("form", { class: "filters", id: "incident-filters", "aria-label": "Filter incidents" },
    field("country", "Country (alpha-3)", h("input", { type: "text", value: values.country, maxlength: 8, autocomplete: "off", placeholder: "e.g. POL" })),
    field("kind", "Kind", kind),
    field("after", "Occurred from (UTC)", h("input", { type: "datetime-local", value: localValue(timeParam(values.after)) })),
    field("before", "Occurred before (UTC)", h("input", { type: "datetime-local", value: localValue(timeParam(values.before)) })),
    field("minconf", "Minimum confidence (0 to 1)", h("input", { type: "number", min: 0, max: 1, step: 0.05, value: values.minconf })),
    h("div", { class: "field" }, h("span", { class: "label", id: "retracted-label" }, "Retracted"),
      h("label", {}, h("input", { type: "checkbox", name: "retracted", id: "retracted", checked: values.retracted === "1" }), " include retracted")),
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Apply filters"), h("a", { href: "#/incidents" }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const iso = (key) => (data.get(key) ? new Date(`${data.get(key)}:00Z`).toISOString() : "");
    location.hash = hashOf("incidents", {
      country: String(data.get("country") || "").trim().toUpperCase(), kind: data.get("kind"),
      after: iso("after"), before: iso("before"), minconf: data.get("minconf"), retracted: data.get("retracted") ? "1" : "",
    });
  });
  const results = h("div", { id: "incident-results" });
  const more = h("p", { class: "buttons" });
  show(h("h1", {}, "Incidents"), form, results, more);

  const request = {
    country: values.country || undefined, kind: values.kind || undefined,
    occurredAfter: timeParam(values.after), occurredBefore: timeParam(values.before),
    minConfidence: values.minconf ? Number(values.minconf) : undefined,
    includeRetracted: values.retracted === "1" || undefined, pageSize: 50,
  };
  const shown = [];
  async function page(pageToken) {
    const answer = await call("QueryService", "ListIncidents", { ...request, pageToken });
    shown.push(...(answer.incidents || []));
    results.replaceChildren(table(`Incidents, newest first (${shown.length}${answer.nextPageToken ? "+" : ""} shown)`,
      ["Occurred", "Kind", "Actor", "Target", "Confidence", "Grade", "Status", "Incident"],
      shown.map((incident) => [
        h("span", { class: "nowrap" }, when(incident.evidence?.occurredAt)),
        incident.kind.replaceAll("_", " "),
        countryLink(party(incident.actor)),
        countryLink(party(incident.target)),
        number(incident.confidence, 2),
        grade(incident.evidence),
        statusBadges(incident),
        h("a", { href: `#/incidents/${incident.id}`, class: "incident-link" }, "Details", h("span", { class: "visually-hidden" }, ` of ${incident.kind.replaceAll("_", " ")} ${when(incident.evidence?.occurredAt)}`)),
      ]), { className: "stack-on-phone incidents", empty: "No incident matches these filters." }));
    more.replaceChildren(answer.nextPageToken
      ? h("button", { type: "button", class: "secondary", onclick: () => page(answer.nextPageToken).catch((error) => more.replaceChildren(errorView(error))) }, "Load more")
      : "");
  }
  await page(undefined);
}

function detailsList(details) {
  const entries = Object.entries(details || {});
  if (!entries.length) return null;
  return h("dl", { class: "facts" }, entries.map(([key, value]) =>
    h("div", {}, h("dt", {}, key.replaceAll("_", " ")), h("dd", { class: "break" }, value === null || value === undefined ? "—" : Array.isArray(value) ? value.join(", ") || "—" : typeof value === "object" ? JSON.stringify(value) : String(value)))));
}

async function incidentPage(id) {
  const answer = await call("QueryService", "GetIncident", { name: `incidents/${id}` });
  const incident = answer.incident;
  const evidence = incident.evidence || {};
  const title = `${incident.kind.replaceAll("_", " ")}: ${party(incident.actor)}${incident.target ? ` → ${party(incident.target)}` : ""}`;
  const history = h("section", { "aria-labelledby": "log-heading", id: "incident-history" },
    h("h2", { id: "log-heading" }, "Full history"), h("p", { class: "muted" }, "Loading…"));
  document.title = `${title} · Flashpoint`;
  show(
    h("p", {}, h("a", { href: "#/incidents" }, "← All incidents")),
    h("h1", { class: "break" }, title),
    incident.retracted ? h("p", { class: "notice error" }, `Retracted: ${incident.retractionReason || "no reason given"}. It counts for nothing.`) : null,
    h("dl", { class: "facts", id: "incident-facts" },
      h("div", {}, h("dt", {}, "Occurred"), h("dd", {}, `${when(evidence.occurredAt)}${evidence.precision ? ` (${evidence.precision})` : ""}`)),
      h("div", {}, h("dt", {}, "Actor"), h("dd", {}, countryLink(party(incident.actor)))),
      h("div", {}, h("dt", {}, "Target"), h("dd", {}, countryLink(party(incident.target)))),
      h("div", {}, h("dt", {}, "Location"), h("dd", { class: "break" }, incident.location ? [incident.location.country, incident.location.region, incident.location.place].filter(Boolean).join(", ") : "—")),
      h("div", {}, h("dt", {}, "Grade (Admiralty)"), h("dd", { id: "incident-grade" }, grade(evidence))),
      h("div", {}, h("dt", {}, "Confidence"), h("dd", {}, number(incident.confidence, 2))),
      h("div", {}, h("dt", {}, "Version"), h("dd", {}, String(incident.version))),
      h("div", {}, h("dt", {}, "Coding"), h("dd", {}, incident.coding ? `CAMEO ${incident.coding.cameo || "—"} · ${incident.coding.plover || "—"} ${incident.coding.ploverMode || ""}` : "—"))),
    evidence.summary ? h("p", { class: "break" }, evidence.summary) : null,
    h("div", { class: "buttons" }, statusBadges(incident)),
    h("section", { "aria-labelledby": "sources-heading" },
      h("h2", { id: "sources-heading" }, "Sources"),
      h("ul", { id: "incident-sources" }, (incident.sources || []).map((source) =>
        h("li", { class: "break" }, source.url ? h("a", { href: source.url, rel: "noopener noreferrer external" }, source.name) : source.name)))),
    incident.disputes?.length ? h("section", { "aria-labelledby": "disputes-heading" },
      h("h2", { id: "disputes-heading" }, "Disputes and denials"),
      table("Who disputed or denied it", ["Party", "Kind", "Statement"], incident.disputes.map((dispute) => [
        countryLink(dispute.party), dispute.denial ? "denial" : "dispute", h("span", { class: "break" }, dispute.statement || "—")]))) : null,
    incident.details && Object.keys(incident.details).length ? h("section", { "aria-labelledby": "details-heading" },
      h("h2", { id: "details-heading" }, "Details"), detailsList(incident.details)) : null,
    history,
  );
  try {
    const log = await call("AuditService", "GetHistory", { name: `incidents/${id}` });
    history.replaceChildren(h("h2", { id: "log-heading" }, "Full history"),
      h("ol", { class: "history", id: "incident-events" }, (log.events || []).map((event) => {
        let payload = {};
        try { payload = JSON.parse(event.payloadJson || "{}"); } catch { payload = {}; }
        return h("li", {},
          h("span", { class: "event-type" }, event.type), " ",
          h("span", { class: "muted" }, `recorded ${when(event.recordedAt)}, position ${event.position}, version ${event.version}`),
          h("details", {}, h("summary", {}, "What was recorded"), h("pre", { class: "payload" }, JSON.stringify(payload, null, 2))));
      })));
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) {
      history.replaceChildren(h("h2", { id: "log-heading" }, "Full history"),
        h("p", { class: "notice" }, "The event-by-event history comes from the audit log and needs the auditor role. Above is the incident as it stands now: ",
          `${incident.corroborations || 0} corroborations, ${incident.disputes?.length || 0} disputes, ${incident.corrections || 0} corrections${incident.retracted ? ", retracted" : ""}.`));
    } else {
      history.replaceChildren(h("h2", { id: "log-heading" }, "Full history"), errorView(error));
    }
  }
}

// ---------------------------------------------------------------------------- registers

/** A register's filter form: text fields and selects, applied into the route's query. */
function registerFilters(route, label, fields, params) {
  const form = h("form", { class: "filters", id: `${route}-filters`, "aria-label": label },
    fields.map(([name, text, options]) => field(name, text, options
      ? h("select", {}, options.map(([value, shown]) => h("option", { value, selected: (params.get(name) || "") === value }, shown)))
      : h("input", { type: "text", value: params.get(name) || "", maxlength: 8, autocomplete: "off" }))),
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Apply filters"), h("a", { href: `#/${route}` }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    // Codes are upper case in the ledger; a select's value is taken as it is.
    location.hash = hashOf(route, Object.fromEntries(fields.map(([name, , options]) => {
      const value = String(data.get(name) || "").trim();
      return [name, options ? value : value.toUpperCase()];
    })));
  });
  return form;
}

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

async function negotiationsPage(params) {
  const answer = await call("QueryService", "ListNegotiations", { party: params.get("party") || undefined, status: params.get("status") || undefined });
  const tracks = answer.negotiations || [];
  const selected = params.get("track");
  const statuses = [["", "any status"], ...["proposed", "active", "paused", "rejected", "agreed"].map((status) => [status, status])];
  show(
    h("h1", {}, "Negotiations"),
    registerFilters("negotiations", "Filter negotiation tracks", [["party", "Party or mediator (code)"], ["status", "Status", statuses]], params),
    table("Negotiation tracks", ["Parties", "Mediator", "Subject", "Status", { label: "Rounds", numeric: true }, "History"],
      tracks.map((track) => ({
        attrs: { id: `track-${track.id}`, class: track.id === selected ? "changed" : undefined },
        cells: [
          h("span", { class: "break" }, (track.parties || []).map((code, index) => [index ? ", " : "", countryLink(code)])),
          track.mediator || "—",
          h("span", { class: "break" }, track.subject || "—"),
          h("span", { class: "badge" }, track.status),
          String(track.rounds || 0),
          h("details", { open: track.id === selected }, h("summary", {}, plural((track.history || []).length, "step", "steps")),
            h("ol", {}, (track.history || []).map((step) => h("li", { class: "break" },
              `${day(step.occurredAt)} ${step.event}${step.by ? ` by ${step.by}` : ""}${step.reason ? `: ${step.reason}` : ""} → ${step.status}`)))),
        ],
      })), { className: "stack-on-phone negotiations", empty: "No negotiation track is recorded." }));
}

async function sanctionsPage(params) {
  const inForce = params.get("show") === "inforce";
  const answer = await call("QueryService", "ListSanctions", {
    includeLifted: !inForce || undefined, inForceOn: inForce ? new Date().toISOString() : undefined,
    authority: params.get("authority") || undefined, target: params.get("target") || undefined,
  });
  const regimes = answer.regimes || [];
  const selected = params.get("regime");
  show(
    h("h1", {}, "Sanctions"),
    registerFilters("sanctions", "Filter sanctions regimes", [["authority", "Authority (code)"], ["target", "Target (alpha-3)"],
      ["show", "Show", [["", "all, lifted included"], ["inforce", "in force today"]]]], params),
    table(inForce ? "Sanctions regimes in force today" : "Sanctions regimes, lifted ones included", ["Authority", "Target", "Programme", { label: "Entities", numeric: true }, "Sectors", "In force", "Status"],
      regimes.map((regime) => ({
        attrs: { id: `regime-${regime.id}`, class: regime.id === selected ? "changed" : undefined },
        cells: [
          regime.authority,
          countryLink(regime.target),
          h("span", { class: "break" }, regime.programme || "—"),
          String(regime.entitiesCount || 0),
          h("span", { class: "break" }, (regime.sectors || []).join(", ") || "—"),
          `${day(regime.effectiveFrom)} – ${regime.liftedAt ? day(regime.liftedAt) : regime.expiresAt ? day(regime.expiresAt) : "open-ended"}`,
          regime.lifted ? h("span", { class: "badge" }, "lifted")
            : regime.expiresAt && new Date(regime.expiresAt) < new Date() ? h("span", { class: "badge" }, "expired")
              : h("span", { class: "badge good" }, "in force"),
        ],
      })), { className: "stack-on-phone sanctions", empty: "No sanctions regime is recorded." }));
}

// ---------------------------------------------------------------------------- audit

async function auditPage() {
  const [verify, seals, projections] = await Promise.all([
    call("AuditService", "VerifyLog", {}),
    call("AuditService", "ListSeals", {}),
    call("QueryService", "ListProjections", {}).catch((error) => ({ error })),
  ]);
  const parsed = (seals.sealsJson || []).map((text) => { try { return JSON.parse(text); } catch { return {}; } });
  const exportStatus = h("span", { role: "status", class: "muted" });
  const broken = verify.firstBreak;
  show(
    h("h1", {}, "Audit"),
    h("section", { "aria-labelledby": "verify-heading" },
      h("h2", { id: "verify-heading" }, "Log verification"),
      h("p", { id: "verify-status", class: `notice break${verify.intact ? "" : " error"}` },
        verify.intact ? `Intact up to position ${verify.checkedUpTo || 0}` : `Broken at position ${broken?.position}: ${broken?.kind}`,
        `. ${verify.summary || ""}`),
      h("dl", { class: "facts" },
        h("div", {}, h("dt", {}, "Events checked"), h("dd", {}, String(verify.events || 0))),
        h("div", {}, h("dt", {}, "Not chained yet"), h("dd", {}, String(verify.unchained || 0))),
        h("div", {}, h("dt", {}, "Seals checked"), h("dd", {}, String(verify.sealsChecked || 0))),
        h("div", {}, h("dt", {}, "Chain digest"), h("dd", { class: "break" }, verify.digest || "—")))),
    h("section", { "aria-labelledby": "seals-heading" },
      h("h2", { id: "seals-heading" }, "Seals"),
      table("Seals recorded (copy them out and keep them elsewhere)", [{ label: "Up to position", numeric: true }, { label: "Events", numeric: true }, "Sealed at", "Signed", "Digest"],
        parsed.map((seal) => [String(seal.last_position ?? "—"), String(seal.count ?? "—"), when(seal.sealed_at),
          seal.signature ? h("span", { class: "badge good" }, `signed (key ${seal.key_id || "?"})`) : h("span", { class: "badge" }, "unsigned"),
          h("span", { class: "break" }, seal.digest || "—")]),
        { className: "stack-on-phone seals", empty: "No seal is recorded yet." })),
    h("section", { "aria-labelledby": "lag-heading" },
      h("h2", { id: "lag-heading" }, "Projection lag"),
      projections.error ? errorView(projections.error) :
        table(`Read models behind the head of the log (position ${projections.head || 0})`, ["Read model", { label: "Position", numeric: true }, { label: "Behind (events)", numeric: true }, { label: "Behind (s)", numeric: true }, { label: "Set aside", numeric: true }],
          [...(projections.projections || []), ...(projections.auditChain ? [projections.auditChain] : [])].map((entry) => [
            entry.name, String(entry.position || 0), String(entry.lagEvents || 0), number(entry.lagSeconds, 2), String(entry.quarantinedEvents || 0)]),
          { className: "stack-on-phone projections" })),
    h("section", { "aria-labelledby": "export-heading" },
      h("h2", { id: "export-heading" }, "Export"),
      h("p", { class: "buttons" },
        h("button", { type: "button", id: "export-button", onclick: () => {
          exportStatus.textContent = "Downloading…";
          download("/api/export", "flashpoint-export.jsonl")
            .then(() => { exportStatus.textContent = "Downloaded."; })
            .catch((error) => { exportStatus.textContent = `Export failed: ${error.message}`; });
        } }, "Download the audit export"),
        exportStatus)),
  );
}

// ---------------------------------------------------------------------------- router

const PAGES = {
  map: { title: "Map", render: (parts, params) => mapPage(params) },
  country: { title: "Country", render: (parts, params) => countryPage(parts[1] || "", params) },
  incidents: { title: "Incidents", render: (parts, params) => (parts[1] ? incidentPage(parts[1]) : incidentsPage(params)) },
  negotiations: { title: "Negotiations", render: (parts, params) => negotiationsPage(params) },
  sanctions: { title: "Sanctions", render: (parts, params) => sanctionsPage(params) },
  audit: { title: "Audit", render: () => auditPage(), role: "auditor" },
};

async function render() {
  for (const undo of teardown.splice(0)) undo();
  const { parts, params } = route();
  const name = PAGES[parts[0]] ? parts[0] : "map";
  if (!PAGES[parts[0]]) history.replaceState(null, "", "#/map");
  const page = PAGES[name];
  const mine = ++renderCount;
  document.title = `${page.title} · Flashpoint`;
  for (const link of document.querySelectorAll("nav a[data-route]")) {
    const current = link.dataset.route === name || (name === "country" && link.dataset.route === "map");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.setAttribute("aria-busy", "true");
  main.dataset.page = name;
  delete main.dataset.ready;
  try {
    await page.render(parts, params);
  } catch (error) {
    if (mine !== renderCount) return;
    show(h("h1", {}, page.title), errorView(error, { role: page.role }));
  }
  if (mine !== renderCount) return;
  main.removeAttribute("aria-busy");
  main.dataset.ready = String(mine);
}

document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", () => {
  render().then(() => {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: false });
    }
  });
});
levels().then((table_) => { document.getElementById("parameters-version").textContent = table_.parameters_version; });
render();
