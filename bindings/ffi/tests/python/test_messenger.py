"""The Messenger through the Python bindings against a real relay: two users register,
exchange messages both ways (by sync and by the event stream), compare safety numbers and send
a file; bad input of every kind comes back as a typed HavenError, never a crash."""

import asyncio
import base64
import os
import queue
import secrets
import threading
import time

import pytest

import haven

PASSWORD = "python bindings: correct horse battery"
# The relay's minimum is high enough that registering stays quick with the debug library.
RUN = secrets.token_hex(3)


def run(coro):
    return asyncio.run(coro)


def direct(account_id: str) -> haven.Conversation:
    return haven.Conversation.DIRECT(account_id=account_id)


class Collector(haven.EventListener):
    """An EventListener that queues every event (called on a library thread)."""

    def __init__(self):
        self.events: "queue.Queue[haven.Event]" = queue.Queue()
        self.threads = set()

    def on_event(self, event):
        self.threads.add(threading.get_ident())
        self.events.put(event)

    def wait_for_text(self, text: str, timeout: float = 30.0) -> haven.Message:
        end = time.monotonic() + timeout
        seen = []
        while time.monotonic() < end:
            try:
                event = self.events.get(timeout=max(0.05, end - time.monotonic()))
            except queue.Empty:
                break
            if isinstance(event, haven.Event.NEW_MESSAGE) and event.message.text == text:
                return event.message
            seen.append(type(event).__name__)
        raise AssertionError(f"no message {text!r} within {timeout}s; saw {seen}")


async def register(relay: str, directory, name: str) -> haven.Messenger:
    key = haven.StorageKey.generate()
    return await haven.Messenger.register(
        relay, str(directory / f"{name}.db"), key, f"{name}_{RUN}", PASSWORD
    )


async def next_text(messenger: haven.Messenger, text: str, timeout_ms: int = 30000):
    end = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < end:
        event = await messenger.next_event(200)
        if event is None:
            continue
        if isinstance(event, haven.Event.NEW_MESSAGE) and event.message.text == text:
            return event.message
    raise AssertionError(f"no message {text!r} on the pulled event stream")


def test_messages_both_ways_safety_numbers_and_files(relay, tmp_path):
    async def scenario():
        alice = await register(relay, tmp_path, "alice")
        bob = await register(relay, tmp_path, "bob")
        assert len(alice.account_id()) == 32 and alice.account_id() != bob.account_id()

        # Alice finds Bob by username and writes; Bob fetches once over REST.
        contact = await alice.add_contact_by_username(f"bob_{RUN}")
        assert contact.account_id == bob.account_id()
        # Delivery receipts are delayed and batched by default; the setting is checked.
        assert bob.receipt_policy() == haven.ReceiptPolicy.DELAYED(min_secs=5, max_secs=60)
        with pytest.raises(haven.HavenError.InvalidInput):
            bob.set_receipt_policy(haven.ReceiptPolicy.DELAYED(min_secs=9, max_secs=8))
        bob.set_receipt_policy(haven.ReceiptPolicy.IMMEDIATE())
        assert bob.receipt_policy() == haven.ReceiptPolicy.IMMEDIATE()
        hello = "hello bob from python, periwinkle"
        msg_id = await alice.send_text(direct(bob.account_id()), hello)
        assert len(msg_id) == 32
        assert await bob.sync() >= 1
        history = bob.history(direct(alice.account_id()))
        assert [m.text for m in history] == [hello]
        assert history[0].sender == alice.account_id() and not history[0].outgoing
        assert history[0].message_id == msg_id
        # Alice's contact card made her a contact of Bob's.
        assert alice.account_id() in [c.account_id for c in bob.contacts()]
        # The message was franked with the relay's key: Bob reports it and the relay can tell
        # who sent it; reporting it again names the same report. Alice's own message is not
        # hers to report; an unknown message is not found.
        receipt = await bob.report_message(direct(alice.account_id()), msg_id)
        assert receipt.attributed and len(receipt.report_id) == 32
        again = await bob.report_message(direct(alice.account_id()), msg_id)
        assert again.report_id == receipt.report_id
        with pytest.raises(haven.HavenError.Report):
            await alice.report_message(direct(bob.account_id()), msg_id)
        with pytest.raises(haven.HavenError.NotFound):
            await bob.report_message(direct(alice.account_id()), "ab" * 16)

        # Bob replies while Alice is connected with a listener: the reply arrives as an event.
        listener = Collector()
        alice.start(listener)
        bob.start(None)
        reply = "hi alice, reply over the websocket, tangerine"
        await bob.send_text(direct(alice.account_id()), reply)
        received = await asyncio.get_running_loop().run_in_executor(
            None, listener.wait_for_text, reply
        )
        assert received.sender == bob.account_id()
        assert received.conversation == direct(bob.account_id())

        # And Alice again, pulled from Bob's event stream this time.
        again = "second message, pulled by next_event, quasar"
        await alice.send_text(direct(bob.account_id()), again)
        pulled = await next_text(bob, again)
        assert pulled.sender == alice.account_id()

        # Safety numbers: the same 60 digits on both sides, and the stateless helper agrees.
        a_side = alice.safety_numbers(bob.account_id())
        b_side = bob.safety_numbers(alice.account_id())
        assert len(a_side) == 1 and len(a_side[0].digits) == 60
        assert a_side[0].digits == b_side[0].digits
        assert (
            haven.safety_number(
                alice.account_id(), alice.identity_key(), bob.account_id(), bob.identity_key()
            )
            == a_side[0].digits
        )

        # A file: encrypted, uploaded, announced; Bob downloads, verifies and decrypts it.
        source = tmp_path / "photo.bin"
        payload = os.urandom(70_000)
        source.write_bytes(payload)
        file_msg = await alice.send_file(
            direct(bob.account_id()), str(source), "application/octet-stream", "a file"
        )
        got = await next_text(bob, "a file")
        assert got.message_id == file_msg
        assert got.attachment is not None and got.attachment.size == len(payload)
        assert got.attachment.file_name == "photo.bin"
        dest = tmp_path / "downloaded.bin"
        await bob.save_attachment(direct(alice.account_id()), file_msg, str(dest))
        assert dest.read_bytes() == payload

        alice.stop()
        bob.stop()
        await alice.shutdown()
        await bob.shutdown()

    run(scenario())


