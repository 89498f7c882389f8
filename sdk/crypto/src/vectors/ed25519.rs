//! Ed25519 acceptance vectors (PROTOCOL.md §1.1.1): signatures Haven accepts and signatures a
//! conforming verifier must reject, each with the first rule it breaks. Every verdict is
//! asserted against ed25519-dalek's `verify_strict` (which every Haven verifier, the relay's
//! included, calls) and against Haven's own identity-key path.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

use crate::identity::IdentityKey;

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn unhex32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// `k = SHA-512(R || A || M) mod L`.
fn challenge(r: &[u8; 32], a: &[u8; 32], m: &[u8]) -> Scalar {
    let d: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(a)
        .chain_update(m)
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&d)
}

fn signature(r: &[u8; 32], s: &[u8; 32]) -> [u8; 64] {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(r);
    sig[32..].copy_from_slice(s);
    sig
}

fn point(hex_y: &str) -> EdwardsPoint {
    CompressedEdwardsY(unhex32(hex_y)).decompress().unwrap()
}

fn is_identity(p: &EdwardsPoint) -> bool {
    p.compress() == EdwardsPoint::default().compress()
}

/// Whether Haven accepts: ed25519-dalek's `verify_strict`, and the identity-key path (which
/// also refuses weak keys when decoding).
fn haven_accepts(a: &[u8; 32], m: &[u8], sig: &[u8; 64]) -> bool {
    let dalek = VerifyingKey::from_bytes(a)
        .is_ok_and(|k| k.verify_strict(m, &Signature::from_bytes(sig)).is_ok());
    let mut ik = [0u8; 64];
    ik[..32].copy_from_slice(a);
    ik[32] = 9; // the X25519 base point: a valid, canonical X25519 key
    let identity = IdentityKey::from_bytes(&ik).is_ok_and(|k| k.verify(m, sig).is_ok());
    assert_eq!(
        dalek, identity,
        "identity-key path disagrees with verify_strict"
    );
    dalek
}

/// Whether the cofactored equation `[8][S]B = [8]R + [8][k]A` holds (for the reasons only).
fn cofactored_holds(a: &[u8; 32], m: &[u8], sig: &[u8; 64]) -> bool {
    let r_bytes: [u8; 32] = sig[..32].try_into().unwrap();
    let s_bytes: [u8; 32] = sig[32..].try_into().unwrap();
    let (Some(ap), Some(rp)) = (
        CompressedEdwardsY(*a).decompress(),
        CompressedEdwardsY(r_bytes).decompress(),
    ) else {
        return false;
    };
    let s = Scalar::from_bytes_mod_order(s_bytes);
    let k = challenge(&r_bytes, a, m);
    is_identity(&(s * B - rp - k * ap).mul_by_cofactor())
}

struct Case {
    name: &'static str,
    a: [u8; 32],
    m: Vec<u8>,
    sig: [u8; 64],
    rule: Option<&'static str>,
    reason: &'static str,
}

/// Signs with a raw secret scalar and nonce (the mixed-order keys have no seed).
fn raw_sign(a: &Scalar, a_bytes: &[u8; 32], r: &Scalar, m: &[u8]) -> [u8; 64] {
    let r_bytes = (r * B).compress().to_bytes();
    let s = r + challenge(&r_bytes, a_bytes, m) * a;
    signature(&r_bytes, &s.to_bytes())
}

/// L, the order of the base point, little-endian.
const L: &str = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";
/// An Edwards point of order 8.
const T8: &str = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05";
/// The neutral element (0, 1).
const IDENTITY: &str = "0100000000000000000000000000000000000000000000000000000000000000";
/// The neutral element with y = p + 1 (non-canonical).
const IDENTITY_Y_PLUS_P: &str = "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
/// y = p + 3: decodes (reduced mod p) to a point of large order; nobody knows its logarithm.
const Y3_PLUS_P: &str = "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
/// y = 2: no x satisfies the curve equation.
const NOT_A_POINT: &str = "0200000000000000000000000000000000000000000000000000000000000000";

