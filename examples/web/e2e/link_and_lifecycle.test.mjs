// End-to-end: linking a browser by approval and the account's lifecycle, through the chat demo
// (headless Debian Chromium driven by playwright-core) on a real relay (the `haven-test-relay`
// launcher). A browser registers; a second browser links by code (the first approves it) and
// both talk with a third user; the first unlinks the second, which then receives nothing new;
// the password changes (fresh authentication), a recovery code is set and used, TOTP goes on
// (and is needed at login) and off (codes computed here: RFC 6238, HMAC-SHA-1, 6 digits, 30 s),
// the account is exported and deleted.
//
// Environment: HAVEN_TEST_RELAY_BIN, HAVEN_WEB_PKG, CHROMIUM (default /usr/bin/chromium). Run by
// `.ci/wasm.sh`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, existsSync, rmSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { demoServer } from "../serve.mjs";

const PASSWORDS = ["first password: heron lichen", "second password: otter basalt", "third password: wren quartz"];
const TEXT = {
  toBoth: "carol to alice's two browsers, about fennel",
  fromSecond: "alice's linked browser answers, about sorrel",
  fromFirst: "alice's first browser writes, about mulberry",
  afterUnlink: "after the unlink, about tamarind",
  afterPassword: "after the new password, about chervil",
};

let dir, relay, relayUrl, web, webUrl, browser;

