// End-to-end: two browser contexts (headless Debian Chromium driven by playwright-core) register
// two users on a real relay (the `haven-test-relay` launcher) and exchange messages; the diary page writes an
// entry, reloads, unlocks with the passphrase and reads it back from encrypted IndexedDB state.
//
// Environment: HAVEN_TEST_RELAY_BIN (the workspace's test-relay launcher), HAVEN_WEB_PKG (wasm-bindgen `--target web`
// output), CHROMIUM (default /usr/bin/chromium). Run by `.ci/wasm.sh`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, readdirSync, rmSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { demoServer } from "../serve.mjs";

const SECRETS = ["hello bob via periwinkle", "hi alice, tangerine here", "Walked to the harbour with marzipan"];
const PASSWORD = "correct horse battery staple";

// HAVEN_E2E_SCREENSHOTS=DIR saves what each page showed at the end, for a look by a person.
const shot = async (page, name) => {
  const dir = process.env.HAVEN_E2E_SCREENSHOTS;
  if (dir) await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
};

let dir, relay, relayUrl, relayDir, web, webUrl, browser;

before(async () => {
  const bin = process.env.HAVEN_TEST_RELAY_BIN;
  const pkg = process.env.HAVEN_WEB_PKG;
  assert.ok(bin && existsSync(bin), `HAVEN_TEST_RELAY_BIN not found: ${bin}`);
  assert.ok(pkg && existsSync(join(pkg, "haven_wasm.js")), `HAVEN_WEB_PKG not built: ${pkg}`);
  dir = mkdtempSync(join(tmpdir(), "haven-web-e2e-"));

  // Port 0: the kernel picks a free port as the server binds it (no pick-then-bind race).
  web = demoServer(pkg);
  await new Promise((r) => web.listen(0, "127.0.0.1", r));
  webUrl = `http://127.0.0.1:${web.address().port}`;

  // The workspace's test-relay launcher: one JSON line with its address and directory, logs on
  // stderr; it stops (and removes its directory) when its stdin closes.
  const log = openSync(join(dir, "relay.log"), "w");
  relay = spawn(bin, [
    "--set", "HAVEN_LOG=info",
    "--set", `HAVEN_CORS_ALLOWED_ORIGINS=${webUrl}`,
    "--set", `HAVEN_WS_ALLOWED_ORIGINS=${webUrl}`,
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
  const started = JSON.parse(first);
  relayUrl = started.url;
  relayDir = started.dir;

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

async function chatPage(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${webUrl}/index.html?relay=${encodeURIComponent(relayUrl)}`);
  await page.waitForSelector("body[data-state=signed-out]");
  return page;
}

async function register(page, username) {
  await page.fill("#username", username);
  await page.fill("#password", PASSWORD);
  await page.click("#register");
  await page.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
}

async function send(page, to, text) {
  await page.fill("#to", to);
  await page.fill("#text", text);
  await page.click("#send");
  await page.waitForSelector(`#log li.out:has-text("${text}")`, { timeout: 30_000 });
  assert.equal(await page.textContent("#error"), "");
}

test("two browser contexts register and exchange messages through the relay", async () => {
  const suffix = Date.now().toString(36);
  const [alice, bob] = await Promise.all([chatPage("alice"), chatPage("bob")]);
  await register(alice, `alice-${suffix}`);
  await register(bob, `bob-${suffix}`);

  await send(alice, `bob-${suffix}`, SECRETS[0]);
  await bob.waitForSelector(`#log li.in:has-text("${SECRETS[0]}")`, { timeout: 30_000 });

  await send(bob, `alice-${suffix}`, SECRETS[1]);
  await alice.waitForSelector(`#log li.in:has-text("${SECRETS[1]}")`, { timeout: 30_000 });
  assert.match(await alice.textContent("#log li.in"), new RegExp(`bob-${suffix}`));
  await shot(alice, "chat-alice");
  await shot(bob, "chat-bob");

  // The relay stored and logged only ciphertext: its log, database and blob files.
  const files = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(d, e.name)) : [join(d, e.name)]);
  const all = files(dir).concat(files(relayDir));
  assert.ok(all.some((f) => f.endsWith("relay.db")), "the relay's database was read");
  for (const f of all) {
    const bytes = readFileSync(f);
    for (const s of SECRETS.slice(0, 2).concat([PASSWORD])) {
      assert.equal(bytes.indexOf(s), -1, `${f} contains a plaintext`);
    }
  }
});

test("diary: write, reload, unlock with the passphrase, read back from IndexedDB", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${webUrl}/diary.html`);
  await page.waitForSelector("body[data-state=locked]");
  await page.fill("#new-passphrase", "diary pass phrase");
  await page.click("#create");
  await page.waitForSelector("body[data-state=unlocked]", { timeout: 60_000 });
  assert.equal(await page.locator("#codes li").count(), 10);
  await page.fill("#title", "Sunday");
  await page.fill("#body", SECRETS[2]);
  await page.click("#save");
  await page.waitForSelector("text=saved 1");

  // What IndexedDB holds is ciphertext only.
  const stored = await page.evaluate(async () => {
    const { idbGet } = await import("/idb.js");
    const all = await idbGet("diary-entries");
    return all.map((e) => new TextDecoder("latin1").decode(e.body) + new TextDecoder("latin1").decode(e.meta)).join("");
  });
  assert.ok(stored.length > 0);
  assert.equal(stored.indexOf("harbour"), -1);

  await page.reload();
  await page.waitForSelector("body[data-state=locked]");
  assert.equal(await page.locator(".entry").count(), 0);
  await page.fill("#passphrase", "wrong pass phrase");
  await page.click("#unlock");
  await page.waitForSelector("#error:has-text('wrong_password')", { timeout: 60_000 });
  await page.fill("#passphrase", "diary pass phrase");
  await page.click("#unlock");
  await page.waitForSelector("body[data-state=unlocked]", { timeout: 60_000 });
  assert.equal(await page.textContent(".entry-body"), SECRETS[2]);
  assert.equal(await page.textContent(".entry h3"), "Sunday");
  await shot(page, "diary-after-reload");
});
