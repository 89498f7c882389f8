// Errors across the JS boundary of the built package (wasm-bindgen --target nodejs): every bad
// input gives a HavenError with a stable code; the module keeps working afterwards (no trap).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const pkg = process.env.HAVEN_NODE_PKG;
assert.ok(pkg, "HAVEN_NODE_PKG must name the wasm-bindgen --target nodejs output");
const wasm = createRequire(import.meta.url)(resolve(pkg, "haven_wasm.js"));

function throwsCode(fn, code) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.name, "HavenError");
    assert.equal(e.code, code, e.message);
    return true;
  });
}

async function rejectsCode(promise, code) {
  await assert.rejects(promise, (e) => e instanceof Error && e.name === "HavenError" && e.code === code);
}

test("device: ids, key lengths, malformed bytes, wrong types, closed", async () => {
  const d = await wasm.WebDevice.create();
  const key = wasm.generatePageKey();
  assert.equal(key.length, 32);
  throwsCode(() => d.exportState(new Uint8Array(31)), "invalid_key_length");
  throwsCode(() => d.exportState("abc"), "invalid_argument");
  throwsCode(() => d.exportState(null), "invalid_argument");
  throwsCode(() => d.claimPaths("0123"), "invalid_argument");
  throwsCode(() => d.claimPaths(42), "invalid_argument");
  const messageId = "77".repeat(16);
  throwsCode(() => d.encryptPrepared(messageId, "00".repeat(16), "answers", 1), "invalid_argument");
  throwsCode(() => d.encryptPrepared("nope", "00".repeat(16), [], 1), "invalid_argument");
  throwsCode(() => d.encryptPrepared(messageId, "00".repeat(16), [], 1), "invalid_state");
  d.finishSend(messageId);
  throwsCode(() => d.confirmAccessKey(), "invalid_state");
  assert.match(d.prepareAccessKey(), /access_key/);
  throwsCode(() => d.finishSend(7), "invalid_argument");
  throwsCode(() => d.ownDevicesDue(1), "invalid_state");
  throwsCode(() => d.setOwnDevices("[]"), "invalid_response");
  throwsCode(() => d.replenishKeys("{", 1), "invalid_response");
  throwsCode(() => d.prekeyUpload(Number.NaN), "invalid_argument");
  throwsCode(() => d.prekeyUpload(-5), "invalid_argument");
  throwsCode(() => d.prekeyUpload(1.5), "invalid_argument");
  throwsCode(() => d.setSession("not json"), "invalid_response");
  throwsCode(() => d.setRelayKey('{"public_key": 7}'), "invalid_response");
  throwsCode(() => d.accountId(), "invalid_state");
  throwsCode(() => d.loginFinish("pw", '{"credential_response":"AAAA"}'), "invalid_response");
  await rejectsCode(wasm.WebDevice.importState(key, new Uint8Array([1, 2, 3])), "malformed");
  await rejectsCode(wasm.WebDevice.importState(new Uint8Array(3), new Uint8Array(80)), "invalid_key_length");
  const state = d.exportState(key);
  const tampered = state.slice();
  tampered[tampered.length - 1] ^= 1;
  await rejectsCode(wasm.WebDevice.importState(key, tampered), "decryption_failed");
  const again = await wasm.WebDevice.importState(key, state);
  assert.equal(again.identityKey(), d.identityKey());
  d.close();
  throwsCode(() => d.identityKey(), "closed");
  throwsCode(() => d.registerStart("pw"), "closed");
  // Still alive after all of that.
  const fresh = await wasm.WebDevice.create();
  assert.match(fresh.registerStart("pw"), /registration_request/);
});

