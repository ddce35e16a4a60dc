// The console's end-to-end browser test, driven by TestConsoleInBrowser
// (cmd/keygate/console_test.go), which starts keygate and answers the
// checks this script asks for.
//
// Environment: CONSOLE_URL (the admin listener), ADMIN_TOKEN (valid),
// WRONG_ADMIN_TOKEN (well formed, not in the tokens file), SCREENSHOT_DIR,
// CHROMIUM (default /usr/bin/chromium).
//
// Protocol: one JSON object a line on stdout, {"event": …}; for every
// event but "done" the Go side answers one line on stdin, "ok" or why not.
// Anything else goes to stderr.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import readline from "node:readline";

const consoleURL = new URL(required("CONSOLE_URL"));
const adminToken = required("ADMIN_TOKEN");
const wrongToken = required("WRONG_ADMIN_TOKEN");
const shots = required("SCREENSHOT_DIR");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const stdin = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// ask reports an event to the Go side and waits for its "ok".
async function ask(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
  const { value, done } = await stdin.next();
  if (done || value.trim() !== "ok") throw new Error(`the Go side answered ${JSON.stringify(value)} to ${event.event}`);
}

function log(msg) {
  process.stderr.write(`console.mjs: ${msg}\n`);
}

function check(cond, what) {
  if (!cond) throw new Error(`failed: ${what}`);
}

const userDataDir = mkdtempSync(join(tmpdir(), "keygate-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run"],
  viewport: { width: 1280, height: 860 },
  locale: "en-US",
  timezoneId: "UTC",
});

// Everything the browser reports goes here: console messages, page
// errors, requests to any host but keygate's. The few expected refusals
// (a wrong token, a blank name) are allowed by expect() while they happen.
const problems = [];
const foreign = [];
let expectedStatuses = [];
context.on("request", (r) => {
  const u = new URL(r.url());
  if (u.origin !== consoleURL.origin) foreign.push(r.url());
});

