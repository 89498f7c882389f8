#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Attachment stream: round trips at edge sizes, tampering, truncation, reordering.

use haven_sdk::attachment::{
    AttachmentDecryptor, AttachmentEncryptor, AttachmentError, AttachmentKey, CHUNK_LEN,
    attachment_ciphertext_len, is_valid_blob_size,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn data(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

fn encrypt(key: &AttachmentKey, pt: &[u8], split: usize) -> (Vec<u8>, [u8; 32]) {
    let mut enc = AttachmentEncryptor::new(key, pt.len() as u64).unwrap();
    let mut blob = Vec::new();
    for part in pt.chunks(split.max(1)) {
        blob.extend(enc.push(part).unwrap());
    }
    let expected_len = enc.ciphertext_len();
    let (tail, digest) = enc.finish().unwrap();
    blob.extend(tail);
    assert_eq!(blob.len() as u64, expected_len);
    (blob, digest)
}

fn decrypt(
    key: &AttachmentKey,
    blob: &[u8],
    digest: [u8; 32],
    split: usize,
) -> Result<Vec<u8>, AttachmentError> {
    let mut dec = AttachmentDecryptor::new(key, digest);
    let mut out = Vec::new();
    for part in blob.chunks(split.max(1)) {
        out.extend(dec.push(part)?);
    }
    out.extend(dec.finish()?);
    Ok(out)
}

fn key(seed: u8) -> AttachmentKey {
    AttachmentKey::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
}

#[test]
fn round_trip_edge_sizes() {
    let k = key(1);
    for n in [
        0,
        1,
        CHUNK_LEN - 9,
        CHUNK_LEN - 8,
        CHUNK_LEN - 1,
        CHUNK_LEN,
        CHUNK_LEN + 1,
        3 << 20,
    ] {
        let pt = data(n);
        for split in [1000, CHUNK_LEN, 7 * CHUNK_LEN + 3] {
            let (blob, digest) = encrypt(&k, &pt, split);
            assert!(is_valid_blob_size(blob.len() as u64), "n = {n}");
            assert_eq!(
                blob.len() as u64,
                attachment_ciphertext_len(
                    haven_protocol::padding::attachment_padded_len(n as u64).unwrap()
                )
                .unwrap()
            );
            for dsplit in [1 + n % 5000, CHUNK_LEN + 16, blob.len()] {
                assert_eq!(decrypt(&k, &blob, digest, dsplit).unwrap(), pt, "n = {n}");
            }
        }
    }
}

#[test]
fn size_depends_only_on_bucket() {
    let k = key(2);
    let a = encrypt(&k, &data(300), 50).0;
    let b = encrypt(&k, &data(310), 50).0;
    assert_eq!(a.len(), b.len());
}

#[test]
fn decryptor_releases_verified_chunks_early() {
    let k = key(3);
    let pt = data(5 * CHUNK_LEN);
    let (blob, digest) = encrypt(&k, &pt, CHUNK_LEN);
    let mut dec = AttachmentDecryptor::new(&k, digest);
    // Header + two full chunks + one more byte: the first two chunks are released.
    let first = dec.push(&blob[..1 + 2 * (CHUNK_LEN + 16) + 1]).unwrap();
    assert_eq!(first, &pt[..2 * CHUNK_LEN - 8]);
}

#[test]
fn wrong_key_rejected() {
    let (blob, digest) = encrypt(&key(4), &data(100), 100);
    assert_eq!(
        decrypt(&key(5), &blob, digest, 64),
        Err(AttachmentError::InvalidCiphertext)
    );
}

#[test]
fn every_byte_flip_detected_small() {
    let k = key(6);
    let (blob, digest) = encrypt(&k, &data(1000), 1000);
    for i in 0..blob.len() {
        let mut t = blob.clone();
        t[i] ^= 0x01;
        let err = decrypt(&k, &t, digest, 333).unwrap_err();
        if i == 0 {
            assert_eq!(err, AttachmentError::UnsupportedVersion(0));
        } else {
            assert_eq!(err, AttachmentError::InvalidCiphertext, "byte {i}");
        }
    }
}

#[test]
fn truncation_reordering_dropping_appending_detected() {
    let k = key(7);
    let pt = data(3 * CHUNK_LEN + 100);
    let (blob, digest) = encrypt(&k, &pt, 4096);
    let sealed = CHUNK_LEN + 16;
    let chunks: Vec<&[u8]> = blob[1..].chunks(sealed).collect();
    assert_eq!(chunks.len(), 4);
    let join = |order: &[usize]| {
        let mut b = vec![blob[0]];
        for &i in order {
            b.extend_from_slice(chunks[i]);
        }
        b
    };
    // Reordered chunks.
    assert_eq!(
        decrypt(&k, &join(&[1, 0, 2, 3]), digest, 5000),
        Err(AttachmentError::InvalidCiphertext)
    );
    // Dropped middle chunk.
    assert_eq!(
        decrypt(&k, &join(&[0, 1, 3]), digest, 5000),
        Err(AttachmentError::InvalidCiphertext)
    );
    // Dropped final chunk: the held chunk is not final.
    assert_eq!(
        decrypt(&k, &join(&[0, 1, 2]), digest, 5000),
        Err(AttachmentError::InvalidCiphertext)
    );
    // Duplicated chunk.
    assert_eq!(
        decrypt(&k, &join(&[0, 1, 1, 2, 3]), digest, 5000),
        Err(AttachmentError::InvalidCiphertext)
    );
    // Appended final chunk again.
    assert_eq!(
        decrypt(&k, &join(&[0, 1, 2, 3, 3]), digest, 5000),
        Err(AttachmentError::InvalidCiphertext)
    );
    // Appended garbage byte.
    let mut b = blob.clone();
    b.push(0);
    assert_eq!(
        decrypt(&k, &b, digest, 5000),
        Err(AttachmentError::InvalidCiphertext)
    );
    // Truncated mid-chunk, and to the header only, and empty.
    assert_eq!(
        decrypt(&k, &blob[..blob.len() - 1], digest, 5000),
        Err(AttachmentError::InvalidCiphertext)
    );
    assert_eq!(
        decrypt(&k, &blob[..1], digest, 5000),
        Err(AttachmentError::Truncated)
    );
    assert_eq!(
        decrypt(&k, &blob[..10], digest, 5000),
        Err(AttachmentError::Truncated)
    );
    assert_eq!(
        decrypt(&k, &[], digest, 5000),
        Err(AttachmentError::Truncated)
    );
    // Correct blob, wrong digest.
    assert_eq!(
        decrypt(&k, &blob, [0; 32], 5000),
        Err(AttachmentError::DigestMismatch)
    );
}

#[test]
fn final_flag_tampering_detected() {
    // A blob of exactly two chunks cut after the first: the first chunk was sealed as non-final.
    let k = key(8);
    let (blob, digest) = encrypt(&k, &data(CHUNK_LEN + 1), 999);
    assert_eq!(
        decrypt(&k, &blob[..1 + CHUNK_LEN + 16], digest, 5000),
        Err(AttachmentError::InvalidCiphertext)
    );
}

#[test]
fn encryptor_enforces_announced_length() {
    let k = key(9);
    let mut enc = AttachmentEncryptor::new(&k, 10).unwrap();
    assert_eq!(
        enc.push(&[0; 11]),
        Err(AttachmentError::LengthMismatch {
            expected: 10,
            actual: 11
        })
    );
    enc.push(&[0; 4]).unwrap();
    assert!(matches!(
        enc.finish(),
        Err(AttachmentError::LengthMismatch {
            expected: 10,
            actual: 4
        })
    ));
    assert!(matches!(
        AttachmentEncryptor::new(&k, u64::MAX),
        Err(AttachmentError::TooLarge(_))
    ));
    assert!(matches!(
        AttachmentEncryptor::new(&k, 1 << 36),
        Err(AttachmentError::TooLarge(_))
    ));
}

#[test]
fn poisoned_after_error() {
    let k = key(10);
    let (blob, digest) = encrypt(&k, &data(10), 10);
    let mut dec = AttachmentDecryptor::new(&k, digest);
    assert_eq!(dec.push(&[2]), Err(AttachmentError::UnsupportedVersion(2)));
    assert_eq!(dec.push(&blob), Err(AttachmentError::Poisoned));
    assert_eq!(dec.finish(), Err(AttachmentError::Poisoned));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_sizes_and_splits(n in 0usize..300_000, s1 in 1usize..100_000, s2 in 1usize..100_000, seed in any::<u8>()) {
        let k = key(seed);
        let pt = data(n);
        let (blob, digest) = encrypt(&k, &pt, s1);
        prop_assert_eq!(decrypt(&k, &blob, digest, s2).unwrap(), pt);
    }

    #[test]
    fn decryptor_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000), split in 1usize..500) {
        let _ = decrypt(&key(1), &bytes, [0; 32], split);
    }
}

