#!/usr/bin/env python3
"""Independent re-implementation (from docs/PROTOCOL.md only) of the parts of the session vectors
that do not need ML-KEM: bundle encoding and signatures, the ratchet part of the PQXDH first
message (given SK), ratchet KDFs, sealed sender, safety numbers, account device lists and
account safety numbers, signed group changes and the group invite, message franking (§16), and
the Ed25519 acceptance rules of §1.1.1 (with its own small Edwards25519 arithmetic, not a
library that may follow other rules). Needs `cryptography`. Run: python3 sdk/vectors/crosscheck.py"""
import hashlib, hmac, json, os
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

D = os.path.dirname(os.path.abspath(__file__))
H = bytes.fromhex
raw = lambda k: k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
xpub = lambda b: X25519PublicKey.from_public_bytes(b)
u32 = lambda n: n.to_bytes(4, "big")
load = lambda n: json.load(open(os.path.join(D, n + ".json")))


def hkdf(salt, ikm, info, n):
    return HKDF(hashes.SHA256(), n, salt, info).derive(ikm)


def ident(ed, x):
    e = Ed25519PrivateKey.from_private_bytes(H(ed))
    xk = X25519PrivateKey.from_private_bytes(H(x))
    return e, xk, raw(e) + raw(xk)


def kdf_rk(rk, dh):
    okm = hkdf(rk, dh, b"Haven_Ratchet_Root_v1", 64)
    return okm[:32], okm[32:]


def mk_cipher(mk):
    okm = hkdf(bytes(32), mk, b"Haven_Ratchet_MessageKeys_v1", 44)
    return ChaCha20Poly1305(okm[:32]), okm[32:]


def check_pqxdh():
    for c in load("pqxdh")["cases"]:
        ae, ax, aik = ident(c["alice_identity_ed25519_seed"], c["alice_identity_x25519_secret"])
        be, bx, bik = ident(c["bob_identity_ed25519_seed"], c["bob_identity_x25519_secret"])
        spk = X25519PrivateKey.from_private_bytes(H(c["bob_signed_prekey_secret"]))
        ctx = b"Haven_PreKeySignature_v1"
        bundle = H(c["bundle"])
        kem_pk = bundle[-64 - 1568:-64]
        b = b"\x01\x20" + u32(c["bob_registration_id"]) + u32(c["bob_device_id"]) + bik
        b += u32(c["bob_signed_prekey_id"]) + raw(spk) + be.sign(ctx + bik + b"\x01" + u32(c["bob_signed_prekey_id"]) + raw(spk))
        if c["with_one_time_prekey"]:
            opk = X25519PrivateKey.from_private_bytes(H(c["bob_one_time_prekey_secret"]))
            b += b"\x01" + u32(c["bob_one_time_prekey_id"]) + raw(opk)
        else:
            b += b"\x00"
        b += u32(c["bob_kem_prekey_id"]) + kem_pk + be.sign(ctx + bik + b"\x02" + u32(c["bob_kem_prekey_id"]) + kem_pk)
        assert b == bundle, "bundle"
        assert H(c["associated_data"]) == aik + bik
        # Ratchet part of the first message, from SK (§4.2, §4.3).
        sk = H(c["sk"])
        ra = X25519PrivateKey.from_private_bytes(H(c["alice_first_ratchet_secret"]))
        ek = X25519PrivateKey.from_private_bytes(H(c["alice_ephemeral_secret"]))
        rk, cks = kdf_rk(sk, ra.exchange(xpub(raw(spk))))
        mk = hmac.new(cks, b"\x01", hashlib.sha256).digest()
        header = b"\x01\x01" + raw(ra) + u32(0) + u32(0)
        cipher, nonce = mk_cipher(mk)
        ct = cipher.encrypt(nonce, H(c["plaintext"]), aik + bik + header)
        msg = H(c["prekey_message"])
        prefix = b"\x01\x02" + aik + raw(ek) + u32(c["bob_signed_prekey_id"])
        prefix += (b"\x01" + u32(c["bob_one_time_prekey_id"])) if c["with_one_time_prekey"] else b"\x00"
        prefix += u32(c["bob_kem_prekey_id"])
        assert msg.startswith(prefix), "prekey message prefix"
        assert msg[len(prefix) + 1568:] == header + ct, "embedded ratchet message"
    print("pqxdh: bundle, AD and first ratchet message ok (SK taken from the vector)")


