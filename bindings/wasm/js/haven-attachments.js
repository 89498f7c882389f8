// Attachments for browsers (docs/PROTOCOL.md §10, §11.17, §14): the I/O around the wasm
// `WebUpload` / `WebDownload`, which hold the key and run the client core's steps. A file is
// read as a stream, encrypted 64 KiB at a time, and each part uploaded as soon as its ciphertext
// is complete; a download is decrypted chunk by chunk as it arrives and its digest checked at
// the end. Memory stays constant in the module; the page holds at most one part of ciphertext
// (the relay's part size, 8 MiB by default) before it is sent. Types: haven-attachments.d.ts.
import { RelayError } from "./haven-client.js";

/** Bytes handed to the module at a time (one chunk of the stream cipher). */
const SLICE = 64 * 1024;

function* slices(bytes) {
  for (let at = 0; at < bytes.length; at += SLICE) {
    yield bytes.subarray(at, Math.min(at + SLICE, bytes.length));
  }
}

const absolute = (client, url) => (url.startsWith("/") ? client.relayUrl + url : url);

/** A refused transfer as a RelayError: the relay's JSON code, or S3's `<Code>`. */
async function refused(resp) {
  const text = await resp.text();
  let code = "unknown";
  let message = "";
  try {
    const err = JSON.parse(text)?.error ?? {};
    code = err.code ?? code;
    message = err.message ?? "";
  } catch {
    code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? code;
  }
  return new RelayError(resp.status, code, message, text);
}

/** Plaintext of a Blob/File or a ReadableStream, chunk by chunk. */
async function* chunksOf(source) {
  const stream = typeof source.stream === "function" ? source.stream() : source;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value instanceof Uint8Array ? value : new Uint8Array(value);
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Encrypts and uploads `source` (a Blob or File, or a ReadableStream of bytes with
 * `options.size`) as one blob; returns the encoded pointer (§14) to send in a message. Secret:
 * the pointer holds the attachment key. `options.resumeState` (from `onResumeState` of an
 * interrupted upload of the same file) resumes: only the parts the relay lacks are sent.
 */
export async function uploadAttachment(client, source, options = {}) {
  const {
    contentType = source.type || "application/octet-stream", fileName = source.name,
    thumbnail, ttlSecs, onProgress, resumeState, onResumeState,
  } = options;
  const size = options.size ?? source.size;
  const wasm = client.wasm;
  const up = resumeState ? await wasm.WebUpload.resume(resumeState) : await wasm.WebUpload.start(size);
  try {
    if (!resumeState) {
      up.created(JSON.stringify(await client.call("POST", "/v1/blobs", up.createBody(ttlSecs))));
      await onResumeState?.(up.resumeState());
    }
    const plan = up.plan(JSON.stringify(await client.call("GET", up.statusPath(), null)));
    let part = [];
    const uploadPart = async (n, body) => {
      const urls = await client.call("POST", up.partsPath(), up.partUrlsBody(n));
      const target = up.partTarget(n, JSON.stringify(urls));
      const resp = await fetch(absolute(client, target.url), {
        method: "PUT", body, headers: { "Content-Type": "application/octet-stream" },
      });
      if (!resp.ok) throw await refused(resp);
      const etag = up.partEtag(resp.headers.get("ETag"), await resp.text());
      if (target.reportEtag) await client.call("PUT", up.partReportPath(n), up.partReportBody(etag));
    };
    const take = async (pieces) => {
      for (const p of pieces) {
        if (!p.stored) part.push(p.bytes);
        if (p.endsPart) {
          if (!p.stored) await uploadPart(p.part, new Blob(part));
          part = [];
          onProgress?.(up.progress());
        }
      }
    };
    for await (const chunk of chunksOf(source)) {
      for (const slice of slices(chunk)) await take(up.push(slice));
    }
    for (let pieces; (pieces = up.nextTail()) !== null;) await take(pieces);
    if (!plan.alreadyComplete) await client.call("POST", up.completePath(), null);
    return up.pointer(contentType, fileName || undefined, thumbnail);
  } finally {
    up.close();
  }
}

/** The pointer of a stored message (`Message.attachment`, base64) or already bytes. */
export function pointerBytes(pointer) {
  if (pointer instanceof Uint8Array) return pointer;
  const bin = atob(pointer);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/**
 * The plaintext of an attachment as a ReadableStream, decrypted as the blob arrives. Each chunk
 * is released once it authenticates; the stream ends in an error if the blob is not the one the
 * pointer names (digest checked last): discard what was read then.
 */
export async function openAttachment(client, pointer, { onProgress } = {}) {
  const down = await client.wasm.WebDownload.start(pointerBytes(pointer));
  let reader;
  try {
    const url = down.located(JSON.stringify(await client.call("GET", down.path(), null)));
    const resp = await fetch(absolute(client, url));
    if (!resp.ok) throw await refused(resp);
    reader = resp.body.getReader();
  } catch (e) {
    down.close();
    throw e;
  }
  return new ReadableStream({
    async pull(controller) {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) {
            const last = down.finish();
            if (last.length) controller.enqueue(last);
            down.close();
            controller.close();
            return;
          }
          let any = false;
          for (const slice of slices(value)) {
            const plain = down.push(slice);
            if (plain.length) { controller.enqueue(plain); any = true; }
          }
          onProgress?.(down.progress());
          if (any) return;
        }
      } catch (e) {
        down.close();
        reader.cancel().catch(() => {});
        controller.error(e);
      }
    },
    cancel(reason) {
      down.close();
      return reader.cancel(reason);
    },
  });
}

/**
 * Downloads and decrypts an attachment into a Blob, returned only once the digest checked out;
 * with what the sender said about the file (name, type, size).
 */
export async function saveAttachment(client, pointer, options = {}) {
  const bytes = pointerBytes(pointer);
  const info = client.wasm.describeAttachment(bytes);
  const parts = [];
  const reader = (await openAttachment(client, bytes, options)).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parts.push(value);
  }
  return { blob: new Blob(parts, { type: info.contentType || "application/octet-stream" }), info };
}

/** Uploads `file` and sends it in a message of `messenger` (a HavenMessenger); returns the message id. */
export async function sendFile(messenger, conversation, file, options = {}) {
  const pointer = await uploadAttachment(messenger.client, file, options);
  return messenger.sendText(conversation, options.text ?? "", pointer);
}
