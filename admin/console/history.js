// A key's history: its audit trail (GET /v1/keys/{id}/events), newest
// first, each change with who made it and the values before and after.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { clearErrors, openDialog, showProblem } from "./dialogs.js";
import { fmtDateTime, metadataText } from "./format.js";
import { latest } from "./state.js";

const ACTIONS = {
  create: "Created", import: "Imported", update: "Changed", rotate: "Rotated", revoke: "Deleted", disable: "Disabled", enable: "Enabled",
};
const LABELS = {
  name: "Name", description: "Description", account_id: "Account", scopes: "Scopes", expires_at: "Expires", allowed_cidrs: "Allowed from",
  metadata: "Metadata", successor: "New key", grace_ends_at: "Old secret works until", rotated_from: "Rotated from",
};
const histories = latest();

function valueText(field, v) {
  if (v == null || v === "") return field === "expires_at" ? "never" : "none";
  if (Array.isArray(v)) return v.length ? v.join(", ") : field === "scopes" ? "all open modules" : "none";
  if (typeof v === "object") return metadataText(v) || "none";
  if (field.endsWith("_at")) return fmtDateTime(v);
  return String(v);
}

// details are an event's lines: each field it names, with the value
// before it when the event says.
function details(e) {
  const previous = e.detail.previous || {};
  return Object.keys(e.detail).filter((f) => f !== "previous").map((f) => {
    const label = LABELS[f] || f;
    const text = f in previous ? `${valueText(f, previous[f])} → ${valueText(f, e.detail[f])}` : valueText(f, e.detail[f]);
    return el("li", {}, el("span", { class: "event-field", text: `${label}: ` }), el("span", { text }));
  });
}

export async function openHistory(k, opener) {
  const ticket = histories.next();
  const list = $("history-events");
  list.replaceChildren();
  clearErrors($("history-dialog"));
  $("history-title").textContent = `History of “${k.name}”`;
  $("history-loading").hidden = false;
  openDialog($("history-dialog"), $("history-dialog").querySelector("[data-close]"), opener);
  let events = [];
  let failure = null;
  try {
    events = (await api.keyEvents(k.id)).items;
  } catch (err) {
    failure = err;
  }
  if (!histories.is(ticket) || !$("history-dialog").open) return; // another key's history was asked for since
  $("history-loading").hidden = true;
  if (failure) return showProblem(failure, "history-error", {});
  list.replaceChildren(...events.reverse().map((e) => el("li", { class: "event" },
    el("div", { class: "event-head" },
      el("strong", { text: ACTIONS[e.action] || e.action }),
      el("span", { class: "muted", text: ` ${fmtDateTime(e.at)} by ` }),
      el("span", { class: "event-actor", text: e.actor })),
    el("ul", { class: "event-details" }, ...details(e)))));
}
