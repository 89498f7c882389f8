"""The Python user of the three-platform end-to-end test (`three_platforms.test.mjs`): one
account driven through the generated `haven` module (uniffi), commanded by the test.

    PYTHONPATH=<target>/haven-bindings/python python3 py_user.py --relay URL --dir DIR

Reads one JSON command per line on stdin, `{"id": N, "op": NAME, ...}`, runs them one at a time
and answers each with one JSON line on stdout, `{"id": N, "ok": true, "result": ...}` or
`{"id": N, "ok": false, "error": "HavenError.Kind: message"}`. Once started, every event of the
messenger's WebSocket is reported as its own line, `{"event": TYPE, ...}`. Ends on `quit` or
when stdin closes. Nothing but JSON lines goes to stdout; diagnostics go to stderr.

Commands: `register` (username, password), `add_contact` (username), `start`, `groups`,
`send` (group, text), `history` (group), `save` (group, message_id, dest: the attachment's
plaintext size and SHA-256 come back), `sync`, `quit`.
"""

import argparse
import asyncio
import hashlib
import json
import os
import sys
import threading

import haven

_out = threading.Lock()


def emit(obj) -> None:
    """One JSON line on stdout (commands answer on the asyncio thread, events on the library's)."""
    line = json.dumps(obj, separators=(",", ":"))
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def conversation_json(c: haven.Conversation) -> dict:
    if c.is_GROUP():
        return {"kind": "group", "id": c.group_id}
    return {"kind": "direct", "id": c.account_id}


def message_json(m: haven.Message) -> dict:
    attachment = None
    if m.attachment is not None:
        attachment = {
            "file_name": m.attachment.file_name,
            "size": m.attachment.size,
            "content_type": m.attachment.content_type,
        }
    return {
        "conversation": conversation_json(m.conversation),
        "message_id": m.message_id,
        "sender": m.sender,
        "outgoing": m.outgoing,
        "text": m.text,
        "attachment": attachment,
    }


def group_json(g: haven.GroupInfo) -> dict:
    return {
        "group_id": g.group_id,
        "name": g.name,
        "members": list(g.members),
        "epoch": g.epoch,
        "active": g.active,
    }


def event_json(e: haven.Event) -> dict:
    if e.is_NEW_MESSAGE():
        return {"event": "message", "message": message_json(e.message)}
    if e.is_GROUP_UPDATED():
        return {"event": "group_updated", "group_id": e.group_id, "name": e.name,
                "members": list(e.members)}
    if e.is_REMOVED_FROM_GROUP():
        return {"event": "removed_from_group", "group_id": e.group_id}
    if e.is_CONNECTION():
        state = e.state
        name = type(state).__name__.lower()
        detail = getattr(state, "reason", None)
        return {"event": "connection", "state": name, "reason": detail}
    if e.is_REJECTED():
        return {"event": "rejected", "reason": e.reason}
    # Receipts, typing, reactions, edits...: named only.
    return {"event": type(e).__name__.lower()}


class Reporter(haven.EventListener):
    """Reports every event of the running messenger as a JSON line (on a library thread)."""

    def on_event(self, event):
        emit(event_json(event))


class User:
    def __init__(self, relay: str, directory: str):
        self.relay = relay
        self.directory = directory
        self.messenger = None

    def group(self, group_id: str) -> haven.Conversation:
        return haven.Conversation.GROUP(group_id=group_id)

    async def run(self, cmd: dict):
        op = cmd["op"]
        m = self.messenger
        if op == "register":
            key = haven.StorageKey.generate()
            path = os.path.join(self.directory, "py_user.db")
            self.messenger = await haven.Messenger.register(
                self.relay, path, key, cmd["username"], cmd["password"]
            )
            return {"account": self.messenger.account_id()}
        if m is None:
            raise RuntimeError(f"{op} before register")
        if op == "add_contact":
            contact = await m.add_contact_by_username(cmd["username"])
            return {"account": contact.account_id}
        if op == "start":
            m.start(Reporter())
            return None
        if op == "groups":
            return [group_json(g) for g in m.groups()]
        if op == "send":
            return {"message_id": await m.send_text(self.group(cmd["group"]), cmd["text"])}
        if op == "history":
            return [message_json(x) for x in m.history(self.group(cmd["group"]))]
        if op == "save":
            await m.save_attachment(self.group(cmd["group"]), cmd["message_id"], cmd["dest"])
            digest = hashlib.sha256()
            size = 0
            with open(cmd["dest"], "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
            return {"size": size, "sha256": digest.hexdigest()}
        if op == "sync":
            return {"processed": await m.sync()}
        raise ValueError(f"unknown op {op!r}")

    async def close(self):
        if self.messenger is not None:
            self.messenger.stop()
            await self.messenger.shutdown()
            self.messenger = None


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relay", required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    user = User(args.relay, args.dir)
    loop = asyncio.get_running_loop()
    emit({"event": "ready", "version": haven.haven_version()})
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            if cmd.get("op") == "quit":
                await user.close()
                emit({"id": cmd.get("id"), "ok": True, "result": None})
                break
            try:
                result = await user.run(cmd)
                emit({"id": cmd.get("id"), "ok": True, "result": result})
            except Exception as e:  # every failure is the test's to report
                emit({"id": cmd.get("id"), "ok": False, "error": f"{type(e).__qualname__}: {e}"})
    finally:
        await user.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
