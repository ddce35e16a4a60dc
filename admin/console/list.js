// The key list: filters (status, name, account), pages, and a row per key
// with its actions. Answers arriving out of order are dropped: the page
// shown is always the one last asked for.

import { api } from "./api.js";
import { $, el, iconButton, toast } from "./dom.js";
import { clearErrors, showProblem } from "./dialogs.js";
import { fmtDate, fmtDateTime, metadataText, relativeTime, statusOf } from "./format.js";
import { latest, state } from "./state.js";

const PAGE_SIZE = "20";
const CHIPS = 4; // scopes shown in a row; the rest as "+N more"

let actions = {}; // edit, history, rotate, delete: (key, opener) => void
const lists = latest();

// initList wires the filters and the pager; rowActions open the dialogs
// of a row's actions.
export function initList(rowActions) {
  actions = rowActions;
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.filters = { status: $("filter-status").value, account: $("filter-account").value.trim(), name: $("filter-name").value.trim() };
    firstPage();
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
}

// firstPage lists the first page of the filters set.
export function firstPage() {
  state.cursors = [null];
  state.page = 0;
  return loadPage();
}

// showStatus sets the status filter (after a change that moved a key to
// another status) and lists its first page.
export function showStatus(status) {
  state.filters.status = status;
  $("filter-status").value = status;
  return firstPage();
}

// loadPage asks for the page state says and shows it, unless a newer
// request was made meanwhile. The pager waits for the answer.
export async function loadPage() {
  const ticket = lists.next();
  const page = state.page;
  const { status, account, name } = state.filters;
  const params = { status, limit: PAGE_SIZE };
  if (account) params.account_id = account;
  if (name) params.name = name;
  if (state.cursors[page]) params.cursor = state.cursors[page];
  $("page-prev").disabled = $("page-next").disabled = true;
  $("keys-table").setAttribute("aria-busy", "true");
  let keys = [];
  let next = null;
  let failure = null;
  try {
    const answer = await api.listKeys(params);
    keys = answer.items;
    next = answer.next_cursor;
  } catch (err) {
    failure = err;
  }
  if (!lists.is(ticket)) return; // a newer request owns the list
  state.keys = keys;
  state.next = next;
  clearErrors($("filters"));
  $("list-error").hidden = true;
  if (failure) {
    showProblem(failure, "list-error", {
      account_id: ["filter-account-error", $("filter-account")],
      name: ["filter-name-error", $("filter-name")],
    });
  }
  render(page);
}

function render(page) {
  const unbound = !state.me?.account_id;
  $("keys-body").replaceChildren(...state.keys.map((k) => keyRow(k, unbound)));
  $("keys-table").removeAttribute("aria-busy");
  $("keys-empty").hidden = state.keys.length > 0;
  $("keys-table").hidden = state.keys.length === 0;
  $("page-prev").disabled = page === 0;
  $("page-next").disabled = !state.next;
  $("page-label").textContent = `Page ${page + 1}`;
}

function keyRow(k, unbound) {
  const st = statusOf(k);
  const account = el("td", { class: "col-account", "data-label": "Account" }, el("span", { class: "account", text: k.account_id }));
  account.hidden = !unbound;
  return el("tr", { "data-key-id": k.id },
    el("td", { class: "cell-name", "data-label": "Name" },
      el("div", { class: "key-name", text: k.name }),
      k.description ? el("div", { class: "key-desc", text: k.description }) : null,
      el("div", { class: "key-meta" }, el("code", { class: "prefix", text: `${k.display_prefix}…` }),
        el("span", { text: ` created ${fmtDate(k.created_at)}`, title: k.created_at })),
      k.allowed_cidrs.length ? el("div", { class: "key-controls", text: `only from ${k.allowed_cidrs.join(", ")}` }) : null,
      Object.keys(k.metadata).length ? el("div", { class: "key-controls", text: metadataText(k.metadata) }) : null),
    account,
    el("td", { "data-label": "Scopes" }, scopeChips(k.scopes)),
    el("td", { class: "cell-expires", "data-label": "Expires", title: k.expires_at || "" }, el("div", {},
      el("div", { text: k.expires_at ? relativeTime(k.expires_at) : "Never" }),
      k.expires_at ? el("div", { class: "muted small", text: fmtDate(k.expires_at) }) : null)),
    el("td", { "data-label": "Last used", title: k.last_used_at ? fmtDateTime(k.last_used_at) : "" },
      el("div", { text: k.last_used_at ? relativeTime(k.last_used_at) : "Never" })),
    el("td", { "data-label": "Status" }, el("div", {},
      el("span", { class: `badge badge-${st.cls}`, text: st.label }),
      st.note ? el("span", { class: "badge-note", text: st.note }) : null)),
    el("td", { class: "cell-actions" }, rowButtons(k)));
}

function scopeChips(scopes) {
  if (!scopes.length) return el("span", { class: "muted", text: "All open modules" });
  const shown = scopes.slice(0, scopes.length > CHIPS ? CHIPS - 1 : CHIPS);
  const rest = scopes.slice(shown.length);
  return el("div", { class: "chips" }, ...shown.map(scopeChip),
    rest.length ? el("span", { class: "chip chip-more", title: rest.join(", ") },
      el("span", { "aria-hidden": "true", text: `+${rest.length} more` }),
      el("span", { class: "visually-hidden", text: rest.join(", ") })) : null);
}

// scopeChip shows a scope, which may break after its colon.
function scopeChip(scope) {
  const [module, action] = scope.split(":");
  return action === undefined ? el("span", { class: "chip", text: scope })
    : el("span", { class: "chip" }, `${module}:`, el("wbr"), action);
}

// rowButtons are a key's actions, each named after the key ("Delete
// deploy bot"): edit, history and usage always; rotate for an active key not yet
// rotated; disable or enable; delete unless revoked.
function rowButtons(k) {
  const at = (name, icon, label, tone) => iconButton(icon, `${label} ${k.name}`, (e) => name(k, e.currentTarget), tone);
  const buttons = el("div", { class: "actions" },
    at(actions.edit, "edit", "Edit"),
    at(actions.history, "history", "History of"),
    at(actions.usage, "usage", "Usage of"));
  if (k.status === "active" && !k.rotated_to) buttons.append(at(actions.rotate, "rotate", "Rotate"));
  if (k.status === "disabled") buttons.append(at(setDisabled(false), "enable", "Enable"));
  else if (k.status !== "revoked") buttons.append(at(setDisabled(true), "disable", "Disable"));
  if (k.status !== "revoked") buttons.append(at(actions.delete, "delete", "Delete", "danger"));
  return buttons;
}

// setDisabled is the action that disables (or enables) a key; the row's
// other button takes the focus when the row is still listed, otherwise
// the list's heading.
function setDisabled(disable) {
  return async (k, opener) => {
    opener.disabled = true;
    try {
      await (disable ? api.disableKey(k.id) : api.enableKey(k.id));
    } catch (err) {
      opener.disabled = false;
      return showProblem(err, "list-error", {});
    }
    await loadPage();
    const shown = state.filters.status === "all" || state.filters.status === (disable ? "disabled" : "active");
    toast(disable
      ? `Disabled “${k.name}”: it is refused until you enable it${shown ? "" : " (Status: Disabled lists it)"}.`
      : `Enabled “${k.name}”: it works again${shown ? "" : " (Status: Active lists it)"}.`);
    const next = [...document.querySelectorAll(`tr[data-key-id="${k.id}"] button`)]
      .find((b) => b.getAttribute("aria-label") === `${disable ? "Enable" : "Disable"} ${k.name}`);
    (next || $("keys-title")).focus();
  };
}
