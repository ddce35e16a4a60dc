// The console's Webhooks page in a real browser, driven by
// TestConsoleWebhooksInBrowser (cmd/keygate/console_webhooks_test.go):
// sign in, see a key expiring within the longest lead time marked, add an
// endpoint (its secret shown once), read its delivery log, redeliver.
//
// Environment: CONSOLE_URL, ADMIN_TOKEN, RECEIVER_URL, SCREENSHOT_DIR,
// CHROMIUM (default /usr/bin/chromium). Exits 0 when every check holds.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const consoleURL = new URL(env("CONSOLE_URL"));
const shots = env("SCREENSHOT_DIR");
mkdirSync(shots, { recursive: true });
const check = (cond, what) => {
  if (!cond) throw new Error(`failed: ${what}`);
};

const userDataDir = mkdtempSync(join(tmpdir(), "keygate-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  viewport: { width: 1280, height: 900 },
  locale: "en-US",
  timezoneId: "UTC",
});
const errors = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(consoleURL.href);
  await page.getByLabel("Admin token").fill(env("ADMIN_TOKEN"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "API Keys" }).waitFor();
  // A key expiring in 10 days is within the 14-day lead time: marked.
  await page.getByText("Expiring soon").first().waitFor();
  await page.screenshot({ path: join(shots, "webhooks-1-keys-expiring.png") });

  await page.getByRole("link", { name: "Webhooks" }).click();
  await page.getByRole("heading", { name: "Webhooks", level: 1 }).waitFor();
  const hooksPage = page.locator("#webhooks");
  await hooksPage.getByLabel("URL").fill(env("RECEIVER_URL"));
  await hooksPage.getByLabel("Description").fill("pager");
  await hooksPage.getByLabel("key.revoked").check();
  await hooksPage.getByLabel("key.created").check();
  await hooksPage.getByRole("button", { name: "Add endpoint" }).click();
  const secret = page.getByLabel("Signing secret");
  await secret.waitFor();
  check((await secret.inputValue()).startsWith("whsec_"), "the signing secret is shown once");
  await page.screenshot({ path: join(shots, "webhooks-2-secret.png") });
  await page.getByRole("button", { name: "Hide the secret" }).click();
  check(await secret.count() === 0, "the secret leaves the page");
  const row = page.getByRole("row").filter({ hasText: env("RECEIVER_URL") });
  await row.waitFor();
  check((await row.textContent()).includes("key.created, key.revoked"), "the row lists its events");

  // A key created by the test after the endpoint: its delivery shows up.
  process.stdout.write("endpoint added\n");
  await new Promise((resolve) => process.stdin.once("data", resolve));
  process.stdin.destroy();
  await row.getByRole("button", { name: /^Deliveries of/ }).click();
  await page.getByRole("heading", { name: /Deliveries to/ }).waitFor();
  const delivery = page.locator("#deliveries").getByRole("row").filter({ hasText: "key.created" });
  await delivery.first().waitFor();
  await delivery.first().getByRole("button", { name: /^Redeliver/ }).click();
  await page.getByRole("heading", { name: /Deliveries to/ }).waitFor();
  await page.screenshot({ path: join(shots, "webhooks-3-deliveries.png"), fullPage: true });
  check(errors.length === 0, `no console errors (${errors.join("; ")})`);
  process.stdout.write("done\n");
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
