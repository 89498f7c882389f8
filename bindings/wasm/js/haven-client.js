// Thin Haven client for browsers: fetch and WebSocket with the relay exactly as
// docs/PROTOCOL.md §11 specifies; every key, password-derived value and ciphertext is handled by
// the wasm module. `HavenClient` is the device's I/O (as haven_client::Device natively: OPAQUE,
// tokens, keys, delivering a prepared content to every device of an account); `HavenMessenger`
// is the messenger's (as haven_client::Messenger: contacts, 1:1 and groups, the WebSocket with
// its channel subscriptions and reconnects, REST catch-up, follow-ups), every state change made
// by the wasm `WebMessenger`. Types: haven-client.d.ts.

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
/** How often a new device waiting for approval polls its provisioning box. */
const LINK_POLL_MS = 500;
/** The header of a fresh-authentication proof (§11.6.1). */
const FRESH_AUTH_HEADER = "Haven-Fresh-Auth";

function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** A 1:1 conversation with `account`. */
export const direct = (account) => ({ kind: "direct", id: account });
/** A group conversation. */
export const group = (groupId) => ({ kind: "group", id: groupId });

export class HavenClient {
  /**
   * @param {object} wasm the initialised wasm package (exports WebDevice, WebMessenger, parseServerFrame, ackFrame)
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
    this.refreshing = null;
  }

  /**
   * Registers a new account with this new device, uploads its keys and sets the account's
   * access key (contacts then send to it sealed, as to a native account).
   */
  static async register(wasm, relayUrl, username, password, persist) {
    const device = await wasm.WebDevice.create();
    const c = new HavenClient(wasm, device, relayUrl, persist);
    const start = await c.call("POST", "/v1/register/start", device.registerStart(password), false);
    const tokens = await c.call("POST", "/v1/register/finish",
      device.registerFinish(password, JSON.stringify(start), username), false);
    await c.applyTokens(tokens);
    await c.setUp();
    await c.call("PUT", "/v1/account/access-key", device.prepareAccessKey());
    device.confirmAccessKey();
    await c.publishFirstList();
    await c.persist(device);
    return c;
  }

  /**
   * Starts linking this browser as a new device of an existing account (§15.3): opens a
   * provisioning box and returns the `code` to show a device of the account (typed, pasted or
   * as a QR code), which approves it (`approveLink`). `finish(timeoutMs)` waits for the
   * approval, joins (session, keys, the granted account key and access key) and adds this
   * device to the account's signed device list; it resolves to the `HavenClient`. A password
   * alone never adds a device.
   */
  static async startLink(wasm, relayUrl, persist) {
    const device = await wasm.WebDevice.create();
    const c = new HavenClient(wasm, device, relayUrl, persist);
    try {
      const created = await c.call("POST", "/v1/provisioning", null, false);
      const { code, boxPath } = device.linkStart(JSON.stringify(created));
      return {
        code,
        finish: async (timeoutMs = 300_000) => {
          await c.finishLink(boxPath, timeoutMs);
          return c;
        },
        cancel: () => device.close(),
      };
    } catch (e) {
      device.close();
      throw e;
    }
  }

  async finishLink(boxPath, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let message;
    for (;;) {
      message = await this.call("GET", boxPath, null, false);
      if (message) break;
      if (Date.now() + LINK_POLL_MS > deadline) throw new Error("no approval arrived in time");
      await new Promise((r) => setTimeout(r, LINK_POLL_MS));
    }
    const tokens = await this.call("POST", "/v1/devices/link",
      this.device.linkOpen(JSON.stringify(message)), false);
    await this.applyTokens(tokens);
    await this.setUp();
    const list = await this.call("GET", `/v1/accounts/${this.accountId()}/device-list`, null);
    await this.call("PUT", "/v1/account/device-list",
      this.device.linkJoin(JSON.stringify(list), nowSecs()));
    this.device.ownListPublished(nowSecs());
    await this.persist(this.device);
  }

  /**
   * Approves the new device showing `code` (`haven-link:…`): it receives, end to end, a link
   * token, the account key and the access key, and adds itself to the signed device list.
   */
  async approveLink(code) {
    const own = this.accountId();
    if (this.device.deviceListDue(own, nowSecs())) await this.fetchDeviceList(own);
    const token = await this.call("POST", "/v1/devices/link-token", null);
    const put = this.device.approveLink(code.trim(), JSON.stringify(token));
    await this.call("PUT", put.path, put.body);
  }

  /**
   * Logs this device in again (after a logout, logout everywhere, a password change on
   * another device or a recovery) with the password and, when the account has TOTP on, a
   * current code.
   */
  async relogin(password, totp) {
    const start = await this.call("POST", "/v1/login/start", this.device.loginStart(password), false);
    const tokens = await this.call("POST", "/v1/login/finish",
      this.device.loginFinish(password, JSON.stringify(start), totp || undefined), false);
    await this.applyTokens(tokens);
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

  /** Spends the refresh token once, however many requests wait for it (a reuse would revoke the session). */
  async refresh() {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        const tokens = await this.call("POST", "/v1/token/refresh", this.device.refreshBody(), false);
        await this.applyTokens(tokens);
      })().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  async token() {
    if (!this.accessToken || Date.now() >= this.tokenExpiry) await this.refresh();
    return this.accessToken;
  }

