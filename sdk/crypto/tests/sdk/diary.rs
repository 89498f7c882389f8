#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Diary key hierarchy: unlock paths, downgrade, swap, rollback, password change.

use haven_sdk::diary::{DiaryError, DiaryKeys, KdfParams, RecoveryCode, WrappedKeyBundle};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const FAST: KdfParams = KdfParams::MIN;
const C1: [u8; 16] = [1; 16];
const C2: [u8; 16] = [2; 16];
const I1: [u8; 16] = [0x11; 16];
const I2: [u8; 16] = [0x12; 16];

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

#[test]
fn full_lifecycle() {
    let mut r = rng(1);
    let (keys, bundle, codes) = DiaryKeys::create(b"correct horse", FAST, &mut r).unwrap();
    assert_eq!(codes.len(), haven_sdk::diary::RECOVERY_CODE_COUNT);
    let bundle = WrappedKeyBundle::from_bytes(&bundle.to_bytes()).unwrap();
    let ct = keys
        .encrypt_item(&C1, &I1, 1, b"dear diary", &mut r)
        .unwrap();

    // Password unlock.
    let k2 = DiaryKeys::unlock_with_password(&bundle, b"correct horse").unwrap();
    assert_eq!(&*k2.decrypt_item(&C1, &I1, 1, &ct).unwrap(), b"dear diary");
    assert_eq!(
        DiaryKeys::unlock_with_password(&bundle, b"wrong").err(),
        Some(DiaryError::WrongPassword)
    );

    // Every recovery code unlocks, typed sloppily.
    for code in &codes {
        let text = code
            .to_text()
            .to_lowercase()
            .replace('-', " ")
            .replace('0', "o");
        let k3 = DiaryKeys::unlock_with_recovery_code(&bundle, &text).unwrap();
        assert_eq!(&*k3.decrypt_item(&C1, &I1, 1, &ct).unwrap(), b"dear diary");
    }
    // A well-formed code of another account is wrong; a typo fails the checksum.
    let foreign = RecoveryCode::generate(&mut r).to_text();
    assert_eq!(
        DiaryKeys::unlock_with_recovery_code(&bundle, &foreign).err(),
        Some(DiaryError::WrongRecoveryCode)
    );
    let mut typo = codes[0].to_text().to_string();
    let c = typo.remove(0);
    typo.insert(0, if c == 'A' { 'B' } else { 'A' });
    assert_eq!(
        DiaryKeys::unlock_with_recovery_code(&bundle, &typo).err(),
        Some(DiaryError::InvalidRecoveryCode)
    );
    assert_eq!(
        DiaryKeys::unlock_with_recovery_code(&bundle, "").err(),
        Some(DiaryError::InvalidRecoveryCode)
    );

    // Password change starts a new epoch: old items still decrypt, old password stops working.
    let rotation = k2
        .change_password(&bundle, b"new pw", FAST, &mut r)
        .unwrap();
    assert!(rotation.codes.is_empty());
    assert_eq!(rotation.keys.epoch(), 1);
    let new_bundle = rotation.bundle;
    assert_eq!(
        DiaryKeys::unlock_with_password(&new_bundle, b"correct horse").err(),
        Some(DiaryError::WrongPassword)
    );
    let k4 = DiaryKeys::unlock_with_password(&new_bundle, b"new pw").unwrap();
    assert_eq!(&*k4.decrypt_item(&C1, &I1, 1, &ct).unwrap(), b"dear diary");
    assert!(DiaryKeys::unlock_with_recovery_code(&new_bundle, &codes[3].to_text()).is_ok());

    // Regenerating codes invalidates the old ones, keeps the password.
    let rotation = k4.regenerate_recovery_codes(&new_bundle, &mut r).unwrap();
    let (b5, new_codes) = (rotation.bundle, rotation.codes);
    assert_eq!(b5.epoch(), 2);
    assert_eq!(
        DiaryKeys::unlock_with_recovery_code(&b5, &codes[0].to_text()).err(),
        Some(DiaryError::WrongRecoveryCode)
    );
    let k6 = DiaryKeys::unlock_with_recovery_code(&b5, &new_codes[9].to_text()).unwrap();
    assert_eq!(&*k6.decrypt_item(&C1, &I1, 1, &ct).unwrap(), b"dear diary");
    assert!(DiaryKeys::unlock_with_password(&b5, b"new pw").is_ok());
}

