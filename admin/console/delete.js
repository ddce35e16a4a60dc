// Delete key: a confirmation naming the key, then a revocation.

import { api } from "./api.js";
import { $, toast } from "./dom.js";
import { formDialog } from "./dialogs.js";
import { loadPage } from "./list.js";

export const openDelete = formDialog({
  dialog: $("delete-dialog"),
  banner: "delete-error",
  prepare(k) {
    $("delete-name").textContent = k.name;
    $("delete-prefix").textContent = `${k.display_prefix}…`;
    $("delete-title").textContent = `Delete key “${k.name}”?`;
  },
  focus: () => $("delete-dialog").querySelector("[data-close]"),
  submit: (k) => api.revokeKey(k.id),
  done(_, k) {
    toast(`Deleted “${k.name}”. It no longer works.`);
    loadPage();
  },
});
