// The keygate console: Settings → API Keys. Plain JavaScript, no build
// step, no third-party code; everything it shows is built with DOM calls
// (textContent, never innerHTML), so no key field can inject markup.

import { api, ApiError, forgetToken, setToken, token } from "./api.js";
import { fillEdit, limitErrors, limitsOfGenerate, limitsPatchOf, openUsage } from "./usage.js";

const $ = (id) => document.getElementById(id);
const DAY = 86400 * 1000;
const SOON = 7 * DAY; // an active key expiring within a week is "expiring soon"

const state = {
  me: null, // GET /v1/whoami
  modules: [], // GET /v1/modules items
  status: "active",
  account: "",
  cursors: [null], // cursors[i] opens page i
  page: 0,
  next: null,
  keys: [],
};

// ---------- formatting ----------

const dateFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

function fmtDate(iso) {
  return iso ? dateFormat.format(new Date(iso)) : "";
}

function fmtDateTime(iso) {
  return iso ? dateTimeFormat.format(new Date(iso)) : "";
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// statusOf is what the list shows for a key: the API's status (active,
// expired, revoked) refined with expiring soon and rotated.
function statusOf(k, now = Date.now()) {
  if (k.status === "revoked") return { cls: "revoked", label: "Revoked", note: `on ${fmtDate(k.revoked_at)}` };
  if (k.status === "disabled") return { cls: "disabled", label: "Disabled", note: `since ${fmtDate(k.disabled_at)}` };
  if (k.status === "expired") return { cls: "expired", label: "Expired", note: k.rotated_to ? "rotated" : `on ${fmtDate(k.expires_at)}` };
  if (k.rotated_to) return { cls: "rotated", label: "Rotated", note: `grace ends ${fmtDateTime(k.expires_at)}` };
  if (k.expires_at) {
    const left = Date.parse(k.expires_at) - now;
    if (left < SOON) {
      const days = Math.floor(left / DAY);
      return { cls: "soon", label: "Expiring soon", note: days < 1 ? "today" : `in ${plural(days, "day")}` };
    }
  }
  return { cls: "active", label: "Active", note: "" };
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "title") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

let toastTimer;
function toast(message) {
  const t = $("toast");
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
}

// ---------- dialogs: focus moves in, and back to what opened them ----------

const openers = new Map();

function openDialog(dialog, focus, opener = document.activeElement) {
  openers.set(dialog, opener);
  dialog.showModal();
  (focus || dialog.querySelector("input, select, textarea, button"))?.focus();
}

function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}

function restoreFocus(opener) {
  if (opener && opener.isConnected && !opener.disabled) opener.focus();
  else $("keys-title").focus();
}

for (const dialog of document.querySelectorAll("dialog")) {
  dialog.addEventListener("close", () => {
    const opener = openers.get(dialog);
    openers.delete(dialog);
    if (!dialog.dataset.chained) restoreFocus(opener);
    delete dialog.dataset.chained;
  });
  for (const b of dialog.querySelectorAll("[data-close]")) b.addEventListener("click", () => closeDialog(dialog));
}

// ---------- field errors next to their field ----------

