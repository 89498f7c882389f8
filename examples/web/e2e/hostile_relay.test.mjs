// A hostile relay against the web package in Chromium (THREAT_MODEL "Who is who", PROTOCOL
// §15.6): browser users (the package's HavenClient and HavenMessenger, driven from the page)
// talk through `haven-hostile-relay` (a real relay behind a lying proxy; REST sync, no
// WebSocket), set up honest state, then the test switches one lie on. Each lie is refused with
// an error carrying its `code` and a user-visible event (`device_list_refused` or `rejected`),
// and nothing reaches a device the relay made or added.
//
// Environment: HAVEN_HOSTILE_RELAY_BIN (the hostile relay launcher), HAVEN_WEB_PKG (wasm-bindgen
// `--target web` output), CHROMIUM (default /usr/bin/chromium). Run by `.ci/wasm.sh`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, existsSync, rmSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { demoServer } from "../serve.mjs";

const PASSWORD = "hostile relay: correct horse battery";
const RUN = Math.random().toString(16).slice(2, 8);

let dir, web, webUrl, browser;
const relays = [];

before(async () => {
  const pkg = process.env.HAVEN_WEB_PKG;
  assert.ok(existsSync(process.env.HAVEN_HOSTILE_RELAY_BIN ?? ""), "HAVEN_HOSTILE_RELAY_BIN not found");
  assert.ok(pkg && existsSync(join(pkg, "haven_wasm.js")), `HAVEN_WEB_PKG not built: ${pkg}`);
  dir = mkdtempSync(join(tmpdir(), "haven-hostile-e2e-"));
  web = demoServer(pkg);
  await new Promise((r) => web.listen(0, "127.0.0.1", r));
  webUrl = `http://127.0.0.1:${web.address().port}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  for (const relay of relays) {
    const exited = new Promise((r) => relay.once("exit", r));
    relay.stdin.end();
    await exited;
  }
  await new Promise((r) => (web ? web.close(r) : r()));
  if (dir && !process.env.HAVEN_KEEP_E2E) rmSync(dir, { recursive: true, force: true });
});

/** A hostile relay of its own for one test: `{url, dir, control}`. */
async function hostileRelay(name) {
  const log = openSync(join(dir, `${name}.log`), "w");
  const relay = spawn(process.env.HAVEN_HOSTILE_RELAY_BIN, [
    "--set", "HAVEN_LOG=info",
    "--set", `HAVEN_CORS_ALLOWED_ORIGINS=${webUrl}`,
  ], { stdio: ["pipe", "pipe", log] });
  relays.push(relay);
  const first = await new Promise((resolve, reject) => {
    let buf = "";
    relay.stdout.on("data", (chunk) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    relay.on("exit", (code) => reject(new Error(`haven-hostile-relay exited with ${code}`)));
  });
  return JSON.parse(first);
}

async function attack(relay, body) {
  const reply = await fetch(`${relay.control}/attack`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const json = await reply.json();
  assert.equal(reply.status, 200, JSON.stringify(json));
  return json;
}

async function captured(relay) {
  return (await (await fetch(`${relay.control}/captured`)).json()).captured;
}

/** A browser page of the demo's origin (the relay allows it) with the package imported. */
async function blankPage(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${webUrl}/hostile-relay-blank`);
  await page.evaluate(async () => {
    const wasm = await import("/pkg/haven_wasm.js");
    await wasm.default();
    window.lib = { wasm, ...(await import("/js/haven-client.js")) };
    // The messenger of `client` on `window.user`, its events in `window.events`.
    window.adopt = async (client) => {
      const m = await window.lib.HavenMessenger.create(client);
      window.events = [];
      m.on((e) => window.events.push(JSON.parse(JSON.stringify(e, (k, v) => (typeof v === "bigint" ? Number(v) : v)))));
      window.user = { m, client, direct: window.lib.direct };
    };
  });
  return page;
}

async function describe(page, name) {
  const account = await page.evaluate(() => window.user.client.accountId());
  const device = await page.evaluate(() => Number(window.user.client.device.deviceNumber()));
  return { page, name, account, device, username: `${name}_${RUN}` };
}

/** A browser user registered through `relay`. */
async function user(relay, name) {
  const page = await blankPage(name);
  await page.evaluate(async ({ relayUrl, username, password }) => {
    await window.adopt(await window.lib.HavenClient.register(window.lib.wasm, relayUrl, username, password));
  }, { relayUrl: relay.url, username: `${name}_${RUN}`, password: PASSWORD });
  return describe(page, name);
}

/** A second browser device of `existing`'s account, linked by approval. */
async function linked(relay, name, existing) {
  const page = await blankPage(name);
  const code = await page.evaluate(async (relayUrl) => {
    window.pending = await window.lib.HavenClient.startLink(window.lib.wasm, relayUrl);
    return window.pending.code;
  }, relay.url);
  const approved = await act(existing, (x, c) => x.client.approveLink(c), code);
  assert.ok(approved.ok, JSON.stringify(approved));
  await page.evaluate(async () => { await window.adopt(await window.pending.finish(30_000)); });
  return describe(page, name);
}

/** Runs `fn(user, arg)` in the page; returns `{ok, value}` or `{ok: false, code, message}`. */
function act(u, fn, arg) {
  return u.page.evaluate(async ({ body, arg }) => {
    const f = new Function("u", "arg", `return (${body})(u, arg);`);
    try {
      const value = await f(window.user, arg);
      return { ok: true, value: value === undefined ? null : JSON.parse(JSON.stringify(value)) };
    } catch (e) {
      return { ok: false, code: e.code ?? null, message: String(e.message ?? e) };
    }
  }, { body: fn.toString(), arg });
}

