// End-to-end: the relay's admin page (`GET /admin`, docs/PROTOCOL.md §11.19) in headless Debian
// Chromium driven by playwright-core. A real relay (the `haven-test-relay` launcher) gets its
// first admin key from the `haven-relay admin create-key` subcommand on its database; the page
// loads under its strict CSP with no violation, a wrong key shows the 401, the right key shows
// the overview, whose request figures grow after requests are made (the page refreshes every
// 5 s), and the key stays in sessionStorage only. A screenshot goes to docs/admin-overview.png
// (or HAVEN_ADMIN_SCREENSHOT).
//
// Environment: HAVEN_TEST_RELAY_BIN (the workspace's test-relay launcher), HAVEN_RELAY_BIN (the
// `haven-relay` binary), CHROMIUM (default /usr/bin/chromium). Run by `.ci/wasm.sh`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

let relay, relayUrl, relayDir, browser;

before(async () => {
  const launcher = process.env.HAVEN_TEST_RELAY_BIN;
  assert.ok(launcher && existsSync(launcher), `HAVEN_TEST_RELAY_BIN not found: ${launcher}`);
  relay = spawn(launcher, ["--set", "HAVEN_LOG=warn"], { stdio: ["pipe", "pipe", "inherit"] });
  const first = await new Promise((resolve, reject) => {
    let buf = "";
    relay.stdout.on("data", (chunk) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    relay.on("exit", (code) => reject(new Error(`haven-test-relay exited with ${code}`)));
  });
  ({ url: relayUrl, dir: relayDir } = JSON.parse(first));
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  if (relay) {
    const exited = new Promise((r) => relay.once("exit", r));
    relay.stdin.end();
    await exited;
  }
});

/** `haven-relay admin ARGS…` on the launcher's database; returns stdout. */
function relayAdmin(...args) {
  const bin = process.env.HAVEN_RELAY_BIN;
  assert.ok(bin && existsSync(bin), `HAVEN_RELAY_BIN not found: ${bin}`);
  return execFileSync(bin, ["admin", ...args], {
    env: { PATH: process.env.PATH, HAVEN_DATABASE_URL: `sqlite://${relayDir}/relay.db?mode=rwc` },
    encoding: "utf8",
  });
}

const figure = async (page, selector) => Number(await page.textContent(selector));

test("the admin page shows live figures for the right key and the 401 for a wrong one", async () => {
  const key = relayAdmin("create-key", "--label", "browser test").trim();
  assert.match(key, /^hvn_admin_[A-Za-z0-9_-]{43}$/);
  assert.match(relayAdmin("list-keys"), /browser test/);

  const context = await browser.newContext({ viewport: { width: 1100, height: 820 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Failed loads are checked by URL below (the console message does not name it).
  page.on("console", (m) => {
    if (m.type() === "error" && !/^Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  // Only the expected 401s of the overview may fail (and the browser's own /favicon.ico probe).
  page.on("response", (r) => {
    const path = new URL(r.url()).pathname;
    if (r.status() >= 400 && !(r.status() === 401 && path === "/v1/admin/overview") && path !== "/favicon.ico") {
      problems.push(`${r.status()} ${path}`);
    }
  });
  const response = await page.goto(`${relayUrl}/admin`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-security-policy"], /script-src 'self'; style-src 'self'/);
  assert.equal(await page.title(), "Haven relay — admin");
  await page.waitForSelector("#login");
  assert.equal(await page.isVisible("#overview"), false);

  // A wrong key: the 401 in the relay's error format, nothing shown, nothing kept.
  await page.fill("#key", `hvn_admin_${"A".repeat(43)}`);
  await page.click("#open");
  await page.waitForSelector("#error:not([hidden])");
  assert.match(await page.textContent("#error"), /^401 invalid_admin_key/);
  assert.equal(await page.isVisible("#overview"), false);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  // The right key: the overview.
  await page.fill("#key", key);
  await page.click("#open");
  await page.waitForSelector("#overview:not([hidden])");
  assert.equal(await page.isVisible("#error"), false);
  assert.equal(await figure(page, "#live-sockets"), 0);
  assert.equal(await figure(page, "#accounts"), 0);
  // The moderation feature fills these: nothing reported, nobody banned yet.
  assert.equal(await figure(page, "#pending-reports"), 0);
  assert.equal(await figure(page, "#active-bans"), 0);
  const cell = '#requests tr[data-window="last_1m"] td[data-field="total"]';
  const before = await figure(page, cell);
  assert.ok(before >= 1);
  assert.match(await page.textContent('#requests tr[data-window="last_1m"] td[data-field="p50_ms"]'), /ms$/);
  // The key is in this tab's sessionStorage, not in localStorage or the input.
  assert.equal(await page.evaluate(() => sessionStorage.getItem("haven-admin-key")), key);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.equal(await page.inputValue("#key"), "");

  // Traffic: 25 answers (2xx and 4xx); the next refresh shows them.
  for (let i = 0; i < 20; i++) await fetch(`${relayUrl}/health`);
  for (let i = 0; i < 5; i++) await fetch(`${relayUrl}/v1/nowhere`);
  await page.waitForFunction(
    ([sel, min]) => Number(document.querySelector(sel).textContent) >= min,
    [cell, before + 25],
    { timeout: 15_000 },
  );
  assert.ok(await figure(page, '#requests tr[data-window="last_1m"] td[data-field="status_4xx"]') >= 5);

  const shot = process.env.HAVEN_ADMIN_SCREENSHOT
    ?? fileURLToPath(new URL("../../../docs/admin-overview.png", import.meta.url));
  await page.screenshot({ path: shot, fullPage: true });

  // Revoking the key from the command line: the next refresh shows the 401 and forgets the key.
  const id = relayAdmin("list-keys").split("\n")[1].split(/\s+/)[0];
  relayAdmin("revoke-key", id);
  await page.waitForSelector("#error:not([hidden])", { timeout: 15_000 });
  assert.match(await page.textContent("#error"), /^401 invalid_admin_key/);
  assert.equal(await page.isVisible("#overview"), false);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  assert.deepEqual(problems, []);
  await context.close();
});
