// Thin Haven client for browsers: fetch and WebSocket with the relay exactly as
// docs/PROTOCOL.md §11 specifies; every key, password-derived value and ciphertext is handled by
// the wasm module (`WebDevice`). Types: haven-client.d.ts.

/** An error answer of the relay (§11.2): `code` is the relay's stable code. */
export class RelayError extends Error {
  constructor(status, code, message, body) {
    super(`relay refused (${status}): ${code}: ${message}`);
    this.name = "RelayError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const nowSecs = () => Math.floor(Date.now() / 1000);

function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class HavenClient {
  /**
   * @param {object} wasm the initialised wasm package (exports WebDevice, parseServerFrame, ackFrame)
   * @param {object} device a WebDevice
   * @param {string} relayUrl e.g. http://127.0.0.1:8080
   * @param {(device: object) => Promise<void> | void} [persist] called after every state change
   */
  constructor(wasm, device, relayUrl, persist) {
    this.wasm = wasm;
    this.device = device;
    this.relayUrl = relayUrl.replace(/\/+$/, "");
    this.persist = persist ?? (() => {});
    this.accessToken = null;
    this.tokenExpiry = 0;
    this.socket = null;
  }

  /** Registers a new account with this new device, uploads its keys. */
  static async register(wasm, relayUrl, username, password, persist) {
    const device = await wasm.WebDevice.create();
    const c = new HavenClient(wasm, device, relayUrl, persist);
    const start = await c.call("POST", "/v1/register/start", device.registerStart(password), false);
    const tokens = await c.call("POST", "/v1/register/finish",
      device.registerFinish(password, JSON.stringify(start), username), false);
    await c.applyTokens(tokens);
    await c.setUp();
    return c;
  }

  /** Logs in by username as a new device of the account, uploads its keys. */
  static async login(wasm, relayUrl, username, password, persist) {
    const device = await wasm.WebDevice.create();
    const c = new HavenClient(wasm, device, relayUrl, persist);
    const start = await c.call("POST", "/v1/login/start", device.loginStart(password, username), false);
    const tokens = await c.call("POST", "/v1/login/finish",
      device.loginFinish(password, JSON.stringify(start)), false);
    await c.applyTokens(tokens);
    await c.setUp();
    return c;
  }

  /** Reopens a device from its encrypted state (the next request spends the refresh token). */
  static async resume(wasm, relayUrl, pageKey, state, persist) {
    const device = await wasm.WebDevice.importState(pageKey, state);
    return new HavenClient(wasm, device, relayUrl, persist);
  }

  async applyTokens(tokens) {
    const info = this.device.setSession(JSON.stringify(tokens));
    this.accessToken = info.accessToken;
    // Refresh ahead of expiry by 30 s, or by half the lifetime if that is shorter.
    this.tokenExpiry = Date.now() + (info.expiresIn - Math.min(30, info.expiresIn / 2)) * 1000;
    await this.persist(this.device);
    return info;
  }

  async setUp() {
    this.device.setRelayKey(JSON.stringify(await this.call("GET", "/v1/certificate/key", null, false)));
    await this.call("PUT", "/v1/keys", this.device.prekeyUpload(nowSecs()));
    await this.persist(this.device);
  }

  async refresh() {
    const tokens = await this.call("POST", "/v1/token/refresh", this.device.refreshBody(), false);
    await this.applyTokens(tokens);
  }

  async token() {
    if (!this.accessToken || Date.now() >= this.tokenExpiry) await this.refresh();
    return this.accessToken;
  }

  /** One JSON request; `auth` adds the bearer token (refreshed once on `token_expired`). */
  async call(method, path, bodyText, auth = true, retried = false) {
    const headers = {};
    if (bodyText != null) headers["Content-Type"] = "application/json";
    if (auth) headers["Authorization"] = `Bearer ${await this.token()}`;
    const resp = await fetch(this.relayUrl + path, { method, headers, body: bodyText ?? undefined });
    const text = await resp.text();
    const value = text ? JSON.parse(text) : null;
    if (resp.ok) return value;
    const err = value?.error ?? {};
    if (auth && !retried && err.code === "token_expired") {
      await this.refresh();
      return this.call(method, path, bodyText, auth, true);
    }
    throw new RelayError(resp.status, err.code ?? "unknown", err.message ?? "", text);
  }

  accountId() { return this.device.accountId(); }

  /** The account id of a username (§11.4). */
  async lookup(username) {
    const r = await this.call("POST", "/v1/usernames/lookup", JSON.stringify({ username }));
    return r.account_id;
  }

  /** Fetches a sender certificate (§11.13) when the cached one is missing or about to expire. */
  async ensureCertificate() {
    if (this.device.needsCertificate(nowSecs())) {
      const cert = await this.call("POST", "/v1/certificate", null);
      this.device.setCertificate(JSON.stringify(cert), nowSecs());
    }
  }

  /**
   * Sends a text (§13.1) to every device of `account`, sealed when the device holds the
   * contact's access key (§11.12), and a copy to this account's other devices (§13.2);
   * returns the content id.
   */
  async sendText(account, text) {
    await this.ensureCertificate();
    const { messageId, contentId } = this.device.prepareText(account, text, Date.now());
    try {
      await this.deliver(messageId, account);
      const own = this.accountId();
      if (account !== own) {
        if (this.device.ownDevicesDue(nowSecs())) {
          const devices = await this.call("GET", "/v1/devices", null);
          this.device.setOwnDevices(JSON.stringify(devices));
        }
        await this.deliver(messageId, own);
      }
    } finally {
      this.device.finishSend(messageId);
      await this.persist(this.device);
    }
    return contentId;
  }

  /**
   * Delivers a prepared text to every device of one account: claims the bundles the device
   * asks for, encrypts, and posts (without the bearer token when sealed); a 409/410 answer
   * repairs the device list and the send is retried once.
   */
  async deliver(messageId, account) {
    for (let attempt = 0; ; attempt++) {
      const answers = [];
      for (const path of this.device.claimPaths(account)) {
        answers.push(JSON.stringify(await this.call("GET", path, null)));
      }
      const send = this.device.encryptPrepared(messageId, account, answers, nowSecs());
      await this.persist(this.device);
      if (send === null) return; // this account has no other device
      try {
        await this.call("POST", send.path, send.body, !send.sealed);
        return;
      } catch (e) {
        if (attempt === 0 && e instanceof RelayError && (e.status === 409 || e.status === 410)) {
          this.device.repairDevices(account, e.body);
          continue;
        }
        throw e;
      }
    }
  }

  /** Tops the relay's stock of one-time prekeys up when it reports low (§11.11). */
  async replenishKeys() {
    const counts = await this.call("GET", "/v1/keys/counts", null);
    const body = this.device.replenishKeys(JSON.stringify(counts), nowSecs());
    if (body === undefined) return false;
    await this.call("PUT", "/v1/keys", body);
    await this.persist(this.device);
    return true;
  }

  /** Opens, acks and reports every envelope queued for this device (REST, §11.12). */
  async fetchMailbox(onOpened) {
    let after = 0;
    for (;;) {
      const page = await this.call("GET", `/v1/messages?after=${after}&limit=100`, null);
      const ids = [];
      for (const env of page.envelopes) {
        after = Math.max(after, env.seq);
        const opened = this.device.openEnvelope(env.message_id, env.content, nowSecs());
        ids.push(env.message_id);
        await onOpened(opened);
      }
      await this.persist(this.device);
      if (ids.length) await this.call("POST", "/v1/messages/ack", JSON.stringify({ message_ids: ids }));
      if (!page.more || page.envelopes.length === 0) return;
    }
  }

  /** Opens the WebSocket (§11.14, ticket authentication) and reports every opened envelope. */
  async connect(onOpened, onState = () => {}) {
    const { ticket } = await this.call("POST", "/v1/ws/ticket", null);
    const url = `${this.relayUrl.replace(/^http/, "ws")}/v1/ws?ticket=${encodeURIComponent(ticket)}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.socket = ws;
    let chain = Promise.resolve();
    ws.onopen = () => onState("open");
    ws.onclose = (ev) => onState(`closed ${ev.code}`);
    ws.onmessage = (ev) => {
      if (!(ev.data instanceof ArrayBuffer)) return;
      // Frames are handled one at a time, in order.
      chain = chain.then(async () => {
        const frame = this.wasm.parseServerFrame(new Uint8Array(ev.data));
        if (frame.type === "envelope") {
          const opened = this.device.openEnvelope(frame.messageId, frame.content, nowSecs());
          await this.persist(this.device);
          ws.send(this.wasm.ackFrame([frame.messageId]));
          await onOpened(opened);
        } else if (frame.type === "queue_empty") {
          onState("synced");
          await this.replenishKeys();
        }
      }).catch((e) => onState(`error ${e.code ?? e.message}`));
    };
    await new Promise((resolve, reject) => {
      ws.addEventListener("open", resolve, { once: true });
      ws.addEventListener("error", () => reject(new Error("websocket failed")), { once: true });
    });
  }

  close() {
    this.socket?.close(1000);
    this.device.close();
  }
}

export { base64ToBytes };
