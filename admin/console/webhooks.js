// The console's Webhooks page: endpoints, their delivery logs and
// redelivery, and the expiry-warning window that marks keys in the list.
// Built with DOM calls only (dom.js: textContent, never innerHTML).

import { request, ApiError } from "./api.js";
import { $, el } from "./dom.js";

const DAY = 86400 * 1000;

const hooks = {
  list: () => request("GET", "/v1/webhooks"),
  create: (body) => request("POST", "/v1/webhooks", body),
  update: (id, patch) => request("PATCH", `/v1/webhooks/${encodeURIComponent(id)}`, patch),
  remove: (id) => request("DELETE", `/v1/webhooks/${encodeURIComponent(id)}`),
  rotate: (id) => request("POST", `/v1/webhooks/${encodeURIComponent(id)}/rotate-secret`, { overlap: "24h" }),
  deliveries: (id) => request("GET", `/v1/webhooks/${encodeURIComponent(id)}/deliveries?limit=50`),
  redeliver: (id, d) => request("POST", `/v1/webhooks/${encodeURIComponent(id)}/deliveries/${encodeURIComponent(d)}/redeliver`),
  eventTypes: () => request("GET", "/v1/event-types"),
};

// expiryWindow is how far ahead the key list marks keys as expiring soon:
// the longest lead time of the server's expiry warnings, or fallback.
export async function expiryWindow(fallback) {
  try {
    const { expiry_leads: leads } = await hooks.eventTypes();
    const days = leads.map((l) => (l.endsWith("d") ? parseFloat(l) * DAY : NaN)).filter((n) => n > 0);
    return days.length ? Math.max(...days) : fallback;
  } catch {
    return fallback;
  }
}

let me = null;
let types = [];

// setupWebhooks adds the Webhooks page, next to API Keys, for the token
// that signed in (me: GET /v1/whoami).
export async function setupWebhooks(who) {
  me = who;
  try {
    types = (await hooks.eventTypes()).event_types;
  } catch {
    types = [];
  }
  if ($("webhooks")) return;
  const navList = document.querySelector(".sidenav ul");
  const keysLink = navList.querySelector("a");
  const link = el("a", { href: "#webhooks", text: "Webhooks" });
  navList.append(el("li", {}, link));
  const section = buildSection();
  $("keys").after(section);
  const show = (webhooksPage) => {
    section.hidden = !webhooksPage;
    $("keys").hidden = webhooksPage;
    link.toggleAttribute("aria-current", webhooksPage);
    if (webhooksPage) link.setAttribute("aria-current", "page");
    keysLink.toggleAttribute("aria-current", !webhooksPage);
    if (!webhooksPage) keysLink.setAttribute("aria-current", "page");
  };
  link.addEventListener("click", (ev) => { ev.preventDefault(); show(true); render(); $("webhooks-title").focus(); });
  keysLink.addEventListener("click", (ev) => { ev.preventDefault(); show(false); });
  $("sign-out").addEventListener("click", () => { section.hidden = true; });
}