function clearErrors(root) {
  for (const e of root.querySelectorAll(".error")) { e.textContent = ""; e.hidden = true; }
  for (const i of root.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
}

function showError(id, message, input) {
  const e = $(id);
  if (!e) return false;
  e.textContent = e.hidden || !e.textContent ? message : `${e.textContent} ${message}`;
  e.hidden = false;
  if (input) input.setAttribute("aria-invalid", "true");
  return true;
}

// showProblem puts each field error of err next to its field (fields maps
// an API field to [error element id, input]) and the rest in the banner.
function showProblem(err, banner, fields) {
  if (!(err instanceof ApiError)) throw err;
  if (err.status === 401) return signOut("Your admin token is no longer accepted; sign in again.");
  let first = null;
  const rest = [];
  for (const fe of err.errors) {
    const base = fe.field.replace(/\[\d+\]$/, "");
    const target = fields[base];
    let message = fe.detail;
    if (base !== fe.field && base === "scopes") message = `${scopeAt(fe.field)}: ${fe.detail}`;
    if (target && showError(target[0], capitalize(message), target[1])) first ||= target[1];
    else rest.push(`${fe.field}: ${fe.detail}`);
  }
  if (!err.errors.length || rest.length) showError(banner, [err.detail, ...rest].filter(Boolean).join(" "));
  first?.focus();
}

let lastScopes = [];
function scopeAt(field) {
  const i = Number(field.match(/\[(\d+)\]/)[1]);
  return lastScopes[i] || field;
}

function capitalize(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

// Typing in a field clears the error shown next to it.
document.addEventListener("input", (ev) => {
  const input = ev.target.closest("input, select, textarea");
  const field = input?.closest(".field");
  if (!field || !input.hasAttribute("aria-invalid")) return;
  input.removeAttribute("aria-invalid");
  for (const e of field.querySelectorAll(":scope > .error")) { e.textContent = ""; e.hidden = true; }
});

// ---------- sign-in ----------

function signOut(message) {
  forgetToken();
  state.me = null;
  for (const d of document.querySelectorAll("dialog")) closeDialog(d);
  showSignIn(message);
}

function showSignIn(message) {
  $("keys").hidden = true;
  $("session").hidden = true;
  $("signin").hidden = false;
  clearErrors($("signin"));
  if (message) showError("signin-token-error", message, $("signin-token"));
  $("signin-token").value = "";
  $("signin-token").focus();
}

async function signIn(candidate) {
  const me = await api.whoami(candidate);
  setToken(candidate);
  state.me = me;
  state.modules = (await api.modules()).items;
  $("who-name").textContent = me.name;
  $("who-account").textContent = me.account_id ? ` · account ${me.account_id}` : "";
  $("session").hidden = false;
  $("signin").hidden = true;
  $("keys").hidden = false;
  const unbound = !me.account_id;
  $("filter-account-field").hidden = !unbound;
  $("generate-account-field").hidden = !unbound;
  for (const th of document.querySelectorAll("th.col-account")) th.hidden = !unbound;
  state.cursors = [null];
  state.page = 0;
  await loadPage();
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors($("signin"));
  const input = $("signin-token");
  const value = input.value.trim();
  if (!value) return showError("signin-token-error", "Paste an admin token.", input);
  try {
    await signIn(value);
    input.value = "";
    $("keys-title").focus();
  } catch (err) {
    forgetToken();
    if (!(err instanceof ApiError)) throw err;
    const detail = err.status !== 401 ? err.detail
      : err.detail.includes("not an admin token") ? err.detail
      : "This admin token was not accepted. Check that you pasted all of it and that it is in the server's admin tokens file.";
    showError("signin-token-error", detail, input);
    input.focus();
  }
});

$("sign-out").addEventListener("click", () => signOut());

// ---------- the list ----------

async function loadPage() {
  const params = { status: state.status, limit: "20" };
  if (state.account) params.account_id = state.account;
  const cursor = state.cursors[state.page];
  if (cursor) params.cursor = cursor;
  clearErrors($("filters"));
  $("list-error").hidden = true;
  try {
    const page = await api.listKeys(params);
    state.keys = page.items;
    state.next = page.next_cursor;
  } catch (err) {
    state.keys = [];
    state.next = null;
    showProblem(err, "list-error", { account_id: ["filter-account-error", $("filter-account")] });
  }
  renderKeys();
}

function renderKeys() {
  const body = $("keys-body");
  const unbound = !state.me?.account_id;
  body.replaceChildren(...state.keys.map((k) => keyRow(k, unbound)));
  $("keys-empty").hidden = state.keys.length > 0;
  $("keys-table").hidden = state.keys.length === 0;
  $("page-prev").disabled = state.page === 0;
  $("page-next").disabled = !state.next;
  $("page-label").textContent = `Page ${state.page + 1}`;
}

function keyRow(k, unbound) {
  const st = statusOf(k);
  const scopes = k.scopes.length
    ? el("div", { class: "chips" }, ...k.scopes.map((s) => el("span", { class: "chip", text: s })))
    : el("span", { class: "muted", text: "All open modules" });
  const actions = el("div", { class: "actions" });
  actions.append(iconButton("edit", `Edit ${k.name}`, (e) => openEdit(k, e.currentTarget)));
  actions.append(iconButton("usage", `Usage of ${k.name}`, async (e) => openUsage(await api.getKey(k.id).catch(() => k), e.currentTarget)));
  if (k.status === "active" && !k.rotated_to) actions.append(iconButton("rotate", `Rotate ${k.name}`, (e) => openRotate(k, e.currentTarget)));
  if (k.status === "disabled") actions.append(iconButton("enable", `Enable ${k.name}`, (e) => setDisabled(k, false, e.currentTarget)));
  else if (k.status !== "revoked") actions.append(iconButton("disable", `Disable ${k.name}`, (e) => setDisabled(k, true, e.currentTarget)));
  if (k.status !== "revoked") actions.append(iconButton("delete", `Delete ${k.name}`, (e) => openDelete(k, e.currentTarget), "danger"));
  const account = el("td", { class: "col-account", "data-label": "Account", text: k.account_id });
  account.hidden = !unbound;
  return el("tr", { "data-key-id": k.id },
    el("td", { class: "cell-name", "data-label": "Name" },
      el("div", { class: "key-name", text: k.name }),
      k.description ? el("div", { class: "key-desc", text: k.description }) : null,
      k.allowed_cidrs.length ? el("div", { class: "key-controls", text: `only from ${k.allowed_cidrs.join(", ")}` }) : null,
      Object.keys(k.metadata).length ? el("div", { class: "key-controls", text: metadataText(k.metadata) }) : null),
    account,
    el("td", { "data-label": "Key" }, el("code", { class: "prefix", text: `${k.display_prefix}…` })),
    el("td", { "data-label": "Scopes" }, scopes),
    el("td", { class: "nowrap", "data-label": "Created", title: k.created_at, text: fmtDate(k.created_at) }),
    el("td", { class: "nowrap", "data-label": "Expires", title: k.expires_at || "", text: k.expires_at ? fmtDate(k.expires_at) : "Never" }),
    el("td", { class: "nowrap", "data-label": "Last used", title: k.last_used_at || "", text: k.last_used_at ? fmtDateTime(k.last_used_at) : "Never" }),
    el("td", { "data-label": "Status" },
      el("span", { class: `badge badge-${st.cls}`, text: st.label }),
      st.note ? el("span", { class: "badge-note", text: st.note }) : null),
    el("td", { class: "cell-actions" }, actions));
}

// Icons of the row actions (24×24 paths); the buttons are named by
// aria-label ("Delete deploy bot") and show it as a tooltip.
const ICONS = {
  edit: "M4 17.3V20h2.7l8-8-2.7-2.7-8 8Zm12.7-7.4a.7.7 0 0 0 0-1l-1.6-1.6a.7.7 0 0 0-1 0l-1.3 1.3 2.7 2.7 1.2-1.4Z",
  rotate: "M12 5V2L8 6l4 4V7a5 5 0 1 1-5 5H5a7 7 0 1 0 7-7Z",
  delete: "M7 21a2 2 0 0 1-2-2V7H4V5h5V4h6v1h5v2h-1v12a2 2 0 0 1-2 2H7Zm2-4h2V9H9v8Zm4 0h2V9h-2v8Z",
  disable: "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20Zm0 2a8 8 0 0 1 6.3 12.9L7.1 5.7A8 8 0 0 1 12 4Zm-6.3 3.1 11.2 11.2A8 8 0 0 1 5.7 7.1Z",
  enable: "M8 5v14l11-7L8 5Z",
  usage: "M4 20V10h3v10H4Zm6 0V4h3v16h-3Zm6 0v-7h3v7h-3Z",
};
const SVG = "http://www.w3.org/2000/svg";

function iconButton(icon, label, onclick, tone = "") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[icon]);
  svg.append(path);
  return el("button", { type: "button", class: `btn btn-icon ${tone}`, "aria-label": label, title: label, onclick }, svg);
}

