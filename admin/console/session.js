// Signing in and out: the admin token lives in sessionStorage only, and a
// token the API stops accepting signs the console out.

import { api, ApiError, forgetToken, setToken, token } from "./api.js";
import { $ } from "./dom.js";
import { clearErrors, closeDialog, showError } from "./dialogs.js";
import { firstPage } from "./list.js";
import { setSoonWindow, soonWindow } from "./format.js";
import { state } from "./state.js";
import { expiryWindow, setupWebhooks } from "./webhooks.js";

export function signOut(message) {
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
  setSoonWindow(await expiryWindow(soonWindow()));
  await setupWebhooks(me);
  $("who-name").textContent = me.name;
  $("who-account").textContent = me.account_id ? ` · account ${me.account_id}` : "";
  $("session").hidden = false;
  $("signin").hidden = true;
  $("keys").hidden = false;
  const unbound = !me.account_id;
  $("filter-account-field").hidden = !unbound;
  $("generate-account-field").hidden = !unbound;
  for (const th of document.querySelectorAll("th.col-account")) th.hidden = !unbound;
  await firstPage();
}

document.addEventListener("keygate:unauthorized", () => signOut("Your admin token is no longer accepted; sign in again."));

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

// start signs in with the token this tab kept, if any.
export async function start() {
  const saved = token();
  if (!saved) return showSignIn();
  try {
    await signIn(saved);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    signOut(err.status === 401 ? "Your admin token is no longer accepted; sign in again." : err.detail);
  }
}