function buildSection() {
  const events = el("fieldset", { class: "field" }, el("legend", { text: "Events (none checked: every event)" }),
    ...types.map((t) => el("label", { class: "check" }, el("input", { type: "checkbox", name: "event_types", value: t }), " " + t)));
  const accountField = el("div", { class: "field", hidden: Boolean(me?.account_id) },
    el("label", { for: "webhook-account", text: "Account (empty: every account)" }),
    el("input", { id: "webhook-account", name: "account_id", autocomplete: "off", spellcheck: false }));
  const form = el("form", { id: "webhook-form", noValidate: true, class: "card" },
    el("h2", { text: "Add an endpoint" }),
    el("p", { class: "error banner", id: "webhook-error", role: "alert", hidden: true }),
    el("div", { class: "field" }, el("label", { for: "webhook-url", text: "URL" }),
      el("input", { id: "webhook-url", name: "url", type: "url", required: true, autocomplete: "off", spellcheck: false, placeholder: "https://hooks.example.com/keygate" })),
    el("div", { class: "field" }, el("label", { for: "webhook-description", text: "Description" }),
      el("input", { id: "webhook-description", name: "description", autocomplete: "off", maxLength: 1000 })),
    accountField, events,
    el("button", { type: "submit", class: "btn btn-primary", text: "Add endpoint" }));
  form.addEventListener("submit", onCreate);
  return el("section", { id: "webhooks", hidden: true, "aria-labelledby": "webhooks-title" },
    el("div", { class: "page-head" }, el("div", {}, el("p", { class: "crumb", text: "Settings" }),
      el("h1", { id: "webhooks-title", tabIndex: -1, text: "Webhooks" }),
      el("p", { class: "lead", text: "Endpoints receive key events, signed per Standard Webhooks with a secret shown once. Each delivery is retried for a day." }))),
    el("p", { class: "error banner", id: "webhooks-list-error", role: "alert", hidden: true }),
    el("div", { class: "table-wrap" }, el("table", { class: "keys-table", id: "webhooks-table", "aria-labelledby": "webhooks-title" },
      el("thead", {}, el("tr", {}, ...["URL", "Events", "Account", "Status", "Actions"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", { id: "webhooks-body" }))),
    el("p", { class: "muted", id: "webhooks-empty", text: "No endpoints yet.", hidden: true }),
    el("div", { id: "webhook-secret", class: "card", role: "status", hidden: true }),
    el("section", { id: "deliveries", class: "card", hidden: true, "aria-labelledby": "deliveries-title" },
      el("h2", { id: "deliveries-title", tabIndex: -1, text: "Deliveries" }),
      el("div", { class: "table-wrap" }, el("table", { class: "keys-table", "aria-labelledby": "deliveries-title" },
        el("thead", {}, el("tr", {}, ...["Event", "State", "Attempts", "Last status", "Last error", "Next attempt", "Actions"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", { id: "deliveries-body" })))),
    form);
}

function problemText(err) {
  if (!(err instanceof ApiError)) throw err;
  return [err.detail, ...err.errors.map((e) => `${e.field}: ${e.detail}`)].filter(Boolean).join(" ");
}

async function render() {
  const banner = $("webhooks-list-error");
  banner.hidden = true;
  let items = [];
  try {
    items = (await hooks.list()).items;
  } catch (err) {
    banner.textContent = problemText(err);
    banner.hidden = false;
  }
  $("webhooks-body").replaceChildren(...items.map(row));
  $("webhooks-empty").hidden = items.length > 0;
}

function button(text, label, onclick, tone = "btn-secondary") {
  const b = el("button", { type: "button", class: `btn ${tone}`, text, "aria-label": label });
  b.addEventListener("click", onclick);
  return b;
}

function row(w) {
  const status = w.enabled ? "Enabled" : `Disabled: ${w.disabled_reason}`;
  return el("tr", {},
    el("td", { text: w.url }),
    el("td", { text: w.event_types.length ? w.event_types.join(", ") : "Every event" }),
    el("td", { text: w.account_id || "Every account" }),
    el("td", {}, el("span", { class: `badge badge-${w.enabled ? "active" : "disabled"}`, text: status })),
    el("td", {}, el("div", { class: "actions" },
      button("Deliveries", `Deliveries of ${w.url}`, () => showDeliveries(w)),
      button(w.enabled ? "Disable" : "Enable", `${w.enabled ? "Disable" : "Enable"} ${w.url}`, () => act(() => hooks.update(w.id, { enabled: !w.enabled }))),
      button("Rotate secret", `Rotate the secret of ${w.url}`, () => act(async () => showSecret(await hooks.rotate(w.id), "The old secret keeps signing for 24 hours."))),
      button("Delete", `Delete ${w.url}`, () => confirm(`Delete the endpoint ${w.url} and its delivery log?`) && act(() => hooks.remove(w.id)), "btn-danger"))));
}

async function act(fn) {
  const banner = $("webhooks-list-error");
  try {
    await fn();
    banner.hidden = true;
  } catch (err) {
    banner.textContent = problemText(err);
    banner.hidden = false;
  }
  await render();
}

function showSecret(w, note) {
  const box = $("webhook-secret");
  const value = el("input", { readOnly: true, value: w.secret, "aria-label": "Signing secret", spellcheck: false });
  box.replaceChildren(el("p", { text: `Signing secret of ${w.url}: copy it now, it is shown only this once. ${note}` }), value,
    button("Done", "Hide the secret", () => { box.hidden = true; box.replaceChildren(); }));
  box.hidden = false;
  value.select();
}

async function showDeliveries(w) {
  const panel = $("deliveries");
  $("deliveries-title").textContent = `Deliveries to ${w.url}`;
  let items = [];
  try {
    items = (await hooks.deliveries(w.id)).items;
  } catch (err) {
    items = [];
    $("webhooks-list-error").textContent = problemText(err);
    $("webhooks-list-error").hidden = false;
  }
  $("deliveries-body").replaceChildren(...items.map((d) => el("tr", {},
    el("td", { text: `${d.event_type} (${d.event_id})` }),
    el("td", {}, el("span", { class: `badge badge-${d.state === "delivered" ? "active" : d.state === "failed" ? "revoked" : "soon"}`, text: d.state })),
    el("td", { text: String(d.attempts) }),
    el("td", { text: d.last_status == null ? "–" : String(d.last_status) }),
    el("td", { text: d.last_error || "–" }),
    el("td", { text: d.next_attempt_at ? new Date(d.next_attempt_at).toLocaleString() : "–" }),
    el("td", {}, button("Redeliver", `Redeliver ${d.event_type} ${d.event_id}`, async () => {
      await act(() => hooks.redeliver(w.id, d.id));
      await showDeliveries(w);
    })))));
  panel.hidden = false;
  $("deliveries-title").focus();
}

async function onCreate(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const error = $("webhook-error");
  error.hidden = true;
  const body = { url: $("webhook-url").value.trim() };
  const description = $("webhook-description").value.trim();
  if (description) body.description = description;
  const chosen = [...form.querySelectorAll('input[name="event_types"]:checked')].map((i) => i.value);
  if (chosen.length) body.event_types = chosen;
  const account = $("webhook-account").value.trim();
  if (account && !me?.account_id) body.account_id = account;
  try {
    const w = await hooks.create(body);
    form.reset();
    showSecret(w, "Receivers verify each delivery with it.");
    await render();
  } catch (err) {
    error.textContent = problemText(err);
    error.hidden = false;
    $("webhook-url").focus();
  }
}
