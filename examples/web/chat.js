// The chat demo: account, contacts and groups on the left; one conversation on the right with
// receipts, typing, a reaction, edit and delete, a disappearing timer, safety numbers, group
// members. Every state change is the wasm messenger's (HavenMessenger drives it); this page
// only shows its history and events.
import init, * as wasm from "/pkg/haven_wasm.js";
import { HavenClient, HavenMessenger, direct, group } from "/js/haven-client.js";
import { idbGet, idbPut } from "./idb.js";
import { attachmentView, wireAttachForm } from "./attach.js";
import { describeWake, enablePush, onWake, pushSupported } from "./push.js";

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
};
const params = new URLSearchParams(location.search);
$("relay").value = params.get("relay") ?? "http://127.0.0.1:8080";

let client = null;
let messenger = null;
let current = null; // the open conversation {kind, id}
let editing = null; // the message id being edited
const readSent = new Set(); // incoming message ids this page sent a read receipt for
let typingSentAt = 0;
let typingTimer = null;

function setStatus(s) { $("status").textContent = s; }
function showError(e) {
  $("error").textContent = e ? `${e.name ?? "Error"} ${e.code ?? ""}: ${e.message}` : "";
}
async function guard(fn) {
  showError(null);
  try { await fn(); } catch (e) { showError(e); }
}

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

/** A person's name: the username a contact was added by, else the start of its id. */
function nameOf(account) {
  if (client && account === client.accountId()) return "me";
  return messenger?.contact(account)?.username ?? account.slice(0, 8);
}

const same = (a, b) => a && b && a.kind === b.kind && a.id === b.id;

// ------------------------------------------------------------------ lists

function renderLists() {
  $("contacts").replaceChildren(...messenger.contacts().map((c) => {
    const li = el("li", { textContent: c.username ?? c.account.slice(0, 8) });
    li.dataset.account = c.account;
    li.onclick = () => open(direct(c.account));
    return li;
  }));
  $("groups").replaceChildren(...messenger.groups().map((g) => {
    const li = el("li", { textContent: g.active ? g.name : `${g.name} (removed)` });
    li.dataset.group = g.id;
    li.onclick = () => open(group(g.id));
    return li;
  }));
}

// ------------------------------------------------------------------ the conversation

function open(conversation) {
  current = conversation;
  editing = null;
  $("safety-numbers").textContent = "";
  $("typing").textContent = "";
  render();
}

function messageItem(m) {
  const li = el("li", { className: m.outgoing ? "out" : "in" });
  li.dataset.id = m.messageId;
  if (!m.outgoing) li.append(el("span", { className: "who", textContent: `${nameOf(m.sender)}: ` }));
  li.append(el("span", {
    className: m.deleted ? "text deleted" : "text",
    textContent: m.deleted ? "(deleted)" : m.text,
  }));
  if (m.attachment && !m.deleted) {
    li.append(attachmentView(client, wasm, m, { status: setTransfer, guard }));
  }
  const meta = [];
  if (m.edited && !m.deleted) meta.push("edited");
  if (m.outgoing && m.readBy.length) meta.push(`read by ${m.readBy.map(nameOf).join(", ")}`);
  else if (m.outgoing && m.deliveredTo.length) meta.push("delivered");
  if (m.expiresAt) meta.push(`disappears ${new Date(m.expiresAt * 1000).toLocaleTimeString()}`);
  li.append(el("span", { className: "meta", textContent: meta.join(" · ") }));
  if (m.reactions.length) {
    li.append(el("span", {
      className: "reactions",
      textContent: m.reactions.map((r) => `${r.emoji} ${nameOf(r.from)}`).join(" "),
    }));
  }
  if (!m.deleted) {
    const mine = m.reactions.some((r) => r.from === client.accountId());
    const react = el("button", { className: "react", type: "button", textContent: mine ? "un👍" : "👍" });
    react.onclick = () => guard(async () => { await messenger.react(current, m.messageId, "👍", mine); render(); });
    li.append(react);
    if (m.outgoing) {
      const edit = el("button", { className: "edit", type: "button", textContent: "edit" });
      edit.onclick = () => {
        editing = m.messageId;
        $("text").value = m.text;
        $("cancel-edit").hidden = false;
        $("text").focus();
      };
      const del = el("button", { className: "delete", type: "button", textContent: "delete" });
      del.onclick = () => guard(async () => { await messenger.deleteMessage(current, m.messageId); render(); });
      li.append(edit, del);
    }
  }
  return li;
}