#[test]
fn swap_move_rollback_and_tamper_fail() {
    let mut r = rng(2);
    let (keys, _, _) = DiaryKeys::create(b"pw", FAST, &mut r).unwrap();
    let ct = keys.encrypt_item(&C1, &I1, 7, b"secret", &mut r).unwrap();
    let fail = Some(DiaryError::ItemDecryptionFailed);
    assert_eq!(
        keys.decrypt_item(&C1, &I2, 7, &ct).err(),
        fail,
        "item id swap"
    );
    assert_eq!(
        keys.decrypt_item(&C2, &I1, 7, &ct).err(),
        fail,
        "moved collection"
    );
    assert_eq!(keys.decrypt_item(&C1, &I1, 6, &ct).err(), fail, "rollback");
    assert_eq!(
        keys.decrypt_item(&C1, &I1, 8, &ct).err(),
        fail,
        "revision mismatch"
    );
    for i in 1..ct.len() {
        let mut t = ct.clone();
        t[i] ^= 1;
        assert_eq!(keys.decrypt_item(&C1, &I1, 7, &t).err(), fail, "byte {i}");
    }
    let mut t = ct.clone();
    t[0] = 9;
    assert_eq!(
        keys.decrypt_item(&C1, &I1, 7, &t).err(),
        Some(DiaryError::UnsupportedVersion(9))
    );
    assert_eq!(
        keys.decrypt_item(&C1, &I1, 7, &ct[..20]).err(),
        Some(DiaryError::Malformed)
    );
    let (other, _, _) = DiaryKeys::create(b"pw", FAST, &mut r).unwrap();
    assert_eq!(
        other.decrypt_item(&C1, &I1, 7, &ct).err(),
        fail,
        "other account"
    );
    // Item sizes are bucketed.
    let a = keys.encrypt_item(&C1, &I1, 1, b"a", &mut r).unwrap();
    let b = keys.encrypt_item(&C1, &I1, 1, &[0u8; 200], &mut r).unwrap();
    assert_eq!(a.len(), b.len());
}