def check_ratchet_kdfs():
    v = load("ratchet")
    r = v["kdf_rk"]
    assert kdf_rk(H(r["root_key"]), H(r["dh_out"])) == (H(r["next_root_key"]), H(r["chain_key"]))
    k = v["kdf_ck"]
    assert hmac.new(H(k["chain_key"]), b"\x01", hashlib.sha256).digest() == H(k["message_key_seed"])
    assert hmac.new(H(k["chain_key"]), b"\x02", hashlib.sha256).digest() == H(k["next_chain_key"])
    print("ratchet KDFs ok")


def check_sealed_sender():
    v = load("sealed_sender")
    ae, ax, aik = ident(v["sender_identity_ed25519_seed"], v["sender_identity_x25519_secret"])
    be, bx, bik = ident(v["recipient_identity_ed25519_seed"], v["recipient_identity_x25519_secret"])
    relay = Ed25519PrivateKey.from_private_bytes(H(v["relay_ed25519_seed"]))
    body = b"\x01\x40" + H(v["sender_account_id"]) + u32(v["sender_device_id"]) + aik + v["expires"].to_bytes(8, "big")
    cert = body + relay.sign(b"Haven_SenderCertificate_v1" + body)
    assert cert.hex() == v["certificate"], "certificate"
    e = X25519PrivateKey.from_private_bytes(H(v["ephemeral_secret"]))
    hdr = b"\x01\x41" + raw(e)
    okm1 = hkdf(bik + raw(e), e.exchange(xpub(bik[32:])), b"Haven_SealedSender_Ephemeral_v1", 76)
    sct = ChaCha20Poly1305(okm1[32:64]).encrypt(okm1[64:76], aik, hdr)
    okm2 = hkdf(okm1[:32] + sct, ax.exchange(xpub(bik[32:])), b"Haven_SealedSender_Static_v1", 44)
    content = H(v["content"])
    inner = b"\x01" + bytes([v["content_type"]]) + u32(len(cert)) + cert + u32(len(content)) + content
    mct = ChaCha20Poly1305(okm2[:32]).encrypt(okm2[32:44], inner, hdr)
    assert (hdr + sct + mct).hex() == v["envelope"], "envelope"
    print("sealed sender ok")


def check_safety_number():
    for c in load("safety_number")["cases"]:
        def digits(i, k):
            k = H(k)
            h = hashlib.sha512(b"\x00\x01" + k + H(i)).digest()
            for _ in range(5200):
                h = hashlib.sha512(h + k).digest()
            return "".join("%05d" % (int.from_bytes(h[5 * j:5 * j + 5], "big") % 100000) for j in range(6))
        a = digits(c["local_stable_id"], c["local_identity_key"])
        b = digits(c["remote_stable_id"], c["remote_identity_key"])
        assert (a, b) == (c["local_digits"], c["remote_digits"])
        assert min(a, b) + max(a, b) == c["safety_number"]
    print("safety numbers ok")