function render() {
  $("cancel-edit").hidden = editing === null;
  if (!current) return;
  const isGroup = current.kind === "group";
  const info = isGroup ? messenger.groups().find((g) => g.id === current.id) : null;
  $("conv-title").textContent = isGroup ? `Group ${info?.name ?? "?"}` : nameOf(current.id);
  $("conv-tools").hidden = false;
  $("direct-tools").hidden = isGroup;
  $("group-tools").hidden = !isGroup;
  $("timer").value = String(messenger.timer(current));
  if (isGroup) {
    $("members").replaceChildren(...(info?.members ?? []).map((a) => {
      const li = el("li", { textContent: nameOf(a) });
      li.dataset.account = a;
      if (info.active && a !== client.accountId()) {
        const rm = el("button", { className: "remove", type: "button", textContent: "remove" });
        rm.onclick = () => guard(async () => { await messenger.removeMember(current.id, a); render(); });
        li.append(rm);
      }
      return li;
    }));
    $("member-form").hidden = !info?.active;
  }
  const history = messenger.history(current);
  $("log").replaceChildren(...history.map(messageItem));
  $("log").lastElementChild?.scrollIntoView();
  // Read receipts for what this page shows, once.
  const unread = history.filter((m) => !m.outgoing && !m.deleted && !readSent.has(m.messageId));
  if (unread.length && document.visibilityState === "visible") {
    const conversation = current;
    for (const m of unread) readSent.add(m.messageId);
    messenger.markRead(conversation, unread.map((m) => m.messageId)).catch(showError);
  }
}

function concerns(e) {
  if (!current) return false;
  if (e.conversation) return same(e.conversation, current);
  if (e.message) return same(e.message.conversation, current);
  if (e.groupId) return current.kind === "group" && current.id === e.groupId;
  return false;
}

function onEvent(e) {
  switch (e.type) {
    case "connection":
      setStatus({ connecting: "connecting…", connected: "connected", caught_up: "synced",
        disconnected: `disconnected (${e.reason}); retrying`, stopped: `stopped (${e.reason})` }[e.state]);
      return;
    case "typing":
      if (concerns(e)) {
        $("typing").textContent = e.started ? `${nameOf(e.from)} is typing…` : "";
        clearTimeout(typingTimer);
        typingTimer = setTimeout(() => { $("typing").textContent = ""; }, 5000);
      }
      return;
    case "identity_changed":
      showIdentityChange(e.account, e.device);
      return;
    case "rejected":
      console.warn("rejected:", e.reason);
      return;
    default:
      if (e.type === "message" && concerns(e)) $("typing").textContent = "";
      renderLists();
      if (concerns(e)) render();
  }
}

function showIdentityChange(account, device) {
  const notice = $("identity");
  notice.hidden = false;
  const check = el("button", { type: "button", textContent: "Compare the new safety number" });
  notice.replaceChildren(`The identity key of ${nameOf(account)} (device ${device}) changed. `, check);
  check.onclick = () => guard(async () => {
    const key = await messenger.identityKeyOf(account, device);
    const accept = el("button", { type: "button", textContent: "They match: accept" });
    accept.onclick = () => guard(async () => {
      await messenger.acceptIdentity(account, device, key);
      notice.hidden = true;
    });
    notice.replaceChildren(`New safety number with ${nameOf(account)} device ${device}: `,
      el("code", { textContent: messenger.safetyNumberWith(account, key) }), " ", accept);
  });
}