#[test]
fn downgraded_or_inflated_params_rejected_before_argon2() {
    let mut r = rng(3);
    let (_, bundle, _) = DiaryKeys::create(b"pw", FAST, &mut r).unwrap();
    let bytes = bundle.to_bytes();
    // m_cost at offset 6, t_cost at 10, p_cost at 14 (after the epoch).
    let mut weak = bytes.clone();
    weak[6..10].copy_from_slice(&8u32.to_be_bytes());
    let weak = WrappedKeyBundle::from_bytes(&weak).unwrap();
    assert!(matches!(
        DiaryKeys::unlock_with_password(&weak, b"pw"),
        Err(DiaryError::KdfParamsTooWeak { m_cost_kib: 8, .. })
    ));
    let mut weak_t = bytes.clone();
    weak_t[10..14].copy_from_slice(&1u32.to_be_bytes());
    let weak_t = WrappedKeyBundle::from_bytes(&weak_t).unwrap();
    assert!(matches!(
        DiaryKeys::unlock_with_password(&weak_t, b"pw"),
        Err(DiaryError::KdfParamsTooWeak { t_cost: 1, .. })
    ));
    let mut huge = bytes.clone();
    huge[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
    let huge = WrappedKeyBundle::from_bytes(&huge).unwrap();
    assert!(matches!(
        DiaryKeys::unlock_with_password(&huge, b"pw"),
        Err(DiaryError::KdfParamsTooExpensive { .. })
    ));
    // Raising the params (valid range) changes the KEK and the AD: wrong password, not success.
    let mut raised = bytes.clone();
    raised[10..14].copy_from_slice(&3u32.to_be_bytes());
    let raised = WrappedKeyBundle::from_bytes(&raised).unwrap();
    assert_eq!(
        DiaryKeys::unlock_with_password(&raised, b"pw").err(),
        Some(DiaryError::WrongPassword)
    );
    // Creating with weak params is refused too.
    let weak_params = KdfParams {
        m_cost_kib: 1024,
        t_cost: 2,
        p_cost: 1,
    };
    assert!(matches!(
        DiaryKeys::create(b"pw", weak_params, &mut r),
        Err(DiaryError::KdfParamsTooWeak { .. })
    ));
}

#[test]
fn bundle_tampering_detected() {
    let mut r = rng(4);
    let (_, bundle, codes) = DiaryKeys::create(b"pw", FAST, &mut r).unwrap();
    let bytes = bundle.to_bytes();
    let last = bytes.len() - 1;
    // Flip bytes of the epoch, the password slot (18..138), its seal (138..218) and the keyring.
    for i in [
        2usize,
        5,
        18,
        33,
        34,
        57,
        58,
        137,
        138,
        169,
        170,
        217,
        last - 169,
        last - 143,
        last,
    ] {
        let mut t = bytes.clone();
        t[i] ^= 1;
        let b = WrappedKeyBundle::from_bytes(&t).unwrap();
        assert_eq!(
            DiaryKeys::unlock_with_password(&b, b"pw").err(),
            Some(DiaryError::WrongPassword),
            "byte {i}"
        );
    }
    // The recovery salt (218..234), seal (234..314), slots (315..) and the keyring.
    for i in [
        218usize,
        233,
        234,
        265,
        266,
        313,
        315,
        338,
        339,
        418,
        last - 100,
        last,
    ] {
        let mut t = bytes.clone();
        t[i] ^= 1;
        let b = WrappedKeyBundle::from_bytes(&t).unwrap();
        let res = DiaryKeys::unlock_with_recovery_code(&b, &codes[0].to_text());
        assert_eq!(res.err(), Some(DiaryError::WrongRecoveryCode), "byte {i}");
    }
    assert_eq!(
        WrappedKeyBundle::from_bytes(&bytes[..bytes.len() - 1]).err(),
        Some(DiaryError::Malformed)
    );
    assert_eq!(
        WrappedKeyBundle::from_bytes(&[bytes.as_slice(), &[0]].concat()).err(),
        Some(DiaryError::Malformed)
    );
    assert_eq!(
        WrappedKeyBundle::from_bytes(&[3]).err(),
        Some(DiaryError::UnsupportedVersion(3))
    );
    assert_eq!(
        WrappedKeyBundle::from_bytes(&[2]).err(),
        Some(DiaryError::Malformed)
    );
    assert_eq!(
        WrappedKeyBundle::from_bytes(&[]).err(),
        Some(DiaryError::Malformed)
    );
}

#[test]
fn calibrate_scales_time_and_memory() {
    // Simulated device: 1 ms per MiB per pass.
    let model = |p: &KdfParams| u64::from(p.m_cost_kib / 1024 * p.t_cost);
    let p = KdfParams::calibrate(1000, 64 * 1024, model);
    assert_eq!(p.m_cost_kib, 64 * 1024);
    assert_eq!(p.t_cost, 15);
    assert!(p.validate().is_ok());
    // A slow device: memory halves down to the minimum, t stays at the floor.
    let slow = |p: &KdfParams| u64::from(p.m_cost_kib) * u64::from(p.t_cost);
    let p = KdfParams::calibrate(100, 1 << 20, slow);
    assert!(
        p.m_cost_kib >= KdfParams::MIN.m_cost_kib && p.m_cost_kib < 2 * KdfParams::MIN.m_cost_kib
    );
    assert_eq!(p.t_cost, KdfParams::MIN.t_cost);
    assert!(p.validate().is_ok());
    // A tiny memory budget is raised to the minimum.
    assert_eq!(
        KdfParams::calibrate(500, 1, model).m_cost_kib,
        KdfParams::MIN.m_cost_kib
    );
}

#[test]
fn decoders_never_panic_on_prefixes() {
    let mut r = rng(5);
    let (_, bundle, _) = DiaryKeys::create(b"pw", FAST, &mut r).unwrap();
    let bytes = bundle.to_bytes();
    for n in 0..bytes.len() {
        assert!(WrappedKeyBundle::from_bytes(&bytes[..n]).is_err());
    }
    for s in [
        "",
        "-",
        "ÿÿÿ",
        "0000-0000-0000-0000-0000-0000-0000-0000-0",
        "UUUU",
    ] {
        assert!(RecoveryCode::parse(s).is_err());
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn bundle_and_code_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400), s in ".{0,60}") {
            let _ = WrappedKeyBundle::from_bytes(&bytes);
            let _ = RecoveryCode::parse(&s);
        }

        #[test]
        fn recovery_code_text_round_trips(seed in any::<u8>()) {
            let code = RecoveryCode::generate(&mut rng(seed));
            let text = code.to_text();
            prop_assert_eq!(text.len(), 39);
            let again = RecoveryCode::parse(&text).unwrap();
            prop_assert_eq!(&*again.to_text(), &*text);
        }
    }

    #[test]
    fn item_decrypt_never_panics_on_garbage() {
        let (keys, _, _) = DiaryKeys::create(b"pw", FAST, &mut rng(9)).unwrap();
        let mut r = rng(10);
        for n in 0..300usize {
            let mut garbage = vec![0u8; n];
            rand_core::Rng::fill_bytes(&mut r, &mut garbage);
            if let Some(b) = garbage.first_mut() {
                *b = 1;
            }
            assert!(keys.decrypt_item(&C1, &I1, 0, &garbage).is_err());
        }
    }
}

