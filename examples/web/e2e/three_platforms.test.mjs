// End-to-end acceptance of "one SDK for every platform": three platforms share one group through
// one relay (the `haven-test-relay` launcher):
//
// - a browser user on the demo chat page (headless Debian Chromium driven by playwright-core,
//   through the page's UI: the wasm package and `haven-client.js`);
// - a native user driving the `haven-chat` CLI binary (one child process per command);
// - a Python user through the generated uniffi module `haven` (`py_user.py`, a child process
//   that takes JSON commands on stdin and reports results and events as JSON lines).
//
// They register, add each other by username; the CLI user creates the group with the browser
// user and adds the Python user; each sends a text that the other two read; the browser sends a
// 5 MiB file that the CLI and the Python user save, byte for byte (SHA-256); the CLI user removes
// the Python user, who sees the removal; the browser and CLI users write again and the Python
// user reads nothing new; the relay's files (database, WAL, blobs) and its logs hold none of the
// texts, the file's name or bytes, the group's name or the usernames.
//
// Environment: HAVEN_TEST_RELAY_BIN (the test-relay launcher), HAVEN_WEB_PKG (wasm-bindgen
// `--target web` output), HAVEN_CHAT_BIN (the `haven-chat` binary), HAVEN_PY_BINDINGS (the
// generated Python module's folder, `<target>/haven-bindings/python`), CHROMIUM (default
// /usr/bin/chromium), PYTHON (default python3). Run by `.ci/wasm.sh`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import {
  mkdtempSync, mkdirSync, readFileSync, existsSync, readdirSync, rmSync, openSync, closeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { demoServer } from "../serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const PASSWORD = "three platforms: correct horse battery staple";
const GROUP = "estuary birders";
const TEXT = {
  web: "from the browser about cormorants, obsidian",
  cli: "from the command line about lapwings, marmalade",
  py: "from python about sandpipers, tourmaline",
  webAfter: "after python left, the browser says heliotrope",
  cliAfter: "after python left, the cli says verdigris",
};
const FILE_NAME = "tide-tables-kittiwake.bin";
const FILE_LINE = "tide table of the kittiwake ledge, ultramarine\n";
const FILE_SIZE = 5 * 1024 * 1024;
/** How long every wait for something to happen may take. */
const WAIT = 45_000;
/** How long the removed member is watched for anything new. */
const QUIET = 3_000;

let dir, relay, relayUrl, relayDir, relayLog, web, webUrl, browser, py;

// ------------------------------------------------------------------ waiting, failing

/** Runs `fn`; a failure names the platform and the step. */
async function on(platform, what, fn) {
  try {
    return await fn();
  } catch (e) {
    throw new Error(`${platform} user: ${what}: ${e.message}`, { cause: e });
  }
}

/**
 * Polls `check` (async; a truthy result ends the wait) until `timeout`; the polls are spaced by
 * `every` ms. A timeout names what was awaited and the last thing seen (`check.seen()`); `on`
 * adds the platform.
 */
async function until(what, check, { timeout = WAIT, every = 250 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    const got = await check();
    if (got) return got;
    last = check.seen?.() ?? last;
    if (Date.now() > deadline) {
      throw new Error(`no ${what} within ${timeout / 1000}s${last ? `; last seen:\n${last}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

// ------------------------------------------------------------------ the native user: haven-chat

class CliUser {
  constructor(bin, root) {
    this.bin = bin;
    this.state = join(root, "cli-state");
    this.key = randomBytes(32).toString("hex");
  }

  /** Runs `haven-chat ARGS` to its end; its stdout, or an error with its exit code and stderr. */
  run(...args) {
    return new Promise((resolve, reject) => {
      const child = spawn(this.bin, ["--state", this.state, "--relay", relayUrl, ...args], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, HAVEN_CHAT_STORE_KEY: this.key, HAVEN_ACCOUNT_PASSWORD: PASSWORD },
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => { out += d; });
      child.stderr.on("data", (d) => { err += d; });
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      child.on("error", (e) => { clearTimeout(timer); reject(e); });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new Error(`haven-chat ${args.join(" ")} failed (${signal ?? `exit ${code}`}): ${err.trim()}`));
      });
    });
  }

  /** Syncs until the group's history holds `needle`; returns the history. */
  async waitFor(group, needle, what) {
    let history = "";
    const check = async () => {
      await this.run("sync");
      history = await this.run("history", group);
      return history.includes(needle) && history;
    };
    check.seen = () => history;
    return until(what, check);
  }
}

// ------------------------------------------------------------------ the Python user: py_user.py

