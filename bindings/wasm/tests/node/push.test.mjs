// Push through the built package (wasm-bindgen --target nodejs): the bodies registering a Web
// Push subscription or a gateway key, byte for byte the relay's format (PROTOCOL §18), every
// malformed value refused with `invalid_argument` (so nothing is sent), the removal path only for
// an id, and a wake-up's count on a fresh messenger (nothing processed, nothing due).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { webcrypto } from "node:crypto";

const pkg = process.env.HAVEN_NODE_PKG;
assert.ok(pkg, "HAVEN_NODE_PKG must name the wasm-bindgen --target nodejs output");
const wasm = createRequire(import.meta.url)(resolve(pkg, "haven_wasm.js"));

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");

function throwsCode(fn, code) {
  assert.throws(fn, (e) => {
    assert.equal(e.name, "HavenError", e.message);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test("a browser subscription becomes the relay's web_push body", async () => {
  const pair = await webcrypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const raw = new Uint8Array(await webcrypto.subtle.exportKey("raw", pair.publicKey));
  const p256dh = b64url(raw);
  const auth = b64url(webcrypto.getRandomValues(new Uint8Array(16)));
  const body = JSON.parse(wasm.pushWebPushRequest("https://push.example.test/abc", p256dh, auth));
  assert.deepEqual(body, { kind: "web_push", endpoint: "https://push.example.test/abc", p256dh, auth });
  // Padding (as some browsers give it) is accepted and dropped.
  const padded = JSON.parse(wasm.pushWebPushRequest("https://push.example.test/abc", `${p256dh}=`, `${auth}==`));
  assert.deepEqual(padded, body);

  const bad = [
    ["http://push.example.test/abc", p256dh, auth],
    ["https://", p256dh, auth],
    [`https://${"a".repeat(2048)}`, p256dh, auth],
    ["https://push.example.test/abc", b64url(new Uint8Array(65).fill(2)), auth],
    ["https://push.example.test/abc", b64url(raw.slice(0, 64)), auth],
    ["https://push.example.test/abc", "not base64!", auth],
    ["https://push.example.test/abc", p256dh, b64url(new Uint8Array(15))],
    ["https://push.example.test/abc", undefined, auth],
    [42, p256dh, auth],
  ];
  for (const args of bad) throwsCode(() => wasm.pushWebPushRequest(...args), "invalid_argument");
});

test("a gateway key becomes the relay's gateway body; bad ones are refused", () => {
  assert.deepEqual(JSON.parse(wasm.pushGatewayRequest("com.example.chat", "apns-token")),
    { kind: "gateway", app_id: "com.example.chat", pushkey: "apns-token" });
  for (const [appId, key] of [["", "k"], ["a b", "k"], ["a".repeat(65), "k"], ["app", ""], ["app", "a\nb"], ["app", "k".repeat(513)], [null, "k"]]) {
    throwsCode(() => wasm.pushGatewayRequest(appId, key), "invalid_argument");
  }
  const id = b64url(new Uint8Array(16).fill(0xfb));
  assert.equal(wasm.pushEndpointPath(id), `/v1/push/endpoints/${id}`);
  for (const bad of ["../../v1/account", "", `${id}==`, b64url(new Uint8Array(15)), "0123456789abcdef0123456789abcdef"]) {
    throwsCode(() => wasm.pushEndpointPath(bad), "invalid_argument");
  }
  assert.equal(wasm.wakeBudgetMs(), 25_000);
});

test("a wake-up on a messenger with nothing waiting counts nothing", async () => {
  const d = await wasm.WebDevice.create();
  const m = await wasm.WebMessenger.create(d);
  m.beginWake();
  const summary = m.endWake(true, Date.now());
  assert.deepEqual(summary, { envelopes: 0, messages: 0, conversations: [], complete: true, nextTaskDueMs: null });
  // Ending without a beginning is an empty count, not an error.
  assert.equal(m.endWake(false, Date.now()).complete, false);
  throwsCode(() => m.endWake(true, -1), "invalid_argument");
  m.close();
  throwsCode(() => m.beginWake(), "closed");
});