  /**
   * One JSON request. `auth`: `true` for the access token (refreshed once on `token_expired`),
   * a string for another bearer token (a channel capability), `false` for none.
   */
  async call(method, path, bodyText, auth = true, retried = false, extra = undefined) {
    const headers = { ...extra };
    if (bodyText != null) headers["Content-Type"] = "application/json";
    if (auth === true) headers["Authorization"] = `Bearer ${await this.token()}`;
    else if (typeof auth === "string") headers["Authorization"] = `Bearer ${auth}`;
    const init = { method, headers, body: bodyText ?? undefined };
    if (auth === false) {
      // Requests without a credential (sealed sends above all) carry none of the browser's
      // either, and are never cached: a browser keeps credential-less requests on connections
      // of their own (Chromium's "privacy mode" socket pools), apart from credentialed ones.
      init.credentials = "omit";
      init.cache = "no-store";
      init.referrerPolicy = "no-referrer";
    }
    const resp = await fetch(this.relayUrl + path, init);
    const text = await resp.text();
    const value = text ? JSON.parse(text) : null;
    if (resp.ok) return value;
    const err = value?.error ?? {};
    if (auth === true && !retried && err.code === "token_expired") {
      this.accessToken = null;
      await this.refresh();
      return this.call(method, path, bodyText, auth, true, extra);
    }
    throw new RelayError(resp.status, err.code ?? "unknown", err.message ?? "", text);
  }

  accountId() { return this.device.accountId(); }

  /** The account id of a username (§11.4). */
  async lookup(username) {
    const r = await this.call("POST", "/v1/usernames/lookup", JSON.stringify({ username }));
    return r.account_id;
  }

  /**
   * Publishes this account's first signed device list (§15.2): a new account identity key
   * naming this device.
   */
  async publishFirstList() {
    const body = this.device.firstOwnList(nowSecs());
    await this.call("PUT", "/v1/account/device-list", body);
    this.device.ownListPublished(nowSecs());
  }

  /**
   * Reads `account`'s signed device list and gives it to the device (§15.2): pins the account
   * key on first contact, refuses a changed key, a rollback or a fork (thrown as
   * `account_key_changed` / `device_list_refused`). Returns the change worth showing
   * (devices added, removed, re-keyed) or `null`. For this account with no list yet (an
   * account from before lists), this device publishes the first one.
   */
  async fetchDeviceList(account) {
    let answer = null;
    try {
      answer = JSON.stringify(await this.call("GET", `/v1/accounts/${account}/device-list`, null));
    } catch (e) {
      if (!(e instanceof RelayError && e.code === "device_list_not_found")) throw e;
      if (account === this.accountId() && this.device.needsFirstList()) {
        await this.publishFirstList();
        await this.persist(this.device);
        return null;
      }
    }
    const change = this.device.acceptDeviceList(account, answer, nowSecs());
    await this.persist(this.device);
    return change;
  }

  // ---------------------------------------------------------------- the account's lifecycle

  /**
   * Proves the password (and the TOTP code, when on) again and makes one call with the
   * single-use proof (§11.6.1); the proof lives only for that call.
   */
  async callFresh(password, totp, method, path, bodyText) {
    const start = await this.call("POST", "/v1/account/reauth/start", this.device.reauthStart(password));
    let { fresh_auth: proof } = await this.call("POST", "/v1/account/reauth/finish",
      this.device.reauthFinish(password, JSON.stringify(start), totp || undefined));
    try {
      return await this.call(method, path, bodyText, true, false, { [FRESH_AUTH_HEADER]: proof });
    } finally {
      proof = null;
    }
  }

  /**
   * Changes the account password (§11.6.2): every session of the account ends, this device
   * gets a new one. Messages and keys are unaffected.
   */
  async changePassword(password, newPassword, totp) {
    const start = await this.call("POST", "/v1/account/password/start", this.device.credentialStart(newPassword));
    const tokens = await this.callFresh(password, totp, "POST", "/v1/account/password/finish",
      this.device.credentialFinish(newPassword, JSON.stringify(start)));
    await this.applyTokens(tokens);
  }

  /**
   * Sets (or replaces) the account recovery code (§11.6.3) and returns it, to show the user
   * once; the relay keeps only its OPAQUE record.
   */
  async setRecoveryCode(password, totp) {
    const code = this.device.generateRecoveryCode();
    const start = await this.call("POST", "/v1/account/recovery/start", this.device.credentialStart(code));
    await this.callFresh(password, totp, "POST", "/v1/account/recovery/finish",
      this.device.credentialFinish(code, JSON.stringify(start)));
    return code;
  }

  /**
   * Recovers this device's account with its recovery code (§11.6.3): sets `newPassword`,
   * ends every session and uses the code up; then `relogin(newPassword)`.
   */
  async recoverAccount(code, newPassword, totp) {
    await HavenClient.recoverWith(this, this.device, code, newPassword, undefined, totp);
    this.accessToken = null;
  }

  /** As `recoverAccount`, by username, from a browser without the account's state. */
  static async recoverAccount(wasm, relayUrl, username, code, newPassword, totp) {
    const device = await wasm.WebDevice.create();
    try {
      await HavenClient.recoverWith(new HavenClient(wasm, device, relayUrl), device, code, newPassword, username, totp);
    } finally {
      device.close();
    }
  }