$("filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.status = $("filter-status").value;
  state.account = $("filter-account").value.trim();
  state.cursors = [null];
  state.page = 0;
  loadPage();
});
$("filter-status").addEventListener("change", () => $("filters").requestSubmit());
$("page-next").addEventListener("click", () => {
  if (!state.next) return;
  state.cursors[state.page + 1] = state.next;
  state.page++;
  loadPage();
});
$("page-prev").addEventListener("click", () => {
  if (state.page === 0) return;
  state.page--;
  loadPage();
});

// ---------- source restrictions and metadata, one a line ----------

function metadataText(m) {
  return Object.keys(m).sort().map((k) => `${k}=${m[k]}`).join(" ");
}

function linesOf(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

// metadataOf reads key=value lines; a line without "=" is kept whole as a
// key with an empty value, which the API refuses, naming the problem.
function metadataOf(text) {
  const out = {};
  for (const line of linesOf(text)) {
    const i = line.indexOf("=");
    out[i < 0 ? line : line.slice(0, i).trim()] = i < 0 ? "" : line.slice(i + 1).trim();
  }
  return out;
}

// ---------- disable and enable ----------

async function setDisabled(k, disable, opener) {
  opener.disabled = true;
  try {
    await (disable ? api.disableKey(k.id) : api.enableKey(k.id));
    await loadPage();
    const shown = state.status === "all" || state.status === (disable ? "disabled" : "active");
    toast(disable
      ? `Disabled “${k.name}”: it is refused until you enable it${shown ? "" : " (Status: Disabled lists it)"}.`
      : `Enabled “${k.name}”: it works again${shown ? "" : " (Status: Active lists it)"}.`);
    // The row's other button takes the place of the one pressed, when the
    // row is still listed; otherwise the list's heading takes the focus.
    const next = [...document.querySelectorAll(`tr[data-key-id="${k.id}"] button`)]
      .find((b) => b.getAttribute("aria-label") === `${disable ? "Enable" : "Disable"} ${k.name}`);
    (next || $("keys-title")).focus();
  } catch (err) {
    opener.disabled = false;
    showProblem(err, "list-error", {});
  }
}

// ---------- generate ----------

const EXPIRY_DAYS = { "7d": 7, "30d": 30, "60d": 60, "90d": 90 };

function prepareExpiry() {
  const limits = state.me.keys;
  const max = limits.max_lifetime_seconds;
  const select = $("generate-expiry");
  let fallback = null;
  for (const option of select.options) {
    const days = EXPIRY_DAYS[option.value];
    if (days) {
      option.disabled = max != null && days * 86400 > max;
      if (!option.disabled) fallback = option.value;
    }
    if (option.value === "never") {
      option.disabled = !limits.no_expiry_allowed;
      option.textContent = limits.no_expiry_allowed ? "No expiry" : "No expiry (not allowed on this server)";
    }
  }
  select.value = select.querySelector('option[value="30d"]').disabled ? (fallback || "custom") : "30d";
  const tomorrow = new Date(Date.now() + DAY);
  $("generate-date").min = isoDate(tomorrow);
  $("generate-date").max = max != null ? isoDate(new Date(Date.now() + max * 1000 - DAY)) : "";
  $("generate-expiry-hint").textContent = max != null
    ? `Keys on this server live at most ${plural(Math.floor(max / 86400), "day")}.`
    : "Choose how long the key works. Shorter is safer.";
  syncExpiry();
}

function syncExpiry() {
  $("generate-date-field").hidden = $("generate-expiry").value !== "custom";
}
$("generate-expiry").addEventListener("change", syncExpiry);

function isoDate(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function renderScopes() {
  const list = $("generate-scopes");
  // Open modules first; closed ones after them, disabled, with why.
  const modules = [...state.modules].sort((a, b) => (a.api_keys !== "allow") - (b.api_keys !== "allow"));
  list.replaceChildren(...modules.map((m) => {
    const closed = m.api_keys !== "allow";
    const box = (action, label) => {
      const input = el("input", { type: "checkbox", value: `${m.name}:${action}`, disabled: closed, "aria-label": `${m.name} ${label}` });
      return el("label", {}, input, el("span", { text: label }));
    };
    return el("div", { class: closed ? "scope closed" : "scope" },
      el("div", {},
        el("span", { class: "scope-name", text: m.name }),
        el("span", { class: "scope-paths", text: m.paths.join(", ") }),
        closed ? el("span", { class: "scope-why", text: "Closed to API keys by the policy: no key can reach it." }) : null),
      el("div", { class: "scope-boxes" }, box("read", "Read"), box("write", "Write")));
  }));
}

$("generate-open").addEventListener("click", (ev) => {
  const form = $("generate-form");
  form.reset();
  clearErrors(form);
  $("generate-account").value = state.account;
  prepareExpiry();
  renderScopes();
  openDialog($("generate-dialog"), state.me.account_id ? $("generate-name") : $("generate-account"), ev.currentTarget);
});

$("generate-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = $("generate-form");
  clearErrors(form);
  const body = { name: $("generate-name").value, description: $("generate-description").value };
  if (!state.me.account_id) body.account_id = $("generate-account").value.trim();
  const expiry = $("generate-expiry").value;
  if (EXPIRY_DAYS[expiry]) body.expires_in = expiry;
  else if (expiry === "never") body.no_expiry = true;
  else {
    const day = $("generate-date").value;
    if (!day) return showError("generate-expiry-error", "Choose the date the key expires.", $("generate-date"));
    const [y, m, d] = day.split("-").map(Number);
    body.expires_at = new Date(y, m - 1, d + 1).toISOString(); // the end of that day, here
  }
  body.scopes = [...$("generate-scopes").querySelectorAll("input:checked")].map((i) => i.value);
  lastScopes = body.scopes;
  const cidrs = linesOf($("generate-cidrs").value);
  if (cidrs.length) body.allowed_cidrs = cidrs;
  const metadata = metadataOf($("generate-metadata").value);
  if (Object.keys(metadata).length) body.metadata = metadata;
  Object.assign(body, limitsOfGenerate());
  const submit = $("generate-submit");
  submit.disabled = true;
  try {
    const key = await api.createKey(body);
    const opener = openers.get($("generate-dialog"));
    $("generate-dialog").dataset.chained = "1";
    closeDialog($("generate-dialog"));
    showSecret(key, opener);
    state.status = state.status === "all" ? "all" : "active";
    $("filter-status").value = state.status;
    state.cursors = [null];
    state.page = 0;
    loadPage();
  } catch (err) {
    showProblem(err, "generate-error", {
      account_id: ["generate-account_id-error", $("generate-account")],
      name: ["generate-name-error", $("generate-name")],
      description: ["generate-description-error", $("generate-description")],
      scopes: ["generate-scopes-error", $("generate-scopes").querySelector("input:not(:disabled)")],
      allowed_cidrs: ["generate-cidrs-error", $("generate-cidrs")],
      metadata: ["generate-metadata-error", $("generate-metadata")],
      expires_in: ["generate-expiry-error", $("generate-expiry")],
      expires_at: ["generate-expiry-error", $("generate-date")],
      no_expiry: ["generate-expiry-error", $("generate-expiry")],
      ...limitErrors("generate"),
    });
  } finally {
    submit.disabled = false;
  }
});

// ---------- the secret, shown once ----------

function showSecret(key, opener, rotation) {
  const input = $("secret-value");
  input.value = key.secret;
  delete key.secret; // the page keeps it in this one input, until the dialog closes
  $("secret-id").textContent = key.id;
  $("secret-name").textContent = key.name;
  $("secret-expires").textContent = key.expires_at ? fmtDateTime(key.expires_at) : "Never";
  $("secret-copied").textContent = "";
  $("secret-rotation").hidden = !rotation;
  $("secret-rotation").textContent = rotation || "";
  openDialog($("secret-dialog"), $("secret-copy"), opener);
  input.select();
}

$("secret-dialog").addEventListener("close", () => {
  // Closing removes the secret from the page: nothing keeps it after this.
  $("secret-value").value = "";
  $("secret-id").textContent = "";
  $("secret-copied").textContent = "";
});

$("secret-copy").addEventListener("click", async () => {
  const input = $("secret-value");
  try {
    await navigator.clipboard.writeText(input.value);
    $("secret-copied").textContent = "Copied to the clipboard.";
  } catch {
    input.select();
    $("secret-copied").textContent = "Copying is blocked here: the secret is selected, press Ctrl+C (⌘C) to copy it.";
  }
});

// ---------- delete ----------

let deleting = null;

function openDelete(k, opener) {
  deleting = k;
  clearErrors($("delete-dialog"));
  $("delete-name").textContent = k.name;
  $("delete-prefix").textContent = `${k.display_prefix}…`;
  $("delete-title").textContent = `Delete key “${k.name}”?`;
  openDialog($("delete-dialog"), $("delete-dialog").querySelector("[data-close]"), opener);
}

$("delete-confirm").addEventListener("click", async () => {
  const k = deleting;
  try {
    await api.revokeKey(k.id);
    closeDialog($("delete-dialog"));
    toast(`Deleted “${k.name}”. It no longer works.`);
    loadPage();
  } catch (err) {
    showProblem(err, "delete-error", {});
  }
});

// ---------- rotate ----------

let rotating = null;

function openRotate(k, opener) {
  rotating = k;
  const form = $("rotate-form");
  form.reset();
  clearErrors(form);
  $("rotate-name").textContent = k.name;
  $("rotate-title").textContent = `Rotate key “${k.name}”`;
  $("rotate-subtitle").textContent = `${k.display_prefix}…`;
  openDialog($("rotate-dialog"), $("rotate-grace"), opener);
}

$("rotate-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors($("rotate-form"));
  const k = rotating;
  try {
    const key = await api.rotateKey(k.id, $("rotate-grace").value);
    const opener = openers.get($("rotate-dialog"));
    $("rotate-dialog").dataset.chained = "1";
    closeDialog($("rotate-dialog"));
    const ends = key.previous_expires_at ? fmtDateTime(key.previous_expires_at) : "now";
    showSecret(key, opener, `The old secret (${k.display_prefix}…) keeps working until ${ends}.`);
    loadPage();
  } catch (err) {
    showProblem(err, "rotate-error", { grace: ["rotate-grace-error", $("rotate-grace")] });
  }
});