let step = 0;
async function shot(page, name) {
  step++;
  // A passing toast would cover part of the page in the picture.
  await page.evaluate(() => { document.getElementById("toast").hidden = true; });
  const file = join(shots, `${String(step).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  log(`screenshot ${file}`);
}

async function expectRefusal(statuses, fn) {
  expectedStatuses = statuses;
  try {
    await fn();
  } finally {
    expectedStatuses = [];
  }
}

// noSecretInPage reports whether the page holds secret nowhere, not in its
// markup, not in any field, within a second of the dialog closing (the
// dialog's close event comes a task after it closes).
async function noSecretInPage(page, secret) {
  try {
    await page.waitForFunction((s) => !document.documentElement.outerHTML.includes(s) &&
      ![...document.querySelectorAll("input, textarea")].some((i) => i.value.includes(s)), secret, { timeout: 1000 });
    return true;
  } catch {
    return false;
  }
}

async function focusIsIn(page, selector) {
  return page.evaluate((sel) => document.querySelector(sel).contains(document.activeElement), selector);
}

// layoutProblems lists what does not fit a viewport width wide: the page
// or the table scrolling sideways, and each row action whose box is not
// wholly inside the viewport, or whose name does not name its key.
async function layoutProblems(page, width) {
  return page.evaluate((w) => {
    const out = [];
    if (document.documentElement.scrollWidth > w) out.push(`the page is ${document.documentElement.scrollWidth} px wide`);
    const wrap = document.querySelector(".table-wrap");
    if (wrap.scrollWidth > wrap.clientWidth) out.push(`the table scrolls sideways (${wrap.scrollWidth} > ${wrap.clientWidth})`);
    for (const row of document.querySelectorAll("#keys-body tr")) {
      const name = row.querySelector(".key-name").textContent;
      const buttons = row.querySelectorAll(".cell-actions button");
      if (buttons.length < 2) out.push(`${name}: ${buttons.length} actions`);
      for (const b of buttons) {
        const r = b.getBoundingClientRect();
        const label = b.getAttribute("aria-label");
        if (r.width === 0 || r.left < 0 || r.right > w || r.top < 0) out.push(`${label}: box ${r.left}–${r.right} outside 0–${w}`);
        if (!label.endsWith(` ${name}`)) out.push(`a button named ${JSON.stringify(label)} in the row of ${name}`);
      }
    }
    return out;
  }, width);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// rowOf is the row of the key named name.
function rowOf(page, name) {
  return page.locator("#keys-body tr").filter({ has: page.locator(".key-name").getByText(name, { exact: true }) });
}

try {
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: consoleURL.origin });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(10000);
  page.on("console", (m) => {
    if (m.type() !== "error" && m.type() !== "warning") return;
    const status = Number((m.text().match(/status of (\d{3})/) || [])[1]);
    if (!expectedStatuses.includes(status)) problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

  // Sign-in: a wrong token is refused, next to the field.
  await page.goto(consoleURL.href);
  const tokenField = page.getByLabel("Admin token", { exact: true });
  await tokenField.waitFor();
  check(await page.evaluate(() => document.activeElement?.id === "signin-token"), "focus starts in the token field");
  await expectRefusal([401], async () => {
    await tokenField.fill(wrongToken);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator("#signin-token-error").getByText("not accepted").waitFor();
  });
  check(await page.getByRole("heading", { name: "API Keys" }).isHidden(), "a wrong token does not sign in");
  check(await page.evaluate(() => sessionStorage.length === 0), "a wrong token is not kept");
  await shot(page, "sign-in-refused");

  // The right token, with the keyboard.
  await tokenField.fill(adminToken);
  await tokenField.press("Enter");
  await page.getByRole("heading", { name: "API Keys" }).waitFor();
  await page.locator("#keys-body tr").first().waitFor();
  check(await page.evaluate((t) => sessionStorage.getItem("keygate.adminToken") === t, adminToken), "the token is kept in sessionStorage");
  check(await page.evaluate(() => document.cookie === ""), "no cookies");
  await shot(page, "keys");
  // The statuses the list derives: expiring soon (3 days left), rotated in
  // its grace period; expiry in calendar days: tomorrow is "tomorrow".
  await rowOf(page, "nightly export").getByText("Expiring soon").waitFor();
  check(await rowOf(page, "nightly export").locator(".cell-expires").innerText().then((t) => t.startsWith("in 3 days")), "3 days left is in 3 days");
  check(await rowOf(page, "release tomorrow").locator(".cell-expires").innerText().then((t) => t.startsWith("tomorrow")), "a key expiring tomorrow says tomorrow");
  await rowOf(page, "release tomorrow").getByText("expires tomorrow").waitFor();
  await rowOf(page, "billing sync").getByText("Rotated").first().waitFor();
  check(!(await rowOf(page, "staging deploys").getByText("Never", { exact: true }).count()), "a used key shows when it was used");

  // Every row action inside the viewport, nothing scrolling sideways, at
  // the widths of laptops and desktops, with used keys, a 100-character
  // name, a long account id and seven scopes.
  for (const width of [1024, 1280, 1440]) {
    await page.setViewportSize({ width, height: 900 });
    await page.waitForFunction((w) => window.innerWidth === w, width);
    const problems = await layoutProblems(page, width);
    check(problems.length === 0, `at ${width} px: ${problems.join("; ")}`);
    await shot(page, `keys-${width}`);
  }
  await page.setViewportSize({ width: 1280, height: 860 });

  // Search by name.
  const nameFilter = page.getByRole("searchbox", { name: "Name" });
  await nameFilter.fill("NIGHTLY");
  await page.getByRole("button", { name: "Apply" }).click();
  await rowOf(page, "staging deploys").waitFor({ state: "detached" });
  check(await page.locator("#keys-body tr").count() === 2, "the name search finds the two nightly keys");
  // An older answer arriving last is not shown: the search for "staging"
  // is held back, the one for "billing" made after it answers first.
  await page.route((url) => url.pathname === "/v1/keys" && url.searchParams.get("name") === "staging", async (route) => {
    await sleep(1500);
    await route.continue().catch(() => {});
  });
  await nameFilter.fill("staging");
  await page.getByRole("button", { name: "Apply" }).click();
  await nameFilter.fill("billing");
  await page.getByRole("button", { name: "Apply" }).click();
  await rowOf(page, "billing sync").first().waitFor();
  await sleep(2000); // the held answer has arrived by now
  check(await rowOf(page, "staging deploys").count() === 0 && await rowOf(page, "billing sync").count() === 2,
    "an answer to an older search, arriving last, is not shown");
  await page.unrouteAll({ behavior: "wait" });
  await nameFilter.fill("");
  await page.getByRole("button", { name: "Apply" }).click();
  await rowOf(page, "staging deploys").waitFor();
  // Filter by account.
  await page.getByRole("searchbox", { name: "Account" }).fill("globex");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.locator("#keys-body tr", { hasText: "staging deploys" }).waitFor({ state: "detached" });
  check(await page.locator("#keys-body tr").count() === 2, "the account filter shows globex's two keys");
  await page.getByRole("searchbox", { name: "Account" }).fill("");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.locator("#keys-body tr", { hasText: "staging deploys" }).waitFor();

  // Generate a key: the dialog takes focus; an API error shows at its field.
  const generateButton = page.getByRole("button", { name: "Generate key" });
  await generateButton.click();
  const dialog = page.getByRole("dialog", { name: "Generate key" });
  await dialog.waitFor();
  check(await focusIsIn(page, "#generate-dialog"), "focus moves into the Generate key dialog");
  await dialog.getByLabel("Account", { exact: true }).fill("acme");
  await dialog.getByLabel("Name", { exact: true }).fill("   ");
  await dialog.getByLabel("Expiry", { exact: true }).selectOption("30d");
  check(await dialog.getByLabel("users Read", { exact: true }).isDisabled(), "a closed module's scopes are disabled");
  await expectRefusal([400], async () => {
    await dialog.getByRole("button", { name: "Generate key" }).click();
    await page.locator("#generate-name-error").getByText("Must not be empty").waitFor();
  });
  check(await page.evaluate(() => document.activeElement?.id === "generate-name"), "focus moves to the field in error");
  await shot(page, "generate-field-error");

  await dialog.getByLabel("Name", { exact: true }).fill("deploy bot");
  await dialog.getByLabel("Description", { exact: true }).fill("CI deploys to staging");
  await dialog.getByLabel("projects Read", { exact: true }).check();
  await dialog.getByLabel("projects Write", { exact: true }).check();
  await shot(page, "generate-dialog");
  await dialog.getByRole("button", { name: "Generate key" }).click();

  // The secret, shown once, with Copy, the key id and the warning.
  const secretDialog = page.getByRole("dialog", { name: "Copy your key secret" });
  await secretDialog.waitFor();
  const secret = await page.locator("#secret-value").inputValue();
  const keyID = await page.locator("#secret-id").textContent();
  check(/^kg_[0-9A-Za-z]{39}$/.test(secret), `a key secret is shown (${secret.length} characters)`);
  check(await secretDialog.getByText("This secret will not be shown again.").isVisible(), "the warning is shown");
  check(/^[0-9a-f-]{36}$/.test(keyID), "the key id is shown");
  await secretDialog.getByRole("button", { name: "Copy" }).click();
  await secretDialog.getByText("Copied to the clipboard.").waitFor();
  check(await page.evaluate(() => navigator.clipboard.readText()) === secret, "Copy puts the secret on the clipboard");
  await shot(page, "secret-shown-once");
  await ask({ event: "allowed", secret }); // the Go side: a real Check with it is allowed

  await secretDialog.getByRole("button", { name: "I have copied it" }).click();
  await secretDialog.waitFor({ state: "hidden" });
  check(await noSecretInPage(page, secret), "closing the dialog removes the secret from the page");
  check(await page.evaluate(() => document.activeElement?.id === "generate-open"), "focus returns to Generate key");
  const row = page.locator(`tr[data-key-id="${keyID}"]`);
  await row.waitFor();
  await shot(page, "keys-with-new-key");

  // Edit in place: the description, a tag for the rate limits, one scope
  // fewer and a longer life.
  await row.getByRole("button", { name: "Edit deploy bot" }).click();
  const edit = page.getByRole("dialog", { name: /Edit key/ });
  check(await edit.getByLabel("projects Write", { exact: true }).isChecked(), "the Edit dialog shows the key's scopes");
  await edit.getByLabel("Description", { exact: true }).fill("CI deploys to staging and production");
  await edit.getByLabel("Metadata", { exact: true }).fill("tier=gold");
  await edit.getByLabel("projects Write", { exact: true }).uncheck();
  await edit.getByLabel("Expiry", { exact: true }).selectOption("90d");
  await shot(page, "edit");
  await edit.getByRole("button", { name: "Save" }).click();
  await row.getByText("CI deploys to staging and production").waitFor();
  await row.getByText("tier=gold").waitFor();
  await row.locator(".cell-expires").getByText("in 90 days").waitFor();
  check(await row.locator(".chip").allInnerTexts().then((t) => t.join(",") === "projects:read"), "the row shows the narrowed scopes");
  await ask({ event: "metadata", secret, tier: "gold" }); // the Go side: the Check's dynamic metadata says so
  await ask({ event: "write-denied", secret }); // and a write is refused: the scope is gone

  // Its history: created, then changed, with the values before.
  await row.getByRole("button", { name: "History of deploy bot" }).click();
  const history = page.getByRole("dialog", { name: "History of “deploy bot”" });
  await history.getByText("Changed").waitFor();
  const trail = await page.locator("#history-events").innerText();
  check(trail.includes("Scopes: projects:read, projects:write → projects:read") && trail.includes("Created") &&
    trail.includes("admin:console test"), `the history shows the change with its values before and after: ${trail}`);
  await shot(page, "history");
  await page.keyboard.press("Escape");
  await history.waitFor({ state: "hidden" });

  // Disable it: refused, and listed as disabled; enable it: it works again.
  await row.getByRole("button", { name: "Disable deploy bot" }).click();
  await row.waitFor({ state: "detached" }); // no longer active
  await ask({ event: "refused", secret });
  await page.getByLabel("Status", { exact: true }).selectOption("disabled");
  await row.getByText("Disabled").waitFor();
  await shot(page, "filter-disabled");
  const enable = row.getByRole("button", { name: "Enable deploy bot" });
  await enable.focus();
  await page.keyboard.press("Enter");
  await row.waitFor({ state: "detached" });
  await ask({ event: "allowed", secret });
  await page.getByLabel("Status", { exact: true }).selectOption("active");
  await row.getByText("Active").waitFor();
  check(await row.getByRole("button", { name: "Disable deploy bot" }).isVisible(), "an active key offers Disable");

  // Rotate with a grace period: the new secret, once, the same way.
  await row.getByRole("button", { name: "Rotate deploy bot" }).click();
  const rotate = page.getByRole("dialog", { name: /Rotate key/ });
  await rotate.getByLabel("Old secret keeps working for", { exact: true }).selectOption("1h");
  await rotate.getByLabel("New secret expires", { exact: true }).selectOption("60d");
  await shot(page, "rotate-dialog");
  await rotate.getByRole("button", { name: "Rotate" }).click();
  await secretDialog.waitFor();
  const rotated = await page.locator("#secret-value").inputValue();
  const rotatedID = await page.locator("#secret-id").textContent();
  check(rotated !== secret && /^kg_/.test(rotated), "rotation shows a new secret");
  await secretDialog.getByText(/keeps working until/).waitFor();
  await shot(page, "rotated-secret");
  await ask({ event: "allowed", secret: rotated });
  await page.keyboard.press("Escape"); // closing with the keyboard wipes it too
  await secretDialog.waitFor({ state: "hidden" });
  check(await noSecretInPage(page, rotated), "Escape removes the rotated secret from the page");
  await row.getByText("Rotated").waitFor();
  await page.locator(`tr[data-key-id="${rotatedID}"]`).getByText("in 60 days").waitFor();
  await shot(page, "keys-rotated");

  // Delete the first key, through the confirmation dialog, by keyboard.
  await row.getByRole("button", { name: "Delete deploy bot" }).focus();
  await page.keyboard.press("Enter");
  const confirm = page.getByRole("dialog", { name: "Delete key “deploy bot”?" });
  await confirm.waitFor();
  check(await focusIsIn(page, "#delete-dialog"), "focus moves into the confirmation");
  check((await confirm.textContent()).includes("deploy bot"), "the confirmation names the key");
  await shot(page, "delete-confirm");
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement?.id === "delete-confirm"), "Tab reaches Delete key");
  await page.keyboard.press("Enter");
  await confirm.waitFor({ state: "hidden" });
  await row.waitFor({ state: "detached" });
  await ask({ event: "refused", secret }); // the Go side: the next Check is refused
  await ask({ event: "allowed", secret: rotated }); // and the successor still works

  // The revoked key, by filter.
  await page.getByLabel("Status", { exact: true }).selectOption("revoked");
  await row.getByText("Revoked").waitFor();
  await shot(page, "filter-revoked");

  // 375 px wide: readable, nothing wider than the screen.
  await page.setViewportSize({ width: 375, height: 812 });
  await page.getByLabel("Status", { exact: true }).selectOption("active");
  await page.locator(`tr[data-key-id="${rotatedID}"]`).waitFor();
  check(await page.evaluate(() => document.documentElement.scrollWidth <= 375), "no horizontal scrolling at 375 px");
  await shot(page, "mobile-keys");
  await generateButton.click();
  await dialog.waitFor();
  check(await page.evaluate(() => document.documentElement.scrollWidth <= 375), "the dialog fits 375 px");
  await shot(page, "mobile-generate");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  check(await page.evaluate(() => document.activeElement?.id === "generate-open"), "Escape returns focus to Generate key");

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Admin token", { exact: true }).waitFor();
  check(await page.evaluate(() => sessionStorage.length === 0), "sign-out forgets the token");

  check(problems.length === 0, `no console errors or warnings: ${problems.join("; ")}`);
  check(foreign.length === 0, `no request to another host: ${foreign.join(", ")}`);
  process.stdout.write(`${JSON.stringify({ event: "done" })}\n`);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(0);