  static async recoverWith(c, device, code, newPassword, username, totp) {
    const start = await c.call("POST", "/v1/recover/start", device.recoverStart(code, newPassword, username), false);
    await c.call("POST", "/v1/recover/finish",
      device.recoverFinish(code, newPassword, JSON.stringify(start), totp || undefined), false);
  }

  /** A new pending TOTP secret: `{secret, otpauth_uri}` for the authenticator app. */
  totpSetup() { return this.call("POST", "/v1/account/totp/setup", null); }

  /** Turns TOTP on with a code from the pending secret (then logins need a code). */
  async totpVerify(code) {
    await this.call("POST", "/v1/account/totp/verify", JSON.stringify({ code }));
  }

  /** Turns TOTP off (the password and a current code proven again). */
  async totpDisable(password, code) {
    await this.callFresh(password, code, "POST", "/v1/account/totp/disable", JSON.stringify({ code }));
  }

  /** Ends this session on the relay (the device state stays; `relogin` to come back). */
  async logout() {
    await this.call("POST", "/v1/logout", null);
    this.accessToken = null;
  }

  /** Ends every session of the account, this one included. */
  async logoutEverywhere() {
    await this.call("POST", "/v1/logout/all", null);
    this.accessToken = null;
  }

  // ---- push endpoints (PROTOCOL §18)

  /**
   * The relay's VAPID public key (base64url): the `applicationServerKey` for
   * `pushManager.subscribe` (convert it with `base64UrlToBytes`).
   */
  async pushVapidKey() {
    return (await this.call("GET", "/v1/push/vapid", null, false)).public_key;
  }

  /**
   * Registers a Web Push subscription for this device: a `PushSubscription` or its `toJSON()`
   * (`{endpoint, keys: {p256dh, auth}}`). Checked before anything is sent (`invalid_argument`);
   * the same subscription again gets the same id. Resolves to the endpoint's id.
   */
  async registerWebPush(subscription) {
    const json = typeof subscription?.toJSON === "function" ? subscription.toJSON() : subscription;
    const body = this.wasm.pushWebPushRequest(json?.endpoint, json?.keys?.p256dh, json?.keys?.auth);
    return (await this.call("POST", "/v1/push/endpoints", body)).id;
  }

  /** Registers this device's key at the relay's push gateway (`appId` there); resolves to its id. */
  async registerGatewayPush(appId, pushkey) {
    const body = this.wasm.pushGatewayRequest(appId, pushkey);
    return (await this.call("POST", "/v1/push/endpoints", body)).id;
  }

  /** This device's push endpoints: `[{id, kind, created_at}]`. */
  async pushEndpoints() {
    return (await this.call("GET", "/v1/push/endpoints", null)).endpoints;
  }

  /** Removes one of this device's push endpoints. */
  async removePushEndpoint(id) {
    await this.call("DELETE", this.wasm.pushEndpointPath(id), null);
  }

  /** The account's devices on the relay, oldest first (`current` marks this one). */
  async devices() {
    return (await this.call("GET", "/v1/devices", null)).devices;
  }

  /**
   * Sets a device's name blob (`null` clears it), as given: the app encrypts it (the relay
   * keeps it for the account's devices and cannot read it).
   */
  async renameDevice(deviceId, nameBytes) {
    const name = nameBytes ? btoa(String.fromCharCode(...nameBytes)) : null;
    await this.call("PUT", `/v1/devices/${deviceId}/name`, JSON.stringify({ name }));
  }

  /**
   * Unlinks device `number` of this account: a new signed list without it (contacts stop
   * encrypting to it and refuse its messages), then the relay forgets it (with the password
   * and TOTP code proven again).
   */
  async unlinkDevice(number, password, totp) {
    const own = this.accountId();
    await this.fetchDeviceList(own);
    const body = this.device.unlinkList(number, nowSecs());
    if (body != null) {
      await this.call("PUT", "/v1/account/device-list", body);
      this.device.ownListPublished(nowSecs());
      await this.persist(this.device);
    }
    const device = (await this.devices()).find((d) => d.device_number === number);
    if (!device) {
      if (body != null) return;
      throw new Error(`no device ${number} in this account`);
    }
    await this.callFresh(password, totp, "DELETE", `/v1/devices/${device.device_id}`, null);
  }

  /** Deletes the account and everything the relay keeps for it (the page then forgets its state). */
  async deleteAccount(password, totp) {
    await this.callFresh(password, totp, "DELETE", "/v1/account", null);
    this.accessToken = null;
  }

  /** Everything the relay stores about the account (§11.9), as JSON. */
  exportAccount() { return this.call("GET", "/v1/account/export", null); }

  /**
   * Marks `account` verified once the user compared the account safety number
   * (`device.accountSafetyNumber`): a device it links later makes sends to it throw
   * `unconfirmed_devices` until `confirmDevices`.
   */
  async markVerified(account) {
    if (this.device.deviceListDue(account, nowSecs())) await this.fetchDeviceList(account);
    this.device.markVerified(account);
    await this.persist(this.device);
  }

  /** Confirms a verified account's new devices (the user accepted them). */
  async confirmDevices(account) {
    this.device.confirmDevices(account);
    await this.persist(this.device);
  }

  /** `null` when `account` is not verified, else the devices waiting for confirmation. */
  verification(account) { return this.device.verification(account); }

