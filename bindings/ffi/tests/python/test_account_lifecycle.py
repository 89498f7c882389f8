"""The account's lifecycle through the Python bindings against a real relay (PROTOCOL §11.6.1–
§11.9): the device list and renaming, password change (other sessions end, relogin), the
recovery code and recovery without a session, TOTP (setup, verify, required at login and for
sensitive actions, disable), export, unlinking, logout (everywhere) and deletion, from a
Messenger and from a Diary. TOTP codes are computed here as an authenticator app would."""

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import struct
import time

import pytest

import haven

PASSWORD = "lifecycle: first password, heron"
NEW_PASSWORD = "lifecycle: second password, egret"
THIRD_PASSWORD = "lifecycle: recovered password, bittern"
DIARY_PASSWORD = "lifecycle diary password: kestrel"
FAST = haven.KdfSettings(memory_kib=19 * 1024, passes=2, lanes=1)
RUN = secrets.token_hex(3)


def run(coro):
    return asyncio.run(coro)


def totp(secret: str, unix_secs: int) -> str:
    """RFC 6238 as the relay uses it: HMAC-SHA1, 30-second steps, 6 digits."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", unix_secs // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


async def early_in_step() -> int:
    """A time early in a 30-second step, so that the previous, this and the next step's codes
    all stay within the relay's window for the rest of a short test."""
    now = int(time.time())
    if now % 30 > 15:
        await asyncio.sleep(31 - now % 30)
    return int(time.time())


def test_messenger_account_lifecycle(relay, tmp_path):
    async def scenario():
        alice = await haven.Messenger.register(
            relay, str(tmp_path / "alice.db"), haven.StorageKey.generate(), f"life_{RUN}", PASSWORD
        )
        account = alice.account_id()
        link = await haven.LinkRequest.start(relay, str(tmp_path / "phone.db"), haven.StorageKey.generate())
        await alice.approve_link(link.code())
        phone = await link.finish(30)

        # The device list: both devices, this one marked; a name blob round-trips.
        devices = await alice.devices()
        assert [(d.number, d.current) for d in devices] == [(1, True), (2, False)]
        assert all(len(d.id) == 32 and d.created_at > 0 and d.name is None for d in devices)
        assert [d.current for d in await phone.devices()] == [False, True]
        await alice.rename_device(2, b"sealed phone name")
        assert [d.name for d in await alice.devices()] == [None, b"sealed phone name"]
        await alice.rename_device(2, None)
        assert (await alice.devices())[1].name is None
        with pytest.raises(haven.HavenError.InvalidInput):
            await alice.rename_device(9, b"x")

        # A recovery code needs the password again; it is returned once, 32 characters.
        with pytest.raises(haven.HavenError.WrongPassword):
            await alice.set_recovery_code("not the password", None)
        code = await alice.set_recovery_code(PASSWORD)
        assert len(code) == 39 and code.count("-") == 7

        # Password change: this device goes on, the phone's session ends until it logs in again.
        with pytest.raises(haven.HavenError.WrongPassword):
            await alice.change_password("wrong", NEW_PASSWORD, None)
        with pytest.raises(haven.HavenError.InvalidInput):
            await alice.change_password(PASSWORD, "", None)
        await alice.change_password(PASSWORD, NEW_PASSWORD)
        assert len(await alice.devices()) == 2
        with pytest.raises(haven.HavenError.SessionRevoked):
            await phone.devices()
        with pytest.raises(haven.HavenError.WrongPassword):
            await phone.relogin(PASSWORD)
        await phone.relogin(NEW_PASSWORD)
        assert len(await phone.devices()) == 2

        # The password is lost: the recovery code replaces it without a session; every
        # session ends; the code works once.
        ident = haven.AccountIdentifier.ACCOUNT_ID(account_id=account.upper())
        with pytest.raises(haven.HavenError.WrongRecoveryCode):
            await haven.recover_account(relay, ident, "not a code", THIRD_PASSWORD, None)
        await haven.recover_account(relay, ident, code.lower(), THIRD_PASSWORD)
        with pytest.raises(haven.HavenError.SessionRevoked):
            await alice.devices()
        with pytest.raises(haven.HavenError.WrongRecoveryCode):
            await haven.recover_account(relay, ident, code, "anything else")
        await alice.relogin(THIRD_PASSWORD)
        await phone.relogin(THIRD_PASSWORD)

        # TOTP: set up, enabled with a code, then required to log in and to prove the password.
        t = await early_in_step()
        setup = await alice.totp_setup()
        assert setup.otpauth_uri.startswith("otpauth://totp/Haven:") and setup.secret in setup.otpauth_uri
        with pytest.raises(haven.HavenError.WrongTotpCode):
            await alice.totp_verify(totp(setup.secret, t + 3600))
        await alice.totp_verify(totp(setup.secret, t - 30))
        with pytest.raises(haven.HavenError.Refused):
            await alice.totp_setup()  # totp_already_enabled
        await alice.logout()
        with pytest.raises(haven.HavenError.SessionRevoked):
            await alice.devices()
        with pytest.raises(haven.HavenError.TotpRequired):
            await alice.relogin(THIRD_PASSWORD)
        with pytest.raises(haven.HavenError.WrongTotpCode):
            await alice.relogin(THIRD_PASSWORD, totp(setup.secret, t - 30))  # already used
        await alice.relogin(THIRD_PASSWORD, totp(setup.secret, t))
        with pytest.raises(haven.HavenError.TotpRequired):
            await alice.set_recovery_code(THIRD_PASSWORD, None)
        with pytest.raises(haven.HavenError.TotpRequired):
            await alice.delete_account(THIRD_PASSWORD)
        # One code proves the password again and turns TOTP off.
        await alice.totp_disable(THIRD_PASSWORD, totp(setup.secret, t + 30))

        # Export: the relay's whole record of the account, as JSON.
        export = json.loads(await alice.export_account())
        assert export["format"] == "haven-relay-export/v1"
        assert export["account"]["account_id"] == account
        assert export["account"]["totp_enabled"] is False
        assert len(export["devices"]) == 2 and export["account"]["opaque_recovery_record"] is None

        # Unlinking the phone (signed device list, then the relay forgets it).
        with pytest.raises(haven.HavenError.WrongPassword):
            await alice.unlink_device(2, NEW_PASSWORD)
        await alice.unlink_device(2, THIRD_PASSWORD)
        assert [d.number for d in await alice.devices()] == [1]
        with pytest.raises(haven.HavenError.SessionRevoked):
            await phone.devices()

        # Logout everywhere, back in; then the account is deleted and cannot log in again.
        await alice.logout_everywhere()
        with pytest.raises(haven.HavenError.SessionRevoked):
            await alice.export_account()
        await alice.relogin(THIRD_PASSWORD)
        with pytest.raises(haven.HavenError.WrongPassword):
            await alice.delete_account("wrong")
        await alice.delete_account(THIRD_PASSWORD)
        with pytest.raises(haven.HavenError.SessionRevoked):
            await alice.devices()
        with pytest.raises(haven.HavenError.WrongPassword):
            await alice.relogin(THIRD_PASSWORD)
        await alice.shutdown()
        await phone.shutdown()

    run(scenario())


