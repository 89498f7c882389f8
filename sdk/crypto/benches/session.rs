//! Session crypto benches: PQXDH (both sides), ratchet encrypt/decrypt of 1 KiB, sealed sender
//! seal/open, against bare X25519 / ML-KEM-1024 / ChaCha20-Poly1305 baselines measured in the
//! same run. `cargo bench -p haven-sdk --bench session -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::pqxdh::{self, ResponderKeys};
use haven_sdk::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey};
use haven_sdk::ratchet::message::SessionMessage;
use haven_sdk::sealed_sender::{SenderCertificate, open_sealed, seal_sender};
use haven_sdk::store::DeviceAddress;
use ml_kem::ml_kem_1024::{DecapsulationKey, EncapsulationKey};
use ml_kem::{Decapsulate, Encapsulate, KeyExport, TryKeyInit};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use x25519_dalek::{PublicKey, StaticSecret};

fn baselines(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let a = StaticSecret::random_from_rng(&mut rng);
    let b = PublicKey::from(&StaticSecret::random_from_rng(&mut rng));
    c.bench_function("baseline/x25519_dh", |bn| {
        bn.iter(|| black_box(a.diffie_hellman(&b)))
    });
    let dk = DecapsulationKey::from_seed([7u8; 64].into());
    let ek = EncapsulationKey::new_from_slice(&dk.encapsulation_key().to_bytes()).unwrap();
    c.bench_function("baseline/ml_kem_1024_encaps", |bn| {
        bn.iter(|| black_box(ek.encapsulate_with_rng(&mut rng)))
    });
    let (ct, _) = ek.encapsulate_deterministic(&[3u8; 32].into());
    c.bench_function("baseline/ml_kem_1024_decaps", |bn| {
        bn.iter(|| black_box(dk.decapsulate(&ct)))
    });
    let cipher = ChaCha20Poly1305::new(&[9u8; 32].into());
    let msg = vec![0u8; 1024];
    c.bench_function("baseline/chacha20poly1305_seal_1KiB", |bn| {
        bn.iter(|| {
            black_box(cipher.encrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: &msg,
                    aad: b"",
                },
            ))
        })
    });
}

struct Fx {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    spk: SignedPreKey,
    otpk: OneTimePreKey,
    kem: KemPreKey,
    bundle: PreKeyBundle,
}

fn fx(rng: &mut ChaCha20Rng) -> Fx {
    let alice = IdentityKeyPair::generate(rng);
    let bob = IdentityKeyPair::generate(rng);
    let spk = SignedPreKey::generate(&bob, 1, 0, rng);
    let otpk = OneTimePreKey::generate(2, rng);
    let kem = KemPreKey::generate(&bob, 3, KemPreKeyKind::OneTime, 0, rng);
    let bundle = PreKeyBundle::new(*bob.public(), 1, 1, &spk, Some(&otpk), &kem);
    Fx {
        alice,
        bob,
        spk,
        otpk,
        kem,
        bundle,
    }
}

fn handshake(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let f = fx(&mut rng);
    c.bench_function("pqxdh/initiate (verify bundle + 4 DH + encaps)", |bn| {
        bn.iter(|| black_box(pqxdh::initiate(&f.alice, &f.bundle, &mut rng).unwrap()))
    });
    let mut s = pqxdh::initiate(&f.alice, &f.bundle, &mut rng).unwrap();
    let SessionMessage::PreKey(pm) = s.encrypt(b"hi").unwrap() else {
        unreachable!()
    };
    let keys = ResponderKeys {
        signed_prekey: &f.spk,
        one_time_prekey: Some(&f.otpk),
        kem_prekey: &f.kem,
    };
    c.bench_function("pqxdh/respond (4 DH + decaps + first decrypt)", |bn| {
        bn.iter(|| {
            let mut s = pqxdh::respond(&f.bob, &pm, &keys).unwrap();
            black_box(s.decrypt(&pm.message, 1_800_000_000, &mut rng).unwrap())
        })
    });
}

fn ratchet(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let f = fx(&mut rng);
    let mut alice = pqxdh::initiate(&f.alice, &f.bundle, &mut rng).unwrap();
    let SessionMessage::PreKey(pm) = alice.encrypt(b"hi").unwrap() else {
        unreachable!()
    };
    let keys = ResponderKeys {
        signed_prekey: &f.spk,
        one_time_prekey: Some(&f.otpk),
        kem_prekey: &f.kem,
    };
    let mut bob = pqxdh::respond(&f.bob, &pm, &keys).unwrap();
    bob.decrypt(&pm.message, 1_800_000_000, &mut rng).unwrap();
    let msg = vec![0x42u8; 1024];
    // Snapshot before the encrypt bench advances Alice's chain far beyond MAX_SKIP_PER_CHAIN.
    let alice0 = alice.clone();
    c.bench_function("ratchet/encrypt_1KiB", |bn| {
        bn.iter(|| black_box(alice.ratchet_encrypt(&msg).unwrap()))
    });
    c.bench_function("ratchet/decrypt_1KiB", |bn| {
        bn.iter_batched(
            || (bob.clone(), alice0.clone().ratchet_encrypt(&msg).unwrap()),
            |(mut b, m)| black_box(b.decrypt(&m, 1_800_000_000, &mut rng).unwrap()),
            BatchSize::SmallInput,
        )
    });
}

fn sealed(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let relay = SigningKey::generate(&mut rng);
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let cert = SenderCertificate::issue(
        &relay,
        DeviceAddress::new([1; 16], 1),
        *alice.public(),
        u64::MAX,
    );
    let msg = vec![0x42u8; 1024];
    c.bench_function("sealed_sender/seal_1KiB", |bn| {
        bn.iter(|| black_box(seal_sender(&alice, &cert, bob.public(), 1, &msg, &mut rng).unwrap()))
    });
    let env = seal_sender(&alice, &cert, bob.public(), 1, &msg, &mut rng).unwrap();
    let vk = relay.verifying_key();
    c.bench_function("sealed_sender/open_1KiB", |bn| {
        bn.iter(|| black_box(open_sealed(&bob, &vk, &env, 0).unwrap()))
    });
}

criterion_group!(benches, baselines, handshake, ratchet, sealed);
criterion_main!(benches);