  /** Fetches a sender certificate (§11.13) when the cached one is missing or about to expire. */
  async ensureCertificate() {
    if (this.device.needsCertificate(nowSecs())) {
      const cert = await this.call("POST", "/v1/certificate", null);
      this.device.setCertificate(JSON.stringify(cert), nowSecs());
    }
  }

  /**
   * Delivers a prepared content to every device of one account: claims the bundles the device
   * asks for, encrypts, and posts (without the bearer token when sealed); a 409/410 answer
   * repairs the device list and the send is retried once. Returns whether it went sealed, or
   * `null` when there was nothing to send (this account without another device).
   */
  /**
   * Fetches the relay's franking key (§16.9) when the device says it is due; a 404 means the
   * relay offers none (a key offered before is kept, so sends never go back to unfranked).
   */
  async ensureFrankingKey() {
    if (!this.device.needsFrankingKey(nowSecs())) return;
    let answer = null;
    try {
      answer = JSON.stringify(await this.call("GET", "/v1/franking/key", null, false));
    } catch (e) {
      if (!(e instanceof RelayError && e.status === 404)) throw e;
    }
    this.device.setFrankingKey(answer, nowSecs());
    await this.persist(this.device);
  }

  async deliver(messageId, account) {
    try {
      await this.ensureCertificate();
      await this.ensureFrankingKey();
      if (this.device.deviceListDue(account, nowSecs())) await this.fetchDeviceList(account);
      for (let attempt = 0; ; attempt++) {
        const answers = [];
        for (const path of this.device.claimPaths(account)) {
          answers.push(JSON.stringify(await this.call("GET", path, null)));
        }
        const send = this.device.encryptPrepared(messageId, account, answers, nowSecs());
        await this.persist(this.device);
        if (send === null) return null;
        try {
          await this.call("POST", send.path, send.body, !send.sealed);
          return send.sealed;
        } catch (e) {
          if (attempt === 0 && e instanceof RelayError && (e.status === 409 || e.status === 410)) {
            try {
              this.device.repairDevices(account, e.body, false);
            } catch (r) {
              // A device the signed list we hold does not name: the account may have linked it
              // since; read its list again, then decide (refused if still unlisted).
              if (r.code !== "need_device_list") throw r;
              await this.fetchDeviceList(account);
              this.device.repairDevices(account, e.body, true);
            }
            continue;
          }
          throw e;
        }
      }
    } catch (e) {
      // The page's event names the account whose device or list was refused.
      if ((e?.code === "device_list_refused" || e?.code === "account_key_changed") && e.account == null) {
        e.account = account;
      }
      throw e;
    }
  }

  /**
   * A prepared 1:1 content to every device of `account`, then the copy to this account's
   * other devices (§13.2; the own device list is read first when none is known); the prepared
   * content is forgotten afterwards. Returns whether the send to `account` went sealed.
   */
  async deliverDirect(messageId, account) {
    try {
      const sealed = await this.deliver(messageId, account);
      const own = this.accountId();
      if (account !== own) {
        if (this.device.ownDevicesDue(nowSecs())) {
          if (this.device.needsFirstList()) {
            const devices = await this.call("GET", "/v1/devices", null);
            this.device.setOwnDevices(JSON.stringify(devices));
          } else {
            await this.fetchDeviceList(own);
          }
        }
        await this.deliver(messageId, own);
      }
      return sealed;
    } finally {
      this.device.finishSend(messageId);
      await this.persist(this.device);
    }
  }

