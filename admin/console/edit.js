// Edit key: name, description, expiry, scopes, source addresses and
// metadata, changed in place with one merge patch of what changed.

import { api } from "./api.js";
import { $, toast } from "./dom.js";
import { formDialog } from "./dialogs.js";
import { linesOf, metadataOf } from "./format.js";
import { loadPage } from "./list.js";
import { expiryPicker, expiryText, keyFields, scopePicker } from "./pickers.js";
import { fillEdit, limitsPatchOf } from "./usage.js";

const expiry = expiryPicker("edit");
let chosenScopes = () => [];
let sent = [];

const sameSet = (a, b) => a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");

// patchOf is the merge patch of what the form changes of k.
function patchOf(k) {
  const patch = { ...expiry.value() };
  if ($("edit-name").value !== k.name) patch.name = $("edit-name").value;
  if ($("edit-description").value !== k.description) patch.description = $("edit-description").value;
  const scopes = chosenScopes();
  if (!sameSet(scopes, k.scopes)) patch.scopes = sent = scopes;
  const cidrs = linesOf($("edit-cidrs").value);
  if (cidrs.join("\n") !== k.allowed_cidrs.join("\n")) patch.allowed_cidrs = cidrs;
  // Metadata: changed entries, and null for removed ones.
  const metadata = metadataOf($("edit-metadata").value);
  const changes = {};
  for (const [m, v] of Object.entries(metadata)) if (k.metadata[m] !== v) changes[m] = v;
  for (const m of Object.keys(k.metadata)) if (!(m in metadata)) changes[m] = null;
  if (Object.keys(changes).length) patch.metadata = changes;
  Object.assign(patch, limitsPatchOf(k));
  return patch;
}

export const openEdit = formDialog({
  dialog: $("edit-dialog"),
  banner: "edit-error",
  prepare(k) {
    $("edit-name").value = k.name;
    $("edit-description").value = k.description;
    $("edit-cidrs").value = k.allowed_cidrs.join("\n");
    $("edit-metadata").value = Object.keys(k.metadata).sort().map((m) => `${m}=${k.metadata[m]}`).join("\n");
    $("edit-title").textContent = `Edit key “${k.name}”`;
    expiry.prepare(`No change: ${k.expires_at ? `expires ${expiryText(k)}` : "never expires"}`);
    chosenScopes = scopePicker($("edit-scopes"), k.scopes);
    fillEdit(k);
  },
  focus: () => $("edit-name"),
  async submit(k) {
    const patch = patchOf(k);
    if (Object.keys(patch).length) await api.updateKey(k.id, patch);
    return patch;
  },
  done(patch, k) {
    toast(Object.keys(patch).length ? `Saved “${patch.name ?? k.name}”.` : "Nothing changed.");
    loadPage();
  },
  fields: () => keyFields("edit", expiry),
  scopeNames: () => sent,
});