test("messenger: conversations, ids, wrong types, handles, relay answers, closed", async () => {
  const d = await wasm.WebDevice.create();
  const m = await wasm.WebMessenger.create(d);
  const bob = "b0".repeat(16);
  const conv = { kind: "direct", id: bob };
  assert.match(m.channelRequest(), /ttl_secs/);
  for (const bad of ["direct", null, undefined, 7, { kind: "channel", id: bob }, { kind: "direct", id: "B0" },
    { kind: "direct" }, { kind: "group", id: 5 }]) {
    throwsCode(() => m.history(bad, 1), "invalid_argument");
  }
  throwsCode(() => m.addContact(1), "invalid_argument");
  throwsCode(() => m.addContact("xyz"), "invalid_argument");
  throwsCode(() => m.addContact(bob, 2), "invalid_argument");
  throwsCode(() => m.sendText(conv, 1, 1), "invalid_argument");
  throwsCode(() => m.sendText(conv, "x", -1), "invalid_argument");
  throwsCode(() => m.sendText(conv, "x", 1, "pointer"), "invalid_argument");
  throwsCode(() => m.typing(conv, "yes", 1), "invalid_argument");
  throwsCode(() => m.markRead(conv, bob, 1), "invalid_argument");
  throwsCode(() => m.markRead(conv, ["zz"], 1), "invalid_argument");
  throwsCode(() => m.react(conv, "nope", "👍", false, 1), "invalid_argument");
  throwsCode(() => m.actionDone(bob, "ok"), "invalid_argument");
  throwsCode(() => m.receiveEnvelope("x", "AAAA", false, 1), "invalid_argument");
  throwsCode(() => m.receiveChannelEntry(bob, 1.5, "AAAA", 1), "invalid_argument");
  throwsCode(() => m.acceptIdentity(bob, -1, "AAAA"), "invalid_argument");
  throwsCode(() => m.subscribeFrames("g"), "invalid_argument");
  throwsCode(() => m.createGroup("g", "members", "{}", 1), "invalid_argument");
  // Not logged in; unknown handles; relay answers of the wrong shape.
  throwsCode(() => m.sendText(conv, "x", 1), "invalid_state");
  throwsCode(() => m.cardFor(bob, 1), "invalid_state");
  throwsCode(() => m.actionDone(bob, true), "invalid_state");
  throwsCode(() => m.followUp(bob, 1), "invalid_state");
  throwsCode(() => m.taskDone(bob), "invalid_state");
  // An added member starts a new epoch: the answer is a new channel's, not an append's.
  throwsCode(() => m.addMemberPosted(bob, '{"seq":1}', 1), "invalid_response");
  throwsCode(() => m.addMemberPosted(bob, "{", 1), "invalid_response");
  throwsCode(() => m.removeMemberPosted(bob, "{}", 1), "invalid_response");
  throwsCode(() => m.createGroup("g", [], "[]", 1), "invalid_response");
  throwsCode(() => m.receiveChannelPage(bob, "{}", 1), "invalid_response");
  assert.deepEqual(m.contacts(), []);
  assert.deepEqual(m.groups(), []);
  assert.deepEqual(m.followUps(), []);
  assert.equal(m.nextTaskDueMs(Date.now()), null);
  assert.deepEqual(m.channelReads(), []);
  assert.deepEqual(m.subscribeFrames(), []);
  m.close();
  throwsCode(() => m.contacts(), "closed");
  const m2 = await wasm.WebMessenger.create(d);
  d.close();
  throwsCode(() => m2.groups(), "closed");
  await rejectsCode(wasm.WebMessenger.create(d), "closed");
  // Not a WebDevice at all: wasm-bindgen's own check refuses it before the module runs.
  assert.throws(() => wasm.WebMessenger.create({}), /WebDevice/);
});

test("frames and diary: malformed bytes, wrong passphrase, tampering", async () => {
  throwsCode(() => wasm.parseServerFrame(new Uint8Array([9, 9, 9])), "malformed");
  throwsCode(() => wasm.ackFrame(["XYZ"]), "invalid_argument");
  assert.deepEqual(wasm.parseServerFrame(new Uint8Array([1, 2])), { type: "queue_empty" });
  await rejectsCode(wasm.WebDiary.create("pw", 8, 1), "limit");
  const diary = await wasm.WebDiary.create("pass phrase", 19456, 2);
  const sealed = diary.encryptEntry({ title: "t", body: "b", tags: [], createdMs: 1, updatedMs: 1 }, undefined, 1);
  throwsCode(() => diary.encryptEntry({ title: 5 }, undefined, 1), "invalid_argument");
  throwsCode(() => diary.encryptEntry({}, "bad id", 1), "invalid_argument");
  await rejectsCode(wasm.WebDiary.unlock(diary.record(), "wrong"), "wrong_password");
  await rejectsCode(wasm.WebDiary.unlock(new Uint8Array(5), "pass phrase"), "malformed");
  const body = sealed.body.slice();
  body[0] ^= 1;
  throwsCode(() => diary.decryptEntry(sealed.itemId, 1, body, sealed.meta), "decryption_failed");
  assert.equal(diary.decryptEntry(sealed.itemId, 1, sealed.body, sealed.meta).body, "b");
  diary.close();
  throwsCode(() => diary.record(), "closed");
});
