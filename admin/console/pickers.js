// The pickers that Generate, Edit and Rotate share: scopes from the
// policy's modules, and an expiry within the server's limits.

import { $, el } from "./dom.js";
import { FormError } from "./dialogs.js";
import { endOfDay, fmtDate, isoDate, plural, relativeTime } from "./format.js";
import { state } from "./state.js";
import { limitErrors } from "./usage.js";

const DAY = 86400 * 1000;

// scopePicker fills container with a row per module of the policy, open
// ones first, each with Read and Write boxes (named "projects Read"),
// closed ones disabled with why; then, for a key being edited, its other
// scopes ("*", "projects:*", a module the policy no longer has) as boxes
// of their own, checked, to keep or remove. It returns a function that
// reads the scopes chosen, in the order they are sent.
export function scopePicker(container, scopes = []) {
  const modules = [...state.modules].sort((a, b) => (a.api_keys !== "allow") - (b.api_keys !== "allow"));
  const boxes = new Set();
  const rows = modules.map((m) => {
    const closed = m.api_keys !== "allow";
    const box = (action, label) => {
      const value = `${m.name}:${action}`;
      boxes.add(value);
      const input = el("input", { type: "checkbox", value, disabled: closed, checked: scopes.includes(value), "aria-label": `${m.name} ${label}` });
      return el("label", {}, input, el("span", { text: label }));
    };
    return el("div", { class: closed ? "scope closed" : "scope" },
      el("div", {},
        el("span", { class: "scope-name", text: m.name }),
        el("span", { class: "scope-paths", text: m.paths.join(", ") }),
        closed ? el("span", { class: "scope-why", text: "Closed to API keys by the policy: no key can reach it." }) : null),
      el("div", { class: "scope-boxes" }, box("read", "Read"), box("write", "Write")));
  });
  const others = scopes.filter((s) => !boxes.has(s));
  if (others.length) {
    rows.push(el("div", { class: "scope other" },
      el("div", {},
        el("span", { class: "scope-name", text: "Other scopes of this key" }),
        el("span", { class: "scope-why", text: "Kept as they are unless you clear them." })),
      el("div", { class: "scope-boxes" }, ...others.map((s) =>
        el("label", {}, el("input", { type: "checkbox", value: s, checked: true, "aria-label": `scope ${s}` }), el("code", { text: s }))))));
  }
  container.replaceChildren(...rows);
  return () => [...container.querySelectorAll("input:checked")].map((i) => i.value);
}

const LIFETIMES = { "7d": 7, "30d": 30, "60d": 60, "90d": 90 };

// expiryPicker fills the field prefix-expiry-field (its label in
// data-label) with an expiry choice: a select, a date for a custom one, a
// hint and an error. prepare(keep) fills the choices: with keep (the text
// of "no change"), that is the first and chosen one; without, 30 days.
// value() is the expiry's members of a request body ({} for no change), or
// throws a FormError. fields maps the API's expiry members to where their
// errors show.
export function expiryPicker(prefix) {
  const field = $(`${prefix}-expiry-field`);
  const errorId = `${prefix}-expiry-error`;
  const hint = el("p", { class: "hint", id: `${prefix}-expiry-hint` });
  const select = el("select", { id: `${prefix}-expiry`, "aria-describedby": `${hint.id} ${errorId}` });
  const date = el("input", { id: `${prefix}-date`, type: "date", "aria-describedby": errorId });
  const dateField = el("div", { class: "field nested", hidden: true },
    el("label", { htmlFor: date.id, text: "Expires at the end of" }), date);
  field.replaceChildren(el("label", { htmlFor: select.id, text: field.dataset.label }), select, hint, dateField,
    el("p", { class: "error", id: errorId, hidden: true }));
  const sync = () => { dateField.hidden = select.value !== "custom"; };
  select.addEventListener("change", sync);
  return {
    prepare(keep) {
      const { max_lifetime_seconds: max, no_expiry_allowed: neverAllowed } = state.me.keys;
      const options = [];
      if (keep) options.push(el("option", { value: "keep", text: keep }));
      for (const [value, days] of Object.entries(LIFETIMES)) {
        options.push(el("option", { value, text: keep ? `${days} days from now` : `${days} days`, disabled: max != null && days * 86400 > max }));
      }
      options.push(el("option", { value: "custom", text: "Custom date…" }));
      options.push(el("option", { value: "never", text: neverAllowed ? "No expiry" : "No expiry (not allowed on this server)", disabled: !neverAllowed }));
      select.replaceChildren(...options);
      const enabled = [...select.options].filter((o) => !o.disabled && Object.hasOwn(LIFETIMES, o.value));
      select.value = keep ? "keep" : select.querySelector('option[value="30d"]').disabled ? (enabled.at(-1)?.value || "custom") : "30d";
      date.min = isoDate(new Date(Date.now() + DAY));
      date.max = max != null ? isoDate(new Date(Date.now() + max * 1000 - DAY)) : "";
      hint.textContent = max != null
        ? `Keys on this server live at most ${plural(Math.floor(max / 86400), "day")}.`
        : "Choose how long the key works. Shorter is safer.";
      sync();
    },
    value() {
      switch (select.value) {
        case "keep": return {};
        case "never": return { no_expiry: true };
        case "custom":
          if (!date.value) throw new FormError(errorId, "Choose the date the key expires.", date);
          return { expires_at: endOfDay(date.value) };
        default: return { expires_in: select.value };
      }
    },
    fields: { expires_in: [errorId, select], expires_at: [errorId, date], no_expiry: [errorId, select] },
  };
}

// expiryText says when a key expires, for "no change" choices.
export function expiryText(k) {
  return k.expires_at ? `${fmtDate(k.expires_at)}, ${relativeTime(k.expires_at)}` : "never";
}

// keyFields are where the API's errors about a key's fields show in the
// form of prefix (generate, edit), with those of its expiry picker.
export function keyFields(prefix, expiry) {
  return {
    name: [`${prefix}-name-error`, $(`${prefix}-name`)],
    description: [`${prefix}-description-error`, $(`${prefix}-description`)],
    scopes: [`${prefix}-scopes-error`, $(`${prefix}-scopes`).querySelector("input:not(:disabled)")],
    allowed_cidrs: [`${prefix}-cidrs-error`, $(`${prefix}-cidrs`)],
    metadata: [`${prefix}-metadata-error`, $(`${prefix}-metadata`)],
    ...limitErrors(prefix),
    ...expiry.fields,
  };
}