def test_bad_input_is_a_typed_error(relay, tmp_path):
    async def scenario():
        alice = await register(relay, tmp_path, "carol")
        unknown = secrets.token_hex(16)

        # Malformed ids: wrong length, not hex, non-ASCII.
        for bad in ["", "abc", "zz" * 16, "é" * 16, "00" * 17]:
            with pytest.raises(haven.HavenError.InvalidInput):
                await alice.send_text(direct(bad), "x")
            with pytest.raises(haven.HavenError.InvalidInput):
                await alice.add_contact(bad)
        with pytest.raises(haven.HavenError.InvalidInput):
            alice.history(haven.Conversation.GROUP(group_id="not a group"))

        # Unknown contact / account / username / group.
        with pytest.raises(haven.HavenError.UnknownContact):
            await alice.send_text(direct(unknown), "to nobody")
        with pytest.raises(haven.HavenError.UnknownContact):
            alice.safety_numbers(unknown)
        with pytest.raises(haven.HavenError.UnknownContact):
            await alice.add_contact(unknown)
        with pytest.raises(haven.HavenError.UnknownContact):
            await alice.add_contact_by_username(f"nobody_{RUN}")
        with pytest.raises(haven.HavenError.NotFound):
            await alice.send_text(haven.Conversation.GROUP(group_id=unknown), "x")
        with pytest.raises(haven.HavenError.InvalidInput):
            await alice.add_contact(alice.account_id())
        with pytest.raises(haven.HavenError.InvalidInput):
            await alice.send_file(direct(unknown), str(tmp_path / "missing"), "", "")

        # Nothing above crashed the process or closed the messenger. (The core keeps a contact
        # entry for an account id it failed to reach: add_contact stores before sending.)
        assert len(alice.account_id()) == 32
        assert isinstance(alice.contacts(), list)

        # A shut-down client refuses everything with Closed.
        account = alice.account_id()
        await alice.shutdown()
        with pytest.raises(haven.HavenError.Closed):
            alice.account_id()
        with pytest.raises(haven.HavenError.Closed):
            await alice.send_text(direct(unknown), "after shutdown")
        with pytest.raises(haven.HavenError.Closed):
            await alice.next_event(10)
        with pytest.raises(haven.HavenError.Closed):
            alice.start(None)
        await alice.shutdown()  # twice is fine

        # Reopening: right key works, wrong key is WrongStorageKey, no store is NotRegistered.
        key_hex = secrets.token_hex(32)
        path = str(tmp_path / "dave.db")
        dave = await haven.Messenger.register(
            relay, path, haven.StorageKey.from_hex(key_hex), f"dave_{RUN}", PASSWORD
        )
        dave_id = dave.account_id()
        await dave.shutdown()
        again = await haven.Messenger.load(relay, path, haven.StorageKey.from_hex(key_hex))
        assert again.account_id() == dave_id

        # A second device joins only by approval: it shows a code, Dave's device approves it.
        link = await haven.LinkRequest.start(relay, str(tmp_path / "dave2.db"), haven.StorageKey.generate())
        assert link.code().startswith("haven-link:")
        with pytest.raises(haven.HavenError.InvalidInput):
            await again.approve_link("haven-link:" + "a" * 85)
        await again.approve_link(link.code())
        dave2 = await link.finish(30)
        assert dave2.account_id() == dave_id
        with pytest.raises(haven.HavenError.Closed):
            await link.finish(1)
        # The first device unlinks it again; a device cannot unlink itself.
        with pytest.raises(haven.HavenError.InvalidInput):
            await again.unlink_device(1, PASSWORD, None)
        await again.unlink_device(2, PASSWORD, None)
        await dave2.shutdown()
        await again.shutdown()
        with pytest.raises(haven.HavenError.WrongStorageKey):
            await haven.Messenger.load(relay, path, haven.StorageKey.generate())
        with pytest.raises(haven.HavenError.NotRegistered):
            await haven.Messenger.load(relay, str(tmp_path / "none.db"), haven.StorageKey.generate())

        # Bad relay URLs, an unreachable relay, a wrong password, a taken username.
        with pytest.raises(haven.HavenError.InvalidInput):
            await haven.Messenger.register(
                "ftp://example", str(tmp_path / "x.db"), haven.StorageKey.generate(), None, PASSWORD
            )
        with pytest.raises(haven.HavenError.Network):
            await haven.Messenger.register(
                "http://127.0.0.1:9", str(tmp_path / "y.db"), haven.StorageKey.generate(), None, PASSWORD
            )
        with pytest.raises(haven.HavenError.Refused):
            await haven.Messenger.register(
                relay, str(tmp_path / "w.db"), haven.StorageKey.generate(), f"dave_{RUN}", PASSWORD
            )

    run(scenario())


