"""The Diary through the Python bindings against a real relay: create, write, sync, read back
after reopening and on a second device, search, history, the wrong-password and
wrong-recovery-code cases, and a closed diary."""

import asyncio
import secrets
import time

import pytest

import haven

ACCOUNT_PASSWORD = "diary account password, python"
DIARY_PASSWORD = "diary password: lighthouse keeper"
# Argon2id at the SDK's minimum keeps the test quick; apps use the default (None).
FAST = haven.KdfSettings(memory_kib=19 * 1024, passes=2, lanes=1)


def entry(title: str, body: str, tags=None) -> haven.DiaryEntry:
    now = int(time.time() * 1000)
    return haven.DiaryEntry(
        title=title, body=body, mood="calm", tags=tags or [], created_ms=now, updated_ms=now
    )


def test_diary_write_read_and_wrong_passwords(relay, tmp_path):
    async def scenario():
        user = f"diarist_{secrets.token_hex(3)}"
        key = haven.StorageKey.generate()
        path = str(tmp_path / "diary.db")
        diary = await haven.Diary.create(
            relay,
            path,
            key,
            haven.AccountAccess.REGISTER(username=user, password=ACCOUNT_PASSWORD),
            DIARY_PASSWORD,
            FAST,
        )
        codes = diary.take_recovery_codes()
        assert len(codes) == 10 and all(codes)
        assert diary.take_recovery_codes() == []  # shown once

        entry_id = diary.write(entry("Sunday", "Walked to the harbour, cormorant.", ["sea"]))
        assert len(entry_id) == 32
        assert diary.get(entry_id).body == "Walked to the harbour, cormorant."
        assert [i.pending for i in diary.list(haven.DiaryQuery(mood=None, tag=None, from_ms=None, until_ms=None, text=None))] == [True]
        report = await diary.sync()
        assert report.pushed == 1 and report.pending == 0
        assert [i.id for i in diary.search("harb")] == [entry_id]
        assert diary.search("nothing-like-this") == []

        diary.edit(entry_id, entry("Sunday walk", "Walked to the harbour, cormorant.", ["sea"]))
        await diary.sync()
        revisions = await diary.history(entry_id)
        assert [r.entry.title for r in revisions] == ["Sunday", "Sunday walk"]

        # Closed: every call is refused with a typed error.
        diary.lock()
        with pytest.raises(haven.HavenError.Closed):
            diary.get(entry_id)
        with pytest.raises(haven.HavenError.Closed):
            await diary.sync()

        # Reopen: the wrong diary password is refused, the right one reads the entry.
        with pytest.raises(haven.HavenError.WrongPassword):
            await haven.Diary.unlock(relay, path, key, "not the diary password")
        with pytest.raises(haven.HavenError.WrongStorageKey):
            await haven.Diary.unlock(relay, path, haven.StorageKey.generate(), DIARY_PASSWORD)
        with pytest.raises(haven.HavenError.NotRegistered):
            await haven.Diary.unlock(relay, str(tmp_path / "none.db"), key, DIARY_PASSWORD)
        reopened = await haven.Diary.unlock(relay, path, key, DIARY_PASSWORD)
        assert reopened.get(entry_id).title == "Sunday walk"

        # A second device logs in to the account and unlocks with the diary password.
        other = str(tmp_path / "laptop.db")
        with pytest.raises(haven.HavenError.WrongPassword):
            await haven.Diary.unlock_new_device(
                relay, other, haven.StorageKey.generate(), user, ACCOUNT_PASSWORD, "wrong"
            )
        laptop = await haven.Diary.unlock_new_device(
            relay, str(tmp_path / "laptop2.db"), haven.StorageKey.generate(), user, ACCOUNT_PASSWORD, DIARY_PASSWORD
        )
        await laptop.sync()
        assert laptop.get(entry_id).title == "Sunday walk"
        second = laptop.write(entry("From the laptop", "Ideas, obsidian."))
        await laptop.sync()
        await reopened.sync()
        assert reopened.get(second).body == "Ideas, obsidian."

        # Recovery: a wrong code is refused; a real one sets a new password.
        with pytest.raises(haven.HavenError.WrongRecoveryCode):
            await haven.Diary.recover(
                relay, str(tmp_path / "r1.db"), haven.StorageKey.generate(), user,
                ACCOUNT_PASSWORD, "not-a-code", "new password", FAST,
            )
        recovered = await haven.Diary.recover(
            relay, str(tmp_path / "r2.db"), haven.StorageKey.generate(), user,
            ACCOUNT_PASSWORD, codes[0], "new diary password", FAST,
        )
        await recovered.sync()
        assert recovered.get(entry_id).title == "Sunday walk"

        # Bad input on an open diary.
        for bad in ["", "xyz", "zz" * 16]:
            with pytest.raises(haven.HavenError.InvalidInput):
                reopened.get(bad)
            with pytest.raises(haven.HavenError.InvalidInput):
                await reopened.delete(bad)
        with pytest.raises(haven.HavenError.NotFound):
            reopened.edit(secrets.token_hex(16), entry("x", "y"))
        assert reopened.get(secrets.token_hex(16)) is None
        with pytest.raises(haven.HavenError.InvalidInput):
            reopened.write(entry("t" * 100_000, "too long a title"))
        with pytest.raises(haven.HavenError.InvalidInput):
            await haven.Diary.create(
                relay, str(tmp_path / "weak.db"), haven.StorageKey.generate(),
                haven.AccountAccess.REGISTER(username=None, password=ACCOUNT_PASSWORD),
                DIARY_PASSWORD, haven.KdfSettings(memory_kib=1024, passes=1, lanes=1),
            )

        # Delete and restore.
        await reopened.delete(second)
        assert reopened.get(second) is None
        await reopened.restore(second)
        await reopened.sync()
        assert reopened.get(second).title == "From the laptop"

    asyncio.run(scenario())
