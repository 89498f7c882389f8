// Web Push in a browser (headless Debian Chromium driven by playwright-core) against a real relay
// (the `haven-test-relay` launcher), as far as it can be tested without a push service:
// Chromium's own (Google's) cannot be reached here, so `PushManager.subscribe` is replaced by a
// stub that records its options and returns a subscription with a real P-256 key; everything
// else is real: the demo's push.js registers the service worker sw.js, takes the relay's VAPID
// key, subscribes and registers the subscription through the SDK (the relay lists it); a push
// event is delivered to the real worker through the DevTools protocol
// (`ServiceWorker.deliverPushMessage`, what the browser does once it has decrypted a push), the
// worker wakes the open page, and the page's messenger fetches, processes and acknowledges a
// message sent while it was offline (HavenMessenger.handleWakeUp), counting it once; with no
// page open, the worker shows the generic "New message" notification instead.
//
// Not covered here: the push service's leg (the relay's encryption for it is the relay's tests'
// business) and the browser's decryption of a real push.
//
// Environment: HAVEN_TEST_RELAY_BIN, HAVEN_WEB_PKG, CHROMIUM. Run by `.ci/wasm.sh`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, existsSync, rmSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { demoServer } from "../serve.mjs";

const PASSWORD = "correct horse battery staple";
const RUN = Math.random().toString(16).slice(2, 8);

let dir, relay, relayUrl, web, webUrl, browser;

before(async () => {
  const bin = process.env.HAVEN_TEST_RELAY_BIN;
  const pkg = process.env.HAVEN_WEB_PKG;
  assert.ok(bin && existsSync(bin), `HAVEN_TEST_RELAY_BIN not found: ${bin}`);
  assert.ok(pkg && existsSync(join(pkg, "haven_wasm.js")), `HAVEN_WEB_PKG not built: ${pkg}`);
  dir = mkdtempSync(join(tmpdir(), "haven-web-push-"));
  web = demoServer(pkg);
  await new Promise((r) => web.listen(0, "127.0.0.1", r));
  webUrl = `http://127.0.0.1:${web.address().port}`;
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
  relayUrl = JSON.parse(first).url;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  relay?.stdin.end();
  await new Promise((r) => (relay && relay.exitCode === null ? relay.on("exit", r) : r()));
  await new Promise((r) => web?.close(r));
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Replaces `PushManager.prototype.subscribe` (no push service is reachable): records the options
 * it was called with on `window.subscribeCalls` and returns a subscription shaped like a real
 * one, with a real P-256 public key and a random auth secret.
 */
function stubPushManager() {
  const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  window.subscribeCalls = [];
  let current = null;
  PushManager.prototype.subscribe = async function (options) {
    const key = new Uint8Array(options.applicationServerKey);
    window.subscribeCalls.push({ userVisibleOnly: options.userVisibleOnly, applicationServerKey: b64url(key) });
    const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
    const p256dh = b64url(await crypto.subtle.exportKey("raw", pair.publicKey));
    const auth = b64url(crypto.getRandomValues(new Uint8Array(16)));
    const endpoint = `https://push.example.test/wpush/v2/${b64url(crypto.getRandomValues(new Uint8Array(12)))}`;
    current = { endpoint, expirationTime: null, toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh, auth } }) };
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
}

