// End-to-end: browser contexts (headless Debian Chromium driven by playwright-core) register
// users on a real relay (the `haven-test-relay` launcher): two of them talk 1:1 (texts, a read
// receipt, typing, a reaction, an edit, a delete, a timer, safety numbers), three of them in a
// group (an added member reads what follows, a removed one nothing new), and the relay's files
// hold no plaintext or group name; the diary page in two browser contexts of one account syncs
// through the relay's vault (creation, unlock from the relay's bundle, entries both ways, search,
// a deletion, a reload and unlock from the sealed IndexedDB state, a browser-only diary
// imported); a file sent in a chat is uploaded and downloaded as streams, byte for byte.
//
// Environment: HAVEN_TEST_RELAY_BIN (the workspace's test-relay launcher), HAVEN_WEB_PKG (wasm-bindgen `--target web`
// output), CHROMIUM (default /usr/bin/chromium). Run by `.ci/wasm.sh`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, readdirSync, rmSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { demoServer } from "../serve.mjs";

const SECRETS = ["hello bob via periwinkle", "hi alice, tangerine here", "Walked to the harbour with marzipan"];
// Chat plaintexts: none may reach the relay's files.
const CHAT = {
  edited: "edited greeting with cormorant",
  later: "a later note about quinces",
  timed: "this one disappears, saffron",
  group1: "group hello from obsidian",
  group2: "group reply about lanternfish",
  group3: "carol joins, kumquat talk",
  after: "after removal secret, nebula",
  name: "harbour walkers",
};
const PASSWORD = "correct horse battery staple";

// HAVEN_E2E_SCREENSHOTS=DIR saves what each page showed at the end, for a look by a person.
const shot = async (page, name) => {
  const dir = process.env.HAVEN_E2E_SCREENSHOTS;
  if (dir) await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
};

let dir, relay, relayUrl, relayDir, web, webUrl, browser;

before(async () => {
  const bin = process.env.HAVEN_TEST_RELAY_BIN;
  const pkg = process.env.HAVEN_WEB_PKG;
  assert.ok(bin && existsSync(bin), `HAVEN_TEST_RELAY_BIN not found: ${bin}`);
  assert.ok(pkg && existsSync(join(pkg, "haven_wasm.js")), `HAVEN_WEB_PKG not built: ${pkg}`);
  dir = mkdtempSync(join(tmpdir(), "haven-web-e2e-"));

  // Port 0: the kernel picks a free port as the server binds it (no pick-then-bind race).
  web = demoServer(pkg);
  await new Promise((r) => web.listen(0, "127.0.0.1", r));
  webUrl = `http://127.0.0.1:${web.address().port}`;

  // The workspace's test-relay launcher: one JSON line with its address and directory, logs on
  // stderr; it stops (and removes its directory) when its stdin closes.
  const log = openSync(join(dir, "relay.log"), "w");
  relay = spawn(bin, [
    "--set", "HAVEN_LOG=info",
    "--set", `HAVEN_CORS_ALLOWED_ORIGINS=${webUrl}`,
    "--set", `HAVEN_WS_ALLOWED_ORIGINS=${webUrl}`,
    // 1 MiB blob parts (the local backend's floor is 64 KiB): the file test uploads several.
    "--set", "HAVEN_BLOBS_PART_SIZE_BYTES=1048576",
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
  const started = JSON.parse(first);
  relayUrl = started.url;
  relayDir = started.dir;

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  if (relay) {
    const exited = new Promise((r) => relay.once("exit", r));
    relay.stdin.end();
    await exited;
  }
  await new Promise((r) => (web ? web.close(r) : r()));
  if (dir && !process.env.HAVEN_KEEP_E2E) rmSync(dir, { recursive: true, force: true });
});

async function chatPage(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${webUrl}/index.html?relay=${encodeURIComponent(relayUrl)}`);
  await page.waitForSelector("body[data-state=signed-out]");
  return page;
}

async function register(page, username) {
  await page.fill("#username", username);
  await page.fill("#password", PASSWORD);
  await page.click("#register");
  await page.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
}

async function send(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
  await page.waitForSelector(`#log li.out:has-text("${text}")`, { timeout: 30_000 });
  assert.equal(await page.textContent("#error"), "");
}

async function addContact(page, username) {
  await page.fill("#contact-name", username);
  await page.click("#add-contact");
  await page.waitForSelector(`#contacts li:has-text("${username}")`, { timeout: 30_000 });
  await page.waitForSelector(`#conv-title:has-text("${username}")`);
  assert.equal(await page.textContent("#error"), "");
}

const incoming = (page, text) => page.waitForSelector(`#log li.in:has-text("${text}")`, { timeout: 30_000 });

/** Every file under the relay's and the test's directories. */
function relayFiles() {
  const files = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(d, e.name)) : [join(d, e.name)]);
  const all = files(dir).concat(files(relayDir));
  assert.ok(all.some((f) => f.endsWith("relay.db")), "the relay's database was read");
  return all;
}

