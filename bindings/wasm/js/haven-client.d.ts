// Types of haven-client.js. `WebDevice`, `WebMessenger` and the other wasm types come from the
// package that `wasm-bindgen` generates (haven_wasm.d.ts).
import type {
  WebDevice, WebMessenger, Action, Contact, Conversation, Delivery, Group, GroupInvites,
  GroupSend, HavenEvent, Message, ReceiptPolicy, Received, SafetyNumber, WakeSummary,
} from "./pkg/haven_wasm.js";

export declare class RelayError extends Error {
  name: "RelayError";
  /** HTTP status. */
  status: number;
  /** The relay's stable error code (docs/PROTOCOL.md §11.2). */
  code: string;
  /** The raw JSON body of the answer. */
  body: string;
}

export type Persist = (device: WebDevice) => Promise<void> | void;

/** A 1:1 conversation with `account`. */
export declare function direct(account: string): Conversation;
/** A group conversation. */
export declare function group(groupId: string): Conversation;

/** A new browser waiting for approval (`HavenClient.startLink`). */
export interface PendingLink {
  /** The code to show the approving device (`haven-link:` and 85 letters and digits). */
  code: string;
  /** Waits for the approval and joins; resolves to the linked client. */
  finish(timeoutMs?: number): Promise<HavenClient>;
  /** Gives up (the box expires on the relay). */
  cancel(): void;
}

/** The device's I/O (as haven_client::Device natively). */
export declare class HavenClient {
  readonly device: WebDevice;
  readonly relayUrl: string;
  /** A new account with this device; sets the account's access key (so contacts send sealed). */
  static register(wasm: object, relayUrl: string, username: string, password: string, persist?: Persist): Promise<HavenClient>;
  /**
   * Starts linking this browser to an existing account: show `code` to a device of the account
   * (`approveLink`); `finish` waits for the approval (default 5 minutes) and joins. A password
   * alone never adds a device.
   */
  static startLink(wasm: object, relayUrl: string, persist?: Persist): Promise<PendingLink>;
  /** Recovers an account by username with its recovery code, setting `newPassword` (no session). */
  static recoverAccount(wasm: object, relayUrl: string, username: string, code: string, newPassword: string, totp?: string): Promise<void>;
  static resume(wasm: object, relayUrl: string, pageKey: Uint8Array, state: Uint8Array, persist?: Persist): Promise<HavenClient>;
  accountId(): string;
  /** Approves the new device showing `code` (`haven-link:…`). */
  approveLink(code: string): Promise<void>;
  /** Logs this device in again (after a logout or the end of its sessions), with the TOTP code when on. */
  relogin(password: string, totp?: string): Promise<void>;
  /** Proves the password (and TOTP code) again and makes one call with the single-use proof. */
  callFresh(password: string, totp: string | undefined, method: string, path: string, bodyText: string | null): Promise<any>;
  /** A new password; every session ends, this device gets a new one. */
  changePassword(password: string, newPassword: string, totp?: string): Promise<void>;
  /** Sets (or replaces) the recovery code; returns it, to show once. */
  setRecoveryCode(password: string, totp?: string): Promise<string>;
  /** Recovers this device's account with its recovery code (then `relogin(newPassword)`). */
  recoverAccount(code: string, newPassword: string, totp?: string): Promise<void>;
  totpSetup(): Promise<{ secret: string; otpauth_uri: string }>;
  totpVerify(code: string): Promise<void>;
  totpDisable(password: string, code: string): Promise<void>;
  logout(): Promise<void>;
  logoutEverywhere(): Promise<void>;
  /** The account's devices on the relay (`current` marks this one). */
  /** The relay's VAPID public key (base64url): `pushManager.subscribe`'s applicationServerKey. */
  pushVapidKey(): Promise<string>;
  /** Registers a Web Push subscription (checked first); resolves to the endpoint id. */
  registerWebPush(subscription: PushSubscription | { endpoint: string; keys: { p256dh: string; auth: string } }): Promise<string>;
  /** Registers this device's key at the relay's push gateway; resolves to the endpoint id. */
  registerGatewayPush(appId: string, pushkey: string): Promise<string>;
  /** This device's push endpoints. */
  pushEndpoints(): Promise<{ id: string; kind: "web_push" | "gateway"; created_at: number }[]>;
  /** Removes one of this device's push endpoints. */
  removePushEndpoint(id: string): Promise<void>;
  devices(): Promise<{ device_id: string; device_number: number; identity_key: string; name?: string | null; created_at: number; current: boolean }[]>;
  /** Sets a device's name blob as given (the app encrypts it), or clears it with `null`. */
  renameDevice(deviceId: string, nameBytes: Uint8Array | null): Promise<void>;
  /** Unlinks device `number`: a signed list without it, then the relay forgets it (fresh authentication). */
  unlinkDevice(number: number, password: string, totp?: string): Promise<void>;
  /** Deletes the account (fresh authentication). */
  deleteAccount(password: string, totp?: string): Promise<void>;
  /** Everything the relay stores about the account (§11.9). */
  exportAccount(): Promise<any>;
  lookup(username: string): Promise<string>;
  ensureCertificate(): Promise<void>;
  /** Marks `account` verified (after comparing the account safety number); its later devices need `confirmDevices`. */
  markVerified(account: string): Promise<void>;
  /** Confirms a verified account's new devices. */
  confirmDevices(account: string): Promise<void>;
  /** `null` when `account` is not verified, else the devices waiting for confirmation. */
  verification(account: string): number[] | null;
  /** Publishes this account's first signed device list (a new account key naming this device). */
  publishFirstList(): Promise<void>;
  /** Reads and accepts `account`'s signed device list; the change worth showing, or null. */
  fetchDeviceList(account: string): Promise<{ account: string; added: number[]; removed: number[]; rekeyed: number[] } | null>;
  /** A prepared content to every device of `account`; whether it went sealed, `null` when nothing was sent. */
  deliver(messageId: string, account: string): Promise<boolean | null>;
  /** To `account`, then the copy to this account's other devices; the prepared content is finished. */
  deliverDirect(messageId: string, account: string): Promise<boolean | null>;
  /** To each account in order (no copy); the prepared content is finished. */
  deliverTo(delivery: Delivery): Promise<void>;
  replenishKeys(): Promise<boolean>;
  /** Top-ups and the weekly signed-prekey rotation; failures are logged and retried later. */
  maintainKeys(): Promise<void>;
  socketUrl(): Promise<string>;
  /** `auth`: `true` for the access token, a string for another bearer token, `false` for none. */
  call(method: string, path: string, bodyText: string | null, auth?: boolean | string, retried?: boolean, headers?: Record<string, string>): Promise<any>;
  close(): void;
}

