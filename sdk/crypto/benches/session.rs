//! Session crypto benches: session setup on both sides, same-direction and ping-pong messages,
//! each next to vodozemac (Matrix's Olm) in the same criterion group so one run reports both;
//! sealed sender seal/open; bare X25519 / ML-KEM-1024 / ChaCha20-Poly1305 baselines. The
//! comparisons with vodozemac measure the thread's CPU time (`common::ThreadCpuTime`), the rest
//! wall time.
//! `cargo bench -p haven-sdk --bench session -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::hint::black_box;

use common::{Conversation, Inbound, Outbound, ThreadCpuTime};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use criterion::measurement::WallTime;
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use haven_sdk::identity::IdentityKeyPair;
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

/// Session setup on each side, Haven next to vodozemac (Olm) in the same group, so one run gives
/// both and their ratio (see `common::Outbound` / `common::Inbound` for what each does).
fn handshake(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("setup_outbound");
    let mut op = Outbound::new();
    g.bench_function("haven", |bn| bn.iter(|| black_box(op.haven())));
    g.bench_function("vodozemac", |bn| bn.iter(|| black_box(op.olm())));
    g.finish();

    let mut g = c.benchmark_group("setup_inbound_with_first_decrypt");
    let mut op = Inbound::new();
    g.bench_function("haven", |bn| bn.iter(|| black_box(op.haven())));
    g.bench_function("vodozemac", |bn| bn.iter(|| black_box(op.olm())));
    g.finish();
}

/// Per-message costs, Haven next to vodozemac: a 1 KiB message encrypted and decrypted in the same
/// direction (symmetric ratchet only), and ping-pong (every message a DH ratchet step).
fn ratchet(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("same_direction_1KiB_encrypt_decrypt");
    let mut op = Conversation::new();
    g.bench_function("haven", |bn| {
        bn.iter(|| black_box(op.haven_same_direction()))
    });
    g.bench_function("vodozemac", |bn| {
        bn.iter(|| black_box(op.olm_same_direction()))
    });
    g.finish();

    let mut g = c.benchmark_group("ping_pong_1KiB_dh_step_each_message");
    let mut op = Conversation::new();
    g.bench_function("haven", |bn| bn.iter(|| black_box(op.haven_ping_pong())));
    g.bench_function("vodozemac", |bn| bn.iter(|| black_box(op.olm_ping_pong())));
    g.finish();
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

criterion_group!(benches, baselines, sealed);
criterion_group! {
    name = versus_olm;
    config = Criterion::default().with_measurement(ThreadCpuTime(WallTime));
    targets = handshake, ratchet
}
criterion_main!(benches, versus_olm);