#[test]
fn bundle_debug_shows_no_key_material() {
    let (_, bundle, _) = DiaryKeys::create(b"pw", FAST, &mut rng(12)).unwrap();
    let dbg = format!("{bundle:?}");
    assert!(dbg.contains("recovery_slots: 10"), "{dbg}");
    let bytes = bundle.to_bytes();
    // No 8-byte window of the salts, nonces or wrapped keys appears in hex or decimal form.
    for w in bytes[14..].windows(8).step_by(8) {
        assert!(!dbg.contains(&hex::encode(w)));
        assert!(
            !dbg.contains(
                &format!("{:?}", w)
                    .trim_matches(|c| c == '[' || c == ']')
                    .to_string()
            )
        );
    }
}

/// Every key an attacker gets from `secret` and every bundle the relay ever stored (a dump of
/// all vault rows, history included): the keys each bundle revision opens.
fn keys_from_dump(
    dump: &[WrappedKeyBundle],
    unlock: impl Fn(&WrappedKeyBundle) -> Result<DiaryKeys, DiaryError>,
) -> Vec<DiaryKeys> {
    dump.iter().filter_map(|b| unlock(b).ok()).collect()
}

#[test]
fn a_replaced_password_or_code_with_every_stored_bundle_opens_nothing_written_after() {
    let mut r = rng(20);
    let (keys, b0, codes) = DiaryKeys::create(b"old password", FAST, &mut r).unwrap();
    let before = keys.encrypt_item(&C1, &I1, 1, b"before", &mut r).unwrap();

    let changed = keys
        .change_password(&b0, b"new password", FAST, &mut r)
        .unwrap();
    let after_pw = changed
        .keys
        .encrypt_item(&C1, &I2, 1, b"after the password change", &mut r)
        .unwrap();
    let dump = [b0.clone(), changed.bundle.clone()];
    let stolen = keys_from_dump(&dump, |b| {
        DiaryKeys::unlock_with_password(b, b"old password")
    });
    assert_eq!(stolen.len(), 1, "the old password opens the old bundle");
    for k in &stolen {
        assert_eq!(&*k.decrypt_item(&C1, &I1, 1, &before).unwrap(), b"before");
        assert!(k.decrypt_item(&C1, &I2, 1, &after_pw).is_err());
    }

    // New codes: an old code (still valid until now) opens nothing written after.
    let regenerated = changed
        .keys
        .regenerate_recovery_codes(&changed.bundle, &mut r)
        .unwrap();
    let after_codes = regenerated
        .keys
        .encrypt_item(&C2, &I1, 1, b"after new codes", &mut r)
        .unwrap();
    let dump = [b0, changed.bundle, regenerated.bundle.clone()];
    for code in &codes {
        let stolen = keys_from_dump(&dump, |b| {
            DiaryKeys::unlock_with_recovery_code(b, &code.to_text())
        });
        assert_eq!(stolen.len(), 2, "the old code opened the first two bundles");
        for k in &stolen {
            assert!(k.decrypt_item(&C2, &I1, 1, &after_codes).is_err());
        }
    }
    let stolen = keys_from_dump(&dump, |b| {
        DiaryKeys::unlock_with_password(b, b"old password")
    });
    for k in &stolen {
        assert!(k.decrypt_item(&C2, &I1, 1, &after_codes).is_err());
    }

    // The current password and the new codes read everything, from every epoch.
    let current = regenerated.bundle;
    for k in [
        DiaryKeys::unlock_with_password(&current, b"new password").unwrap(),
        DiaryKeys::unlock_with_recovery_code(&current, &regenerated.codes[4].to_text()).unwrap(),
    ] {
        assert_eq!(k.epoch(), 2);
        assert_eq!(&*k.decrypt_item(&C1, &I1, 1, &before).unwrap(), b"before");
        assert_eq!(
            &*k.decrypt_item(&C1, &I2, 1, &after_pw).unwrap(),
            b"after the password change"
        );
        assert_eq!(
            &*k.decrypt_item(&C2, &I1, 1, &after_codes).unwrap(),
            b"after new codes"
        );
    }
    assert_eq!(
        DiaryKeys::unlock_with_password(&current, b"old password").err(),
        Some(DiaryError::WrongPassword)
    );
}

