// Limits and usage in the console: the limit fields of the Generate and
// Edit dialogs, and a usage dialog per key with two charts (the last 24
// hours and the last 30 days, allowed against denied, the key's rate drawn
// as a line) and the account's top keys. Plain JavaScript and SVG built
// with DOM calls (textContent, never innerHTML); its stylesheet is
// usage.css, linked from here: nothing inline, nothing from elsewhere, so
// it works under the console's CSP.

import { request } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const c of children) if (c != null) node.append(c);
  return node;
}

const link = el("link", { rel: "stylesheet", href: "usage.css" });
document.head.append(link);

export const usageApi = {
  usage: (id, params) => request("GET", `/v1/keys/${encodeURIComponent(id)}/usage?${new URLSearchParams(params)}`),
  top: (params) => request("GET", `/v1/usage/top?${new URLSearchParams(params)}`),
};

// ---------- limit fields in the Generate and Edit dialogs ----------

// limitFields adds a Limits and a Quota field to a dialog's form body and
// returns them; prefix names their ids ("generate", "edit").
function limitFields(prefix) {
  const body = document.querySelector(`#${prefix}-form .dialog-body`);
  const limits = el("textarea", { id: `${prefix}-limits`, rows: "2", spellcheck: "false", class: "mono",
    placeholder: "Optional, one a line: 100/s, 50000/d,burst=500", "aria-describedby": `${prefix}-limits-hint ${prefix}-limits-error` });
  const quota = el("input", { id: `${prefix}-quota`, autocomplete: "off", spellcheck: "false", class: "mono",
    placeholder: "Optional: 1000000/month or 50000/day", "aria-describedby": `${prefix}-quota-error` });
  body.append(
    el("div", { class: "field" },
      el("label", { for: `${prefix}-limits`, text: "Rate limits" }), limits,
      el("p", { class: "hint", id: `${prefix}-limits-hint`, text: "COUNT/WINDOW (s, m, h, d), at most 4; over a limit the key gets 429 rate_limited." }),
      el("p", { class: "error", id: `${prefix}-limits-error`, hidden: "" })),
    el("div", { class: "field" },
      el("label", { for: `${prefix}-quota`, text: "Quota" }), quota,
      el("p", { class: "error", id: `${prefix}-quota-error`, hidden: "" })));
  return { limits, quota };
}

const fields = { generate: limitFields("generate"), edit: limitFields("edit") };

const lines = (text) => text.split("\n").map((l) => l.trim()).filter(Boolean);

// limitsOfGenerate is what the Generate dialog adds to a new key's body.
export function limitsOfGenerate() {
  const out = {};
  const rates = lines(fields.generate.limits.value);
  if (rates.length) out.limits = rates;
  const quota = fields.generate.quota.value.trim();
  if (quota) out.quota = quota;
  return out;
}

// fillEdit shows a key's limits in the Edit dialog.
export function fillEdit(k) {
  fields.edit.limits.value = (k.limits || []).join("\n");
  fields.edit.quota.value = k.quota || "";
}

// limitsPatchOf is the Edit dialog's merge patch of k's limits.
export function limitsPatchOf(k) {
  const out = {};
  const rates = lines(fields.edit.limits.value);
  if (rates.join("\n") !== (k.limits || []).join("\n")) out.limits = rates;
  const quota = fields.edit.quota.value.trim();
  if (quota !== (k.quota || "")) out.quota = quota || null;
  return out;
}

// limitErrors maps the API's field names to the limit fields, for
// showProblem.
export function limitErrors(prefix) {
  return {
    limits: [`${prefix}-limits-error`, fields[prefix].limits],
    quota: [`${prefix}-quota-error`, fields[prefix].quota],
  };
}

// ---------- the usage dialog ----------

const dialog = el("dialog", { id: "usage-dialog", "aria-modal": "true", "aria-labelledby": "usage-title", class: "usage-dialog" });
const title = el("h2", { id: "usage-title", text: "Usage" });
const subtitle = el("p", { class: "muted", id: "usage-subtitle" });
const content = el("div", { class: "dialog-body usage-body" });
const close = el("button", { type: "button", class: "btn btn-secondary", text: "Close" });
dialog.append(el("header", { class: "dialog-head" }, title, subtitle), content, el("footer", { class: "dialog-foot" }, close));
close.addEventListener("click", () => dialog.close());
document.body.append(dialog);

let returnTo = null;
dialog.addEventListener("close", () => { if (returnTo && returnTo.isConnected) returnTo.focus(); });

// openUsage shows k's usage: the last hour by the minute, the last 24
// hours by 15 minutes, the last 30 days by the day, and its account's top
// keys over the last 24 hours.
export async function openUsage(k, opener) {
  returnTo = opener;
  title.textContent = `Usage of “${k.name}”`;
  subtitle.textContent = [
    k.limits && k.limits.length ? `Limits ${k.limits.join(", ")}` : "No rate limit",
    k.quota ? `quota ${k.quota}` : "no quota",
  ].join(" · ");
  content.replaceChildren(el("p", { class: "muted", text: "Loading…", role: "status" }));
  dialog.showModal();
  close.focus();
  const now = new Date();
  try {
    const since = (ms) => new Date(now - ms).toISOString().replace(/\.\d+Z$/, "Z");
    const [hour, day, month, top] = await Promise.all([
      usageApi.usage(k.id, { from: since(3600e3), step: "1m" }),
      usageApi.usage(k.id, { from: since(86400e3), step: "15m" }),
      usageApi.usage(k.id, { from: since(30 * 86400e3), step: "1d" }),
      usageApi.top({ account_id: k.account_id, limit: "5" }),
    ]);
    const quota = k.quota_usage ? el("p", { class: "usage-quota",
      text: `Quota ${k.quota_usage.quota}: ${k.quota_usage.used.toLocaleString()} used, ${k.quota_usage.remaining.toLocaleString()} left until ${new Date(k.quota_usage.resets_at).toLocaleString()}` }) : null;
    content.replaceChildren(
      quota,
      chart("Last hour, per minute", hour, rateLine(k, 60)),
      chart("Last 24 hours, per 15 minutes", day, rateLine(k, 15 * 60)),
      chart("Last 30 days, per day", month, rateLine(k, 86400)),
      topKeys(top, k));
  } catch (err) {
    content.replaceChildren(el("p", { class: "error banner", role: "alert", text: err.detail || err.message }));
  }
}

