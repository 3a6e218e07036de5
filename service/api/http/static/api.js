// The dashboard's one way to the HTTP/JSON API: unary calls, SSE streams read with fetch()
// (so the bearer token can be sent), and the token kept for the tab in sessionStorage.

const TOKEN_KEY = "flashpoint.token";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
    this.details = details || [];
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders() {
  const value = token();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

async function errorOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  return new ApiError(response.status, body.code, body.message, body.details);
}

/** One unary RPC: GET with ?message= for reads (cacheable, linkable), POST otherwise. */
export async function call(service, method, message = {}, { signal } = {}) {
  const path = `/api/flashpoint.v1.${service}/${method}`;
  const response = await fetch(`${path}?message=${encodeURIComponent(JSON.stringify(message))}`, {
    headers: { Accept: "application/json", ...authHeaders() },
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** Every page of a paginated list (AIP-132), up to `limit` items. */
export async function callAll(service, method, message, field, limit = 2000) {
  const items = [];
  let pageToken = "";
  do {
    const page = await call(service, method, { ...message, pageToken: pageToken || undefined });
    items.push(...(page[field] || []));
    pageToken = page.nextPageToken || "";
  } while (pageToken && items.length < limit);
  return items;
}

/**
 * A server-sent event stream of an RPC. `onMessage(message, id)` per data frame; reconnects
 * with back-off after a drop, resuming with `resume(lastId)` (the request for the next try).
 * Returns a function that stops it.
 */
export function stream(service, method, message, { onMessage, onError, onState, resume }) {
  const controller = new AbortController();
  let lastId = "";
  let delay = 500;
  let request = message;

  async function connect() {
    const url = `/api/stream/flashpoint.v1.${service}/${method}?message=${encodeURIComponent(JSON.stringify(request))}`;
    const response = await fetch(url, {
      headers: { Accept: "text/event-stream", ...authHeaders() },
      signal: controller.signal,
    });
    if (!response.ok) throw await errorOf(response);
    onState?.("open");
    delay = 500;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        handle(frame);
      }
    }
  }

  function handle(frame) {
    let event = "message";
    let id = "";
    const data = [];
    for (const line of frame.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch {
      return;
    }
    if (event === "error") {
      throw new ApiError(0, parsed.code, parsed.message, parsed.details);
    }
    if (id) lastId = id;
    onMessage(parsed, id);
  }

  (async () => {
    while (!controller.signal.aborted) {
      try {
        await connect();
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && [401, 403, 400, 404].includes(error.status)) {
          onError?.(error);
          return;
        }
        onError?.(error);
      }
      if (controller.signal.aborted) return;
      onState?.("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
      if (resume && lastId) request = resume(lastId);
    }
  })();

  return () => controller.abort();
}

/** A download that needs the Authorization header, so not a plain link. */
export async function download(path, filename) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) throw await errorOf(response);
  const disposition = response.headers.get("Content-Disposition") || "";
  const named = /filename="?([^";]+)"?/.exec(disposition);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = named ? named[1] : filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
