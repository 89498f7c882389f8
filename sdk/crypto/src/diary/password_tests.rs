//! Bundles wrapped before passwords were normalised (§9.1.1) still open, and are re-wrapped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// `é` as U+0065 U+0301 (what some keyboards and input methods produce).
const DECOMPOSED: &str = "cafe\u{0301} au lait";
/// `é` as U+00E9, and a no-break space: the same password, typed on another device.
const PRECOMPOSED: &str = "caf\u{00E9}\u{00A0}au lait";
const COLLECTION: [u8; 16] = [7; 16];
const ITEM: [u8; 16] = [8; 16];

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// A version-2 bundle as `DiaryKeys::create` wrote it before normalisation: the password
/// factor wrapped under the Argon2id of the bytes as typed.
fn create_unnormalised_v2(password: &str, r: &mut ChaCha20Rng) -> (WrappedKeyBundle, String) {
    let (_, bundle, codes) =
        hazmat::create_unnormalised(password.as_bytes(), KdfParams::MIN, r).unwrap();
    (bundle, codes[3].to_text().as_str().to_owned())
}

/// A version-1 bundle wrapped under the bytes as typed.
fn create_unnormalised_v1(password: &str, r: &mut ChaCha20Rng) -> (WrappedKeyBundle, String) {
    let keys = DiaryKeys::from_master(random(r));
    let inputs = PasswordSlotInputs {
        salt: random(r),
        nonce: random(r),
    };
    let kek = argon2_kek(password.as_bytes(), &inputs.salt, &KdfParams::MIN).unwrap();
    let code = RecoveryCode::generate(r);
    let rec_salt = random(r);
    let entries = [(*code.entropy(), random(r))];
    let bundle = WrappedKeyBundle::legacy(LegacyBundle {
        password: keys.legacy_password_slot(&kek, KdfParams::MIN, &inputs),
        recovery_salt: rec_salt,
        recovery: keys.legacy_recovery_slots(rec_salt, &entries),
    });
    (bundle, code.to_text().as_str().to_owned())
}

fn unlock(bundle: &WrappedKeyBundle, password: &str) -> Result<DiaryKeys, DiaryError> {
    DiaryKeys::unlock_with_password(bundle, password.as_bytes())
}

#[test]
fn a_diary_wrapped_before_normalisation_opens_and_is_rewrapped() {
    type Create = fn(&str, &mut ChaCha20Rng) -> (WrappedKeyBundle, String);
    for (version, create) in [
        (1u8, create_unnormalised_v1 as Create),
        (2, create_unnormalised_v2),
    ] {
        let mut r = rng(version);
        let (old, code) = create(DECOMPOSED, &mut r);
        // The other form of the password does not open a bundle wrapped under raw bytes.
        assert_eq!(
            unlock(&old, PRECOMPOSED).err(),
            Some(DiaryError::WrongPassword),
            "v{version}"
        );
        // The form it was wrapped under still opens it (nobody is locked out), flagged.
        let keys = unlock(&old, DECOMPOSED).unwrap();
        assert!(keys.password_needs_rewrap(), "v{version}");
        let item = keys
            .encrypt_item(&COLLECTION, &ITEM, 1, b"before", &mut r)
            .unwrap();

        // A wrong password is refused by the re-wrap, which changes nothing.
        assert_eq!(
            keys.rewrap_normalised_password(&old, b"cafe au lait", &mut r)
                .err(),
            Some(DiaryError::WrongPassword)
        );
        let (rewrapped_keys, new) = keys
            .rewrap_normalised_password(&old, DECOMPOSED.as_bytes(), &mut r)
            .unwrap()
            .unwrap();
        assert!(!rewrapped_keys.password_needs_rewrap());
        assert_eq!(new.epoch(), old.epoch(), "v{version}: no new epoch");
        assert_eq!(new.is_legacy(), old.is_legacy());
        assert_ne!(new.to_bytes(), old.to_bytes());

        // After the re-wrap both forms open it, without the flag, to the same keys.
        for pw in [DECOMPOSED, PRECOMPOSED] {
            let k = unlock(&new, pw).unwrap();
            assert!(!k.password_needs_rewrap(), "v{version} {pw:?}");
            assert_eq!(
                &*k.decrypt_item(&COLLECTION, &ITEM, 1, &item).unwrap(),
                b"before"
            );
        }
        assert_eq!(
            unlock(&new, "cafe au lait").err(),
            Some(DiaryError::WrongPassword)
        );
        // The recovery code still opens it.
        let k = DiaryKeys::unlock_with_recovery_code(&new, &code).unwrap();
        assert_eq!(
            &*k.decrypt_item(&COLLECTION, &ITEM, 1, &item).unwrap(),
            b"before"
        );
        // Keys that need no re-wrap produce none.
        assert!(
            k.rewrap_normalised_password(&new, DECOMPOSED.as_bytes(), &mut r)
                .unwrap()
                .is_none()
        );
    }
}
