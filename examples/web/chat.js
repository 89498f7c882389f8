// Two-pane chat: account on the left, one conversation on the right.
import init, * as wasm from "/pkg/haven_wasm.js";
import { HavenClient } from "/js/haven-client.js";
import { idbGet, idbPut } from "./idb.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$("relay").value = params.get("relay") ?? "http://127.0.0.1:8080";
let client = null;
const names = new Map(); // account id -> username, for the contacts this page looked up

function setStatus(s) { $("status").textContent = s; }
function showError(e) { $("error").textContent = e ? `${e.name ?? "Error"} ${e.code ?? ""}: ${e.message}` : ""; }

function pageKey() {
  // The page's state key lives only in this tab (sessionStorage); the state itself, encrypted
  // under it by the wasm module, is in IndexedDB.
  let hex = sessionStorage.getItem("haven-page-key");
  if (!hex) {
    hex = Array.from(wasm.generatePageKey(), (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem("haven-page-key", hex);
  }
  return Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
}

const persist = async (device) => idbPut("chat-state", device.exportState(pageKey()));

function append(direction, who, text) {
  const li = document.createElement("li");
  li.className = direction;
  li.textContent = direction === "out" ? text : `${who}: ${text}`;
  $("log").append(li);
  li.scrollIntoView();
}

async function onOpened(o) {
  if (o.status === "message" && o.content.kind === "text") {
    if (o.content.outgoing) {
      // A copy of what this account sent from another of its devices.
      append("out", "me", o.content.text);
      return;
    }
    const from = names.get(o.sender.accountId) ?? o.sender.accountId.slice(0, 8);
    append("in", from, o.content.text);
  }
}

async function start(c) {
  client = c;
  $("me").textContent = `${$("username").value || "?"} (${client.accountId()})`;
  await client.connect(onOpened, (s) => setStatus(s === "open" ? "connected" : s));
  document.body.dataset.state = "ready";
}

async function auth(kind) {
  showError(null);
  setStatus(kind === "register" ? "registering…" : "logging in…");
  try {
    const make = kind === "register" ? HavenClient.register : HavenClient.login;
    await start(await make(wasm, $("relay").value, $("username").value, $("password").value, persist));
    sessionStorage.setItem("haven-username", $("username").value);
  } catch (e) {
    setStatus("signed out");
    showError(e);
  }
}

$("register").onclick = () => auth("register");
$("login").onclick = () => auth("login");
$("compose").onsubmit = async (ev) => {
  ev.preventDefault();
  showError(null);
  const text = $("text").value;
  if (!client || !text) return;
  try {
    const to = $("to").value.trim();
    const account = await client.lookup(to);
    names.set(account, to);
    await client.sendText(account, text);
    append("out", "me", text);
    $("text").value = "";
  } catch (e) {
    showError(e);
  }
};

await init();
const saved = await idbGet("chat-state");
if (saved && sessionStorage.getItem("haven-page-key")) {
  try {
    $("username").value = sessionStorage.getItem("haven-username") ?? "";
    await start(await HavenClient.resume(wasm, $("relay").value, pageKey(), saved, persist));
  } catch (e) {
    showError(e);
    document.body.dataset.state = "signed-out";
  }
} else {
  document.body.dataset.state = "signed-out";
}