def test_storage_keys_and_helpers_refuse_bad_input():
    assert haven.haven_version()
    for bad in ["zz" * 32, "00" * 31, "00" * 33, ""]:
        with pytest.raises(haven.HavenError.InvalidInput):
            haven.StorageKey.from_hex(bad)
    with pytest.raises(haven.HavenError.InvalidInput):
        haven.StorageKey.from_base64("not base64 !!")
    with pytest.raises(haven.HavenError.InvalidInput):
        haven.StorageKey.from_base64("AAAA")  # 3 bytes
    with pytest.raises(haven.HavenError.InvalidInput):
        haven.StorageKey.from_bytes(b"\x00" * 31)
    haven.StorageKey.from_bytes(b"\x01" * 32)
    haven.StorageKey.from_base64(base64.b64encode(b"\x01" * 32).decode())
    with pytest.raises(haven.HavenError.InvalidInput):
        haven.StorageKey.from_passphrase("pass", b"short", None)
    with pytest.raises(haven.HavenError.InvalidInput):
        haven.StorageKey.from_passphrase(
            "pass", b"0123456789abcdef", haven.KdfSettings(memory_kib=8, passes=1, lanes=1)
        )
    ident = "A" * 44
    with pytest.raises(haven.HavenError.InvalidInput):
        haven.safety_number("00" * 16, "not base64", "11" * 16, ident)
    with pytest.raises(haven.HavenError.InvalidInput):
        haven.safety_number("00" * 16, "AAAA", "11" * 16, "AAAA")
    with pytest.raises(haven.HavenError.InvalidInput):
        haven.safety_number("short", ident, "11" * 16, ident)