def test_diary_account_lifecycle(relay, tmp_path):
    async def scenario():
        user = f"lifediary_{RUN}"
        desk_path = str(tmp_path / "desk.db")
        desk_key = haven.StorageKey.generate()
        desk = await haven.Diary.create(
            relay,
            desk_path,
            desk_key,
            haven.AccountAccess.REGISTER(username=user, password=PASSWORD),
            DIARY_PASSWORD,
            FAST,
        )
        desk.take_recovery_codes()
        now = int(time.time() * 1000)
        entry_id = desk.write(
            haven.DiaryEntry(title="Day", body="Saw a kingfisher.", mood=None, tags=[], created_ms=now, updated_ms=now)
        )
        await desk.sync()
        assert [(d.number, d.current) for d in await desk.devices()] == [(1, True)]

        # TOTP on; a new device then needs a code to log in.
        t = await early_in_step()
        setup = await desk.totp_setup()
        await desk.totp_verify(totp(setup.secret, t - 30))
        laptop_path = str(tmp_path / "laptop.db")
        with pytest.raises(haven.HavenError.TotpRequired):
            await haven.Diary.unlock_new_device(
                relay, laptop_path, haven.StorageKey.generate(), user, PASSWORD, DIARY_PASSWORD
            )
        laptop = await haven.Diary.unlock_new_device(
            relay, str(tmp_path / "laptop2.db"), haven.StorageKey.generate(), user, PASSWORD,
            DIARY_PASSWORD, totp(setup.secret, t),
        )
        await laptop.sync()
        assert laptop.get(entry_id).body == "Saw a kingfisher."
        await desk.totp_disable(PASSWORD, totp(setup.secret, t + 30))
        assert [d.current for d in await desk.devices()] == [True, False]
        await desk.rename_device(2, b"sealed laptop")
        assert (await laptop.devices())[1].name == b"sealed laptop"

        # The account password changes; the diary password does not.
        await desk.change_account_password(PASSWORD, NEW_PASSWORD)
        with pytest.raises(haven.HavenError.SessionRevoked):
            await laptop.devices()
        await laptop.relogin(NEW_PASSWORD)
        await laptop.sync()

        # Account recovery code, used by username without a session.
        code = await desk.set_account_recovery_code(NEW_PASSWORD)
        await haven.recover_account(
            relay, haven.AccountIdentifier.USERNAME(username=user), code, THIRD_PASSWORD
        )
        with pytest.raises(haven.HavenError.SessionRevoked):
            await desk.sync()
        await desk.relogin(THIRD_PASSWORD)
        await laptop.relogin(THIRD_PASSWORD)

        # The export lists the diary's vault items (without their blobs).
        export = json.loads(await desk.export_account())
        assert len(export["devices"]) == 2 and len(export["vault"]) >= 2

        # The laptop is unlinked; logout and logout everywhere; the session survives a reopen.
        await desk.unlink_device(2, THIRD_PASSWORD)
        with pytest.raises(haven.HavenError.SessionRevoked):
            await laptop.sync()
        await desk.logout()
        with pytest.raises(haven.HavenError.SessionRevoked):
            await desk.devices()
        await desk.relogin(THIRD_PASSWORD)
        desk.lock()
        desk = await haven.Diary.unlock(relay, desk_path, desk_key, DIARY_PASSWORD)
        assert len(await desk.devices()) == 1
        await desk.logout_everywhere()
        with pytest.raises(haven.HavenError.SessionRevoked):
            await desk.sync()
        await desk.relogin(THIRD_PASSWORD)

        # Deletion.
        with pytest.raises(haven.HavenError.WrongPassword):
            await desk.delete_account(PASSWORD)
        await desk.delete_account(THIRD_PASSWORD)
        with pytest.raises(haven.HavenError.SessionRevoked):
            await desk.sync()
        desk.lock()
        laptop.lock()

    run(scenario())
