// The diary for browsers, synced through the relay's vault (docs/PROTOCOL.md §9, §11.16): the
// I/O around the wasm `WebSyncedDiary`, which holds the keys and runs the client core's diary
// (the one haven_client::Diary drives natively). Each operation is `begin…`, then every request
// it asks for is sent with the client's access token and answered, then `finish()`. The state
// (wrapped key bundle, entries as the relay has them, pending edits, sync token) is one sealed
// snapshot the page keeps, so a reload needs neither the passphrase's Argon2 twice nor a full
// resync. Types: haven-diary.d.ts.
import { RelayError } from "./haven-client.js";

/** Argon2id cost of the demo: the protocol's floor. Real apps use 65536 KiB, 3 passes or calibrate. */
export const DIARY_KDF = { memoryKib: 19456, passes: 2 };

export class HavenDiary {
  /**
   * The diary of `client`'s account on this page: a fresh state, or `state` (from `persist`)
   * decrypted with `pageKey`. `persist(bytes)` is called with the sealed state after every change.
   */
  static async open(client, { pageKey, state, persist } = {}) {
    const W = client.wasm.WebSyncedDiary;
    const d = state ? await W.importState(pageKey, state) : await W.create();
    return new HavenDiary(client, d, pageKey, persist);
  }

  constructor(client, diary, pageKey, persist) {
    this.client = client;
    this.d = diary;
    this.pageKey = pageKey;
    this.persistState = persist;
  }

  async save() {
    if (this.persistState && this.pageKey) await this.persistState(this.d.exportState(this.pageKey));
  }

  /** Sends every request of the operation in progress; its outcome. */
  async drive() {
    try {
      for (let req; (req = this.d.nextRequest()) !== null;) {
        let status = 200;
        let body = "";
        let refusal = null;
        try {
          const value = await this.client.call(req.method, req.path, req.body);
          body = value === null ? "" : JSON.stringify(value);
        } catch (e) {
          if (!(e instanceof RelayError)) throw e;
          ({ status, body } = e);
          refusal = e;
        }
        try {
          this.d.answer(status, body);
        } catch (e) {
          // A refusal the step does not expect: the relay's own error says why.
          throw e.code === "refused" && refusal ? refusal : e;
        }
      }
      return this.d.finish();
    } catch (e) {
      try { this.d.abort(); } catch { /* already ended */ }
      throw e;
    } finally {
      await this.save();
    }
  }

  /** Creates the account's diary; returns the ten recovery codes, to show once. */
  async create(passphrase, kdf = DIARY_KDF) {
    this.d.beginCreate(passphrase, kdf.memoryKib, kdf.passes);
    return (await this.drive()).recoveryCodes;
  }

  /** Unlocks (this page's state first, else the relay's key bundle); `not_found` when the account has no diary. */
  async unlock(passphrase) {
    this.d.beginUnlock(passphrase);
    await this.drive();
  }

  /** Recovers with a recovery code and sets a new passphrase. */
  async recover(code, newPassphrase, kdf = DIARY_KDF) {
    this.d.beginRecover(code, newPassphrase, kdf.memoryKib, kdf.passes);
    await this.drive();
  }

  /** Pushes pending edits (conflicts merged), pulls the other devices' changes; the report. */
  async sync() {
    this.d.beginSync();
    return (await this.drive()).report;
  }

  /** A new entry, local first (the next sync sends it); its id. */
  async write(entry) {
    const id = this.d.write(entry);
    await this.save();
    return id;
  }

  /** Replaces an entry's fields (its attachments are kept), local first. */
  async edit(itemId, entry) {
    this.d.edit(itemId, entry);
    await this.save();
  }

  /** Deletes an entry on the relay (its history stays); `conflict` if it changed elsewhere first. */
  async delete(itemId) {
    this.d.beginDelete(itemId);
    await this.drive();
  }

  /** Every revision of an entry, oldest first, each verified and decrypted. */
  async history(itemId) {
    this.d.beginHistory(itemId);
    return this.drive();
  }

  /** Restores a deleted entry from its last live revision (the next sync sends it). */
  async restore(itemId) {
    this.d.beginRestore(itemId);
    await this.drive();
  }

  /**
   * Changes the passphrase and starts a new key epoch (entries are untouched; the old passphrase
   * opens nothing written afterwards); `conflict` if another device changed it first. Returns new
   * recovery codes, to show once, when a diary created before key epochs was upgraded (its old
   * codes are replaced); otherwise an empty list.
   */
  async changePassword(newPassphrase, kdf = DIARY_KDF) {
    this.d.beginChangePassword(newPassphrase, kdf.memoryKib, kdf.passes);
    return (await this.drive()).recoveryCodes ?? [];
  }

  /** Replaces the recovery codes; the new ones, to show once. */
  async regenerateRecoveryCodes() {
    this.d.beginRegenerateCodes();
    return (await this.drive()).recoveryCodes;
  }

  show(itemId) { return this.d.show(itemId); }
  list(query) { return this.d.list(query); }
  search(text) { return this.d.search(text); }
  isUnlocked() { return this.d.isUnlocked(); }
  collectionId() { return this.d.collectionId(); }
  lock() { this.d.lock(); }
  close() { this.d.close(); }
}