/** The events since the last call. */
const drain = (u) => u.page.evaluate(() => window.events.splice(0));

async function sync(u) {
  await drain(u);
  const r = await act(u, (x) => x.m.sync());
  assert.ok(r.ok, JSON.stringify(r));
  return drain(u);
}

const addContact = (u, peer) => act(u, (x, a) => x.m.addContact(a), peer.account);
const sendText = (u, peer, text) => act(u, (x, { a, t }) => x.m.sendText(x.direct(a), t), { a: peer.account, t: text });
const texts = async (u, peer) =>
  (await act(u, (x, a) => x.m.history(x.direct(a)).map((m) => m.text), peer.account)).value;

const refused = (events, account, words) =>
  events.some((e) => e.type === "device_list_refused" && e.account === account && e.reason.includes(words));
const rejectedUnlisted = (events, account, device) =>
  events.some((e) => e.type === "rejected" &&
    String(e.reason).includes(`device ${device} of ${account} is not in the account's signed device list`));

test("hostile_relay: a device injected into a 409 is refused", { timeout: 180_000 }, async () => {
  const relay = await hostileRelay("inject");
  const alice = await user(relay, "alice");
  const bob = await user(relay, "bob");
  assert.ok((await addContact(alice, bob)).ok);
  await sync(bob);

  assert.equal((await attack(relay, { kind: "inject_device", account: bob.account })).device, 99);
  await drain(alice);
  const r = await sendText(alice, bob, "to a device the relay made up");
  assert.equal(r.ok, false);
  assert.equal(r.code, "device_list_refused", JSON.stringify(r));
  assert.match(r.message, /device 99/);
  const events = await drain(alice);
  assert.ok(refused(events, bob.account, "device 99"), JSON.stringify(events));
  assert.equal(await captured(relay), 0);
  await sync(bob);
  assert.ok(!(await texts(bob, alice)).includes("to a device the relay made up"));
});

test("hostile_relay: a forged bundle is refused", { timeout: 180_000 }, async () => {
  const relay = await hostileRelay("bundle");
  const alice = await user(relay, "alice");
  const bob = await user(relay, "bob");

  await attack(relay, { kind: "forge_bundle", account: bob.account });
  await drain(alice);
  const r = await addContact(alice, bob);
  assert.equal(r.ok, false);
  assert.equal(r.code, "device_list_refused", JSON.stringify(r));
  assert.match(r.message, new RegExp(`device ${bob.device}`));
  const events = await drain(alice);
  assert.ok(refused(events, bob.account, `device ${bob.device}`), JSON.stringify(events));
  assert.equal(await captured(relay), 0);
});

test("hostile_relay: a certificate for a key the relay chose is refused", { timeout: 180_000 }, async () => {
  const relay = await hostileRelay("certificate");
  const alice = await user(relay, "alice");
  const bob = await user(relay, "bob");
  assert.ok((await addContact(bob, alice)).ok);
  await sync(alice);

  const forged = "from bob, says the relay";
  await attack(relay, { kind: "forge_certificate", victim: alice.account, account: bob.account, device: bob.device, text: forged });
  const events = await sync(alice);
  assert.ok(rejectedUnlisted(events, bob.account, bob.device), JSON.stringify(events));
  assert.ok(!(await texts(alice, bob)).includes(forged));
});

test("hostile_relay: a device added by password login is refused both ways", { timeout: 180_000 }, async () => {
  const relay = await hostileRelay("password");
  const alice = await user(relay, "alice");
  const bob = await user(relay, "bob");
  assert.ok((await addContact(bob, alice)).ok);
  await sync(alice);

  const forged = "hi alice, from my new phone (says the relay)";
  const { device: rogue } = await attack(relay, {
    kind: "password_device", username: bob.username, password: PASSWORD, victim: alice.account, text: forged,
  });
  let events = await sync(alice);
  assert.ok(rejectedUnlisted(events, bob.account, rogue), JSON.stringify(events));
  assert.ok(!(await texts(alice, bob)).includes(forged));
  const r = await sendText(alice, bob, "only for bob's real devices");
  assert.equal(r.ok, false);
  assert.equal(r.code, "device_list_refused", JSON.stringify(r));
  assert.match(r.message, new RegExp(`device ${rogue}`));
  events = await drain(alice);
  assert.ok(refused(events, bob.account, `device ${rogue}`), JSON.stringify(events));
  assert.equal(await captured(relay), 0);
});

test("hostile_relay: a rolled-back device list is refused", { timeout: 180_000 }, async () => {
  const relay = await hostileRelay("rollback");
  const alice = await user(relay, "alice");
  const bob = await user(relay, "bob");
  assert.ok((await addContact(alice, bob)).ok);
  // Bob links a second browser (his list goes to version 2); its first message makes Alice read
  // and accept that list.
  const bob2 = await linked(relay, "bob2", bob);
  assert.ok((await addContact(bob2, alice)).ok);
  let events = await sync(alice);
  assert.ok(events.some((e) => e.type === "devices_changed" && e.added?.includes(bob2.device)), JSON.stringify(events));

  // The relay serves version 1 again, and answers Alice's next send with a 409 naming a device
  // version 2 does not, so that she reads the list again.
  await attack(relay, { kind: "rollback", account: bob.account });
  await attack(relay, { kind: "inject_device", account: bob.account });
  const r = await sendText(alice, bob, "after the rollback");
  assert.equal(r.ok, false);
  assert.equal(r.code, "device_list_refused", JSON.stringify(r));
  assert.match(r.message, /rolled back to version 1 after version 2/);
  events = await drain(alice);
  assert.ok(refused(events, bob.account, "rolled back to version 1 after version 2"), JSON.stringify(events));
  assert.equal(await captured(relay), 0);
});
