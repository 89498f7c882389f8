"""Push through the Python bindings against a real relay: a device registers Web Push and
gateway endpoints, lists and removes them within the relay's limits (bad input is refused as a
typed HavenError before anything is sent), and its push handler's `handle_wake_up` fetches,
processes and acknowledges mail sent while it was offline, once."""

import asyncio
import base64
import secrets

import pytest

import haven

PASSWORD = "python push: correct horse battery"
RUN = secrets.token_hex(3)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# The P-256 base point, uncompressed: a valid subscription key (the relay checks the curve).
P256_G = bytes.fromhex("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")


def subscription(n: int):
    """A browser subscription's endpoint and keys (a 65-byte uncompressed point, 16 bytes)."""
    return (
        f"https://push.example.test/send/{RUN}/{n}",
        b64url(P256_G),
        b64url(bytes([n]) * 16),
    )


async def register(relay: str, directory, name: str) -> haven.Messenger:
    key = haven.StorageKey.generate()
    return await haven.Messenger.register(
        relay, str(directory / f"{name}.db"), key, f"{name}_{RUN}", PASSWORD
    )


def test_wake_up_fetches_processes_and_acknowledges_once(relay, tmp_path):
    async def scenario():
        alice = await register(relay, tmp_path, "alice_w")
        bob = await register(relay, tmp_path, "bob_w")
        bob.set_receipt_policy(haven.ReceiptPolicy.IMMEDIATE())
        await alice.add_contact(bob.account_id())
        texts = [f"while you slept {i}" for i in range(3)]
        for t in texts:
            await alice.send_text(haven.Conversation.DIRECT(account_id=bob.account_id()), t)

        # Bob's push handler runs (the app was not running): one call does everything.
        summary = await bob.handle_wake_up(0)
        assert summary.complete
        assert summary.messages == 3
        assert summary.conversations == [haven.Conversation.DIRECT(account_id=alice.account_id())]
        assert summary.envelopes >= 4  # the contact card and the three texts
        assert summary.next_task_due_ms is None  # receipts were immediate: sent already
        history = bob.history(haven.Conversation.DIRECT(account_id=alice.account_id()))
        assert [m.text for m in history] == texts

        # A duplicate push: nothing new, nothing processed twice.
        again = await bob.handle_wake_up(10_000)
        assert (again.messages, again.envelopes, again.conversations) == (0, 0, [])
        assert again.complete
        assert len(bob.history(haven.Conversation.DIRECT(account_id=alice.account_id()))) == 3

        # Alice's next sync shows Bob's device confirmed delivery.
        await alice.sync()
        mine = alice.history(haven.Conversation.DIRECT(account_id=bob.account_id()))
        assert all(bob.account_id() in m.delivered_to for m in mine), mine

    asyncio.run(scenario())


def test_push_endpoints_register_list_remove_and_limits(relay, tmp_path):
    async def scenario():
        carol = await register(relay, tmp_path, "carol_p")
        vapid = await carol.push_vapid_key()
        raw = base64.urlsafe_b64decode(vapid + "=" * (-len(vapid) % 4))
        assert len(raw) == 65 and raw[0] == 4

        first = await carol.register_web_push(*subscription(1))
        assert len(first) == 22  # base64url of 16 bytes
        assert await carol.register_web_push(*subscription(1)) == first  # idempotent
        listed = await carol.push_endpoints()
        assert [(e.id, e.kind) for e in listed] == [(first, "web_push")]

        ids = [first] + [await carol.register_web_push(*subscription(n)) for n in range(2, 6)]
        with pytest.raises(haven.HavenError.Refused, match="too_many_push_endpoints"):
            await carol.register_web_push(*subscription(6))
        assert len(await carol.push_endpoints()) == 5

        # Refused on the device, nothing sent.
        endpoint, p256dh, auth = subscription(7)
        with pytest.raises(haven.HavenError.InvalidInput):
            await carol.register_web_push("http://plain.example/x", p256dh, auth)
        with pytest.raises(haven.HavenError.InvalidInput):
            await carol.register_web_push(endpoint, b64url(b"\x02" * 65), auth)
        with pytest.raises(haven.HavenError.InvalidInput):
            await carol.register_gateway_push("no spaces allowed", "token")
        with pytest.raises(haven.HavenError.InvalidInput):
            await carol.remove_push_endpoint("../../v1/account")

        await carol.remove_push_endpoint(ids[2])
        with pytest.raises(haven.HavenError.Refused):
            await carol.remove_push_endpoint(ids[2])
        assert sorted(e.id for e in await carol.push_endpoints()) == sorted(
            i for k, i in enumerate(ids) if k != 2
        )

    asyncio.run(scenario())