// rateLine is the most a bucket of step seconds can hold under k's
// tightest rate (and, for days, its daily quota), or null for a key
// without either.
function rateLine(k, step) {
  let least = null;
  const q = /^(\d+)\/day$/.exec(k.quota || "");
  if (q && step >= 86400) least = Number(q[1]);
  for (const r of k.limits || []) {
    const m = /^(\d+)\/(\d*)([smhd])/.exec(r);
    if (!m) continue;
    const window = (Number(m[2] || 1)) * { s: 1, m: 60, h: 3600, d: 86400 }[m[3]];
    const most = (Number(m[1]) * step) / window;
    if (least === null || most < least) least = most;
  }
  return least;
}

const W = 640, H = 180, PAD = { l: 48, r: 8, t: 12, b: 24 };

// chart draws a usage series as stacked bars (allowed, then denied) with
// the limit as a dashed line, and a table of the same numbers for screen
// readers.
function chart(label, u, limit) {
  const buckets = u.buckets;
  const most = Math.max(1, ...buckets.map((b) => b.allowed + b.denied));
  // The limit sets the scale only when it is near the data: far above, it
  // is named in the legend instead of flattening the bars.
  const onScale = limit && limit <= 4 * most;
  const scale = niceCeil(Math.max(most, onScale ? limit : 0));
  const x0 = PAD.l, y0 = H - PAD.b, w = (W - PAD.l - PAD.r) / buckets.length, h = H - PAD.t - PAD.b;
  const y = (v) => y0 - (v / scale) * h;
  const g = svg("g");
  for (const t of [0, 0.5, 1]) {
    g.append(svg("line", { x1: x0, x2: W - PAD.r, y1: y(t * scale), y2: y(t * scale), class: "grid" }),
      svg("text", { x: x0 - 6, y: y(t * scale) + 4, class: "axis", "text-anchor": "end" }, document.createTextNode(short(t * scale))));
  }
  buckets.forEach((b, i) => {
    const x = x0 + i * w + w * 0.1, bw = Math.max(1, w * 0.8);
    if (b.allowed) g.append(svg("rect", { x, width: bw, y: y(b.allowed), height: y0 - y(b.allowed), class: "allowed" },
      svg("title", {}, document.createTextNode(`${new Date(b.start).toLocaleString()}: ${b.allowed} allowed`))));
    if (b.denied) g.append(svg("rect", { x, width: bw, y: y(b.allowed + b.denied), height: y(b.allowed) - y(b.allowed + b.denied), class: "denied" },
      svg("title", {}, document.createTextNode(`${new Date(b.start).toLocaleString()}: ${b.denied} denied`))));
  });
  for (const [i, anchor] of [[0, "start"], [Math.floor(buckets.length / 2), "middle"], [buckets.length - 1, "end"]]) {
    if (!buckets[i]) continue;
    const x = anchor === "end" ? x0 + (i + 1) * w : x0 + i * w;
    g.append(svg("text", { x, y: H - 6, class: "axis", "text-anchor": anchor }, document.createTextNode(when(buckets[i].start, u.step_seconds))));
  }
  if (onScale) {
    g.append(svg("line", { x1: x0, x2: W - PAD.r, y1: y(limit), y2: y(limit), class: "limit" }),
      svg("text", { x: W - PAD.r, y: y(limit) - 4, class: "axis limit-label", "text-anchor": "end" }, document.createTextNode(`limit ${short(limit)}`)));
  }
  const id = `chart-${Math.random().toString(36).slice(2)}`;
  const figure = el("figure", { class: "usage-chart" },
    el("figcaption", { id, text: `${label}: ${u.totals.allowed.toLocaleString()} allowed, ${u.totals.denied.toLocaleString()} denied` }),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": id }, g),
    el("p", { class: "legend" }, el("span", { class: "swatch allowed" }), document.createTextNode("allowed "),
      el("span", { class: "swatch denied" }), document.createTextNode("denied "),
      limit ? el("span", { class: "swatch limit" }) : null,
      limit ? document.createTextNode(onScale ? "limit" : `limit ${short(limit)} a bucket, above the chart`) : null));
  return figure;
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function short(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(1)}`;
}

function when(iso, step) {
  const d = new Date(iso);
  return step >= 86400 ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" })
    : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

// topKeys lists the account's keys with the most decisions today.
function topKeys(top, k) {
  const rows = top.items.map((t) => el("tr", t.key_id === k.id ? { class: "current" } : {},
    el("td", { text: t.name }), el("td", { class: "num", text: t.allowed.toLocaleString() }),
    el("td", { class: "num", text: t.denied.toLocaleString() })));
  return el("section", { class: "usage-top", "aria-labelledby": "usage-top-title" },
    el("h3", { id: "usage-top-title", text: `Top keys of ${k.account_id}, last 24 hours` }),
    rows.length ? el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Key" }), el("th", { scope: "col", class: "num", text: "Allowed" }),
        el("th", { scope: "col", class: "num", text: "Denied" }))),
      el("tbody", {}, ...rows)) : el("p", { class: "muted", text: "No requests yet." }));
}
