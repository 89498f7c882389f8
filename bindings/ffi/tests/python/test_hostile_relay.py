"""A hostile relay against the Python bindings (THREAT_MODEL "Who is who", PROTOCOL §15.6):
users talk through `haven-hostile-relay` (a real relay behind a lying proxy, REST only), set up
honest state, then the test switches one lie on. Each lie is refused with a typed HavenError
and a user-visible event, and nothing reaches a device the relay made or added."""

import asyncio
import json
import secrets
import urllib.request

import pytest

import haven

PASSWORD = "hostile relay: correct horse battery"
RUN = secrets.token_hex(3)


def direct(account_id: str) -> haven.Conversation:
    return haven.Conversation.DIRECT(account_id=account_id)


def control(relay, path: str, body=None):
    """The hostile relay's control API: POST with a JSON body, GET without."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        relay["control"] + path,
        data=data,
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def attack(relay, **body):
    return control(relay, "/attack", body)


def captured(relay) -> int:
    return control(relay, "/captured")["captured"]


async def register(relay, directory, name: str) -> haven.Messenger:
    return await haven.Messenger.register(
        relay["url"], str(directory / f"{name}.db"), haven.StorageKey.generate(), f"{name}_{RUN}", PASSWORD
    )


async def drain(messenger: haven.Messenger) -> list:
    """Every event waiting on the pulled stream."""
    events = []
    while True:
        event = await messenger.next_event(200)
        if event is None:
            return events
        events.append(event)


async def sync(messenger: haven.Messenger) -> list:
    """Fetches the queue over REST (the proxy carries no WebSocket); returns the events."""
    await drain(messenger)
    await messenger.sync()
    return await drain(messenger)


def refused(events, account: str, words: str) -> bool:
    return any(
        isinstance(e, haven.Event.DEVICE_LIST_REFUSED) and e.account_id == account and words in e.reason
        for e in events
    )


def rejected_unlisted(events, account: str, device: int) -> bool:
    return any(
        isinstance(e, haven.Event.REJECTED)
        and f"device {device} of {account} is not in the account's signed device list" in e.reason
        for e in events
    )


def texts(messenger: haven.Messenger, peer: str) -> list:
    return [m.text for m in messenger.history(direct(peer))]


def test_hostile_relay_injects_a_device_into_a_409(hostile, tmp_path):
    async def scenario():
        alice = await register(hostile, tmp_path, "alice")
        bob = await register(hostile, tmp_path, "bob")
        await alice.add_contact(bob.account_id())
        await sync(bob)

        assert attack(hostile, kind="inject_device", account=bob.account_id())["device"] == 99
        await drain(alice)
        with pytest.raises(haven.HavenError.Tampered) as err:
            await alice.send_text(direct(bob.account_id()), "to a device the relay made up")
        assert "device 99" in str(err.value)
        events = await drain(alice)
        assert refused(events, bob.account_id(), "device 99 is not in the signed device list"), events
        assert captured(hostile) == 0
        await sync(bob)
        assert "to a device the relay made up" not in texts(bob, alice.account_id())

    asyncio.run(scenario())


def test_hostile_relay_serves_a_forged_bundle(hostile, tmp_path):
    async def scenario():
        alice = await register(hostile, tmp_path, "alice")
        bob = await register(hostile, tmp_path, "bob")
        bob_n = bob.device_number()

        attack(hostile, kind="forge_bundle", account=bob.account_id())
        await drain(alice)
        with pytest.raises(haven.HavenError.Tampered) as err:
            await alice.add_contact(bob.account_id())
        assert f"device {bob_n}" in str(err.value)
        events = await drain(alice)
        assert refused(events, bob.account_id(), f"device {bob_n} is not in the signed device list"), events
        assert captured(hostile) == 0

    asyncio.run(scenario())


def test_hostile_relay_issues_a_certificate_for_a_key_it_chose(hostile, tmp_path):
    async def scenario():
        alice = await register(hostile, tmp_path, "alice")
        bob = await register(hostile, tmp_path, "bob")
        await bob.add_contact(alice.account_id())
        await sync(alice)

        forged = "from bob, says the relay"
        attack(
            hostile,
            kind="forge_certificate",
            victim=alice.account_id(),
            account=bob.account_id(),
            device=bob.device_number(),
            text=forged,
        )
        events = await sync(alice)
        assert rejected_unlisted(events, bob.account_id(), bob.device_number()), events
        assert not any(isinstance(e, haven.Event.NEW_MESSAGE) and e.message.text == forged for e in events)
        assert forged not in texts(alice, bob.account_id())

    asyncio.run(scenario())


def test_hostile_relay_rolls_a_device_list_back(hostile, tmp_path):
    async def scenario():
        alice = await register(hostile, tmp_path, "alice")
        bob = await register(hostile, tmp_path, "bob")
        await alice.add_contact(bob.account_id())
        # Bob links a second device (his list goes to version 2); its first message makes Alice
        # read and accept that list.
        link = await haven.LinkRequest.start(hostile["url"], str(tmp_path / "bob2.db"), haven.StorageKey.generate())
        await bob.approve_link(link.code())
        bob2 = await link.finish(30)
        await bob2.add_contact(alice.account_id())
        events = await sync(alice)
        assert any(
            isinstance(e, haven.Event.DEVICES_CHANGED) and bob2.device_number() in e.added for e in events
        ), events

        # The relay serves version 1 again, and answers Alice's next send with a 409 naming a
        # device version 2 does not, so that she reads the list again.
        attack(hostile, kind="rollback", account=bob.account_id())
        attack(hostile, kind="inject_device", account=bob.account_id())
        with pytest.raises(haven.HavenError.Tampered) as err:
            await alice.send_text(direct(bob.account_id()), "after the rollback")
        assert "rolled back to version 1 after version 2" in str(err.value)
        events = await drain(alice)
        assert refused(events, bob.account_id(), "rolled back to version 1 after version 2"), events
        assert captured(hostile) == 0

    asyncio.run(scenario())


def test_hostile_relay_adds_a_device_by_password_login(hostile, tmp_path):
    async def scenario():
        alice = await register(hostile, tmp_path, "alice")
        bob = await register(hostile, tmp_path, "bob")
        await bob.add_contact(alice.account_id())
        await sync(alice)

        forged = "hi alice, from my new phone (says the relay)"
        rogue = attack(
            hostile,
            kind="password_device",
            username=f"bob_{RUN}",
            password=PASSWORD,
            victim=alice.account_id(),
            text=forged,
        )["device"]
        # Accepting from it: refused.
        events = await sync(alice)
        assert rejected_unlisted(events, bob.account_id(), rogue), events
        assert forged not in texts(alice, bob.account_id())
        # Encrypting to it: the relay's 409 names it; refused, nothing sent.
        with pytest.raises(haven.HavenError.Tampered) as err:
            await alice.send_text(direct(bob.account_id()), "only for bob's real devices")
        assert f"device {rogue}" in str(err.value)
        events = await drain(alice)
        assert refused(events, bob.account_id(), f"device {rogue} is not in the signed device list"), events
        assert captured(hostile) == 0

    asyncio.run(scenario())
