// The diary page: create or unlock, write entries, read them back from IndexedDB.
import init, * as wasm from "/pkg/haven_wasm.js";
import { idbGet, idbPut } from "./idb.js";

const $ = (id) => document.getElementById(id);
// Argon2id cost for the demo: the protocol's floor (19 MiB, 2 passes), to keep tests quick.
// Real apps use the SDK default (64 MiB, 3 passes) or calibrate.
const KDF_KIB = 19456, KDF_PASSES = 2;
let diary = null;

function showError(e) { $("error").textContent = e ? `${e.name ?? "Error"} ${e.code ?? ""}: ${e.message}` : ""; }

function render(entry) {
  const div = document.createElement("div");
  div.className = "entry";
  const h = document.createElement("h3");
  h.textContent = entry.title || "(untitled)";
  const meta = document.createElement("small");
  meta.textContent = `${new Date(entry.createdMs).toISOString()}${entry.mood ? " · " + entry.mood : ""}`;
  const p = document.createElement("p");
  p.className = "entry-body";
  p.textContent = entry.body;
  div.append(h, meta, p);
  $("entries").append(div);
}

async function opened() {
  $("create-form").hidden = true;
  $("unlock-form").hidden = true;
  $("editor").hidden = false;
  $("status").textContent = "unlocked";
  $("entries").replaceChildren();
  for (const s of (await idbGet("diary-entries")) ?? []) {
    render(diary.decryptEntry(s.itemId, s.revision, s.body, s.meta));
  }
  document.body.dataset.state = "unlocked";
}

$("create-form").onsubmit = async (ev) => {
  ev.preventDefault();
  showError(null);
  try {
    $("status").textContent = "creating…";
    diary = await wasm.WebDiary.create($("new-passphrase").value, KDF_KIB, KDF_PASSES);
    await idbPut("diary-record", diary.record());
    await idbPut("diary-entries", []);
    for (const code of diary.takeRecoveryCodes()) {
      const li = document.createElement("li");
      li.textContent = code;
      $("codes").append(li);
    }
    $("codes-box").hidden = false;
    await opened();
  } catch (e) { showError(e); }
};

$("unlock-form").onsubmit = async (ev) => {
  ev.preventDefault();
  showError(null);
  try {
    $("status").textContent = "unlocking…";
    diary = await wasm.WebDiary.unlock(await idbGet("diary-record"), $("passphrase").value);
    await opened();
  } catch (e) {
    $("status").textContent = "locked";
    showError(e);
  }
};

$("editor").onsubmit = async (ev) => {
  ev.preventDefault();
  showError(null);
  try {
    const now = Date.now();
    const entry = { title: $("title").value, body: $("body").value, mood: $("mood").value || null,
                    tags: [], createdMs: now, updatedMs: now };
    const sealed = diary.encryptEntry(entry, undefined, 1);
    const all = (await idbGet("diary-entries")) ?? [];
    all.push(sealed);
    await idbPut("diary-entries", all);
    render(entry);
    $("title").value = $("body").value = $("mood").value = "";
    $("status").textContent = `saved ${all.length}`;
  } catch (e) { showError(e); }
};

await init();
if (await idbGet("diary-record")) {
  $("unlock-form").hidden = false;
} else {
  $("create-form").hidden = false;
}
document.body.dataset.state = "locked";
