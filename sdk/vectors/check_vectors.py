#!/usr/bin/env python3
"""Independent re-implementation of docs/PROTOCOL.md §7-§10 checked against sdk/vectors/*.json
(the diary's key epochs of §9.3 and the password normalisation of §9.1.1 included).

Uses only the Python standard library and `cryptography` (>= 44, for Argon2id). Run from the
repository root: python3 sdk/vectors/check_vectors.py
"""
import hashlib
import hmac
import json
import os
import struct
import sys
import unicodedata

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    with open(os.path.join(HERE, name + ".json")) as f:
        return json.load(f)


def hkdf(salt, ikm, info, length):
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


# §7 -------------------------------------------------------------------------------------------
def padme(n):
    if n < 2:
        return n
    e = n.bit_length() - 1
    s = e.bit_length()  # floor(log2 e) + 1
    mask = (1 << (e - s)) - 1
    return (n + mask) & ~mask


def padded_len(n):
    return padme(max(n + 1, 256))


def is_bucket(n):
    return n >= 256 and padme(n) == n


def pad(p):
    return p + b"\x80" + b"\x00" * (padded_len(len(p)) - len(p) - 1)


def blob_len(b):
    return 1 + b + 16 * -(-b // 65536)


def check_padding():
    v = load("padding")
    for c in v["buckets"]:
        assert padded_len(c["n"]) == c["padded_len"], c
        assert is_bucket(c["n"]) == c["is_bucket_n"], c
    for c in v["attachment_sizes"]:
        b = padded_len(c["plaintext_len"] + 8)
        assert b == c["attachment_padded_len"] and blob_len(b) == c["ciphertext_len"], c
    for c in v["pad"]:
        assert pad(bytes.fromhex(c["payload"])).hex() == c["padded"], c


# §8 -------------------------------------------------------------------------------------------
def check_sender_keys():
    v = load("sender_keys")
    dist = bytes.fromhex(v["distribution_id"])
    ck = bytes.fromhex(v["initial_chain_key"])
    sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["signing_seed"]))
    pub = sk.public_key().public_bytes_raw()
    assert pub.hex() == v["signing_public"]
    skdm = b"\x01\x01" + dist + struct.pack(">II", v["chain_id"], 0) + ck + pub
    assert skdm.hex() == v["distribution_message"]
    for m in v["messages"]:
        i = m["iteration"]
        seed = hmac.new(ck, b"\x01", hashlib.sha256).digest()
        okm = hkdf(None, seed, b"Haven_SenderKeyMessage_v1", 44)
        header = b"\x01\x02" + dist + struct.pack(">II", v["chain_id"], i)
        ct = ChaCha20Poly1305(okm[:32]).encrypt(okm[32:], bytes.fromhex(m["plaintext"]), header)
        signed = header + struct.pack(">I", len(ct)) + ct
        msg = signed + sk.sign(signed)
        assert msg.hex() == m["message"], i
        Ed25519PublicKey.from_public_bytes(pub).verify(msg[-64:], msg[:-64])
        ck = hmac.new(ck, b"\x02", hashlib.sha256).digest()


# §9 -------------------------------------------------------------------------------------------
def rotl(x, n):
    return ((x << n) & 0xFFFFFFFF) | (x >> (32 - n))


