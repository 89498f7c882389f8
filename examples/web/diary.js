// The diary page: sign in to the relay, create or unlock the account's diary, write entries;
// every change syncs through the relay's vault (HavenDiary over the wasm WebSyncedDiary, the
// client core's diary), so the account's other devices and browsers see the same entries. A
// diary this browser once kept alone (the earlier page, IndexedDB only) is imported into the
// synced one when its passphrase is the same.
import init, * as wasm from "/pkg/haven_wasm.js";
import { HavenClient, HavenDiary, DIARY_KDF } from "/js/haven-client.js";
import { idbDelete, idbGet, idbPut } from "./idb.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$("relay").value = params.get("relay") ?? "http://127.0.0.1:8080";
/** How often an unlocked page pulls the other devices' changes. */
const SYNC_EVERY_MS = 2000;

let client = null;
let diary = null;
let syncing = null;
let syncTimer = null;

function showError(e) { $("error").textContent = e ? `${e.name ?? "Error"} ${e.code ?? ""}: ${e.message}` : ""; }
function setStatus(s) { $("status").textContent = s; }
function setState(s) { document.body.dataset.state = s; }

function pageKey() {
  // This tab's key for the sealed state in IndexedDB (sessionStorage only).
  let hex = sessionStorage.getItem("haven-diary-page-key");
  if (!hex) {
    hex = Array.from(wasm.generatePageKey(), (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem("haven-diary-page-key", hex);
  }
  return Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
}

const persistDevice = async (device) => idbPut("diary-device", device.exportState(pageKey()));
const persistDiary = async (state) => idbPut("diary-state", state);

function render() {
  const query = $("search").value.trim();
  const rows = query ? diary.search(query) : diary.list();
  $("entries").replaceChildren(...rows.map(({ itemId, pending, entry }) => {
    const div = document.createElement("div");
    div.className = "entry";
    div.dataset.id = itemId;
    const h = document.createElement("h3");
    h.textContent = entry.title || "(untitled)";
    const meta = document.createElement("small");
    meta.textContent = `${new Date(entry.createdMs).toISOString()}${entry.mood ? " · " + entry.mood : ""}`
      + (pending ? " · not synced yet" : "");
    const p = document.createElement("p");
    p.className = "entry-body";
    p.textContent = entry.body;
    const del = document.createElement("button");
    del.type = "button";
    del.className = "delete";
    del.textContent = "delete";
    del.onclick = () => guard(() => serial(async () => { await diary.delete(itemId); render(); }));
    div.append(h, meta, p, del);
    return div;
  }));
}

async function guard(fn) {
  showError(null);
  try { await fn(); } catch (e) { showError(e); }
}

/** The diary's exchanges with the relay, one at a time (a sync runs every few seconds). */
let queue = Promise.resolve();
function serial(fn) {
  const run = queue.then(fn, fn);
  queue = run.catch(() => {});
  return run;
}

/** A sync; the page shows what it did. */
async function sync() {
  if (!diary?.isUnlocked()) return;
  if (!syncing) {
    syncing = serial(async () => {
      const r = await diary.sync();
      setStatus(`synced (${r.pulled} in, ${r.pushed} out${r.pending ? `, ${r.pending} pending` : ""})`);
      render();
    }).finally(() => { syncing = null; });
  }
  return syncing;
}

/** Entries the earlier, browser-only page kept: imported when their passphrase is the same. */
async function importBrowserOnly(passphrase) {
  const record = await idbGet("diary-record");
  if (!record) return 0;
  let old;
  try {
    old = await wasm.WebDiary.unlock(record, passphrase);
  } catch (e) {
    if (e.code === "wrong_password") return 0; // another passphrase: left as it is
    throw e;
  }
  const sealed = (await idbGet("diary-entries")) ?? [];
  for (const s of sealed) {
    await diary.write(old.decryptEntry(s.itemId, s.revision, s.body, s.meta));
  }
  old.close();
  await idbDelete("diary-entries");
  await idbDelete("diary-record");
  return sealed.length;
}

async function unlocked(passphrase) {
  const imported = await importBrowserOnly(passphrase);
  $("lock-form").hidden = true;
  $("editor").hidden = false;
  setState("unlocked");
  render();
  await sync();
  if (imported) setStatus(`imported ${imported} entries kept in this browser only`);
  syncTimer ??= setInterval(() => sync().catch(showError), SYNC_EVERY_MS);
}

async function signedIn(c, state) {
  client = c;
  $("auth").hidden = true;
  $("approve-form").hidden = false;
  $("me").textContent = `${sessionStorage.getItem("haven-username") ?? "?"} (${client.accountId()})`;
  diary = await HavenDiary.open(client, { pageKey: pageKey(), state, persist: persistDiary });
  $("lock-form").hidden = false;
  setStatus("locked");
  setState("locked");
}

/** Registers a new account, or links this browser to one (a device of it approves the code). */
async function auth(kind) {
  showError(null);
  setStatus(kind === "register" ? "registering…" : "linking…");
  try {
    let c;
    if (kind === "register") {
      c = await HavenClient.register(wasm, $("relay").value, $("username").value, $("password").value, persistDevice);
    } else {
      const pending = await HavenClient.startLink(wasm, $("relay").value, persistDevice);
      $("link-code").textContent = pending.code;
      $("link-pane").hidden = false;
      c = await pending.finish(10 * 60_000);
      $("link-pane").hidden = true;
    }
    sessionStorage.setItem("haven-username", $("username").value);
    await idbDelete("diary-state");
    await signedIn(c);
  } catch (e) {
    setStatus("signed out");
    showError(e);
  }
}

$("register").onclick = () => auth("register");
$("link").onclick = () => auth("link");

$("approve-form").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    await client.approveLink($("approve-code").value);
    $("approve-code").value = "";
    setStatus("device approved");
  });
};

$("lock-form").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    setStatus("unlocking…");
    try {
      await diary.unlock($("passphrase").value);
    } catch (e) {
      setStatus(e.code === "not_found" ? "no diary yet: create one" : "locked");
      throw e;
    }
    await unlocked($("passphrase").value);
  });
};

$("create").onclick = () => guard(async () => {
  setStatus("creating…");
  let codes;
  try {
    codes = await diary.create($("passphrase").value, DIARY_KDF);
  } catch (e) {
    setStatus("locked");
    throw e;
  }
  $("codes").replaceChildren(...codes.map((code) => {
    const li = document.createElement("li");
    li.textContent = code;
    return li;
  }));
  $("codes-box").hidden = false;
  await unlocked($("passphrase").value);
});

$("editor").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    const now = Date.now();
    await diary.write({ title: $("title").value, body: $("body").value, mood: $("mood").value || null,
                        tags: [], createdMs: now, updatedMs: now });
    $("title").value = $("body").value = $("mood").value = "";
    render();
    await sync();
    setStatus(`saved ${diary.list().length}`);
  });
};

$("sync").onclick = () => guard(sync);
$("search").oninput = () => render();

await init();
const device = await idbGet("diary-device");
if (device && sessionStorage.getItem("haven-diary-page-key")) {
  try {
    const c = await HavenClient.resume(wasm, $("relay").value, pageKey(), device, persistDevice);
    await signedIn(c, await idbGet("diary-state"));
  } catch (e) {
    showError(e);
    $("auth").hidden = false;
    setState("signed-out");
  }
} else {
  $("auth").hidden = false;
  setState("signed-out");
}
