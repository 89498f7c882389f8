// Attachments and the synced diary through the built package (wasm-bindgen --target nodejs):
// a 5 MiB file encrypted (WebUpload) and decrypted (WebDownload) as streams, with the wasm
// module's memory measured over the whole run and held to a bound far below the file's size;
// every bad input a HavenError with a stable code.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { createHash } from "node:crypto";

const pkg = process.env.HAVEN_NODE_PKG;
assert.ok(pkg, "HAVEN_NODE_PKG must name the wasm-bindgen --target nodejs output");

// The package instantiates its module with `new WebAssembly.Instance`; keep a handle on the
// instance's memory to measure it (linear memory only grows: its size at the end is the peak).
let memory = null;
const Instance = WebAssembly.Instance;
WebAssembly.Instance = function (module, imports) {
  const instance = new Instance(module, imports);
  memory ??= instance.exports.memory;
  return instance;
};
const wasm = createRequire(import.meta.url)(resolve(pkg, "haven_wasm.js"));
WebAssembly.Instance = Instance;
assert.ok(memory instanceof WebAssembly.Memory, "the wasm module's memory");

const MiB = 1024 * 1024;
const SLICE = 64 * 1024;

function throwsCode(fn, code) {
  assert.throws(fn, (e) => {
    assert.equal(e.name, "HavenError", e.message);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

async function rejectsCode(promise, code) {
  await assert.rejects(promise, (e) => e.name === "HavenError" && e.code === code);
}

const blobInfo = (id, size, partSize, state = "pending", received = []) => JSON.stringify({
  blob_id: id, size, part_size: partSize, part_count: Math.max(1, Math.ceil(size / partSize)),
  state, created_at: 0, expires_at: 0, parts_received: received,
});

/** The plaintext, generated 64 KiB at a time (the test itself holds no whole copy). */
function* source(size, seed) {
  for (let at = 0; at < size; at += SLICE) {
    const n = Math.min(SLICE, size - at);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = (at + i) * seed % 251;
    yield out;
  }
}

/**
 * Uploads `size` bytes through a WebUpload as the page does (relay answers made up), keeping
 * only each part's SHA-256 and the ciphertext in parts; returns the pointer and the blob parts.
 */
async function encrypt(size, partSize) {
  const up = await wasm.WebUpload.start(size);
  const { size: blobSize } = JSON.parse(up.createBody());
  const id = "ab".repeat(16);
  up.created(blobInfo(id, blobSize, partSize));
  const plan = up.plan(blobInfo(id, blobSize, partSize));
  assert.equal(plan.blobSize, blobSize);
  const parts = [];
  let current = [];
  const take = (pieces) => {
    for (const p of pieces) {
      current.push(p.bytes);
      if (p.endsPart) {
        parts.push(Buffer.concat(current));
        current = [];
      }
    }
  };
  let progress = 0;
  for (const chunk of source(size, 7)) take(up.push(chunk));
  for (let pieces; (pieces = up.nextTail()) !== null;) take(pieces);
  progress = up.progress();
  assert.equal(progress.done, blobSize);
  const pointer = up.pointer("application/octet-stream", "big.bin");
  up.close();
  return { pointer, parts, blobSize };
}

/** Decrypts the blob parts through a WebDownload 64 KiB at a time; the plaintext's SHA-256. */
async function decrypt(pointer, parts, blobSize) {
  const down = await wasm.WebDownload.start(pointer);
  down.located(JSON.stringify({ url: "/v1/blob-data/x?token=t", size: blobSize, expires_at: 0 }));
  const hash = createHash("sha256");
  let plain = 0;
  for (const part of parts) {
    for (let at = 0; at < part.length; at += SLICE) {
      const out = down.push(part.subarray(at, at + SLICE));
      plain += out.length;
      hash.update(out);
    }
  }
  const last = down.finish();
  plain += last.length;
  hash.update(last);
  down.close();
  return { plain, digest: hash.digest("hex") };
}

test("a 5 MiB file through WebUpload and WebDownload in constant memory", async () => {
  // Warm up: the allocator's first pages, the stream cipher's buffers.
  const small = await encrypt(300_000, 8 * MiB);
  await decrypt(small.pointer, small.parts, small.blobSize);
  const before = memory.buffer.byteLength;

  const size = 5 * MiB;
  const { pointer, parts, blobSize } = await encrypt(size, 2 * MiB);
  assert.equal(parts.length, Math.ceil(blobSize / (2 * MiB)));
  const info = wasm.describeAttachment(pointer);
  assert.equal(info.size, size);
  assert.equal(info.fileName, "big.bin");
  assert.equal(info.thumbnail, null);
  const { plain, digest } = await decrypt(pointer, parts, blobSize);
  assert.equal(plain, size);
  const expected = createHash("sha256");
  for (const chunk of source(size, 7)) expected.update(chunk);
  assert.equal(digest, expected.digest("hex"));

  const after = memory.buffer.byteLength;
  const grown = after - before;
  console.log(`wasm memory: ${(before / MiB).toFixed(2)} MiB before, ${(after / MiB).toFixed(2)} MiB after a 5 MiB round trip (grew ${(grown / 1024).toFixed(0)} KiB)`);
  // Constant memory: the module holds at most two 64 KiB chunks per stream (plus what one call
  // returns), so a 5 MiB file must not grow it by more than 1 MiB.
  assert.ok(grown <= 1 * MiB, `wasm memory grew by ${grown} bytes`);

  // A flipped byte, or another digest, fails the download.
  const bad = parts.map((p) => Buffer.from(p));
  bad[1][1234] ^= 1;
  await assert.rejects(decrypt(pointer, bad, blobSize), (e) => e.code === "decryption_failed");
  const wrongDigest = Uint8Array.from(pointer);
  wrongDigest[49] ^= 1;
  await assert.rejects(decrypt(wrongDigest, parts, blobSize), (e) => e.code === "decryption_failed");
});

test("attachments: bad input is typed", async () => {
  await rejectsCode(wasm.WebUpload.start(-1), "invalid_argument");
  await rejectsCode(wasm.WebUpload.start("5"), "invalid_argument");
  await rejectsCode(wasm.WebUpload.start(2 ** 52), "limit");
  await rejectsCode(wasm.WebUpload.resume(new Uint8Array(3)), "malformed");
  const up = await wasm.WebUpload.start(1000);
  throwsCode(() => up.push(new Uint8Array(4)), "invalid_state");
  throwsCode(() => up.statusPath(), "invalid_state");
  throwsCode(() => up.created("not json"), "invalid_response");
  throwsCode(() => up.createBody("x"), "invalid_argument");
  const { size } = JSON.parse(up.createBody(60));
  throwsCode(() => up.created(blobInfo("cd".repeat(16), size + 16, 8 * MiB)), "invalid_response");
  up.created(blobInfo("cd".repeat(16), size, 8 * MiB));
  throwsCode(() => up.plan(blobInfo("cd".repeat(16), size, 0)), "invalid_response");
  up.plan(blobInfo("cd".repeat(16), size, 8 * MiB));
  throwsCode(() => up.push("text"), "invalid_argument");
  throwsCode(() => up.push(new Uint8Array(1001)), "invalid_argument");
  throwsCode(() => up.nextTail(), "decryption_failed");
  throwsCode(() => up.partTarget(0, "{}"), "invalid_response");
  throwsCode(() => up.pointer("text/plain"), "invalid_state");
  throwsCode(() => up.pointer("bad\ntype"), "invalid_argument");
  assert.equal(up.partEtag(null, '{"part":0,"etag":"e0"}'), "e0");
  assert.equal(up.partEtag('"s3"', ""), '"s3"');
  throwsCode(() => up.partEtag(null, "<xml>"), "invalid_response");
  const state = up.resumeState();
  assert.equal(state.length, 57);
  const resumed = await wasm.WebUpload.resume(state);
  assert.equal(resumed.blobId(), "cd".repeat(16));
  resumed.close();
  up.close();
  throwsCode(() => up.blobId(), "closed");

  await rejectsCode(wasm.WebDownload.start(new Uint8Array(10)), "malformed");
  await rejectsCode(wasm.WebDownload.start("pointer"), "invalid_argument");
  throwsCode(() => wasm.describeAttachment(new Uint8Array(2)), "malformed");
  const { pointer } = await encrypt(1000, 8 * MiB);
  const down = await wasm.WebDownload.start(pointer);
  throwsCode(() => down.push(new Uint8Array(3)), "invalid_state");
  throwsCode(() => down.located('{"url":"/x","size":1,"expires_at":0}'), "invalid_response");
  throwsCode(() => down.finish(), "invalid_state");
  down.close();
  throwsCode(() => down.path(), "closed");
});

test("synced diary: steps out of order and bad input are typed; state across an export", async () => {
  const key = wasm.generatePageKey();
  const d = await wasm.WebSyncedDiary.create();
  throwsCode(() => d.write({ title: "x" }), "invalid_state");
  throwsCode(() => d.beginSync(), "invalid_state");
  throwsCode(() => d.nextRequest(), "invalid_state");
  throwsCode(() => d.answer(200, "{}"), "invalid_state");
  throwsCode(() => d.beginCreate("pw", 8, 1), "limit");
  throwsCode(() => d.beginCreate("", 19456, 2), "invalid_argument");
  throwsCode(() => d.beginCreate(42, 19456, 2), "invalid_argument");
  throwsCode(() => d.exportState(new Uint8Array(31)), "invalid_key_length");

  d.beginCreate("diary pass phrase", 19456, 2);
  const put = d.nextRequest();
  assert.equal(put.method, "PUT");
  assert.match(put.path, /^\/v1\/vault\/0{32}\/items\/0{32}$/);
  throwsCode(() => d.answer("200", "{}"), "invalid_argument");
  throwsCode(() => d.answer(70000, "{}"), "invalid_argument");
  d.answer(200, JSON.stringify({ item_id: "00".repeat(16), revision: 1, deleted: false, sync_token: 1, created_at: 0, updated_at: 0 }));
  assert.equal(d.nextRequest(), null);
  assert.equal(d.finish().recoveryCodes.length, 10);
  assert.equal(d.isUnlocked(), true);

  const id = d.write({ title: "Sunday", body: "harbour walk", tags: ["sea"], createdMs: 1, updatedMs: 1 });
  throwsCode(() => d.write("not an object"), "invalid_argument");
  throwsCode(() => d.write({ title: "x", unknown: 1 }), "invalid_argument");
  throwsCode(() => d.write({ title: "t".repeat(2000) }), "limit");
  throwsCode(() => d.edit("nope", { title: "x" }), "invalid_argument");
  throwsCode(() => d.edit("ef".repeat(16), { title: "x" }), "not_found");
  throwsCode(() => d.beginDelete("nope"), "invalid_argument");
  throwsCode(() => d.beginRestore(id), "invalid_state");
  throwsCode(() => d.list({ nope: 1 }), "invalid_argument");
  assert.equal(d.search("harb")[0].itemId, id);
  assert.equal(d.show(id).pending, true);
  assert.equal(d.show("ef".repeat(16)), null);

  d.beginSync();
  const req = d.nextRequest();
  assert.equal(req.method, "PUT");
  throwsCode(() => d.nextRequest(), "invalid_state");
  throwsCode(() => d.beginSync(), "invalid_state");
  throwsCode(() => d.answer(507, JSON.stringify({ error: { code: "vault_byte_quota_exceeded", message: "full" } })), "refused");

  const state = d.exportState(key);
  d.close();
  throwsCode(() => d.isUnlocked(), "closed");
  await rejectsCode(wasm.WebSyncedDiary.importState(wasm.generatePageKey(), state), "decryption_failed");
  await rejectsCode(wasm.WebSyncedDiary.importState(key, state.subarray(0, 20)), "malformed");
  const again = await wasm.WebSyncedDiary.importState(key, state);
  again.beginUnlock("diary pass phrase");
  assert.equal(again.nextRequest(), null);
  again.finish();
  assert.equal(again.list().length, 1);
  assert.equal(again.show(id).entry.body, "harbour walk");
  again.lock();
  throwsCode(() => again.list(), "invalid_state");
  again.close();
});