  /** A prepared content to each of `delivery.accounts` in order (no sync copy), then forgotten. */
  async deliverTo(delivery) {
    try {
      for (const account of delivery.accounts) await this.deliver(delivery.messageId, account);
    } finally {
      this.device.finishSend(delivery.messageId);
      await this.persist(this.device);
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

  /**
   * Key upkeep for a device that is online, as natively: tops the one-time prekeys up and
   * rotates the signed prekey weekly. A failure is retried at the next catch-up; messaging goes
   * on with the current keys.
   */
  async maintainKeys() {
    try {
      await this.replenishKeys();
      const body = this.device.rotateKeys(nowSecs());
      if (body !== undefined) {
        await this.call("PUT", "/v1/keys", body);
        this.device.keysRotated();
      }
      await this.persist(this.device);
    } catch (e) {
      console.warn("haven: key upkeep failed, retried at the next catch-up", e);
    }
  }

  /** A WebSocket URL with a fresh ticket (§11.14: browsers cannot set headers on a socket). */
  async socketUrl() {
    const { ticket } = await this.call("POST", "/v1/ws/ticket", null);
    return `${this.relayUrl.replace(/^http/, "ws")}/v1/ws?ticket=${encodeURIComponent(ticket)}`;
  }

  close() {
    this.device.close();
  }
}

/** Reconnect delays: exponential from 250 ms to 30 s, each uniform in [0, ceiling] (full jitter). */
/** Bytes of a base64url text (with or without padding): e.g. the VAPID key for `subscribe`. */
export function base64UrlToBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return base64ToBytes(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
}

const backoff = (attempt) => Math.random() * Math.min(30_000, 250 * 2 ** Math.min(attempt, 20));

export class HavenMessenger {
  /**
   * The messenger of `client`'s device. Events (`HavenEvent`s of the wasm package, plus
   * `connection` changes) go to the listeners of `on`.
   */
  static async create(client) {
    return new HavenMessenger(client, await client.wasm.WebMessenger.create(client.device));
  }

  constructor(client, messenger) {
    this.client = client;
    this.wasm = client.wasm;
    this.m = messenger;
    this.listeners = new Set();
    this.socket = null;
    this.running = false;
    this.wake = null;
    this.tasks = Promise.resolve(0);
    this.taskTimer = null;
    this.waking = null;
  }

  /** Adds an event listener; returns the function that removes it. */
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(events) {
    for (const e of events) {
      for (const l of this.listeners) {
        try { l(e); } catch (err) { console.error("haven event listener", err); }
      }
    }
  }

  async persist() { await this.client.persist(this.client.device); }

  own() { return this.client.accountId(); }

  /**
   * A refusal met while sending: an identity change, a device or device list the relay made up
   * or rolled back, a changed account key. An event for the page, then the error goes on.
   */
  identity(e) {
    if (e?.code === "identity_changed" && e.account) {
      this.emit([{ type: "identity_changed", account: e.account, device: e.device }]);
    } else if (e?.code === "device_list_refused" && e.account) {
      this.emit([{ type: "device_list_refused", account: e.account, reason: e.message }]);
    } else if (e?.code === "account_key_changed" && e.account) {
      this.emit([{ type: "account_key_changed", account: e.account }]);
    }
  }

  // ------------------------------------------------------------------ contacts

  /** Adds a contact by account id and sends it this account's contact card (so its replies are sealed). */
  async addContact(account, username) {
    const contact = this.m.addContact(account, username);
    await this.persist();
    await this.ensureCardSent(account);
    return this.m.contact(account) ?? contact;
  }

  /** Adds a contact by username (the relay resolves it and forgets the lookup). */
  async addContactByUsername(username) {
    const account = await this.client.lookup(username);
    return this.addContact(account, username);
  }

  contact(account) { return this.m.contact(account); }
  contacts() { return this.m.contacts(); }

  async ensureCardSent(account) {
    const messageId = this.m.cardFor(account, Date.now());
    if (messageId == null) return;
    try {
      await this.client.deliverDirect(messageId, account);
    } catch (e) {
      this.identity(e);
      throw e;
    }
    this.m.cardSent(account);
    await this.persist();
  }

  /** The safety numbers with each known device of `account` (compare them out of band). */
  safetyNumbers(account) { return this.m.safetyNumbers(account); }

  /** The identity key (base64) a device of `account` now presents, from its bundle (spends a one-time prekey). */
  async identityKeyOf(account, device) {
    const answer = await this.client.call("GET", `/v1/keys/${account}/${device}`, null);
    return answer.bundles[0].identity_key;
  }

  /** The safety number with `account` if its device had `identityKey`: compare before accepting. */
  safetyNumberWith(account, identityKey) { return this.m.safetyNumberWith(account, identityKey); }

  /** Accepts a contact device's new identity key; the next message starts a new session. */
  async acceptIdentity(account, device, identityKey) {
    this.m.acceptIdentity(account, device, identityKey);
    await this.persist();
  }

  // ------------------------------------------------------------------ sending

  /** Delivers an action's content (a card first to a contact that has not had it), then applies it locally. */
  async run(action, { card = true } = {}) {
    let ok = false;
    try {
      if (action.direct) {
        if (card && !action.direct.ephemeral) await this.ensureCardSent(action.direct.account);
        try {
          await this.client.deliverDirect(action.direct.messageId, action.direct.account);
        } catch (e) {
          this.identity(e);
          throw e;
        }
      } else {
        await this.sendGroup(action.group);
      }
      ok = true;
    } finally {
      this.m.actionDone(action.actionId, ok);
      await this.persist();
    }
    return action;
  }

  /** This device's sender key to the members first when it was just made, then the entry; returns the relay's answer. */
  async sendGroup(send) {
    if (send.senderKey) await this.client.deliverTo(send.senderKey);
    return this.client.call("POST", send.post.path, send.post.body, send.post.token);
  }

  // Group contents are sealed (and franked, §16.3) when the action is prepared, so the relay's
  // franking key is fetched first when due; 1:1 sends fetch it before encrypting.

  /** Sends a text (and an encoded attachment pointer, optionally); returns its message id. */
  async sendText(conversation, text, attachment) {
    await this.client.ensureFrankingKey();
    const action = this.m.sendText(conversation, text, Date.now(), attachment);
    await this.persist();
    await this.run(action);
    return action.contentId;
  }

  /** Marks messages as read and tells their senders. */
  async markRead(conversation, messageIds) {
    await this.client.ensureFrankingKey();
    const action = this.m.markRead(conversation, messageIds, Date.now());
    if (action) await this.run(action);
  }

  /** Tells a contact that this user started or stopped typing (ephemeral: never stored by the relay). */
  async sendTyping(conversation, started) {
    await this.run(this.m.typing(conversation, started, Date.now()), { card: false });
  }

  /** Reacts to a message (`remove`: takes this account's reaction back). */
  async react(conversation, target, emoji, remove = false) {
    await this.client.ensureFrankingKey();
    await this.run(this.m.react(conversation, target, emoji, remove, Date.now()));
  }

  /** Edits one of this account's messages. */
  async edit(conversation, target, text) {
    await this.client.ensureFrankingKey();
    await this.run(this.m.edit(conversation, target, text, Date.now()));
  }

  /** Deletes one of this account's messages for everyone. */
  /**
   * Reports a message received in `conversation` as abuse (§16.9): reveals that one message
   * to the relay, which verifies who sent it. Resolves to `{report_id, attributed}`.
   */
  async reportMessage(conversation, messageId) {
    const body = this.m.reportMessage(conversation, messageId, Date.now());
    return this.client.call("POST", "/v1/reports", body);
  }

  async deleteMessage(conversation, target) {
    await this.client.ensureFrankingKey();
    await this.run(this.m.deleteMessage(conversation, target, Date.now()));
  }

  /** Sets the conversation's disappearing timer (seconds, 0 = off) for both sides. */
  async setTimer(conversation, expireSecs) {
    await this.client.ensureFrankingKey();
    await this.run(this.m.setTimer(conversation, expireSecs, Date.now()));
  }

  /** The messages of a conversation, oldest first (disappeared ones are deleted). */
  history(conversation) { return this.m.history(conversation, Date.now()); }
  conversations() { return this.m.conversations(); }
  timer(conversation) { return this.m.timer(conversation); }
  groups() { return this.m.groups(); }

  // ------------------------------------------------------------------ groups

  /** A channel for a group epoch (§11.15); the relay's default lifetime when it refuses ours. */
  async createChannel() {
    try {
      return await this.client.call("POST", "/v1/channels", this.m.channelRequest());
    } catch (e) {
      if (e instanceof RelayError && e.code === "invalid_ttl") {
        return this.client.call("POST", "/v1/channels", "{}");
      }
      throw e;
    }
  }

  /** The invite, then this device's sender key, to each account (after the card to contacts that have not had it). */
  async invite(invites) {
    const own = this.own();
    for (const account of invites.invite.accounts) {
      if (account !== own) await this.ensureCardSent(account);
    }
    await this.client.deliverTo(invites.invite);
    if (invites.adminKey) await this.client.deliverTo(invites.adminKey);
    await this.client.deliverTo(invites.senderKey);
    this.subscribe(invites.groupId);
    this.emit([invites.event]);
  }

  /** Creates a group with `members` (this account is added); returns its id. */
  async createGroup(name, members) {
    const channel = await this.createChannel();
    const invites = this.m.createGroup(name, members, JSON.stringify(channel), Date.now());
    await this.persist();
    await this.invite(invites);
    return invites.groupId;
  }

  /** Adds a member (this device must hold the group's admin key): a new epoch every member moves to; the new member reads what is sent from now on (not the history). */
  async addMember(groupId, account) {
    const change = this.m.addMember(groupId, account, Date.now());
    let invites;
    try {
      await this.sendGroup(change.update);
      const channel = await this.createChannel();
      invites = this.m.addMemberPosted(change.changeId, JSON.stringify(channel), Date.now());
    } catch (e) {
      if (!invites) this.m.actionDone(change.changeId, false);
      throw e;
    } finally {
      await this.persist();
    }
    await this.invite(invites);
  }

  /** Removes a member: a new epoch (channel, group key, sender keys) only the others learn. */
  async removeMember(groupId, account) {
    const change = this.m.removeMember(groupId, account, Date.now());
    let invites;
    try {
      await this.sendGroup(change.update);
      const channel = await this.createChannel();
      invites = this.m.removeMemberPosted(change.changeId, JSON.stringify(channel), Date.now());
    } catch (e) {
      if (!invites) this.m.actionDone(change.changeId, false);
      throw e;
    } finally {
      await this.persist();
    }
    await this.invite(invites);
  }

  // ------------------------------------------------------------------ receiving

  /** Sends the subscriptions of a group's channels (of every group without `groupId`) on the open socket. */
  subscribe(groupId) {
    const ws = this.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    for (const frame of this.m.subscribeFrames(groupId)) ws.send(frame);
  }

  /** Emits what a received envelope or entries did; subscribes to groups joined. */
  finish(received) {
    this.emit(received.events);
    for (const g of received.subscribe) this.subscribe(g);
  }

  /**
   * When this device sends the delivery receipts it owes: `{mode: "immediate" | "delayed" |
   * "off", minSecs?, maxSecs?}` (PROTOCOL §13.4.1; by default delayed 5 to 60 s and batched
   * per contact).
   */
  receiptPolicy() { return this.m.receiptPolicy(); }

  /** Sets the receipt policy (kept in the device's state); receipts owed follow it. */
  async setReceiptPolicy(policy) {
    const set = this.m.setReceiptPolicy(policy);
    await this.persist();
    await this.runTasks();
    return set;
  }

  /** When (ms since the epoch) the next delayed follow-up becomes due, or `null`. */
  nextTaskDueMs() { return this.m.nextTaskDueMs(Date.now()); }

  /**
   * Runs the durable follow-ups that are due (sender-key distribution, delivery receipts: those
   * owed to one contact as one), one run at a time, then sets a timer for the next delayed
   * one. A task that fails stays queued for the next run; a changed identity (after an event)
   * or an account that no longer exists drops it, as natively.
   */
  runTasks() {
    const run = () => this.runTasksOnce();
    this.tasks = this.tasks.then(run, run).finally(() => this.scheduleTasks());
    return this.tasks;
  }

  /** Sets the timer that runs the follow-ups when the next delayed one becomes due. */
  scheduleTasks() {
    clearTimeout(this.taskTimer);
    this.taskTimer = null;
    let due;
    try {
      due = this.m.nextTaskDueMs(Date.now());
    } catch {
      return; // closed
    }
    if (due == null) return;
    const delay = Math.min(Math.max(0, due - Date.now()), 2 ** 31 - 1);
    this.taskTimer = setTimeout(() => {
      this.taskTimer = null;
      this.runTasks().catch((e) => console.error("haven follow-ups", e));
    }, delay);
    // In Node, a pending receipt does not keep the process alive.
    this.taskTimer?.unref?.();
  }

  async runTasksOnce() {
    let done = 0;
    for (const taskId of this.m.followUps(Date.now())) {
      const delivery = this.m.followUp(taskId, Date.now());
      if (delivery == null) { done++; continue; }
      try {
        await this.client.deliverTo(delivery);
        this.m.taskDone(taskId);
        done++;
      } catch (e) {
        if (e?.code === "identity_changed") {
          this.m.taskDone(taskId);
          this.identity(e);
        } else if (e instanceof RelayError && e.code === "account_not_found") {
          this.m.taskDone(taskId);
        }
      }
    }
    await this.persist();
    return done;
  }

  /**
   * Processes one envelope (exactly once); the caller acks it. `franking`: the relay's
   * `{commitment, stamp, seq, receivedAt}` for a franked envelope (§16.4), else `undefined`.
   */
  async receiveEnvelope(messageId, content, ephemeral = false, franking = undefined) {
    const f = franking ? JSON.stringify(franking) : undefined;
    let received = this.m.receiveEnvelope(messageId, content, ephemeral, Date.now(), false, f);
    if (received.status === "need_device_list") {
      // The sender's signed list is unknown or does not name the sending device: read it
      // again, then decide (an unlisted sender is refused).
      try {
        const change = await this.client.fetchDeviceList(received.account);
        if (change) this.emit([{ type: "devices_changed", ...change }]);
      } catch (e) {
        if (e.code === "account_key_changed") this.emit([{ type: "account_key_changed", account: received.account }]);
        else if (e.code === "device_list_refused") this.emit([{ type: "device_list_refused", account: received.account, reason: e.message }]);
        else throw e;
      }
      received = this.m.receiveEnvelope(messageId, content, ephemeral, Date.now(), true, f);
    }
    await this.persist();
    this.finish(received);
    return received;
  }

  /** Reads every group channel after its cursor over REST. */
  async pollGroups() {
    for (const read of this.m.channelReads()) {
      let path = read.path;
      while (path) {
        let answer;
        try {
          answer = await this.client.call("GET", path, null, read.token);
        } catch (e) {
          // An expired old channel has nothing more to give.
          if (e instanceof RelayError && e.code === "channel_not_found") break;
          throw e;
        }
        const page = this.m.receiveChannelPage(read.channelId, JSON.stringify(answer), Date.now());
        await this.persist();
        this.finish(page);
        path = page.next;
      }
    }
  }

  /**
   * Fetches and processes everything waiting once over REST (queued envelopes, acked after
   * their effects are stored; group channels; follow-ups; key upkeep). Returns the number of
   * envelopes processed.
   */
  async sync() {
    return (await this.catchUp(Infinity)).count;
  }

  /**
   * Handles a push wake-up (PROTOCOL §13.4.2), e.g. when the service worker tells the page a
   * push arrived: fetches what is waiting, processes it (decrypt, store, receipts per the
   * policy), acknowledges it and resolves to a `WakeSummary` for a local notification
   * (`{envelopes, messages, conversations, complete, nextTaskDueMs}`; the relay learns nothing
   * of it). Stops at `budgetMs` (`complete: false`: the rest waits on the relay). Safe while
   * `start()` is connected, and when called again before the last one ended (calls run one
   * after the other): each message is processed once.
   */
  handleWakeUp({ budgetMs = this.wasm.wakeBudgetMs() } = {}) {
    const run = () => this.wakeOnce(budgetMs);
    this.waking = (this.waking ?? Promise.resolve()).then(run, run);
    return this.waking;
  }

  async wakeOnce(budgetMs) {
    const deadline = Date.now() + budgetMs;
    this.m.beginWake();
    let complete = false;
    let timer;
    try {
      // The deadline is checked between envelopes; the timer is the hard stop for a request
      // that hangs (what it processes later is still processed once).
      const cutoff = new Promise((resolve) => { timer = setTimeout(() => resolve({ complete: false }), budgetMs + 1000); });
      ({ complete } = await Promise.race([this.catchUp(deadline), cutoff]));
    } finally {
      clearTimeout(timer);
    }
    return this.m.endWake(complete, Date.now());
  }

  /** `sync`'s work until `deadline` (ms since the epoch): `{count, complete}`. */
  async catchUp(deadline) {
    await this.runTasks();
    let after = 0;
    let count = 0;
    let complete = true;
    for (;;) {
      if (Date.now() >= deadline) { complete = false; break; }
      const page = await this.client.call("GET", `/v1/messages?after=${after}&limit=100`, null);
      const ids = [];
      for (const env of page.envelopes) {
        if (Date.now() >= deadline) { complete = false; break; }
        after = Math.max(after, env.seq);
        const franking = env.franking
          ? { commitment: env.franking.commitment, stamp: env.franking.stamp, seq: env.seq, receivedAt: env.received_at }
          : undefined;
        await this.receiveEnvelope(env.message_id, env.content, false, franking);
        ids.push(env.message_id);
        count++;
      }
      if (ids.length) await this.client.call("POST", "/v1/messages/ack", JSON.stringify({ message_ids: ids }));
      if (!complete || !page.more || page.envelopes.length === 0) break;
    }
    if (complete) await this.pollGroups();
    await this.runTasks();
    if (complete) await this.client.maintainKeys();
    return { count, complete };
  }

  /**
   * Keeps the WebSocket open until `stop()`, the session is revoked, or a newer socket of this
   * device replaces it: processes queued and live envelopes (acking each after its effects are
   * stored) and channel entries of every group, runs follow-ups, and reconnects with jittered
   * exponential backoff. Connection changes are `connection` events. Returns at once.
   */
  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  /** Closes the socket and stops reconnecting. */
  stop() {
    this.running = false;
    this.socket?.close(1000);
    this.wake?.();
  }

  connection(state, reason = null, retryIn) {
    const e = { type: "connection", state, reason };
    if (retryIn !== undefined) e.retryIn = retryIn;
    this.emit([e]);
  }

  async loop() {
    let attempt = 0;
    while (this.running) {
      this.connection("connecting");
      let reason;
      try {
        const outcome = await this.serve(await this.client.socketUrl(), () => { attempt = 0; });
        if (outcome.stop) {
          this.running = false;
          this.connection("stopped", outcome.stop);
          return;
        }
        reason = outcome.reason;
      } catch (e) {
        if (e instanceof RelayError && e.status === 401) {
          // The session is gone (logged out, unlinked, refresh token reused): log in again.
          this.running = false;
          this.connection("stopped", e.message);
          return;
        }
        reason = e?.message ?? String(e);
      }
      if (!this.running) break;
      const retryIn = Math.round(backoff(attempt++));
      this.connection("disconnected", reason, retryIn);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, retryIn);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = null;
    }
    this.connection("stopped", "stopped by the page");
  }

  /** Serves one socket until it closes: `{stop: reason}` for good, `{reason}` to reconnect. */
  serve(url, caughtUp) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      this.socket = ws;
      let opened = false;
      // Frames are handled one at a time, in order.
      let chain = Promise.resolve();
      ws.onopen = () => {
        opened = true;
        this.connection("connected");
        this.subscribe();
      };
      ws.onerror = () => { if (!opened) reject(new Error("websocket failed")); };
      ws.onclose = (ev) => {
        if (this.socket === ws) this.socket = null;
        chain.finally(() => {
          if (ev.code === 4000) resolve({ stop: "replaced by a newer connection of this device" });
          else if (ev.code === 4001) resolve({ stop: "revoked by the relay" });
          else resolve({ reason: `closed (${ev.code})` });
        });
      };
      ws.onmessage = (ev) => {
        if (!(ev.data instanceof ArrayBuffer)) return;
        chain = chain.then(() => this.frame(ws, new Uint8Array(ev.data), caughtUp)).catch((e) => {
          this.emit([{ type: "rejected", reason: `frame: ${e.code ?? ""} ${e.message}` }]);
        });
      };
    });
  }

  async frame(ws, bytes, caughtUp) {
    let frame;
    try {
      frame = this.wasm.parseServerFrame(bytes);
    } catch (e) {
      this.emit([{ type: "rejected", reason: e.message }]);
      return;
    }
    if (frame.type === "envelope") {
      const franking = frame.franking
        ? { ...frame.franking, seq: frame.seq, receivedAt: frame.receivedAt }
        : undefined;
      const received = await this.receiveEnvelope(frame.messageId, frame.content, false, franking);
      if (ws.readyState === WebSocket.OPEN) ws.send(this.wasm.ackFrame([frame.messageId]));
      // A task that keeps failing is retried at the next catch-up, not on every frame.
      if (received.tasksAdded) await this.runTasks();
    } else if (frame.type === "ephemeral") {
      await this.receiveEnvelope(frame.messageId, frame.content, true);
    } else if (frame.type === "channel_entry") {
      const franking = frame.franking
        ? JSON.stringify({ ...frame.franking, seq: frame.seq, createdAt: frame.createdAt })
        : undefined;
      const received = this.m.receiveChannelEntry(frame.channelId, frame.seq, frame.entry, Date.now(), franking);
      await this.persist();
      this.finish(received);
      if (received.tasksAdded) await this.runTasks();
    } else if (frame.type === "queue_empty") {
      caughtUp();
      this.connection("caught_up");
      await this.runTasks();
      await this.client.maintainKeys();
    }
  }

  /** Stops the socket and forgets what is in flight (the device stays open). */
  close() {
    this.stop();
    clearTimeout(this.taskTimer);
    this.taskTimer = null;
    this.m.close();
  }
}

export { base64ToBytes };

// The diary synced through the vault, and attachments: their own modules, exported here too.
export { HavenDiary, DIARY_KDF } from "./haven-diary.js";
export {
  uploadAttachment, openAttachment, saveAttachment, sendFile, pointerBytes,
} from "./haven-attachments.js";