class PyUser {
  constructor(bindings, root) {
    this.root = root;
    this.events = [];
    this.pending = new Map();
    this.next = 1;
    this.stderrPath = join(root, "py_user.stderr");
    const stderr = openSync(this.stderrPath, "w");
    this.proc = spawn(process.env.PYTHON ?? "python3", [join(here, "py_user.py"), "--relay", relayUrl, "--dir", root], {
      stdio: ["pipe", "pipe", stderr],
      env: { ...process.env, PYTHONPATH: bindings, PYTHONUNBUFFERED: "1" },
    });
    closeSync(stderr);
    // Ends at its exit, or when it could not start (no python3): pending commands fail.
    this.exited = new Promise((r) => {
      this.proc.once("exit", (code, signal) => r(signal ?? `exit ${code}`));
      this.proc.once("error", (e) => r(e.message));
    });
    this.proc.stdin.on("error", () => {}); // a write after its end: the exit reports it
    this.exited.then((how) => {
      this.dead = how;
      for (const { reject } of this.pending.values()) reject(new Error(`py_user.py ended (${how}): ${this.stderr()}`));
      this.pending.clear();
    });
    createInterface({ input: this.proc.stdout }).on("line", (line) => {
      let msg;
      try { msg = JSON.parse(line); } catch { this.events.push({ event: "garbage", line }); return; }
      if (msg.id !== undefined && this.pending.has(msg.id)) {
        const { resolve, reject, op } = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.ok) resolve(msg.result);
        else reject(new Error(`${op} failed: ${msg.error}`));
      } else {
        this.events.push(msg);
      }
    });
  }

  stderr() {
    try { return readFileSync(this.stderrPath, "utf8").trim().slice(-2000); } catch { return ""; }
  }

  /** Sends one command; its result, or an error naming it (also on a timeout). */
  call(op, args = {}, timeout = 60_000) {
    const id = this.next++;
    if (this.dead) return Promise.reject(new Error(`${op}: py_user.py ended (${this.dead}): ${this.stderr()}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${op}: no answer within ${timeout / 1000}s; stderr: ${this.stderr()}`));
      }, timeout);
      const done = (f) => (v) => { clearTimeout(timer); f(v); };
      this.pending.set(id, { resolve: done(resolve), reject: done(reject), op });
      this.proc.stdin.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }

  /** Waits for an event matching `pred` (reported since the start); returns it. */
  waitEvent(pred, what) {
    const check = async () => this.events.find(pred);
    check.seen = () => this.events.slice(-8).map((e) => JSON.stringify(e)).join("\n");
    return until(what, check);
  }

  /** Waits until the group's history holds a message matching `pred`; returns it. */
  waitMessage(group, pred, what) {
    let history = [];
    const check = async () => {
      history = await this.call("history", { group });
      return history.find(pred);
    };
    check.seen = () => history.map((m) => JSON.stringify(m.text)).join("\n");
    return until(what, check);
  }

  async quit() {
    if (this.dead) return;
    try {
      await this.call("quit", {}, 15_000);
    } catch {
      this.proc.kill("SIGKILL");
    }
    await this.exited;
  }
}

// ------------------------------------------------------------------ the browser user

async function chatPage(name) {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${webUrl}/index.html?relay=${encodeURIComponent(relayUrl)}`);
  await page.waitForSelector("body[data-state=signed-out]");
  return page;
}

/** The chat page's error line must be empty (a failed action shows there). */
async function noPageError(page) {
  const error = await page.textContent("#error");
  assert.equal(error, "", `the page reports: ${error}`);
}

const browserUser = {
  async register(page, username) {
    await page.fill("#username", username);
    await page.fill("#password", PASSWORD);
    await page.click("#register");
    await page.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
  },
  async addContact(page, username) {
    await page.fill("#contact-name", username);
    await page.click("#add-contact");
    await page.waitForSelector(`#contacts li:has-text("${username}")`, { timeout: WAIT });
    await noPageError(page);
  },
  async send(page, text) {
    await page.fill("#text", text);
    await page.click("#send");
    await page.waitForSelector(`#log li.out:has-text("${text}")`, { timeout: WAIT });
    await noPageError(page);
  },
  /** An incoming message of the open conversation, shown with its sender's username. */
  incoming: (page, from, text) =>
    page.waitForSelector(`#log li.in:has(.who:has-text("${from}:")):has(.text:text-is("${text}"))`, { timeout: WAIT }),
  /** The open group's member list is exactly `names` (the page shows this account as "me"). */
  async members(page, names) {
    await page.waitForFunction((want) => {
      const got = [...document.querySelectorAll("#members li")].map((li) => li.firstChild?.textContent ?? "");
      return got.length === want.length && want.every((n) => got.includes(n));
    }, names, { timeout: WAIT });
  },
};

