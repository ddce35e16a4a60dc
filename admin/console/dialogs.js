// Dialogs: focus moves in when one opens and back to what opened it when
// it closes; field errors show next to their field. formDialog is the one
// helper behind every dialog that sends a form to the API (Generate,
// Edit, Rotate, Delete).

import { ApiError } from "./api.js";
import { $ } from "./dom.js";
import { capitalize } from "./format.js";

const openers = new Map();

export function openDialog(dialog, focus, opener = document.activeElement) {
  openers.set(dialog, opener);
  dialog.showModal();
  (focus || dialog.querySelector("input, select, textarea, button"))?.focus();
}

export function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}

// chainDialog closes dialog so that another opens in its place, handing it
// the element to return the focus to; it returns that element.
export function chainDialog(dialog) {
  const opener = openers.get(dialog);
  dialog.dataset.chained = "1";
  closeDialog(dialog);
  return opener;
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

export function clearErrors(root) {
  for (const e of root.querySelectorAll(".error")) { e.textContent = ""; e.hidden = true; }
  for (const i of root.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
}

export function showError(id, message, input) {
  const e = $(id);
  if (!e) return false;
  e.textContent = e.hidden || !e.textContent ? message : `${e.textContent} ${message}`;
  e.hidden = false;
  if (input) input.setAttribute("aria-invalid", "true");
  return true;
}

// showProblem puts each field error of err next to its field (fields maps
// an API field to [error element id, input]; scopes[2] goes to scopes,
// named by scopeNames[2]) and the rest in the banner. A 401 signs out.
export function showProblem(err, banner, fields, scopeNames = []) {
  if (!(err instanceof ApiError)) throw err;
  if (err.status === 401) {
    document.dispatchEvent(new CustomEvent("keygate:unauthorized"));
    return;
  }
  let first = null;
  const rest = [];
  for (const fe of err.errors) {
    const index = fe.field.match(/^(\w+)\[(\d+)\]$/);
    const base = index ? index[1] : fe.field;
    const target = fields[base];
    const message = index && base === "scopes" ? `${scopeNames[Number(index[2])] || fe.field}: ${fe.detail}` : fe.detail;
    if (target && showError(target[0], capitalize(message), target[1])) first ||= target[1];
    else rest.push(`${fe.field}: ${fe.detail}`);
  }
  if (!err.errors.length || rest.length) showError(banner, [err.detail, ...rest].filter(Boolean).join(" "));
  first?.focus();
}

// Typing in a field clears the error shown next to it.
document.addEventListener("input", (ev) => {
  const input = ev.target.closest("input, select, textarea");
  const field = input?.closest(".field");
  if (!field || !input.hasAttribute("aria-invalid")) return;
  input.removeAttribute("aria-invalid");
  for (const e of field.querySelectorAll(":scope > .error")) { e.textContent = ""; e.hidden = true; }
});

// formDialog wires a dialog whose form a request answers. open(subject,
// opener) resets the form, lets prepare(subject) fill it, and shows the
// dialog with the focus on focus(subject) (default: its first field). On
// submit, errors are cleared and the submit button disabled while
// submit(subject) runs; it returns what done(result, subject) gets after
// the dialog closed, or throws: a problem's field errors go next to their
// fields (fields(): API field → [error id, input]; scopeNames() names
// scopes[i]) and the rest to the banner. A check that fails before any
// request throws FormError(errorId, message, input).
export function formDialog({ dialog, form = dialog.querySelector("form"), banner, fields = () => ({}), scopeNames = () => [],
  prepare, focus, submit, done, chained = false }) {
  let subject = null;
  const button = form.querySelector('button[type="submit"]');
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (button.disabled) return; // one request at a time
    clearErrors(form);
    const current = subject;
    button.disabled = true;
    try {
      const result = await submit(current);
      if (!dialog.open || subject !== current) return; // closed or reopened meanwhile
      const opener = chained ? chainDialog(dialog) : (closeDialog(dialog), undefined);
      done?.(result, current, opener);
    } catch (err) {
      if (!dialog.open || subject !== current) return;
      if (err instanceof FormError) showError(err.id, err.message, err.input);
      else showProblem(err, banner, fields(), scopeNames());
    } finally {
      button.disabled = false;
    }
  });
  dialog.addEventListener("close", () => { subject = null; });
  return (next, opener) => {
    subject = next ?? {};
    form.reset();
    clearErrors(form);
    prepare?.(subject);
    openDialog(dialog, focus?.(subject), opener);
  };
}

// FormError is a mistake found before any request: shown at its field.
export class FormError extends Error {
  constructor(id, message, input) {
    super(message);
    this.id = id;
    this.input = input;
  }
}