#[test]
fn an_item_of_a_newer_epoch_names_it() {
    let mut r = rng(21);
    let (keys, b0, _) = DiaryKeys::create(b"pw", FAST, &mut r).unwrap();
    let next = keys.change_password(&b0, b"pw2", FAST, &mut r).unwrap();
    let ct = next.keys.encrypt_item(&C1, &I1, 3, b"x", &mut r).unwrap();
    assert_eq!(ct[0], 2);
    assert_eq!(ct[1..5], 1u32.to_be_bytes());
    assert_eq!(
        keys.decrypt_item(&C1, &I1, 3, &ct).err(),
        Some(DiaryError::UnknownEpoch(1))
    );
    // Epoch 0 in the version-2 form is not a valid item; item sizes keep their overhead.
    let mut zero = ct.clone();
    zero[1..5].copy_from_slice(&[0; 4]);
    assert_eq!(
        next.keys.decrypt_item(&C1, &I1, 3, &zero).err(),
        Some(DiaryError::Malformed)
    );
    let old = keys.encrypt_item(&C1, &I1, 3, b"x", &mut r).unwrap();
    assert_eq!(old.len(), ct.len());
}

fn legacy_vector() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors/diary.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_version_1_bundle_opens_and_its_first_change_upgrades_it() {
    let v = legacy_vector();
    let hex = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    let legacy = WrappedKeyBundle::from_bytes(&hex("bundle")).unwrap();
    assert!(legacy.is_legacy());
    let coll: [u8; 16] = hex("collection_id").try_into().unwrap();
    let item: [u8; 16] = hex("item_id").try_into().unwrap();
    let old_item = hex("item_ciphertext");
    let password = hex("password");
    let old_codes: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    let keys = DiaryKeys::unlock_with_password(&legacy, &password).unwrap();
    assert_eq!(keys.epoch(), 0);
    let mut r = rng(22);

    // The first password change upgrades, replacing the codes (they wrap the old key itself).
    let up = keys
        .change_password(&legacy, b"new password", FAST, &mut r)
        .unwrap();
    assert!(!up.bundle.is_legacy());
    assert_eq!(up.codes.len(), haven_sdk::diary::RECOVERY_CODE_COUNT);
    let upgraded = WrappedKeyBundle::from_bytes(&up.bundle.to_bytes()).unwrap();
    let new_item = up
        .keys
        .encrypt_item(&coll, &item, 43, b"new", &mut r)
        .unwrap();
    for code in &old_codes {
        assert_eq!(
            DiaryKeys::unlock_with_recovery_code(&upgraded, code).err(),
            Some(DiaryError::WrongRecoveryCode)
        );
        // The old code with the old bundle: the old key only.
        let k = DiaryKeys::unlock_with_recovery_code(&legacy, code).unwrap();
        assert!(k.decrypt_item(&coll, &item, 43, &new_item).is_err());
    }
    for k in [
        DiaryKeys::unlock_with_password(&upgraded, b"new password").unwrap(),
        DiaryKeys::unlock_with_recovery_code(&upgraded, &up.codes[0].to_text()).unwrap(),
    ] {
        assert_eq!(
            &*k.decrypt_item(&coll, &item, 42, &old_item).unwrap(),
            &hex("item_plaintext")[..]
        );
        assert_eq!(
            &*k.decrypt_item(&coll, &item, 43, &new_item).unwrap(),
            b"new"
        );
    }

    // New codes upgrade too, keeping the password (the keys were unlocked with it).
    let regen = keys.regenerate_recovery_codes(&legacy, &mut r).unwrap();
    assert!(!regen.bundle.is_legacy());
    let k = DiaryKeys::unlock_with_password(&regen.bundle, &password).unwrap();
    assert_eq!(k.epoch(), 1);
    assert!(k.decrypt_item(&coll, &item, 42, &old_item).is_ok());
    assert!(DiaryKeys::unlock_with_recovery_code(&regen.bundle, &old_codes[0]).is_err());
    // Keys opened by a code do not know the password: that upgrade must change it.
    let by_code = DiaryKeys::unlock_with_recovery_code(&legacy, &old_codes[1]).unwrap();
    assert_eq!(
        by_code.regenerate_recovery_codes(&legacy, &mut r).err(),
        Some(DiaryError::PasswordRequired)
    );

    // A recovery re-wraps a version-1 bundle in place: its codes keep working.
    let (k, rewrapped) = by_code
        .rewrap_legacy_password(&legacy, b"recovered", FAST, &mut r)
        .unwrap()
        .unwrap();
    assert!(rewrapped.is_legacy());
    assert!(DiaryKeys::unlock_with_password(&rewrapped, b"recovered").is_ok());
    assert!(DiaryKeys::unlock_with_recovery_code(&rewrapped, &old_codes[0]).is_ok());
    assert!(k.regenerate_recovery_codes(&rewrapped, &mut r).is_ok());
    assert!(
        up.keys
            .rewrap_legacy_password(&upgraded, b"x", FAST, &mut r)
            .unwrap()
            .is_none()
    );
}