function assertBlind(secrets) {
  for (const f of relayFiles()) {
    const bytes = readFileSync(f);
    for (const s of secrets) assert.equal(bytes.indexOf(s), -1, `${f} contains ${JSON.stringify(s)}`);
  }
}

test("two browser users: texts, a read receipt, typing, a reaction, an edit, a delete, a timer", async () => {
  const suffix = Date.now().toString(36);
  const [alice, bob] = await Promise.all([chatPage("alice"), chatPage("bob")]);
  await register(alice, `alice-${suffix}`);
  await register(bob, `bob-${suffix}`);

  // Alice adds Bob and writes (her contact card goes first); Bob adds her and reads it.
  await addContact(alice, `bob-${suffix}`);
  await send(alice, SECRETS[0]);
  await addContact(bob, `alice-${suffix}`);
  await incoming(bob, SECRETS[0]);
  // Bob's page showed it: his read receipt reaches Alice.
  await alice.waitForSelector(`#log li.out:has-text("${SECRETS[0]}") .meta:has-text("read by bob-${suffix}")`,
    { timeout: 30_000 });

  await send(bob, SECRETS[1]);
  await incoming(alice, SECRETS[1]);
  assert.match(await alice.textContent("#log li.in .who"), new RegExp(`bob-${suffix}`));

  // Typing (ephemeral), then a reaction to Bob's message.
  await bob.fill("#text", "…");
  await alice.waitForSelector(`#typing:has-text("bob-${suffix} is typing")`, { timeout: 30_000 });
  await bob.fill("#text", "");
  await alice.click(`#log li.in:has-text("${SECRETS[1]}") button.react`);
  await bob.waitForSelector(`#log li.out:has-text("${SECRETS[1]}") .reactions:has-text("👍 alice-${suffix}")`,
    { timeout: 30_000 });

  // Alice edits her first message, then deletes it.
  await alice.click(`#log li.out:has-text("${SECRETS[0]}") button.edit`);
  await alice.fill("#text", CHAT.edited);
  await alice.click("#send");
  await bob.waitForSelector(`#log li.in:has-text("${CHAT.edited}") .meta:has-text("edited")`, { timeout: 30_000 });
  assert.equal(await bob.locator(`#log li:has-text("${SECRETS[0]}")`).count(), 0);
  await send(alice, CHAT.later);
  await incoming(bob, CHAT.later);
  await alice.click(`#log li.out:has-text("${CHAT.edited}") button.delete`);
  await bob.waitForSelector(`#log li.in .text.deleted`, { timeout: 30_000 });
  assert.equal(await bob.locator(`#log li:has-text("${CHAT.edited}")`).count(), 0);

  // A disappearing timer set by Alice applies to Bob's next text on both sides.
  await alice.selectOption("#timer", "300");
  await bob.waitForFunction(() => document.getElementById("timer").value === "300", null, { timeout: 30_000 });
  await send(bob, CHAT.timed);
  await alice.waitForSelector(`#log li.in:has-text("${CHAT.timed}") .meta:has-text("disappears")`,
    { timeout: 30_000 });

  // Safety numbers: the same 60 digits on both sides.
  await alice.click("#safety");
  await bob.click("#safety");
  const digits = async (p) => (await p.textContent("#safety-numbers")).replace(/device \d+: /, "");
  const [a, b] = [await digits(alice), await digits(bob)];
  assert.match(a, /^\d{60}$/);
  assert.equal(a, b);
  await shot(alice, "chat-alice");
  await shot(bob, "chat-bob");

  // The relay stored and logged only ciphertext: its log, database and blob files.
  assertBlind([SECRETS[0], SECRETS[1], CHAT.edited, CHAT.later, CHAT.timed, PASSWORD]);
});