before(async () => {
  const bin = process.env.HAVEN_TEST_RELAY_BIN;
  const pkg = process.env.HAVEN_WEB_PKG;
  assert.ok(bin && existsSync(bin), `HAVEN_TEST_RELAY_BIN not found: ${bin}`);
  assert.ok(pkg && existsSync(join(pkg, "haven_wasm.js")), `HAVEN_WEB_PKG not built: ${pkg}`);
  dir = mkdtempSync(join(tmpdir(), "haven-web-link-"));
  web = demoServer(pkg);
  await new Promise((r) => web.listen(0, "127.0.0.1", r));
  webUrl = `http://127.0.0.1:${web.address().port}`;
  const log = openSync(join(dir, "relay.log"), "w");
  relay = spawn(bin, [
    "--set", "HAVEN_LOG=info",
    "--set", `HAVEN_CORS_ALLOWED_ORIGINS=${webUrl}`,
    "--set", `HAVEN_WS_ALLOWED_ORIGINS=${webUrl}`,
    // The lifecycle below proves the password many times (and once wrongly) within minutes.
    "--set", "HAVEN_LOGIN_MAX_FAILURES=100",
    "--set", "HAVEN_ADDR_LOGIN_MAX_FAILURES=200",
  ], { stdio: ["pipe", "pipe", log] });
  const first = await new Promise((resolve, reject) => {
    let buf = "";
    relay.stdout.on("data", (chunk) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    relay.on("exit", (code) => reject(new Error(`haven-test-relay exited with ${code}`)));
  });
  relayUrl = JSON.parse(first).url;
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
  await new Promise((r) => (web ? web.close(r) : r()));
  if (dir && !process.env.HAVEN_KEEP_E2E) rmSync(dir, { recursive: true, force: true });
});

// ------------------------------------------------------------------ TOTP (RFC 6238)

function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0, value = 0;
  const out = [];
  for (const c of text.replace(/=+$/, "").toUpperCase()) {
    const i = alphabet.indexOf(c);
    assert.ok(i >= 0, `base32 letter ${c}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The 6-digit code of 30-second step `step` (RFC 4226 dynamic truncation over HMAC-SHA-1). */
function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const at = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, "0");
}

const stepNow = () => Math.floor(Date.now() / 1000 / 30);

/**
 * Codes for one account, each for a newer step than the last (the relay accepts a step once,
 * and ±1 step of skew): waits for the clock when the next step is not yet acceptable.
 */
function totpCodes(secret) {
  let last = stepNow() - 2;
  return async () => {
    const step = Math.max(last + 1, stepNow() - 1);
    while (step > stepNow() + 1) await new Promise((r) => setTimeout(r, 1000));
    last = step;
    return totp(secret, step);
  };
}

test("RFC 6238's SHA-1 vector", () => {
  // The RFC's secret "12345678901234567890", T = 59 s: 94287082 (8 digits) → 287082.
  assert.equal(totp("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 1), "287082");
});

// ------------------------------------------------------------------ pages

async function chatPage(name) {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${webUrl}/index.html?relay=${encodeURIComponent(relayUrl)}`);
  await page.waitForSelector("body[data-state=signed-out]");
  return page;
}

async function register(page, username, password) {
  await page.fill("#username", username);
  await page.fill("#password", password);
  await page.click("#register");
  await page.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
}

async function addContact(page, username) {
  await page.fill("#contact-name", username);
  await page.click("#add-contact");
  await page.waitForSelector(`#contacts li:has-text("${username}")`, { timeout: 30_000 });
  await page.waitForSelector(`#conv-title:has-text("${username}")`);
  assert.equal(await page.textContent("#error"), "");
}

async function send(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
  await page.waitForSelector(`#log li.out:has-text("${text}")`, { timeout: 30_000 });
  assert.equal(await page.textContent("#error"), "");
}

const shows = (page, text, kind = "in") =>
  page.waitForSelector(`#log li.${kind}:has-text("${text}")`, { timeout: 30_000 });

/** Runs an account action of the demo and waits for its note (or fails with the page's error). */
async function account(page, click, note, fields = {}) {
  for (const [id, value] of Object.entries(fields)) await page.fill(id, value);
  await page.evaluate(() => {
    document.getElementById("account-note").textContent = "";
    document.getElementById("error").textContent = "";
  });
  await page.click(click);
  await page.waitForFunction(() => document.getElementById("account-note").textContent
    || document.getElementById("error").textContent, null, { timeout: 60_000 });
  assert.equal(await page.textContent("#error"), "", `${click}`);
  assert.match(await page.textContent("#account-note"), note);
}

/** The same, expecting the page's error to match `codes` (a regular expression's source). */
async function refused(page, click, codes, fields = {}) {
  for (const [id, value] of Object.entries(fields)) await page.fill(id, value);
  await page.evaluate(() => { document.getElementById("error").textContent = ""; });
  await page.click(click);
  await page.waitForSelector(`#error:text-matches("${codes}")`, { timeout: 60_000 });
}

// ------------------------------------------------------------------ the test

test("a browser links a second by code; unlink; password, recovery code, TOTP; export; delete", async () => {
  const suffix = Date.now().toString(36);
  const [aliceName, carolName] = [`alice-l-${suffix}`, `carol-l-${suffix}`];
  const [alice, carol] = await Promise.all([chatPage("alice-1"), chatPage("carol")]);
  await register(alice, aliceName, PASSWORDS[0]);
  await register(carol, carolName, PASSWORDS[0]);
  await alice.click("#account-tools summary");

  // A second browser shows its code; the first approves it; the second joins.
  const second = await chatPage("alice-2");
  await second.click("#link");
  await second.waitForSelector("#link-code:has-text('haven-link:')", { timeout: 30_000 });
  const code = (await second.textContent("#link-code")).trim();
  await account(alice, "#approve", /approved/, { "#approve-code": code });
  await second.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
  assert.equal(await second.textContent("#error"), "");
  await alice.click("#refresh-devices");
  await alice.waitForSelector("#devices li[data-device='2']", { timeout: 30_000 });

  // Carol writes to Alice: both browsers read it. Each answers; Carol accepts both (the signed
  // list names the linked browser) and the other browser of Alice gets the copy.
  await addContact(carol, aliceName);
  await send(carol, TEXT.toBoth);
  await addContact(alice, carolName);
  await shows(alice, TEXT.toBoth);
  await addContact(second, carolName);
  await shows(second, TEXT.toBoth);
  await send(second, TEXT.fromSecond);
  await shows(carol, TEXT.fromSecond);
  await shows(alice, TEXT.fromSecond, "out");
  await send(alice, TEXT.fromFirst);
  await shows(carol, TEXT.fromFirst);
  await shows(second, TEXT.fromFirst, "out");

  // The first browser unlinks the second (the password proven again): a new signed list, the
  // relay forgets the device. Carol's next message reaches the first browser only.
  await alice.fill("#fresh-password", PASSWORDS[0]);
  await alice.click("#refresh-devices");
  await account(alice, "#devices li[data-device='2'] button.unlink", /device 2 unlinked/);
  await alice.waitForFunction(() => !document.querySelector("#devices li[data-device='2']"), null,
    { timeout: 30_000 });
  await send(carol, TEXT.afterUnlink);
  await shows(alice, TEXT.afterUnlink);
  await second.waitForTimeout(3000);
  assert.equal(await second.locator(`#log li:has-text("${TEXT.afterUnlink}")`).count(), 0);

  // A new password (fresh authentication with the old one); messaging goes on.
  await account(alice, "#change-password", /password changed/,
    { "#fresh-password": PASSWORDS[0], "#new-password": PASSWORDS[1] });
  await send(alice, TEXT.afterPassword);
  await shows(carol, TEXT.afterPassword);
  // The old password no longer proves anything; the new one sets a recovery code.
  await refused(alice, "#set-recovery", "wrong_password", { "#fresh-password": PASSWORDS[0] });
  await account(alice, "#set-recovery", /recovery code set/, { "#fresh-password": PASSWORDS[1] });
  const recovery = (await alice.textContent("#recovery-code")).trim();
  assert.ok(recovery.length >= 26, recovery);

  // Recovery with the code sets a third password (every session ends); log in again with it.
  await account(alice, "#recover", /recovered/, { "#recover-code": recovery, "#new-password": PASSWORDS[2] });
  await refused(alice, "#relogin", "wrong_password", { "#fresh-password": PASSWORDS[1] });
  await account(alice, "#relogin", /logged in again/, { "#fresh-password": PASSWORDS[2] });
  // The code is used up.
  await refused(alice, "#recover", "wrong_password|invalid_credentials", { "#recover-code": recovery, "#new-password": PASSWORDS[0] });

  // TOTP on: then a login needs a code; off again with the password and a code.
  await account(alice, "#totp-setup", /authenticator/);
  const secret = (await alice.textContent("#totp-secret")).trim();
  const next = totpCodes(secret);
  await account(alice, "#totp-verify", /TOTP on/, { "#fresh-totp": await next() });
  await account(alice, "#logout", /logged out/);
  await refused(alice, "#relogin", "totp_required", { "#fresh-password": PASSWORDS[2], "#fresh-totp": "" });
  await account(alice, "#relogin", /logged in again/, { "#fresh-totp": await next() });
  await account(alice, "#totp-disable", /TOTP off/, { "#fresh-totp": await next() });
  await account(alice, "#logout", /logged out/);
  await account(alice, "#relogin", /logged in again/, { "#fresh-totp": "" });

  // Export, then deletion (fresh authentication): the username is free again.
  const [download] = await Promise.all([alice.waitForEvent("download", { timeout: 30_000 }),
    account(alice, "#export", /exported 1 devices/)]);
  assert.equal(download.suggestedFilename(), "haven-account.json");
  await account(alice, "#delete-account", /account deleted/);
  await carol.fill("#contact-name", aliceName);
  await carol.click("#add-contact");
  await carol.waitForSelector("#error:has-text('username_not_found')", { timeout: 30_000 });
});