/// §9.1.1: a password is normalised (NFC, non-ASCII spaces mapped to U+0020) before Argon2id,
/// so the forms in which different keyboards produce the same password open the same diary.
#[test]
fn composed_and_decomposed_passwords_open_the_same_diary() {
    let decomposed = "cafe\u{0301}\u{00A0}au lait"; // U+0065 U+0301, no-break space
    let precomposed = "caf\u{00E9} au lait"; // U+00E9, U+0020
    let mut r = rng(40);
    let (keys, bundle, _) = DiaryKeys::create(decomposed.as_bytes(), FAST, &mut r).unwrap();
    let ct = keys.encrypt_item(&C1, &I1, 1, b"bica", &mut r).unwrap();
    for pw in [decomposed, precomposed] {
        let k = DiaryKeys::unlock_with_password(&bundle, pw.as_bytes()).unwrap();
        assert!(!k.password_needs_rewrap());
        assert_eq!(&*k.decrypt_item(&C1, &I1, 1, &ct).unwrap(), b"bica");
    }
    // Normalisation is not case- or accent-folding.
    for wrong in [
        "cafe au lait",
        "CAF\u{00C9} au lait",
        "caf\u{00E9}  au lait",
    ] {
        assert_eq!(
            DiaryKeys::unlock_with_password(&bundle, wrong.as_bytes()).err(),
            Some(DiaryError::WrongPassword),
            "{wrong:?}"
        );
    }
    // A password change normalises the new password too.
    let next = keys
        .change_password(&bundle, precomposed.as_bytes(), FAST, &mut r)
        .unwrap();
    let k = DiaryKeys::unlock_with_password(&next.bundle, decomposed.as_bytes()).unwrap();
    assert_eq!(&*k.decrypt_item(&C1, &I1, 1, &ct).unwrap(), b"bica");
}