fn cases() -> Vec<Case> {
    let msg = b"Haven Ed25519 acceptance vector".to_vec();
    let mut out = Vec::new();

    // RFC 8032 §7.1, TEST 1.
    let rfc = SigningKey::from_bytes(&unhex32(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    ));
    let rfc_sig = ed25519_dalek::Signer::sign(&rfc, b"").to_bytes();
    assert_eq!(
        h(&rfc_sig),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
    out.push(Case {
        name: "rfc8032_test1",
        a: rfc.verifying_key().to_bytes(),
        m: Vec::new(),
        sig: rfc_sig,
        rule: None,
        reason: "RFC 8032 section 7.1 TEST 1 (empty message)",
    });

    let key = SigningKey::from_bytes(&[0x40; 32]);
    let a = key.verifying_key().to_bytes();
    let sig = ed25519_dalek::Signer::sign(&key, &msg).to_bytes();
    out.push(Case {
        name: "valid",
        a,
        m: msg.clone(),
        sig,
        rule: None,
        reason: "signature by the seed 40..40 over the message",
    });
    let mut other = msg.clone();
    *other.last_mut().unwrap() ^= 1;
    out.push(Case {
        name: "wrong_message",
        a,
        m: other,
        sig,
        rule: Some("equation"),
        reason: "the valid signature over another message",
    });

    // S + L: the same S modulo L, so a verifier that reduces S accepts it.
    let (r_bytes, s_bytes) = (&sig[..32], &sig[32..]);
    let l = unhex32(L);
    let mut s_plus_l = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let t = u16::from(s_bytes[i]) + u16::from(l[i]) + carry;
        s_plus_l[i] = t as u8;
        carry = t >> 8;
    }
    assert_eq!(carry, 0);
    out.push(Case {
        name: "s_plus_l",
        a,
        m: msg.clone(),
        sig: signature(&r_bytes.try_into().unwrap(), &s_plus_l),
        rule: Some("s_out_of_range"),
        reason: "S + L: S >= L (congruent to the valid S; the equation would hold after reducing S mod L)",
    });
    let mut neg_r: [u8; 32] = r_bytes.try_into().unwrap();
    neg_r[31] ^= 0x80;
    out.push(Case {
        name: "r_negated",
        a,
        m: msg.clone(),
        sig: signature(&neg_r, &s_bytes.try_into().unwrap()),
        rule: Some("equation"),
        reason: "the valid signature with the sign bit of R flipped (R replaced by -R)",
    });

    out.push(Case {
        name: "a_not_a_point",
        a: unhex32(NOT_A_POINT),
        m: msg.clone(),
        sig,
        rule: Some("a_not_a_point"),
        reason: "A has y = 2, for which x^2 = (y^2 - 1) / (d y^2 + 1) has no solution",
    });
    out.push(Case {
        name: "r_not_a_point",
        a,
        m: msg.clone(),
        sig: signature(&unhex32(NOT_A_POINT), &s_bytes.try_into().unwrap()),
        rule: Some("r_not_a_point"),
        reason: "R has y = 2, not a point",
    });

    // Small-order A and R: the equation holds for every message.
    out.push(Case {
        name: "a_and_r_identity_s_zero",
        a: unhex32(IDENTITY),
        m: msg.clone(),
        sig: signature(&unhex32(IDENTITY), &[0; 32]),
        rule: Some("a_small_order"),
        reason: "A = R = the neutral element, S = 0: [S]B = R + [k]A holds for any message; only the small-order rule rejects it",
    });
    out.push(Case {
        name: "a_noncanonical_identity",
        a: unhex32(IDENTITY_Y_PLUS_P),
        m: msg.clone(),
        sig: signature(&unhex32(IDENTITY), &[0; 32]),
        rule: Some("a_small_order"),
        reason: "A = the neutral element encoded with y = p + 1 (non-canonical), R = neutral, S = 0: the equation holds; rejected as small order",
    });
    let mut neg_zero = unhex32(IDENTITY);
    neg_zero[31] |= 0x80;
    out.push(Case {
        name: "a_identity_sign_bit_set",
        a: neg_zero,
        m: msg.clone(),
        sig: signature(&unhex32(IDENTITY), &[0; 32]),
        rule: Some("a_small_order"),
        reason: "A = the neutral element with the sign bit set (x = 0 is accepted as -0 = 0): small order",
    });

    // Small-order A of order 8 with an R of large order: found by trying S = 1, 2, ... and
    // every torsion offset until k makes the equation hold.
    let t8 = point(T8);
    let t8_bytes = t8.compress().to_bytes();
    let small_a = (1u64..)
        .find_map(|i| {
            let s = Scalar::from(i);
            (0u64..8).find_map(|t| {
                let r = (s * B - Scalar::from(t) * t8).compress().to_bytes();
                let k = challenge(&r, &t8_bytes, &msg);
                (k * t8 == Scalar::from(t) * t8).then(|| signature(&r, &s.to_bytes()))
            })
        })
        .unwrap();
    out.push(Case {
        name: "a_small_order_equation_holds",
        a: t8_bytes,
        m: msg.clone(),
        sig: small_a,
        rule: Some("a_small_order"),
        reason: "A of order 8; R of large (mixed) order chosen so that [S]B = R + [k]A holds: only the small-order rule on A rejects it",
    });

    // Small-order R (the neutral element) with a large-order A: S = k * a.
    let a_scalar = Scalar::from_bytes_mod_order([0x55; 32]);
    let big_a = (a_scalar * B).compress().to_bytes();
    for (name, r, reason) in [
        (
            "r_small_order_equation_holds",
            unhex32(IDENTITY),
            "R = the neutral element, S = k * a: [S]B = R + [k]A holds; only the small-order rule on R rejects it",
        ),
        (
            "r_noncanonical_small_order",
            unhex32(IDENTITY_Y_PLUS_P),
            "R = the neutral element encoded with y = p + 1, S = k * a with k over these bytes: the point equation holds; R is small order (and not the canonical encoding of [S]B - [k]A)",
        ),
    ] {
        let s = challenge(&r, &big_a, &msg) * a_scalar;
        out.push(Case {
            name,
            a: big_a,
            m: msg.clone(),
            sig: signature(&r, &s.to_bytes()),
            rule: Some("r_small_order"),
            reason,
        });
    }
    out.push(Case {
        name: "a_noncanonical_large_order",
        a: unhex32(Y3_PLUS_P),
        m: msg.clone(),
        sig,
        rule: Some("equation"),
        reason: "A with y = p + 3 decodes (y is reduced mod p) to a point of large order whose logarithm nobody knows, so no signature verifies under it",
    });
    out.push(Case {
        name: "r_noncanonical_large_order",
        a,
        m: msg.clone(),
        sig: signature(&unhex32(Y3_PLUS_P), &s_bytes.try_into().unwrap()),
        rule: Some("equation"),
        reason: "R with y = p + 3: decodes, but R must equal the canonical encoding of [S]B - [k]A byte for byte",
    });

    // Mixed-order A = [a]B + T8: the cofactorless equation holds only when [k]T8 = 0.
    let mixed = a_scalar * B + t8;
    let mixed_bytes = mixed.compress().to_bytes();
    let nonce = Scalar::from_bytes_mod_order([0x66; 32]);
    let attempt = |i: u32| {
        let mut m = msg.clone();
        m.extend_from_slice(&i.to_be_bytes());
        let sig = raw_sign(&a_scalar, &mixed_bytes, &nonce, &m);
        let k = challenge(&sig[..32].try_into().unwrap(), &mixed_bytes, &m);
        (m, sig, is_identity(&(k * t8)))
    };
    let (m, sig_mixed, _) = (0..).map(attempt).find(|(_, _, zero)| !zero).unwrap();
    out.push(Case {
        name: "a_mixed_order_cofactored_only",
        a: mixed_bytes,
        m,
        sig: sig_mixed,
        rule: Some("equation"),
        reason: "A = [a]B + T (T of order 8), S = r + k * a with [k]T != 0: the cofactored equation holds, the cofactorless one does not",
    });
    let (m, sig_mixed, _) = (0..).map(attempt).find(|(_, _, zero)| *zero).unwrap();
    out.push(Case {
        name: "a_mixed_order_valid",
        a: mixed_bytes,
        m,
        sig: sig_mixed,
        rule: None,
        reason: "A = [a]B + T (T of order 8), message chosen so that [k]T = 0: the cofactorless equation holds; mixed-order keys are not refused",
    });

    // Mixed-order R = [r]B + T8: [S]B - [k]A = [r]B != R.
    let r_mixed = (nonce * B + t8).compress().to_bytes();
    let s = nonce + challenge(&r_mixed, &big_a, &msg) * a_scalar;
    out.push(Case {
        name: "r_mixed_order",
        a: big_a,
        m: msg.clone(),
        sig: signature(&r_mixed, &s.to_bytes()),
        rule: Some("equation"),
        reason: "R = [r]B + T (T of order 8), S = r + k * a: the cofactored equation holds, the cofactorless one does not",
    });
    out
}

pub(super) fn ed25519_vectors() -> Value {
    let cases: Vec<Value> = cases()
        .into_iter()
        .map(|c| {
            let valid = c.rule.is_none();
            assert_eq!(haven_accepts(&c.a, &c.m, &c.sig), valid, "{}", c.name);
            if c.name.contains("cofactored_only") || c.name == "r_mixed_order" {
                assert!(cofactored_holds(&c.a, &c.m, &c.sig), "{}", c.name);
            }
            json!({"name": c.name, "public_key": h(&c.a), "message": h(&c.m),
                "signature": h(&c.sig), "valid": valid, "rule": c.rule, "reason": c.reason})
        })
        .collect();
    json!({"description": "Ed25519 signature acceptance (PROTOCOL.md §1.1.1): Haven accepts exactly the cases with valid = true; rule names the first check of §1.1.1 that each other case fails",
        "cases": cases})
}
