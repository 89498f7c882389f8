// Types of haven-diary.js. `WebSyncedDiary` and the diary's JSON types come from the package that
// `wasm-bindgen` generates (haven_wasm.d.ts).
import type {
  DiaryEntry, DiaryOutcome, DiaryQuery, DiaryRevision, DiarySyncReport, ListedEntry, WebSyncedDiary,
} from "./pkg/haven_wasm.js";
import type { HavenClient } from "./haven-client.js";

export interface DiaryKdf { memoryKib: number; passes: number; }
/** The demo's Argon2id cost (the protocol's floor). */
export declare const DIARY_KDF: DiaryKdf;

export declare class HavenDiary {
  readonly client: HavenClient;
  readonly d: WebSyncedDiary;
  /** A fresh state, or `state` decrypted with `pageKey`; `persist` gets the sealed state after every change. */
  static open(client: HavenClient, options?: {
    pageKey?: Uint8Array; state?: Uint8Array; persist?: (state: Uint8Array) => Promise<void> | void;
  }): Promise<HavenDiary>;
  /** Sends the requests of the operation in progress; its outcome. */
  drive(): Promise<DiaryOutcome | DiaryRevision[]>;
  create(passphrase: string, kdf?: DiaryKdf): Promise<string[]>;
  unlock(passphrase: string): Promise<void>;
  recover(code: string, newPassphrase: string, kdf?: DiaryKdf): Promise<void>;
  sync(): Promise<DiarySyncReport>;
  write(entry: DiaryEntry): Promise<string>;
  edit(itemId: string, entry: DiaryEntry): Promise<void>;
  delete(itemId: string): Promise<void>;
  history(itemId: string): Promise<DiaryRevision[]>;
  restore(itemId: string): Promise<void>;
  changePassword(newPassphrase: string, kdf?: DiaryKdf): Promise<string[]>;
  regenerateRecoveryCodes(): Promise<string[]>;
  show(itemId: string): ListedEntry | null;
  list(query?: DiaryQuery): ListedEntry[];
  search(text: string): ListedEntry[];
  isUnlocked(): boolean;
  collectionId(): string;
  lock(): void;
  close(): void;
}