def check_ratchet_conversation():
    """Replays ratchet.json's conversation with a from-the-doc Double Ratchet (§4)."""
    v = load("ratchet")
    c = load("pqxdh")["cases"][0]
    _, _, aik = ident(c["alice_identity_ed25519_seed"], c["alice_identity_x25519_secret"])
    _, _, bik = ident(c["bob_identity_ed25519_seed"], c["bob_identity_x25519_secret"])
    ad, sk = aik + bik, H(c["sk"])
    prekey_prefix = H(c["prekey_message"])[: 2 + 64 + 32 + 4 + 5 + 4 + 1568]
    priv = lambda b: X25519PrivateKey.from_private_bytes(b)
    spk = priv(H(c["bob_signed_prekey_secret"]))
    ra = priv(H(c["alice_first_ratchet_secret"]))

    class S:
        pass

    alice, bob = S(), S()
    alice.rk, alice.cks = kdf_rk(sk, ra.exchange(xpub(raw(spk))))
    alice.dhs, alice.ns, alice.pn, alice.recv, alice.skipped, alice.pending = ra, 0, 0, [], {}, True
    alice.rng = [H(x) for x in v["alice_ratchet_secrets"]]
    bob.rk, bob.cks, bob.dhs, bob.ns, bob.pn, bob.recv, bob.skipped, bob.pending = sk, None, spk, 0, 0, [], {}, False
    bob.rng = [H(x) for x in v["bob_ratchet_secrets"]]
    step = lambda ck: (hmac.new(ck, b"\x01", hashlib.sha256).digest(), hmac.new(ck, b"\x02", hashlib.sha256).digest())

    def encrypt(s, pt):
        mk, s.cks = step(s.cks)
        header = b"\x01\x01" + raw(s.dhs) + u32(s.pn) + u32(s.ns)
        s.ns += 1
        cipher, nonce = mk_cipher(mk)
        m = header + cipher.encrypt(nonce, pt, ad + header)
        return prekey_prefix + m if s.pending else m

    def skip(s, chain, until):
        while chain[2] < until:
            mk, chain[1] = step(chain[1])
            s.skipped[(chain[0], chain[2])] = mk
            chain[2] += 1

    def decrypt(s, m):
        if m[1] == 2:
            m = m[len(prekey_prefix):]
        header, ct = m[:42], m[42:]
        pub, pn, n = header[2:34], int.from_bytes(header[34:38], "big"), int.from_bytes(header[38:42], "big")
        if (pub, n) in s.skipped:
            mk = s.skipped.pop((pub, n))
        else:
            chain = next((ch for ch in s.recv if ch[0] == pub), None)
            if chain is None:
                if s.recv:
                    skip(s, s.recv[-1], pn)
                s.rk, ckr = kdf_rk(s.rk, s.dhs.exchange(xpub(pub)))
                chain = [pub, ckr, 0]
                s.recv.append(chain)
                s.pn, s.dhs = s.ns, priv(s.rng.pop(0))
                s.rk, s.cks = kdf_rk(s.rk, s.dhs.exchange(xpub(pub)))
                s.ns = 0
            skip(s, chain, n)
            mk, chain[1] = step(chain[1])
            chain[2] += 1
        cipher, nonce = mk_cipher(mk)
        s.pending = False
        return cipher.decrypt(nonce, ct, ad + header)

    steps = v["steps"]
    out = {}
    for i, st in enumerate(steps):
        me, other = (alice, bob) if st["sender"] == "alice" else (bob, alice)
        m = encrypt(me, H(st["plaintext"]))
        assert m.hex() == st["message"], "step %d" % i
        out[i] = m
        if i == 1:
            continue  # a1 is delivered after b1
        assert decrypt(other, m) == H(st["plaintext"])
        if i == 3:
            assert decrypt(bob, out[1]) == H(steps[1]["plaintext"])
    print("ratchet conversation ok (%d messages)" % len(steps))