/** A page of the demo's origin with the package, the client and push.js loaded. */
async function userPage(context, name) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${webUrl}/push-blank`);
  await page.evaluate(async ({ relayUrl, username, password }) => {
    const wasm = await import("/pkg/haven_wasm.js");
    await wasm.default();
    const lib = await import("/js/haven-client.js");
    window.push = await import("/push.js");
    window.client = await lib.HavenClient.register(wasm, relayUrl, username, password);
    window.m = await lib.HavenMessenger.create(window.client);
    window.lib = lib;
  }, { relayUrl, username: `${name}_${RUN}`, password: PASSWORD });
  return page;
}

test("the page subscribes, the relay lists the subscription, and a push wakes the page to fetch once", async () => {
  const context = await browser.newContext();
  await context.grantPermissions(["notifications"], { origin: webUrl });
  await context.addInitScript(stubPushManager);
  const bob = await userPage(context, "bob");
  const alice = await userPage(await browser.newContext(), "alice");

  // Bob's page enables push as the demo's button does.
  const enabled = await bob.evaluate(async () => {
    const { id } = await window.push.enablePush(window.client);
    return { id, listed: await window.client.pushEndpoints(), calls: window.subscribeCalls,
             vapid: await window.client.pushVapidKey(),
             controlled: (await navigator.serviceWorker.getRegistration())?.active?.scriptURL };
  });
  assert.equal(enabled.calls.length, 1);
  assert.deepEqual(enabled.calls[0], { userVisibleOnly: true, applicationServerKey: enabled.vapid });
  assert.match(enabled.id, /^[A-Za-z0-9_-]{22}$/);
  assert.deepEqual(enabled.listed.map((e) => [e.id, e.kind]), [[enabled.id, "web_push"]]);
  assert.equal(enabled.controlled, `${webUrl}/sw.js`);
  // Enabling again reuses the subscription: the same endpoint, still one on the relay.
  const again = await bob.evaluate(async () => {
    const { id } = await window.push.enablePush(window.client);
    return { id, n: (await window.client.pushEndpoints()).length, calls: window.subscribeCalls.length };
  });
  assert.deepEqual(again, { id: enabled.id, n: 1, calls: 1 });

  // Bob's page listens for wake-ups (its socket is not running: the message waits on the relay).
  await bob.evaluate(() => {
    window.wakes = [];
    window.push.onWake(window.client, window.m, (summary, e) => window.wakes.push(summary ?? { error: e.message }));
  });
  const bobAccount = await bob.evaluate(() => window.client.accountId());
  await alice.evaluate(async (account) => {
    await window.m.addContact(account);
    await window.m.sendText(window.lib.direct(account), "wake up, it is push o'clock");
  }, bobAccount);

  // The browser got a push for the worker: delivered through the DevTools protocol.
  const cdp = await context.newCDPSession(bob);
  const registrationId = await new Promise((resolve) => {
    cdp.on("ServiceWorker.workerRegistrationUpdated", ({ registrations }) => {
      const r = registrations.find((x) => x.scopeURL === `${webUrl}/` && !x.isDeleted);
      if (r) resolve(r.registrationId);
    });
    cdp.send("ServiceWorker.enable");
  });
  await cdp.send("ServiceWorker.deliverPushMessage", { origin: webUrl, registrationId, data: '{"type":"wake"}' });
  await bob.waitForFunction(() => window.wakes.length >= 1, null, { timeout: 30_000 });
  const woke = await bob.evaluate(() => ({
    wakes: window.wakes,
    history: window.m.history(window.lib.direct(window.m.contacts()[0].account)).map((x) => x.text),
  }));
  assert.equal(woke.wakes.length, 1, JSON.stringify(woke.wakes));
  assert.equal(woke.wakes[0].messages, 1, JSON.stringify(woke.wakes[0]));
  assert.equal(woke.wakes[0].complete, true);
  assert.equal(woke.wakes[0].conversations.length, 1);
  assert.deepEqual(woke.history, ["wake up, it is push o'clock"]);
  // The page was visible: no notification was needed.
  const shown = await bob.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications()).length);
  assert.equal(shown, 0);

  // A second push (a duplicate): the page wakes, finds nothing new, processes nothing twice.
  await cdp.send("ServiceWorker.deliverPushMessage", { origin: webUrl, registrationId, data: '{"type":"wake"}' });
  await bob.waitForFunction(() => window.wakes.length >= 2, null, { timeout: 30_000 });
  const second = await bob.evaluate(() => window.wakes[1]);
  assert.equal(second.messages, 0, JSON.stringify(second));
  assert.equal(second.envelopes, 0, JSON.stringify(second));

  // With no page of the demo open, the worker shows the generic notification, no content.
  await bob.goto("about:blank");
  await cdp.send("ServiceWorker.deliverPushMessage", { origin: webUrl, registrationId, data: '{"type":"wake"}' });
  const viewer = await context.newPage();
  await viewer.goto(`${webUrl}/push-blank`);
  const notes = await viewer.evaluate(async () => {
    const reg = await navigator.serviceWorker.ready;
    for (let i = 0; i < 50; i++) {
      const n = await reg.getNotifications();
      if (n.length) return n.map((x) => ({ title: x.title, body: x.body, tag: x.tag, data: x.data }));
      await new Promise((r) => setTimeout(r, 100));
    }
    return [];
  });
  assert.deepEqual(notes, [{ title: "Haven", body: "New message", tag: "haven-wake", data: null }]);

  // Bad input from the page is refused by the SDK before anything is sent.
  const refused = await viewer.evaluate(async () => {
    const wasm = await import("/pkg/haven_wasm.js");
    await wasm.default();
    const out = [];
    for (const args of [["http://plain.example/x", "BAAA", "AAAA"], ["https://p.example/x", "not base64!", "AAAA"]]) {
      try { wasm.pushWebPushRequest(...args); out.push("accepted"); } catch (e) { out.push(e.code); }
    }
    try { wasm.pushGatewayRequest("bad app", "k"); out.push("accepted"); } catch (e) { out.push(e.code); }
    try { wasm.pushEndpointPath("../../v1/account"); out.push("accepted"); } catch (e) { out.push(e.code); }
    return out;
  });
  assert.deepEqual(refused, ["invalid_argument", "invalid_argument", "invalid_argument", "invalid_argument"]);
  await context.close();
});