#[test]
fn io_adapters_round_trip_and_reject_tampering() {
    use haven_sdk::attachment::io::{DecryptingReader, EncryptingWriter};
    use std::io::{Read, Write};
    let k = key(11);
    let pt = data(2 * CHUNK_LEN + 12345);
    let mut w = EncryptingWriter::new(
        AttachmentEncryptor::new(&k, pt.len() as u64).unwrap(),
        Vec::new(),
    );
    for part in pt.chunks(10_000) {
        w.write_all(part).unwrap();
    }
    let (blob, digest) = w.finish().unwrap();
    let mut out = Vec::new();
    DecryptingReader::new(AttachmentDecryptor::new(&k, digest), blob.as_slice())
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, pt);
    let mut bad = blob.clone();
    bad[100] ^= 1;
    let mut out = Vec::new();
    let err = DecryptingReader::new(AttachmentDecryptor::new(&k, digest), bad.as_slice())
        .read_to_end(&mut out)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(out.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_tamper_detected(n in 0usize..200_000, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let k = key(12);
        let (mut blob, digest) = encrypt(&k, &data(n), 7777);
        let i = pos.index(blob.len());
        blob[i] ^= 1 << bit;
        prop_assert!(decrypt(&k, &blob, digest, 5000).is_err());
    }
}