/** What `HavenMessenger` emits: the wasm package's events, and connection changes. */
export type MessengerEvent = HavenEvent
  | { type: "connection"; state: "disconnected"; reason: string; retryIn: number };

/** The messenger's I/O (as haven_client::Messenger natively). */
export declare class HavenMessenger {
  readonly client: HavenClient;
  readonly m: WebMessenger;
  static create(client: HavenClient): Promise<HavenMessenger>;
  /** Adds an event listener; returns the function that removes it. */
  on(listener: (event: MessengerEvent) => void): () => void;
  addContact(account: string, username?: string): Promise<Contact>;
  addContactByUsername(username: string): Promise<Contact>;
  contact(account: string): Contact | null;
  contacts(): Contact[];
  ensureCardSent(account: string): Promise<void>;
  safetyNumbers(account: string): SafetyNumber[];
  /** The identity key (base64) a device of `account` presents now, from its bundle. */
  identityKeyOf(account: string, device: number): Promise<string>;
  safetyNumberWith(account: string, identityKey: string): string;
  acceptIdentity(account: string, device: number, identityKey: string): Promise<void>;
  run(action: Action, options?: { card?: boolean }): Promise<Action>;
  sendGroup(send: GroupSend): Promise<any>;
  /** Returns the text's message id. */
  sendText(conversation: Conversation, text: string, attachment?: Uint8Array): Promise<string>;
  markRead(conversation: Conversation, messageIds: string[]): Promise<void>;
  sendTyping(conversation: Conversation, started: boolean): Promise<void>;
  react(conversation: Conversation, target: string, emoji: string, remove?: boolean): Promise<void>;
  edit(conversation: Conversation, target: string, text: string): Promise<void>;
  /** Reports a received message as abuse (PROTOCOL §16.9). */
  reportMessage(
    conversation: Conversation,
    messageId: string,
  ): Promise<{ report_id: string; attributed: boolean }>;
  deleteMessage(conversation: Conversation, target: string): Promise<void>;
  setTimer(conversation: Conversation, expireSecs: number): Promise<void>;
  history(conversation: Conversation): Message[];
  conversations(): Conversation[];
  timer(conversation: Conversation): number;
  groups(): Group[];
  createChannel(): Promise<any>;
  invite(invites: GroupInvites): Promise<void>;
  /** Returns the group id. */
  createGroup(name: string, members: string[]): Promise<string>;
  addMember(groupId: string, account: string): Promise<void>;
  removeMember(groupId: string, account: string): Promise<void>;
  subscribe(groupId?: string): void;
  /** When delivery receipts go out (PROTOCOL §13.4.1); default delayed 5–60 s, batched. */
  receiptPolicy(): ReceiptPolicy;
  setReceiptPolicy(policy: ReceiptPolicy): Promise<ReceiptPolicy>;
  /** When (ms since the epoch) the next delayed follow-up becomes due, or null. */
  nextTaskDueMs(): number | null;
  /** Runs the follow-ups that are due and sets a timer for the next delayed one. */
  runTasks(): Promise<number>;
  receiveEnvelope(
    messageId: string,
    content: string,
    ephemeral?: boolean,
    franking?: { commitment: string; stamp: string; seq: number; receivedAt: number },
  ): Promise<Received>;
  pollGroups(): Promise<void>;
  /** Everything waiting, once over REST; the number of envelopes processed. */
  sync(): Promise<number>;
  /**
   * Handles a push wake-up: fetches, processes and acknowledges what is waiting within
   * `budgetMs` (default 25 000) and resolves to what it found, for a local notification.
   */
  handleWakeUp(options?: { budgetMs?: number }): Promise<WakeSummary>;
  /** Keeps the WebSocket open (reconnecting) until `stop()`; returns at once. */
  start(): void;
  stop(): void;
  close(): void;
}

export declare function base64ToBytes(b64: string): Uint8Array;
/** Bytes of a base64url text (with or without padding), e.g. the VAPID key. */
export declare function base64UrlToBytes(text: string): Uint8Array;

export { HavenDiary, DIARY_KDF } from "./haven-diary.js";
export type { DiaryKdf } from "./haven-diary.js";
export {
  uploadAttachment, openAttachment, saveAttachment, sendFile, pointerBytes,
} from "./haven-attachments.js";
export type { UploadOptions } from "./haven-attachments.js";
