// Types of haven-attachments.js. `AttachmentInfo` and `TransferProgress` come from the package
// that `wasm-bindgen` generates (haven_wasm.d.ts).
import type { AttachmentInfo, Conversation, TransferProgress } from "./pkg/haven_wasm.js";
import type { HavenClient, HavenMessenger } from "./haven-client.js";

export interface UploadOptions {
  /** Plaintext length; required for a ReadableStream (a Blob or File has its own). */
  size?: number;
  /** MIME type (printable ASCII); the file's own type by default. */
  contentType?: string;
  /** File name shared with the recipients; the File's name by default. */
  fileName?: string;
  /** A small preview image (at most 64 KiB), inline in the pointer. */
  thumbnail?: Uint8Array;
  /** Blob lifetime in seconds (the relay's default when omitted). */
  ttlSecs?: number;
  /** Called after each part (ciphertext bytes uploaded or found stored). */
  onProgress?: (p: TransferProgress) => void;
  /** Resumes an interrupted upload of the same file (only the missing parts are sent). */
  resumeState?: Uint8Array;
  /** Receives the resume state once the blob exists: secret (it holds the key), keep it encrypted. */
  onResumeState?: (state: Uint8Array) => Promise<void> | void;
}

/** Encrypts and uploads a file as one blob; the encoded pointer (§14) to send, secret. */
export declare function uploadAttachment(
  client: HavenClient, source: Blob | ReadableStream<Uint8Array>, options?: UploadOptions,
): Promise<Uint8Array>;

/** A message's pointer (`Message.attachment`, base64) as bytes. */
export declare function pointerBytes(pointer: Uint8Array | string): Uint8Array;

/** The plaintext as a stream decrypted as it arrives; it errors if the blob is not the pointer's. */
export declare function openAttachment(
  client: HavenClient, pointer: Uint8Array | string,
  options?: { onProgress?: (p: TransferProgress) => void },
): Promise<ReadableStream<Uint8Array>>;

/** The whole plaintext as a Blob, once the digest checked out, with what the sender said about it. */
export declare function saveAttachment(
  client: HavenClient, pointer: Uint8Array | string,
  options?: { onProgress?: (p: TransferProgress) => void },
): Promise<{ blob: Blob; info: AttachmentInfo }>;

/** Uploads `file` and sends it (with `options.text`) in a message; the message id. */
export declare function sendFile(
  messenger: HavenMessenger, conversation: Conversation, file: Blob,
  options?: UploadOptions & { text?: string },
): Promise<string>;
