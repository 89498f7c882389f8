// Attachments on the chat page: the file picker that sends a file into the open conversation,
// and the save link of a message's attachment. The file is encrypted and uploaded as a stream
// (haven-attachments.js over the wasm WebUpload), the download decrypted as it arrives and
// handed to the person only once its digest checked out.
import { sendFile, saveAttachment } from "/js/haven-client.js";

const human = (n) => (n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB`
  : `${(n / 1024 / 1024).toFixed(1)} MiB`);

/**
 * Wires the attach form: `messenger()` and `conversation()` give the current ones; `done()` runs
 * after a file went out; `status(text)` shows progress; `guard(fn)` reports errors.
 */
export function wireAttachForm(form, input, { messenger, conversation, done, status, guard }) {
  form.onsubmit = (ev) => {
    ev.preventDefault();
    guard(async () => {
      const file = input.files?.[0];
      const conv = conversation();
      if (!file || !conv || !messenger()) return;
      status(`encrypting and uploading ${file.name}…`);
      await sendFile(messenger(), conv, file, {
        onProgress: (p) => status(`uploading ${file.name}: ${human(p.done)} of ${human(p.total)}`),
      });
      status(`sent ${file.name}`);
      input.value = "";
      done();
    });
  };
}

/** The attachment line of a message: what the sender said about the file, and a save button. */
export function attachmentView(client, wasm, message, { status, guard }) {
  const span = document.createElement("span");
  span.className = "attachment";
  let info;
  try {
    info = wasm.describeAttachment(Uint8Array.from(atob(message.attachment), (c) => c.charCodeAt(0)));
  } catch {
    span.textContent = "(unreadable attachment)";
    return span;
  }
  const name = info.fileName ?? "attachment";
  const save = document.createElement("button");
  save.type = "button";
  save.className = "save";
  save.textContent = `📎 ${name} (${human(info.size)})`;
  save.onclick = () => guard(async () => {
    status(`downloading ${name}…`);
    const { blob } = await saveAttachment(client, message.attachment, {
      onProgress: (p) => status(`downloading ${name}: ${human(p.done)} of ${human(p.total)}`),
    });
    const link = document.createElement("a");
    link.className = "saved";
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.textContent = `save ${name}`;
    span.replaceChildren(link);
    link.click();
    status(`downloaded ${name}, digest checked`);
  });
  span.append(save);
  return span;
}