// ---------- edit ----------

let editing = null;

function openEdit(k, opener) {
  editing = k;
  clearErrors($("edit-form"));
  $("edit-name").value = k.name;
  $("edit-description").value = k.description;
  $("edit-cidrs").value = k.allowed_cidrs.join("\n");
  $("edit-metadata").value = Object.keys(k.metadata).sort().map((m) => `${m}=${k.metadata[m]}`).join("\n");
  fillEdit(k);
  $("edit-title").textContent = `Edit key “${k.name}”`;
  openDialog($("edit-dialog"), $("edit-name"), opener);
}

$("edit-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors($("edit-form"));
  const k = editing;
  const patch = {};
  if ($("edit-name").value !== k.name) patch.name = $("edit-name").value;
  if ($("edit-description").value !== k.description) patch.description = $("edit-description").value;
  const cidrs = linesOf($("edit-cidrs").value);
  if (cidrs.join("\n") !== k.allowed_cidrs.join("\n")) patch.allowed_cidrs = cidrs;
  // A merge patch of the metadata: changed entries, and null for removed ones.
  const metadata = metadataOf($("edit-metadata").value);
  const changes = {};
  for (const [m, v] of Object.entries(metadata)) if (k.metadata[m] !== v) changes[m] = v;
  for (const m of Object.keys(k.metadata)) if (!(m in metadata)) changes[m] = null;
  if (Object.keys(changes).length) patch.metadata = changes;
  Object.assign(patch, limitsPatchOf(k));
  try {
    if (Object.keys(patch).length) await api.updateKey(k.id, patch);
    closeDialog($("edit-dialog"));
    toast(`Saved “${patch.name ?? k.name}”.`);
    loadPage();
  } catch (err) {
    showProblem(err, "edit-error", {
      name: ["edit-name-error", $("edit-name")],
      description: ["edit-description-error", $("edit-description")],
      allowed_cidrs: ["edit-cidrs-error", $("edit-cidrs")],
      metadata: ["edit-metadata-error", $("edit-metadata")],
      ...limitErrors("edit"),
    });
  }
});

// ---------- start ----------

async function start() {
  const saved = token();
  if (!saved) return showSignIn();
  try {
    await signIn(saved);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    signOut(err.status === 401 ? "Your admin token is no longer accepted; sign in again." : err.detail);
  }
}

start();