def check_account():
    """§15: rebuilds each device list from its fields, signs it with the account key (Ed25519 is
    deterministic) and compares; recomputes the version-2 safety number."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    v = load("account")
    pair = H(v["account_key_pair"])
    assert pair[:2] == b"\x01\x51"
    key = Ed25519PrivateKey.from_private_bytes(pair[2:])
    assert raw(key).hex() == v["account_key"]
    keys = {d["number"]: H(d["identity_key"]) for d in v["devices"]}
    for lst in v["lists"]:
        body = b"\x01\x50" + H(v["account"]) + lst["version"].to_bytes(8, "big")
        body += lst["issued_at"].to_bytes(8, "big") + raw(key)
        body += len(lst["devices"]).to_bytes(2, "big")
        for n in sorted(lst["devices"]):
            body += u32(n) + keys[n]
        sig = key.sign(b"Haven_DeviceList_v1" + body)
        assert (body + sig).hex() == lst["list"], "list version %d" % lst["version"]
        Ed25519PublicKey.from_public_bytes(H(v["account_key"])).verify(sig, b"Haven_DeviceList_v1" + body)
    # §15.3: the link code and the sealed provisioning message.
    import base64
    ln = v["link"]
    new = X25519PrivateKey.from_private_bytes(H(ln["new_device_secret"]))
    assert raw(new).hex() == ln["new_device_public"]
    payload = b"\x01" + H(ln["box_id"]) + raw(new)
    payload += hashlib.sha256(payload).digest()[:4]
    assert "haven-link:" + base64.b32encode(payload).decode().rstrip("=").lower() == ln["code"]
    eph = X25519PrivateKey.from_private_bytes(H(ln["approver_ephemeral_secret"]))
    shared = eph.exchange(new.public_key())
    key = hkdf(raw(eph) + raw(new), shared, b"Haven_Provisioning_v1", 32)
    ad = b"Haven_Provisioning_v1" + H(ln["box_id"])
    ct = ChaCha20Poly1305(key).encrypt(b"\x00" * 12, H(ln["plaintext"]), ad)
    assert (b"\x01" + raw(eph) + ct).hex() == ln["sealed"]
    pt = H(ln["plaintext"])
    assert pt[0] == 1 and pt[1:17] == H(v["account"]) and pt[49:83] == H(v["account_key_pair"])
    c = v["safety_number"]
    def digits(i, k):
        k = H(k)
        h = hashlib.sha512(b"\x00\x02" + k + H(i)).digest()
        for _ in range(5200):
            h = hashlib.sha512(h + k).digest()
        return "".join("%05d" % (int.from_bytes(h[5 * j:5 * j + 5], "big") % 100000) for j in range(6))
    a = digits(c["local_account"], c["local_account_key"])
    b = digits(c["remote_account"], c["remote_account_key"])
    assert (a, b) == (c["local_digits"], c["remote_digits"])
    assert min(a, b) + max(a, b) == c["safety_number"]
    print("account device lists, link code, provisioning message and safety numbers ok (%d lists)" % len(v["lists"]))



def check_group_change():
    """§13.3.1: rebuilds each signed group change from its fields and the admin seed (Ed25519 is
    deterministic) with its group-key commitment, and the invite content carrying the first
    (§13.1, kind 0x13)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    v = load("group_change")
    key = Ed25519PrivateKey.from_private_bytes(H(v["admin_seed"]))
    assert raw(key).hex() == v["admin_key"]
    gid, name = H(v["group_id"]), v["name"].encode()
    for c in v["changes"]:
        gk = H(c["group_key"])
        commitment = hashlib.sha256(b"Haven_GroupKey_v1" + gid + u32(c["epoch"]) + gk).digest()
        assert commitment.hex() == c["key_commitment"], "epoch %d" % c["epoch"]
        body = b"\x01\x60" + gid + u32(c["epoch"]) + H(v["admin_account"]) + raw(key) + commitment
        body += len(name).to_bytes(2, "big") + name
        body += len(c["members"]).to_bytes(2, "big") + b"".join(H(m) for m in c["members"])
        sig = key.sign(b"Haven_GroupChange_v1" + body)
        assert (body + sig).hex() == c["change"], "epoch %d" % c["epoch"]
        Ed25519PublicKey.from_public_bytes(H(v["admin_key"])).verify(sig, b"Haven_GroupChange_v1" + body)
    i, first = v["invite"], v["changes"][0]
    change = H(first["change"])
    content = b"\x01\x13" + i["sent_at"].to_bytes(8, "big") + b"\x01" + gid
    content += H(i["channel_id"]) + H(i["read_token"]) + H(i["write_token"]) + H(first["group_key"])
    content += i["after"].to_bytes(8, "big") + len(change).to_bytes(2, "big") + change
    assert content.hex() == i["content"]
    print("signed group changes and the group invite ok (%d changes)" % len(v["changes"]))