def hchacha20(key, nonce16):
    st = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    st += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a, b, c, d):
        st[a] = (st[a] + st[b]) & 0xFFFFFFFF; st[d] = rotl(st[d] ^ st[a], 16)
        st[c] = (st[c] + st[d]) & 0xFFFFFFFF; st[b] = rotl(st[b] ^ st[c], 12)
        st[a] = (st[a] + st[b]) & 0xFFFFFFFF; st[d] = rotl(st[d] ^ st[a], 8)
        st[c] = (st[c] + st[d]) & 0xFFFFFFFF; st[b] = rotl(st[b] ^ st[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(st[0:4] + st[12:16]))


def xaead_encrypt(key, nonce24, msg, ad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\x00" * 4 + nonce24[16:], msg, ad)


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def recovery_text(entropy):
    raw = entropy + hashlib.sha256(b"Haven_RecoveryCode_v1" + entropy).digest()[:4]
    bits = int.from_bytes(raw, "big")
    chars = [CROCKFORD[(bits >> (155 - 5 * i)) & 31] for i in range(32)]
    return "-".join("".join(chars[i:i + 4]) for i in range(0, 32, 4))


# §9.1.1: the non-ASCII space characters, mapped to U+0020 before NFC.
NON_ASCII_SPACES = {0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000}


def normalise_password(text):
    mapped = "".join(" " if ord(c) in NON_ASCII_SPACES else c for c in text)
    return unicodedata.normalize("NFC", mapped).encode("utf-8")


def check_diary():
    v = load("diary")
    b = lambda k: bytes.fromhex(v[k])  # noqa: E731
    p = v["kdf_params"]
    kek = Argon2id(salt=b("password_salt"), length=32, iterations=p["t_cost"], lanes=p["p_cost"],
                   memory_cost=p["m_cost_kib"]).derive(b("password"))
    assert kek == b("password_kek")
    # The list in the text is exactly Unicode's Zs category minus U+0020 (this Python's version).
    zs = {c for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs"} - {0x20}
    assert zs == NON_ASCII_SPACES, sorted(zs ^ NON_ASCII_SPACES)
    u = v["unicode_password"]
    assert u["typed"].encode("utf-8").hex() == u["typed_utf8"]
    norm = normalise_password(u["typed"])
    assert norm.hex() == u["normalised_utf8"] and norm != u["typed"].encode("utf-8")
    kek_u = Argon2id(salt=b("password_salt"), length=32, iterations=p["t_cost"],
                     lanes=p["p_cost"], memory_cost=p["m_cost_kib"]).derive(norm)
    assert kek_u.hex() == u["password_kek"]
    params = struct.pack(">III", p["m_cost_kib"], p["t_cost"], p["p_cost"])
    ad_pw = b"Haven_DiaryPasswordWrap_v1\x01" + params + b("password_salt")
    bundle = b"\x01\x05" + params + b("password_salt") + b("password_nonce")
    bundle += xaead_encrypt(kek, b("password_nonce"), b("master_key"), ad_pw)
    rsalt = b("recovery_salt")
    bundle += rsalt + bytes([len(v["recovery_codes"])])
    for j, c in enumerate(v["recovery_codes"]):
        e, n = bytes.fromhex(c["entropy"]), bytes.fromhex(c["nonce"])
        assert recovery_text(e) == c["text"]
        k = hkdf(rsalt, e, b"Haven_DiaryRecoveryWrap_v1", 32)
        assert k.hex() == c["kek"]
        ad = b"Haven_DiaryRecoveryWrap_v1\x01" + bytes([j]) + rsalt
        bundle += n + xaead_encrypt(k, n, b("master_key"), ad)
    assert bundle == b("bundle")
    ck = hkdf(None, b("master_key"), b"Haven_DiaryCollectionKey_v1" + b("collection_id"), 32)
    assert ck == b("collection_key")
    ik = hkdf(None, ck, b"Haven_DiaryItemKey_v1" + b("item_id"), 32)
    assert ik == b("item_key")
    ad = b"\x01" + b("collection_id") + b("item_id") + struct.pack(">Q", v["revision"])
    ct = b"\x01" + b("item_nonce") + xaead_encrypt(ik, b("item_nonce"), pad(b("item_plaintext")), ad)
    assert ct == b("item_ciphertext")


def x25519_pub(secret):
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def diary_seal(tag, epoch, auth, public, eph, master):
    """§9.3 seal(X, e, MK) with the ephemeral secret `eph`: (eph_pub, sealed)."""
    eph_pub = x25519_pub(eph)
    shared = X25519PrivateKey.from_private_bytes(eph).exchange(
        X25519PublicKey.from_public_bytes(public))
    e = struct.pack(">I", epoch)
    okm = hkdf(auth, shared, b"Haven_DiarySeal_v1" + bytes([tag]) + e + eph_pub + public, 56)
    ad = b"Haven_DiarySeal_v1\x02" + bytes([tag]) + e
    return eph_pub, xaead_encrypt(okm[:32], okm[32:], master, ad)


def check_diary_epochs():
    v = load("diary_epochs")
    b = lambda k: bytes.fromhex(v[k])  # noqa: E731
    p, epoch = v["kdf_params"], v["epoch"]
    masters = {m["epoch"]: bytes.fromhex(m["key"]) for m in v["master_keys"]}
    fp, fr = v["password_factor"], v["recovery_factor"]
    s_p, a_p = bytes.fromhex(fp["secret"]), bytes.fromhex(fp["auth"])
    s_r, a_r = bytes.fromhex(fr["secret"]), bytes.fromhex(fr["auth"])
    p_pub, r_pub = x25519_pub(s_p), x25519_pub(s_r)
    assert p_pub.hex() == fp["public"] and r_pub.hex() == fr["public"]
    kek = Argon2id(salt=b("password_salt"), length=32, iterations=p["t_cost"], lanes=p["p_cost"],
                   memory_cost=p["m_cost_kib"]).derive(b("password"))
    assert kek == b("password_kek")
    params = struct.pack(">III", p["m_cost_kib"], p["t_cost"], p["p_cost"])
    ad_pw = b"Haven_DiaryPasswordWrap_v1\x02" + params + b("password_salt")
    mk = masters[epoch]
    out = b"\x02\x05" + struct.pack(">I", epoch) + params + b("password_salt") + b("password_nonce")
    out += xaead_encrypt(kek, b("password_nonce"), s_p + a_p, ad_pw)
    out += b"".join(diary_seal(0x50, epoch, a_p, p_pub, b("password_ephemeral"), mk))
    rsalt = b("recovery_salt")
    out += rsalt + b"".join(diary_seal(0x52, epoch, a_r, r_pub, b("recovery_ephemeral"), mk))
    out += bytes([len(v["recovery_codes"])])
    for j, c in enumerate(v["recovery_codes"]):
        e, n = bytes.fromhex(c["entropy"]), bytes.fromhex(c["nonce"])
        assert recovery_text(e) == c["text"]
        k = hkdf(rsalt, e, b"Haven_DiaryRecoveryWrap_v1", 32)
        assert k.hex() == c["kek"]
        ad = b"Haven_DiaryRecoveryWrap_v1\x02" + bytes([j]) + rsalt
        out += n + xaead_encrypt(k, n, s_r + a_r, ad)
    old = sorted(e for e in masters if e != epoch)
    ring = a_p + p_pub + a_r + r_pub + b"".join(struct.pack(">I", e) + masters[e] for e in old)
    e32 = struct.pack(">I", epoch)
    k_ring = hkdf(None, mk, b"Haven_DiaryKeyring_v1" + e32, 32)
    ad_ring = b"Haven_DiaryKeyring_v1\x02" + e32 + struct.pack(">H", len(old))
    out += b("keyring_nonce") + struct.pack(">H", len(old))
    out += xaead_encrypt(k_ring, b("keyring_nonce"), ring, ad_ring)
    assert out == b("bundle")
    coll, item = b("collection_id"), b("item_id")
    for it in v["items"]:
        e, rev, nonce = it["epoch"], it["revision"], bytes.fromhex(it["nonce"])
        ck = hkdf(None, masters[e], b"Haven_DiaryCollectionKey_v1" + coll, 32)
        ik = hkdf(None, ck, b"Haven_DiaryItemKey_v1" + item, 32)
        if e == 0:
            ad, head = b"\x01" + coll + item + struct.pack(">Q", rev), b"\x01"
        else:
            nonce = struct.pack(">I", e) + nonce[4:]
            ad = b"\x02" + struct.pack(">I", e) + coll + item + struct.pack(">Q", rev)
            head = b"\x02"
        ct = head + nonce + xaead_encrypt(ik, nonce, pad(bytes.fromhex(it["plaintext"])), ad)
        assert ct.hex() == it["ciphertext"], e
        assert is_bucket(len(ct) - 41)


def check_diary_entry():
    v = load("diary_entry")
    b = lambda k: bytes.fromhex(v[k])  # noqa: E731
    e = v["entry"]
    s = lambda t: struct.pack(">I", len(t.encode())) + t.encode()  # noqa: E731
    body = b"\x01\x02" + s(e["body"]) + bytes([len(e["attachments"])])
    for a in e["attachments"]:
        body += bytes.fromhex(a["blob_id"]) + bytes.fromhex(a["key"])
        body += struct.pack(">Q", a["plaintext_len"])
    assert body == b("body_plaintext")
    coll, item, rev = b("collection_id"), b("item_id"), v["revision"]
    ck = hkdf(None, b("master_key"), b"Haven_DiaryCollectionKey_v1" + coll, 32)
    ik = hkdf(None, ck, b"Haven_DiaryItemKey_v1" + item, 32)
    ad = b"\x01" + coll + item + struct.pack(">Q", rev)
    body_ct = b"\x01" + b("body_nonce") + xaead_encrypt(ik, b("body_nonce"), pad(body), ad)
    assert body_ct == b("body_ciphertext")
    digest = hashlib.sha256(body_ct).digest()
    assert digest == b("body_digest")
    meta = b"\x01\x01" + struct.pack(">QQ", e["created_ms"], e["updated_ms"]) + s(e["title"])
    meta += (b"\x01" + s(e["mood"])) if e["mood"] is not None else b"\x00"
    meta += bytes([len(e["tags"])]) + b"".join(s(t) for t in e["tags"]) + digest
    assert meta == b("meta_plaintext")
    meta_ct = b"\x01" + b("meta_nonce") + xaead_encrypt(ik, b("meta_nonce"), pad(meta), ad)
    assert meta_ct == b("meta_ciphertext")
    assert is_bucket(len(body_ct) - 41) and is_bucket(len(meta_ct) - 41)


# §10 ------------------------------------------------------------------------------------------
def check_attachment():
    for c in load("attachment")["cases"]:
        key = bytes.fromhex(c["key"])
        okm = hkdf(None, key, b"Haven_Attachment_v1", 39)
        assert okm[32:].hex() == c["nonce_prefix"]
        n = c["plaintext_len"]
        plain = bytes(i % 251 for i in range(n))
        b = padded_len(n + 8)
        padded = struct.pack(">Q", n) + plain + b"\x80" + b"\x00" * (b - n - 9)
        chunks = [padded[i:i + 65536] for i in range(0, b, 65536)]
        blob = b"\x01"
        aead = ChaCha20Poly1305(okm[:32])
        for i, ch in enumerate(chunks):
            last = 1 if i == len(chunks) - 1 else 0
            blob += aead.encrypt(okm[32:] + struct.pack(">IB", i, last), ch, b"\x01")
        assert len(blob) == c["blob_len"] == blob_len(b)
        assert hashlib.sha256(blob).hexdigest() == c["blob_sha256"]
        if "blob" in c:
            assert blob.hex() == c["blob"]
        else:
            assert blob[-64:].hex() == c["blob_last_64"]


if __name__ == "__main__":
    for f in (check_padding, check_sender_keys, check_diary, check_diary_epochs,
              check_diary_entry, check_attachment):
        f()
        print("ok", f.__name__)
    sys.exit(0)