// ------------------------------------------------------------------ the relay's files

/** Every file under a directory (files a running relay removes meanwhile are skipped). */
function files(d) {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(d, e.name)) : [join(d, e.name)]);
}

function assertRelayBlind(secrets) {
  const all = files(relayDir).concat([relayLog]);
  for (const name of ["relay.db", "relay.db-wal"]) {
    assert.ok(all.some((f) => f.endsWith(`/${name}`)), `the relay's ${name} was read: ${all.join(", ")}`);
  }
  assert.ok(all.some((f) => /blobs\/[0-9a-f]{32}\/\d{6}$/.test(f)), "the relay's blob parts were read");
  const log = readFileSync(relayLog, "utf8");
  for (const event of ["relay listening", "account registered"]) {
    assert.ok(log.includes(event), `the relay's log lacks ${JSON.stringify(event)}: the check would prove nothing`);
  }
  for (const f of all) {
    let bytes;
    try { bytes = readFileSync(f); } catch (e) { if (e.code === "ENOENT") continue; throw e; }
    for (const s of secrets) assert.equal(bytes.indexOf(s), -1, `relay file ${f} contains ${JSON.stringify(s)}`);
  }
}

// ------------------------------------------------------------------ set-up

before(async () => {
  const need = (name, path, what) => {
    assert.ok(path && existsSync(path), `${name} must name ${what}: ${path}`);
    return path;
  };
  const bin = need("HAVEN_TEST_RELAY_BIN", process.env.HAVEN_TEST_RELAY_BIN, "haven-test-relay");
  const pkg = process.env.HAVEN_WEB_PKG;
  need("HAVEN_WEB_PKG", pkg && join(pkg, "haven_wasm.js"), "the web package (wasm-bindgen --target web)");
  need("HAVEN_CHAT_BIN", process.env.HAVEN_CHAT_BIN, "the haven-chat binary");
  const bindings = process.env.HAVEN_PY_BINDINGS;
  need("HAVEN_PY_BINDINGS", bindings && join(bindings, "haven.py"), "the generated Python module's folder");
  dir = mkdtempSync(join(tmpdir(), "haven-three-platforms-"));

  web = demoServer(pkg);
  await new Promise((r) => web.listen(0, "127.0.0.1", r));
  webUrl = `http://127.0.0.1:${web.address().port}`;

  // The relay logs at debug (its most talkative) into a file of its own: the blindness check
  // reads it with the relay's directory, and nothing the clients wrote.
  mkdirSync(join(dir, "relay"));
  relayLog = join(dir, "relay", "relay.log");
  const log = openSync(relayLog, "w");
  relay = spawn(bin, [
    "--set", "HAVEN_LOG=debug",
    "--set", `HAVEN_CORS_ALLOWED_ORIGINS=${webUrl}`,
    "--set", `HAVEN_WS_ALLOWED_ORIGINS=${webUrl}`,
    // 1 MiB blob parts: the 5 MiB file goes up in six.
    "--set", "HAVEN_BLOBS_PART_SIZE_BYTES=1048576",
  ], { stdio: ["pipe", "pipe", log] });
  closeSync(log);
  const first = await new Promise((resolve, reject) => {
    let buf = "";
    relay.stdout.on("data", (chunk) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    relay.on("exit", (code) => reject(new Error(`haven-test-relay exited with ${code}; see ${relayLog}`)));
  });
  ({ url: relayUrl, dir: relayDir } = JSON.parse(first));

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await py?.quit();
  await browser?.close();
  if (relay) {
    const exited = new Promise((r) => relay.once("exit", r));
    relay.stdin.end();
    await exited;
  }
  await new Promise((r) => (web ? web.close(r) : r()));
  if (dir && !process.env.HAVEN_KEEP_E2E) rmSync(dir, { recursive: true, force: true });
});

// ------------------------------------------------------------------ the scenario

test("three platforms, one group, one relay: browser, haven-chat CLI and Python", { timeout: 110_000 }, async () => {
  const t0 = Date.now();
  const lap = (what) => console.log(`${((Date.now() - t0) / 1000).toFixed(1)}s ${what}`);
  const suffix = Date.now().toString(36);
  const names = { web: `web-${suffix}`, cli: `cli-${suffix}`, py: `py-${suffix}` };
  const root = (name) => { const d = join(dir, name); mkdirSync(d); return d; };

  const cli = new CliUser(process.env.HAVEN_CHAT_BIN, root("cli"));
  py = new PyUser(process.env.HAVEN_PY_BINDINGS, root("py"));
  const page = await chatPage("browser");

  // Everyone registers a username, at once.
  const ids = {};
  await Promise.all([
    on("browser", "register", async () => {
      await browserUser.register(page, names.web);
      ids.web = (await page.textContent("#me")).match(/\(([0-9a-f]{32})\)/)?.[1];
      assert.ok(ids.web, "the page shows its account id");
    }),
    on("native CLI", "register", async () => {
      const out = await cli.run("register", "--username", names.cli);
      ids.cli = out.match(/^account ([0-9a-f]{32}) /)?.[1];
      assert.ok(ids.cli, `register printed ${out}`);
    }),
    on("Python", "register", async () => {
      ids.py = (await py.call("register", { username: names.py, password: PASSWORD })).account;
    }),
  ]);
  lap("registered");

  // Everyone adds the other two by username (each platform in its own order, all at once).
  await Promise.all([
    on("browser", "add contacts", async () => {
      await browserUser.addContact(page, names.cli);
      await browserUser.addContact(page, names.py);
    }),
    on("native CLI", "add contacts", async () => {
      for (const n of [names.web, names.py]) {
        assert.match(await cli.run("add", n), new RegExp(`^contact [0-9a-f]{32} ${n}`));
      }
    }),
    on("Python", "add contacts", async () => {
      assert.equal((await py.call("add_contact", { username: names.cli })).account, ids.cli);
      await py.call("add_contact", { username: names.web });
      await py.call("start");
    }),
  ]);
  lap("contacts added");

  // The CLI user creates the group with the browser user, then adds the Python user.
  const groupId = await on("native CLI", "group-create and group-add", async () => {
    const out = await cli.run("group-create", GROUP, names.web);
    const id = out.match(/^group ([0-9a-f]{32}) /)?.[1];
    assert.ok(id, `group-create printed ${out}`);
    const added = await cli.run("group-add", id, names.py);
    assert.ok(added.includes(names.py) && added.includes(names.web), `group-add printed ${added}`);
    return id;
  });
  await Promise.all([
    on("browser", "join the group", async () => {
      const item = `#groups li:has-text("${GROUP}")`;
      await page.waitForSelector(item, { timeout: WAIT });
      await page.click(item);
      await browserUser.members(page, ["me", names.cli, names.py]);
    }),
    on("Python", "join the group", async () => {
      await py.waitEvent((e) => e.event === "group_updated" && e.group_id === groupId, "group_updated event");
      const groups = await py.call("groups");
      const g = groups.find((x) => x.group_id === groupId);
      assert.ok(g?.active && g.name === GROUP, `groups: ${JSON.stringify(groups)}`);
      assert.deepEqual([...g.members].sort(), [ids.web, ids.cli, ids.py].sort());
    }),
  ]);
  lap("group formed");

  // Each one writes; every member reads the other two.
  await on("browser", "send a text", () => browserUser.send(page, TEXT.web));
  await on("native CLI", "group-send", () => cli.run("group-send", groupId, TEXT.cli));
  await on("Python", "send a text", () => py.call("send", { group: groupId, text: TEXT.py }));
  await Promise.all([
    on("browser", "read the others", async () => {
      await browserUser.incoming(page, names.cli, TEXT.cli);
      await browserUser.incoming(page, names.py, TEXT.py);
    }),
    on("native CLI", "read the others", async () => {
      // A history line: `#NAME(GROUP) MESSAGE SENDER: TEXT`, the sender by its username.
      await cli.waitFor(groupId, `${names.web}: ${TEXT.web}`, "browser user's text");
      await cli.waitFor(groupId, `${names.py}: ${TEXT.py}`, "Python user's text");
    }),
    on("Python", "read the others", async () => {
      for (const [who, text] of [["web", TEXT.web], ["cli", TEXT.cli]]) {
        const m = await py.waitMessage(groupId, (x) => x.text === text, `the ${who} user's text`);
        assert.equal(m.sender, ids[who]);
        assert.ok(!m.outgoing);
      }
    }),
  ]);
  lap("texts read by all");

  // The browser sends a 5 MiB file into the group; the CLI and Python users save it.
  const file = Buffer.alloc(FILE_SIZE);
  const line = Buffer.from(FILE_LINE);
  for (let at = 0; at < file.length; at += line.length) line.copy(file, at);
  randomBytes(4096).copy(file, FILE_SIZE - 4096); // and a tail no repetition would mend
  const digest = sha256(file);
  await on("browser", "send the 5 MiB file", async () => {
    await page.setInputFiles("#file", { name: FILE_NAME, mimeType: "application/octet-stream", buffer: file });
    await page.click("#send-file");
    await page.waitForSelector(`#transfer:has-text("sent ${FILE_NAME}")`, { timeout: 60_000 });
    await noPageError(page);
    const parts = files(relayDir).filter((f) => /blobs\/[0-9a-f]{32}\/\d{6}$/.test(f));
    // The padded blob is a little over 5 MiB: six 1 MiB parts (the relay's setting above).
    assert.equal(parts.length, 6, `the blob went up in six parts: ${parts.join(", ")}`);
  });
  lap("file sent");
  await Promise.all([
    on("native CLI", "save the file", async () => {
      const history = await cli.waitFor(groupId, FILE_NAME, "file message");
      const entry = history.split("\n")
        .find((l) => l.includes(`${names.web}: `) && l.includes(`[file ${FILE_NAME} ${FILE_SIZE} bytes`));
      const messageId = entry?.match(/\) ([0-9a-f]{8}) /)?.[1];
      assert.ok(messageId, `no file line with an id in:\n${history}`);
      const dest = join(cli.state, "..", "saved.bin");
      assert.match(await cli.run("save-file", groupId, messageId, dest), /^saved /);
      const got = readFileSync(dest);
      assert.equal(got.length, FILE_SIZE);
      assert.equal(sha256(got), digest, "the saved file differs from the one sent");
    }),
    on("Python", "save the file", async () => {
      const m = await py.waitMessage(groupId, (x) => x.attachment?.file_name === FILE_NAME, "file message");
      assert.equal(m.attachment.size, FILE_SIZE);
      assert.equal(m.sender, ids.web);
      const dest = join(py.root, "saved.bin");
      const saved = await py.call("save", { group: groupId, message_id: m.message_id, dest });
      assert.equal(saved.size, FILE_SIZE);
      assert.equal(saved.sha256, digest, "the saved file differs from the one sent");
    }),
  ]);
  lap("file saved by the CLI and Python users");

  // The CLI user removes the Python user: a new epoch the Python user does not learn.
  await on("native CLI", "group-remove", async () => {
    const out = await cli.run("group-remove", groupId, names.py);
    assert.ok(!out.includes(names.py), `group-remove printed ${out}`);
  });
  const removedAt = await on("Python", "see the removal", async () => {
    const removed = await py.waitEvent((e) => e.event === "removed_from_group" && e.group_id === groupId,
      "removed_from_group event");
    const g = (await py.call("groups")).find((x) => x.group_id === groupId);
    assert.equal(g?.active, false, `the group is still active: ${JSON.stringify(g)}`);
    return { events: py.events.indexOf(removed), history: (await py.call("history", { group: groupId })).length };
  });
  await on("browser", "see the removal", () => browserUser.members(page, ["me", names.cli]));
  lap("Python user removed");

  // The remaining two write again and read each other.
  await on("browser", "send after the removal", () => browserUser.send(page, TEXT.webAfter));
  await on("native CLI", "group-send after the removal", () => cli.run("group-send", groupId, TEXT.cliAfter));
  await Promise.all([
    on("browser", "read the CLI after the removal", () => browserUser.incoming(page, names.cli, TEXT.cliAfter)),
    on("native CLI", "read the browser after the removal",
      () => cli.waitFor(groupId, `${names.web}: ${TEXT.webAfter}`, "browser user's text after the removal")),
  ]);
  lap("texts after the removal read");

  // The Python user reads nothing new: its history and events stay as they were, fetching
  // everything over REST too, for a while after the others read each other.
  await on("Python", "read nothing after the removal", async () => {
    const quiet = Date.now() + QUIET;
    do {
      await py.call("sync");
      const history = await py.call("history", { group: groupId });
      const texts = history.map((m) => m.text);
      for (const t of [TEXT.webAfter, TEXT.cliAfter]) {
        assert.ok(!texts.includes(t), `history holds ${JSON.stringify(t)}`);
      }
      assert.equal(history.length, removedAt.history,
        `new messages: ${JSON.stringify(texts.slice(removedAt.history))}`);
      const later = py.events.slice(removedAt.events).filter((e) => e.event === "message");
      assert.deepEqual(later, [], "message events after the removal");
      await new Promise((r) => setTimeout(r, 250));
    } while (Date.now() < quiet);
  });
  lap("Python user read nothing new");

  // The relay's database, WAL, blobs and logs: none of the texts, the file's name or bytes,
  // the group's name or the usernames.
  assertRelayBlind([...Object.values(TEXT), FILE_NAME, FILE_LINE.trim(), GROUP, PASSWORD,
    ...Object.values(names)]);
  lap("relay files and logs blind");
});
