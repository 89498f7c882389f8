// Every committed SDK test vector (sdk/vectors/*.json) recomputed through the wasm build:
// `computeTestVector(name)` runs the SDK's own vector builders compiled to wasm32, and the
// parsed JSON must equal the committed file's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = process.env.HAVEN_NODE_PKG;
assert.ok(pkg, "HAVEN_NODE_PKG must name the wasm-bindgen --target nodejs output");
const wasm = createRequire(import.meta.url)(resolve(pkg, "haven_wasm.js"));
const vectorsDir = join(dirname(fileURLToPath(import.meta.url)), "../../../../sdk/vectors");

test("the wasm build knows every committed vector file", () => {
  const files = readdirSync(vectorsDir).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort();
  assert.deepEqual([...wasm.testVectorNames()].sort(), files);
});

for (const name of wasm.testVectorNames()) {
  test(`vector ${name} recomputed in wasm equals sdk/vectors/${name}.json`, () => {
    const text = readFileSync(join(vectorsDir, `${name}.json`), "utf8");
    const computed = wasm.computeTestVector(name);
    assert.deepEqual(JSON.parse(computed), JSON.parse(text));
    assert.equal(computed, text, "same JSON, and the same text byte for byte");
  });
}

test("an unknown vector name is a typed error", () => {
  assert.throws(() => wasm.computeTestVector("no-such-vector"),
    (e) => e.name === "HavenError" && e.code === "invalid_argument");
});