test("a group of three: texts, an added member reads what follows, a removed one nothing new", async () => {
  const suffix = Date.now().toString(36);
  const [alice, bob, carol] = await Promise.all([chatPage("alice"), chatPage("bob"), chatPage("carol")]);
  for (const [page, name] of [[alice, "alice"], [bob, "bob"], [carol, "carol"]]) {
    await register(page, `${name}g-${suffix}`);
  }
  const group = `#groups li:has-text("${CHAT.name}")`;

  // Alice creates the group with Bob.
  await alice.fill("#group-name", CHAT.name);
  await alice.fill("#group-members", `bobg-${suffix}`);
  await alice.click("#create-group");
  await alice.waitForSelector(`#conv-title:has-text("${CHAT.name}")`, { timeout: 30_000 });
  assert.equal(await alice.textContent("#error"), "");
  await bob.waitForSelector(group, { timeout: 30_000 });
  await bob.click(group);
  await send(alice, CHAT.group1);
  await incoming(bob, CHAT.group1);
  await send(bob, CHAT.group2);
  await incoming(alice, CHAT.group2);

  // Alice adds Carol: she reads what is sent from now on, not the history.
  await alice.fill("#member-name", `carolg-${suffix}`);
  await alice.click("#add-member");
  await alice.waitForSelector(`#members li:has-text("carolg-${suffix}")`, { timeout: 30_000 });
  assert.equal(await alice.textContent("#error"), "");
  await carol.waitForSelector(group, { timeout: 30_000 });
  await carol.click(group);
  await send(alice, CHAT.group3);
  await incoming(carol, CHAT.group3);
  await incoming(bob, CHAT.group3);
  assert.equal(await carol.locator(`#log li:has-text("${CHAT.group1}")`).count(), 0);

  // Alice removes Bob: a new epoch; Carol reads on, Bob reads nothing new.
  await alice.click(`#members li:has-text("bobg-${suffix}") button.remove`);
  await alice.waitForFunction((n) => ![...document.querySelectorAll("#members li")].some((li) => li.textContent.includes(n)),
    `bobg-${suffix}`, { timeout: 30_000 });
  assert.equal(await alice.textContent("#error"), "");
  await bob.waitForSelector(`#groups li:has-text("${CHAT.name} (removed)")`, { timeout: 30_000 });
  await send(alice, CHAT.after);
  await incoming(carol, CHAT.after);
  await send(carol, CHAT.later);
  await incoming(alice, CHAT.later);
  // Give Bob's socket the time to have received anything it could.
  await bob.waitForTimeout(2_000);
  await bob.click(group);
  await incoming(bob, CHAT.group3);
  assert.equal(await bob.locator(`#log li:has-text("${CHAT.after}")`).count(), 0);
  assert.equal(await bob.locator(`#log li:has-text("${CHAT.later}")`).count(), 0);
  await shot(alice, "group-alice");
  await shot(bob, "group-bob");
  await shot(carol, "group-carol");

  assertBlind([CHAT.group1, CHAT.group2, CHAT.group3, CHAT.after, CHAT.later, CHAT.name]);
});

// ------------------------------------------------------------------ the diary, files

const DIARY = {
  pass: "diary pass phrase: amber orchard",
  a: "Walked to the harbour with marzipan",
  b: "Rain over the quay, written on the second browser with bergamot",
  old: "An entry this browser kept alone, about juniper",
};
const FILE_SECRET = "a file about the gannet colony, vermilion";