def check_franking():
    """§16: the commitment, the designated-verifier tag, the opening, the relay's stamp, the
    report body and its id, and the relay's report checks in their order (§16.6) on every
    refused report, from the text of §16 only."""
    v = load("franking")
    hm = lambda k, m: hmac.new(k, m, hashlib.sha256).digest()
    f = X25519PrivateKey.from_private_bytes(H(v["relay_franking_secret"]))
    F = raw(f)
    assert F.hex() == v["relay_franking_public"]
    assert (b"\x01" + F).hex() == v["franking_key_encoding"]
    ks = H(v["stamp_key"])
    _, ax, ik = ident(v["sender_identity_ed25519_seed"], v["sender_identity_x25519_secret"])
    assert ik.hex() == v["sender_identity_key"]
    commit = lambda fk, m: hm(fk, b"Haven_Franking_Commitment_v1" + u32(len(m)) + m)
    def tag_key(ikm, ik_a, F_):
        return hkdf(ik_a + F_, ikm, b"Haven_Franking_TagKey_v1", 32)
    tag = lambda k, c, d: hm(k, b"Haven_Franking_Tag_v1" + c + d)
    stamp = lambda c, d, seq, t: hm(ks, b"Haven_Franking_Stamp_v1" + c + d + seq.to_bytes(8, "big") + t.to_bytes(8, "big"))
    for c in v["cases"]:
        fk, m, d = H(c["franking_key_fk"]), H(c["content"]), H(c["destination"])
        cm = commit(fk, m)
        assert cm.hex() == c["commitment"]
        dv = tag(tag_key(ax.exchange(xpub(F)), ik, F), cm, d)  # sender side: DH(ik_A, F)
        assert dv.hex() == c["tag"]
        assert (b"\x01\x70" + fk + dv + m).hex() == c["opening"]
        s = stamp(cm, d, c["seq"], c["time"])
        assert s.hex() == c["stamp"]
        body = b"\x01\x71" + F + H(v["sender_account_id"]) + u32(v["sender_device_id"]) + d
        body += c["seq"].to_bytes(8, "big") + c["time"].to_bytes(8, "big") + cm + s + fk + dv
        body += u32(len(m)) + m
        assert body.hex() == c["report"] and len(body) == 223 + len(m)
        assert hashlib.sha256(b"Haven_Franking_Report_v1" + s).digest()[:16].hex() == c["report_id"]

    def verify(body, ik_a):
        """§16.6 steps 3-6 (the body is well formed in every vector)."""
        F_, d = body[2:34], body[54:75]
        seq, t = int.from_bytes(body[75:83], "big"), int.from_bytes(body[83:91], "big")
        cm, s, fk, dv = body[91:123], body[123:155], body[155:187], body[187:219]
        n = int.from_bytes(body[219:223], "big")
        m = body[223:]
        assert len(m) == n
        if F_ != F:
            return "WrongFrankingKey"
        if not hmac.compare_digest(stamp(cm, d, seq, t), s):
            return "StampMismatch"
        if not hmac.compare_digest(commit(fk, m), cm):
            return "CommitmentMismatch"
        k = tag_key(f.exchange(xpub(ik_a[32:])), ik_a, F)  # relay side: DH(f, IK_A.x25519)
        if not hmac.compare_digest(tag(k, cm, d), dv):
            return "TagMismatch"
        return "ok"

    for c in v["cases"]:
        assert verify(H(c["report"]), ik) == "ok"
    for n in v["negative"]:
        assert verify(H(n["report"]), H(n["sender_identity_key"])) == n["error"], n["name"]
    print("franking commitments, tags, stamps, reports and refusals ok (%d cases, %d refused)"
          % (len(v["cases"]), len(v["negative"])))


