// Types of haven-client.js. `WebDevice`, `Opened` and the other wasm types come from the
// package that `wasm-bindgen` generates (haven_wasm.d.ts).
import type { WebDevice, Opened } from "./pkg/haven_wasm.js";

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

export declare class HavenClient {
  readonly device: WebDevice;
  readonly relayUrl: string;
  static register(wasm: object, relayUrl: string, username: string, password: string, persist?: Persist): Promise<HavenClient>;
  static login(wasm: object, relayUrl: string, username: string, password: string, persist?: Persist): Promise<HavenClient>;
  static resume(wasm: object, relayUrl: string, pageKey: Uint8Array, state: Uint8Array, persist?: Persist): Promise<HavenClient>;
  accountId(): string;
  lookup(username: string): Promise<string>;
  ensureCertificate(): Promise<void>;
  /** Sealed when the contact's access key is known; copied to this account's other devices. */
  sendText(account: string, text: string): Promise<string>;
  deliver(messageId: string, account: string): Promise<void>;
  replenishKeys(): Promise<boolean>;
  fetchMailbox(onOpened: (o: Opened) => Promise<void> | void): Promise<void>;
  connect(onOpened: (o: Opened) => Promise<void> | void, onState?: (state: string) => void): Promise<void>;
  call(method: string, path: string, bodyText: string | null, auth?: boolean): Promise<any>;
  close(): void;
}

export declare function base64ToBytes(b64: string): Uint8Array;
