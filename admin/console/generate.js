// Generate key: name, expiry, description, scopes, source addresses and
// metadata; the secret is shown once, next.

import { api } from "./api.js";
import { $ } from "./dom.js";
import { formDialog } from "./dialogs.js";
import { linesOf, metadataOf } from "./format.js";
import { showStatus } from "./list.js";
import { expiryPicker, keyFields, scopePicker } from "./pickers.js";
import { showSecret } from "./secret.js";
import { state } from "./state.js";
import { limitsOfGenerate } from "./usage.js";

const expiry = expiryPicker("generate");
let chosenScopes = () => [];
let sent = []; // the scopes of the last request, to name scopes[i] in errors

const open = formDialog({
  dialog: $("generate-dialog"),
  banner: "generate-error",
  chained: true,
  prepare() {
    $("generate-account").value = state.filters.account;
    expiry.prepare();
    chosenScopes = scopePicker($("generate-scopes"));
  },
  focus: () => (state.me.account_id ? $("generate-name") : $("generate-account")),
  submit() {
    const body = { name: $("generate-name").value, description: $("generate-description").value, ...expiry.value() };
    if (!state.me.account_id) body.account_id = $("generate-account").value.trim();
    body.scopes = sent = chosenScopes();
    const cidrs = linesOf($("generate-cidrs").value);
    if (cidrs.length) body.allowed_cidrs = cidrs;
    const metadata = metadataOf($("generate-metadata").value);
    if (Object.keys(metadata).length) body.metadata = metadata;
    Object.assign(body, limitsOfGenerate());
    return api.createKey(body);
  },
  done(key, _, opener) {
    showSecret(key, opener);
    showStatus(state.filters.status === "all" ? "all" : "active");
  },
  fields: () => ({ account_id: ["generate-account_id-error", $("generate-account")], ...keyFields("generate", expiry) }),
  scopeNames: () => sent,
});

$("generate-open").addEventListener("click", (ev) => open({}, ev.currentTarget));