# §1.1.1: Ed25519 acceptance, from the text, in plain integer arithmetic --------------------------
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
ED_D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
NEUTRAL = (0, 1)


def ed_add(p1, p2):
    (x1, y1), (x2, y2) = p1, p2
    t = ED_D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P  # a = -1: y1y2 - a x1x2
    return x3, y3


def ed_mul(n, pt):
    acc = NEUTRAL
    while n:
        if n & 1:
            acc = ed_add(acc, pt)
        pt = ed_add(pt, pt)
        n >>= 1
    return acc


def ed_decode(b):
    """§1.1.1 decoding: y = bits 0..254 reduced mod p; x from the curve equation; bit 255 picks
    the sign of x (x = 0 with bit 255 set is accepted). None if x does not exist."""
    y = (int.from_bytes(b, "little") & ((1 << 255) - 1)) % P
    x2 = (y * y - 1) * pow(ED_D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != b[31] >> 7:
        x = (P - x) % P
    return x, y


def ed_encode(pt):
    x, y = pt
    return (y | (x & 1) << 255).to_bytes(32, "little")


ED_B = ed_decode((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def ed_first_failure(a_bytes, msg, sig):
    """The first §1.1.1 check the signature fails, or None when it is accepted."""
    a = ed_decode(a_bytes)
    if a is None:
        return "a_not_a_point"
    if ed_mul(8, a) == NEUTRAL:
        return "a_small_order"
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return "s_out_of_range"
    r = ed_decode(sig[:32])
    if r is None:
        return "r_not_a_point"
    if ed_mul(8, r) == NEUTRAL:
        return "r_small_order"
    k = int.from_bytes(hashlib.sha512(sig[:32] + a_bytes + msg).digest(), "little") % L
    x, y = ed_mul(k, a)
    if ed_encode(ed_add(ed_mul(s, ED_B), ((P - x) % P, y))) != sig[:32]:
        return "equation"
    return None


def check_ed25519():
    v = load("ed25519")
    assert ed_encode(ED_B).hex() == "58" + "66" * 31
    for c in v["cases"]:
        a, m, sig = H(c["public_key"]), H(c["message"]), H(c["signature"])
        got = ed_first_failure(a, m, sig)
        assert got == c["rule"] and (got is None) == c["valid"], (c["name"], got)
        if "cofactored" in c["reason"] and "holds" in c["reason"]:
            # The reason claims a cofactored verifier would accept: check it, so the case
            # really tells cofactorless from cofactored verification.
            r, ap = ed_decode(sig[:32]), ed_decode(a)
            k = int.from_bytes(hashlib.sha512(sig[:32] + a + m).digest(), "little") % L
            lhs = ed_mul(int.from_bytes(sig[32:], "little"), ED_B)
            rhs = ed_add(r, ed_mul(k, ap))
            assert ed_mul(8, lhs) == ed_mul(8, rhs) and lhs != rhs, c["name"]
        if c["valid"]:  # an independent verifier (OpenSSL) agrees on the accepted ones
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
            Ed25519PublicKey.from_public_bytes(a).verify(sig, m)
    print("ed25519 acceptance rules ok (%d cases, %d refused)"
          % (len(v["cases"]), sum(not c["valid"] for c in v["cases"])))


check_pqxdh()
check_ratchet_kdfs()
check_ratchet_conversation()
check_sealed_sender()
check_safety_number()
check_account()
check_group_change()
check_franking()
check_ed25519()