// ------------------------------------------------------------------ actions

async function start(c) {
  client = c;
  messenger = await HavenMessenger.create(client);
  messenger.on(onEvent);
  $("me").textContent = `${$("username").value || "?"} (${client.accountId()})`;
  renderLists();
  messenger.start();
  $("account-tools").hidden = false;
  if (pushSupported()) {
    // Wake-ups the service worker passes on: catch up now, show what came (no content).
    onWake(client, messenger, (summary, e) => {
      $("push-status").textContent = summary ? describeWake(summary) : `wake-up failed: ${e.message}`;
      if (summary) { renderLists(); render(); }
    });
  } else {
    $("enable-push").disabled = true;
  }
  document.body.dataset.state = "ready";
}

$("enable-push").onclick = () => guard(async () => {
  const { id } = await enablePush(client);
  const listed = await client.pushEndpoints();
  $("push-status").textContent = `push endpoint ${id.slice(0, 8)} registered (${listed.length} on the relay)`;
});

async function register() {
  showError(null);
  setStatus("registering…");
  try {
    await start(await HavenClient.register(wasm, $("relay").value, $("username").value, $("password").value, persist));
    sessionStorage.setItem("haven-username", $("username").value);
  } catch (e) {
    setStatus("signed out");
    showError(e);
  }
}

/** A new browser joins an account by approval: show the code, wait for a device to approve it. */
async function link() {
  showError(null);
  setStatus("linking…");
  try {
    const pending = await HavenClient.startLink(wasm, $("relay").value, persist);
    $("link-code").textContent = pending.code;
    $("link-pane").hidden = false;
    await start(await pending.finish(10 * 60_000));
    $("link-pane").hidden = true;
    sessionStorage.setItem("haven-username", $("username").value);
  } catch (e) {
    $("link-status").textContent = "not linked";
    setStatus("signed out");
    showError(e);
  }
}

$("register").onclick = () => register();
$("link").onclick = () => link();

// ------------------------------------------------------------------ devices and the account

/** The socket again after the relay ended this device's sessions (a new password, a login). */
async function reconnect() {
  messenger.stop();
  await new Promise((r) => setTimeout(r, 300));
  messenger.start();
}

const fresh = () => [$("fresh-password").value, $("fresh-totp").value.trim() || undefined];
const note = (text) => { $("account-note").textContent = text; };

async function renderDevices() {
  const own = client.device.deviceNumber();
  const devices = await client.devices();
  $("devices").replaceChildren(...devices.map((d) => {
    const li = el("li", { textContent: `device ${d.device_number}${d.device_number === own ? " (this browser)" : ""} ` });
    li.dataset.device = d.device_number;
    if (d.device_number !== own) {
      const unlink = el("button", { type: "button", className: "unlink", textContent: "Unlink" });
      unlink.onclick = () => guard(async () => {
        await client.unlinkDevice(d.device_number, ...fresh());
        note(`device ${d.device_number} unlinked`);
        await renderDevices();
      });
      li.append(unlink);
    }
    return li;
  }));
}

