// Rotate key: a new secret, with the grace period of the old one and the
// new one's expiry (by default the old key's).

import { api } from "./api.js";
import { $ } from "./dom.js";
import { formDialog } from "./dialogs.js";
import { fmtDateTime } from "./format.js";
import { loadPage } from "./list.js";
import { expiryPicker, expiryText } from "./pickers.js";
import { showSecret } from "./secret.js";

const expiry = expiryPicker("rotate");

export const openRotate = formDialog({
  dialog: $("rotate-dialog"),
  banner: "rotate-error",
  chained: true,
  prepare(k) {
    $("rotate-name").textContent = k.name;
    $("rotate-title").textContent = `Rotate key “${k.name}”`;
    $("rotate-subtitle").textContent = `${k.display_prefix}…`;
    expiry.prepare(`As the old key: ${k.expires_at ? expiryText(k) : "never"}`);
  },
  focus: () => $("rotate-grace"),
  submit: (k) => api.rotateKey(k.id, { grace: $("rotate-grace").value, ...expiry.value() }),
  done(key, k, opener) {
    const ends = key.previous_expires_at ? fmtDateTime(key.previous_expires_at) : "now";
    showSecret(key, opener, `The old secret (${k.display_prefix}…) keeps working until ${ends}.`);
    loadPage();
  },
  fields: () => ({ grace: ["rotate-grace-error", $("rotate-grace")], ...expiry.fields }),
});