async function diaryPage(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${webUrl}/diary.html?relay=${encodeURIComponent(relayUrl)}`);
  await page.waitForSelector("body[data-state=signed-out]");
  return page;
}

async function signIn(page, kind, username) {
  await page.fill("#username", username);
  await page.fill("#password", PASSWORD);
  assert.equal(kind, "register", "a new browser joins by linking");
  await page.click("#register");
  await page.waitForSelector("body[data-state=locked]", { timeout: 60_000 });
}

const entry = (page, text) => page.waitForSelector(`.entry-body:has-text("${text}")`, { timeout: 30_000 });

test("diary: two browsers of one account sync through the relay; reload, unlock, search, delete", async () => {
  const user = `diarist-${Date.now().toString(36)}`;
  const a = await diaryPage("diary-a");
  // What the earlier, browser-only page kept (WebDiary, IndexedDB only): imported on unlock.
  await a.evaluate(async ({ pass, body }) => {
    const wasm = await import("/pkg/haven_wasm.js");
    await wasm.default();
    const { idbPut } = await import("/idb.js");
    const old = await wasm.WebDiary.create(pass, 19456, 2);
    const sealed = old.encryptEntry({ title: "Old", body, tags: [], createdMs: 1, updatedMs: 1 }, undefined, 1);
    await idbPut("diary-record", old.record());
    await idbPut("diary-entries", [sealed]);
  }, { pass: DIARY.pass, body: DIARY.old });

  await signIn(a, "register", user);
  await a.fill("#passphrase", DIARY.pass);
  await a.click("#unlock");
  await a.waitForSelector("#status:has-text('no diary yet')", { timeout: 60_000 });
  await a.click("#create");
  await a.waitForSelector("body[data-state=unlocked]", { timeout: 60_000 });
  assert.equal(await a.locator("#codes li").count(), 10);
  await entry(a, DIARY.old);
  await a.fill("#title", "Sunday");
  await a.fill("#body", DIARY.a);
  await a.click("#save");
  await a.waitForSelector(`.entry:has-text("${DIARY.a}") small:not(:has-text("not synced"))`, { timeout: 30_000 });

  // A second browser context is linked to the same account (the first approves its code) and
  // unlocks with the relay's bundle.
  const b = await diaryPage("diary-b");
  await b.click("#link");
  await b.waitForSelector("#link-code:has-text('haven-link:')", { timeout: 30_000 });
  await a.fill("#approve-code", await b.textContent("#link-code"));
  await a.click("#approve");
  await b.waitForSelector("body[data-state=locked]", { timeout: 60_000 });
  await b.fill("#passphrase", DIARY.pass);
  await b.click("#unlock");
  await b.waitForSelector("body[data-state=unlocked]", { timeout: 60_000 });
  await entry(b, DIARY.a);
  await entry(b, DIARY.old);
  await b.fill("#title", "Monday");
  await b.fill("#body", DIARY.b);
  await b.click("#save");
  // The first browser pulls it on its own (it syncs every few seconds).
  await entry(a, DIARY.b);

  // Search runs on the page's own index.
  await b.fill("#search", "harb");
  await b.waitForFunction(() => document.querySelectorAll(".entry").length === 1, null, { timeout: 10_000 });
  assert.equal(await b.textContent(".entry-body"), DIARY.a);
  await b.fill("#search", "");

  // A deletion on one browser reaches the other.
  await b.click(`.entry:has-text("${DIARY.old}") button.delete`);
  await b.waitForFunction((t) => ![...document.querySelectorAll(".entry-body")].some((e) => e.textContent === t),
    DIARY.old, { timeout: 30_000 });
  await a.waitForFunction((t) => ![...document.querySelectorAll(".entry-body")].some((e) => e.textContent === t),
    DIARY.old, { timeout: 30_000 });
  assert.equal(await a.textContent("#error"), "");
  assert.equal(await b.textContent("#error"), "");

  // A reload keeps the sealed state: locked, a wrong passphrase refused, the right one opens it.
  await a.reload();
  await a.waitForSelector("body[data-state=locked]");
  assert.equal(await a.locator(".entry").count(), 0);
  await a.fill("#passphrase", "wrong pass phrase");
  await a.click("#unlock");
  await a.waitForSelector("#error:has-text('wrong_password')", { timeout: 60_000 });
  await a.fill("#passphrase", DIARY.pass);
  await a.click("#unlock");
  await a.waitForSelector("body[data-state=unlocked]", { timeout: 60_000 });
  await entry(a, DIARY.a);
  await entry(a, DIARY.b);
  await shot(a, "diary-a");
  await shot(b, "diary-b");

  // IndexedDB and the relay hold ciphertext only.
  const stored = await a.evaluate(async () => {
    const { idbGet } = await import("/idb.js");
    return new TextDecoder("latin1").decode(await idbGet("diary-state"));
  });
  assert.ok(stored.length > 0);
  assert.equal(stored.indexOf("harbour"), -1);
  assertBlind([DIARY.a, DIARY.b, DIARY.old, DIARY.pass]);
});

test("chat: a file is encrypted and uploaded as a stream, then downloaded and decrypted by the other side", async () => {
  const suffix = Date.now().toString(36);
  const [alice, bob] = await Promise.all([chatPage("alice-f"), chatPage("bob-f")]);
  await register(alice, `alicef-${suffix}`);
  await register(bob, `bobf-${suffix}`);
  await addContact(alice, `bobf-${suffix}`);
  // Just over 3 MiB: four 1 MiB parts (the relay's setting above), 49 chunks of the stream.
  const line = Buffer.from(`${FILE_SECRET}\n`);
  const file = Buffer.alloc(3 * 1024 * 1024 + 123);
  for (let at = 0; at < file.length; at += line.length) line.copy(file, at);
  await alice.setInputFiles("#file", { name: "gannets.txt", mimeType: "text/plain", buffer: file });
  await alice.click("#send-file");
  await alice.waitForSelector("#transfer:has-text('sent gannets.txt')", { timeout: 60_000 });
  assert.equal(await alice.textContent("#error"), "");
  const parts = relayFiles().filter((f) => /blobs\/[0-9a-f]{32}\/\d{6}$/.test(f));
  assert.equal(parts.length, 4, "the blob went up in four parts");

  await addContact(bob, `alicef-${suffix}`);
  const save = `#log li.in button.save:has-text("gannets.txt")`;
  await bob.waitForSelector(save, { timeout: 30_000 });
  const [download] = await Promise.all([bob.waitForEvent("download", { timeout: 60_000 }), bob.click(save)]);
  assert.equal(download.suggestedFilename(), "gannets.txt");
  const got = readFileSync(await download.path());
  assert.ok(got.equals(file), "the downloaded file is the one sent");
  await bob.waitForSelector("#transfer:has-text('digest checked')");
  assert.equal(await bob.textContent("#error"), "");
  await shot(bob, "file-bob");

  assertBlind([FILE_SECRET]);
});