$("approve-form").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    await client.approveLink($("approve-code").value);
    $("approve-code").value = "";
    note("device approved");
    // The new device adds itself to the list once it joins.
    setTimeout(() => renderDevices().catch(() => {}), 3000);
  });
};
$("refresh-devices").onclick = () => guard(renderDevices);
$("password-form").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    await client.changePassword($("fresh-password").value, $("new-password").value, fresh()[1]);
    $("new-password").value = "";
    await reconnect();
    note("password changed");
  });
};
$("set-recovery").onclick = () => guard(async () => {
  $("recovery-code").textContent = await client.setRecoveryCode(...fresh());
  note("recovery code set: write it down, it is shown once");
});
$("recover-form").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    // The new password is the "new password" field; log in again with it afterwards.
    await client.recoverAccount($("recover-code").value, $("new-password").value, fresh()[1]);
    $("recover-code").value = "";
    $("recovery-code").textContent = "";
    note("account recovered: log in again with the new password");
  });
};
$("totp-setup").onclick = () => guard(async () => {
  const setup = await client.totpSetup();
  $("totp-secret").textContent = setup.secret;
  note("add the secret to an authenticator app, then turn TOTP on with a code");
});
$("totp-verify").onclick = () => guard(async () => {
  await client.totpVerify(fresh()[1] ?? "");
  $("totp-secret").textContent = "";
  note("TOTP on");
});
$("totp-disable").onclick = () => guard(async () => {
  await client.totpDisable(...fresh());
  note("TOTP off");
});
$("logout").onclick = () => guard(async () => {
  messenger.stop();
  await client.logout();
  note("logged out");
});
$("logout-all").onclick = () => guard(async () => {
  messenger.stop();
  await client.logoutEverywhere();
  note("logged out everywhere");
});
$("relogin").onclick = () => guard(async () => {
  await client.relogin(...fresh());
  await reconnect();
  note("logged in again");
});
$("export").onclick = () => guard(async () => {
  const data = await client.exportAccount();
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
  el("a", { href: url, download: "haven-account.json" }).click();
  note(`exported ${data.devices?.length ?? 0} devices`);
});
$("delete-account").onclick = () => guard(async () => {
  messenger.stop();
  await client.deleteAccount(...fresh());
  await idbPut("chat-state", null);
  note("account deleted");
  document.body.dataset.state = "deleted";
});

$("contact-form").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    const name = $("contact-name").value.trim();
    if (!messenger || !name) return;
    const contact = await messenger.addContactByUsername(name);
    $("contact-name").value = "";
    renderLists();
    open(direct(contact.account));
  });
};

$("group-form").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    const name = $("group-name").value.trim();
    if (!messenger || !name) return;
    const members = [];
    for (const username of $("group-members").value.split(",").map((s) => s.trim()).filter(Boolean)) {
      members.push((await messenger.addContactByUsername(username)).account);
    }
    const id = await messenger.createGroup(name, members);
    $("group-name").value = "";
    $("group-members").value = "";
    renderLists();
    open(group(id));
  });
};

$("member-form").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    const name = $("member-name").value.trim();
    if (!current || current.kind !== "group" || !name) return;
    const contact = await messenger.addContactByUsername(name);
    await messenger.addMember(current.id, contact.account);
    $("member-name").value = "";
    render();
  });
};

$("timer").onchange = () => guard(async () => {
  await messenger.setTimer(current, Number($("timer").value));
  render();
});

$("safety").onclick = () => guard(async () => {
  const numbers = messenger.safetyNumbers(current.id);
  $("safety-numbers").textContent = numbers.map((n) => `device ${n.device}: ${n.digits}`).join("  ");
});

function setTransfer(text) { $("transfer").textContent = text; }

wireAttachForm($("attach-form"), $("file"), {
  messenger: () => messenger,
  conversation: () => current,
  done: () => render(),
  status: setTransfer,
  guard,
});

$("cancel-edit").onclick = () => {
  editing = null;
  $("text").value = "";
  render();
};

$("text").oninput = () => {
  // A typing indicator at most every 4 s, 1:1 only (best effort: ephemeral).
  if (!current || current.kind !== "direct" || Date.now() - typingSentAt < 4000) return;
  typingSentAt = Date.now();
  messenger.sendTyping(current, true).catch(() => {});
};

$("compose").onsubmit = (ev) => {
  ev.preventDefault();
  guard(async () => {
    const text = $("text").value;
    if (!current || !text) return;
    if (editing) {
      await messenger.edit(current, editing, text);
      editing = null;
    } else {
      await messenger.sendText(current, text);
    }
    $("text").value = "";
    typingSentAt = 0;
    render();
  });
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
