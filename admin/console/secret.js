// The secret of a new or rotated key, shown once: Copy, a warning, and
// nothing left in the page once the dialog closes.

import { $ } from "./dom.js";
import { openDialog } from "./dialogs.js";
import { fmtDateTime } from "./format.js";

// showSecret shows key's secret; rotation, when set, says until when the
// old secret works.
export function showSecret(key, opener, rotation) {
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
