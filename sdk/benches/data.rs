//! Benchmarks for the data-crypto modules, each next to a bare-primitive baseline measured in
//! the same run (see docs/BENCHMARKS.md, "SDK: data").
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use haven_sdk::attachment::{AttachmentDecryptor, AttachmentEncryptor, AttachmentKey};
use haven_sdk::diary::{DiaryKeys, KdfParams};
use haven_sdk::groups::{DistributionId, GroupSenderSession, SenderKeyRecord};
use haven_sdk::padding::{pad, padded_len, unpad};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const MIB: usize = 1 << 20;

fn bare_seal(len: usize) -> impl FnMut() -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let data = vec![0x5a; len];
    move || {
        cipher
            .encrypt(&Nonce::from([1u8; 12]), data.as_slice())
            .unwrap()
    }
}

fn attachments(c: &mut Criterion) {
    let mut g = c.benchmark_group("attachment_1MiB");
    g.throughput(Throughput::Bytes(MIB as u64));
    let data = vec![0x5a; MIB];
    let key = AttachmentKey::from_bytes([3; 32]);
    let mut seal = bare_seal(MIB);
    g.bench_function("bare_chacha20poly1305_seal", |b| {
        b.iter(|| black_box(seal()))
    });
    let encrypt = |data: &[u8]| {
        let mut enc = AttachmentEncryptor::new(&key, data.len() as u64).unwrap();
        let mut blob = enc.push(data).unwrap();
        let (tail, digest) = enc.finish().unwrap();
        blob.extend(tail);
        (blob, digest)
    };
    let mut seal2 = bare_seal(MIB);
    g.bench_function("bare_seal_plus_sha256", |b| {
        b.iter(|| {
            let ct = seal2();
            black_box(<sha2::Sha256 as sha2::Digest>::digest(&ct))
        })
    });
    g.bench_function("encrypt", |b| {
        b.iter(|| black_box(encrypt(black_box(&data))))
    });
    let (blob, digest) = encrypt(&data);
    g.bench_function("decrypt", |b| {
        b.iter(|| {
            let mut dec = AttachmentDecryptor::new(&key, digest);
            let mut out = dec.push(black_box(&blob)).unwrap();
            out.extend(dec.finish().unwrap());
            black_box(out)
        })
    });
    g.finish();
}

fn groups(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_1KiB");
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let mut sender = GroupSenderSession::new(DistributionId::generate(&mut rng), &mut rng);
    let msg = vec![0x42; 1024];
    let mut seal = bare_seal(1024);
    g.bench_function("bare_chacha20poly1305_seal", |b| {
        b.iter(|| black_box(seal()))
    });
    g.bench_function("encrypt", |b| {
        b.iter(|| black_box(sender.encrypt(black_box(&msg)).unwrap()))
    });
    let record = SenderKeyRecord::new(&sender.distribution_message());
    let ct = sender.encrypt(&msg).unwrap();
    g.bench_function("decrypt", |b| {
        b.iter_batched(
            || record.clone(),
            |mut r| black_box(r.decrypt(&ct).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn padding(c: &mut Criterion) {
    let mut g = c.benchmark_group("padding");
    let msg = vec![1u8; 1000];
    let padded = pad(&msg).unwrap();
    g.bench_function("padded_len", |b| {
        b.iter(|| black_box(padded_len(black_box(123_456_789))))
    });
    g.bench_function("pad_1000B", |b| {
        b.iter(|| black_box(pad(black_box(&msg)).unwrap()))
    });
    g.bench_function("unpad_1000B", |b| {
        b.iter(|| black_box(unpad(black_box(&padded)).unwrap().len()))
    });
    g.finish();
}

fn diary(c: &mut Criterion) {
    let mut g = c.benchmark_group("diary_unlock_default_params");
    g.sample_size(10);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let (_, bundle, _) = DiaryKeys::create(b"password", KdfParams::DEFAULT, &mut rng).unwrap();
    let p = KdfParams::DEFAULT;
    let argon = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32)).unwrap(),
    );
    g.bench_function("bare_argon2id", |b| {
        b.iter(|| {
            let mut out = [0u8; 32];
            argon
                .hash_password_into(b"password", &[9u8; 16], &mut out)
                .unwrap();
            black_box(out)
        })
    });
    g.bench_function("unlock_with_password", |b| {
        b.iter(|| black_box(DiaryKeys::unlock_with_password(&bundle, b"password").unwrap()))
    });
    g.finish();
}

criterion_group!(benches, attachments, groups, padding, diary);
criterion_main!(benches);
