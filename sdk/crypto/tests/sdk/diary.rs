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

    // Password change re-wraps only: old items still decrypt, old password stops working.
    let new_bundle = k2
        .change_password(&bundle, b"new pw", FAST, &mut r)
        .unwrap();
    assert_eq!(
        DiaryKeys::unlock_with_password(&new_bundle, b"correct horse").err(),
        Some(DiaryError::WrongPassword)
    );
    let k4 = DiaryKeys::unlock_with_password(&new_bundle, b"new pw").unwrap();
    assert_eq!(&*k4.decrypt_item(&C1, &I1, 1, &ct).unwrap(), b"dear diary");
    assert!(DiaryKeys::unlock_with_recovery_code(&new_bundle, &codes[3].to_text()).is_ok());

    // Regenerating codes invalidates the old ones, keeps the password.
    let (b5, new_codes) = k4.regenerate_recovery_codes(&new_bundle, &mut r);
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
    // m_cost at offset 2, t_cost at 6, p_cost at 10.
    let mut weak = bytes.clone();
    weak[2..6].copy_from_slice(&8u32.to_be_bytes());
    let weak = WrappedKeyBundle::from_bytes(&weak).unwrap();
    assert!(matches!(
        DiaryKeys::unlock_with_password(&weak, b"pw"),
        Err(DiaryError::KdfParamsTooWeak { m_cost_kib: 8, .. })
    ));
    let mut weak_t = bytes.clone();
    weak_t[6..10].copy_from_slice(&1u32.to_be_bytes());
    let weak_t = WrappedKeyBundle::from_bytes(&weak_t).unwrap();
    assert!(matches!(
        DiaryKeys::unlock_with_password(&weak_t, b"pw"),
        Err(DiaryError::KdfParamsTooWeak { t_cost: 1, .. })
    ));
    let mut huge = bytes.clone();
    huge[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
    let huge = WrappedKeyBundle::from_bytes(&huge).unwrap();
    assert!(matches!(
        DiaryKeys::unlock_with_password(&huge, b"pw"),
        Err(DiaryError::KdfParamsTooExpensive { .. })
    ));
    // Raising the params (valid range) changes the KEK and the AD: wrong password, not success.
    let mut raised = bytes.clone();
    raised[6..10].copy_from_slice(&3u32.to_be_bytes());
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
    // Flip bytes in the salt, nonce and wrapped key of the password slot (offsets 14..102).
    for i in [14usize, 29, 30, 53, 54, 101] {
        let mut t = bytes.clone();
        t[i] ^= 1;
        let b = WrappedKeyBundle::from_bytes(&t).unwrap();
        assert_eq!(
            DiaryKeys::unlock_with_password(&b, b"pw").err(),
            Some(DiaryError::WrongPassword),
            "byte {i}"
        );
    }
    // Recovery slot bytes (after salt 102..118 and count at 118).
    for i in [102usize, 117, 119, 150, 190] {
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
        WrappedKeyBundle::from_bytes(&[2]).err(),
        Some(DiaryError::UnsupportedVersion(2))
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
