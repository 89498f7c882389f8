//! Benchmarks for the data-crypto modules, each next to a bare-primitive baseline measured in
//! the same run (see docs/BENCHMARKS.md, "SDK: data").
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use haven_sdk::attachment::{AttachmentDecryptor, AttachmentEncryptor, AttachmentKey};
use haven_sdk::diary::{DiaryIndex, DiaryKeys, DiaryQuery, Entry, KdfParams, SealedEntry};
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

const WORDS: [&str; 24] = [
    "morning", "coffee", "walk", "park", "rain", "sunny", "work", "meeting", "friends", "dinner",
    "book", "music", "garden", "train", "lisbon", "family", "tired", "happy", "cinema", "beach",
    "pasteis", "castle", "planning", "weekend",
];

/// 10,000 entries of ~60 words each, deterministic.
fn corpus(keys: &DiaryKeys) -> Vec<([u8; 16], SealedEntry)> {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    (0..10_000u32)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let pick = |k: u32| WORDS[((i.wrapping_mul(31) + k * 7) % 24) as usize];
            let body: Vec<&str> = (0..60).map(pick).collect();
            let entry = Entry {
                title: format!("Day {i} {}", pick(99)),
                body: body.join(" ") + &format!(" entry{i}\n"),
                mood: Some(["calm", "happy", "tired"][(i % 3) as usize].into()),
                tags: vec![pick(5).into(), pick(11).into()],
                created_ms: 1_600_000_000_000 + u64::from(i) * 86_400_000,
                updated_ms: 1_600_000_000_000 + u64::from(i) * 86_400_000,
                attachments: Vec::new(),
            };
            let sealed = entry.seal(keys, &[1; 16], &id, 1, &mut rng).unwrap();
            (id, sealed)
        })
        .collect()
}

fn diary_entries(c: &mut Criterion) {
    let mut g = c.benchmark_group("diary_10k_entries");
    g.sample_size(10);
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let (keys, _, _) = DiaryKeys::create(b"password", KdfParams::MIN, &mut rng).unwrap();
    let items = corpus(&keys);
    g.bench_function("bare_decrypt_items", |b| {
        b.iter(|| {
            for (id, s) in &items {
                black_box(keys.decrypt_item(&[1; 16], id, 1, &s.body).unwrap());
                black_box(keys.decrypt_item(&[1; 16], id, 1, &s.meta).unwrap());
            }
        })
    });
    let build = || {
        let mut index = DiaryIndex::new();
        for (id, s) in &items {
            let entry = Entry::open(&keys, &[1; 16], id, 1, s).unwrap();
            index.upsert(*id, &entry);
        }
        index
    };
    g.bench_function("open_and_index", |b| b.iter(|| black_box(build())));
    let index = build();
    let text = DiaryQuery {
        text: Some("lisb cast".into()),
        ..DiaryQuery::default()
    };
    let rare = DiaryQuery {
        text: Some("entry1234".into()),
        ..DiaryQuery::default()
    };
    let filtered = DiaryQuery {
        mood: Some("happy".into()),
        tag: Some("park".into()),
        from_ms: Some(1_650_000_000_000),
        until_ms: Some(1_900_000_000_000),
        ..DiaryQuery::default()
    };
    g.bench_function("search_two_prefixes", |b| {
        b.iter(|| black_box(index.search(black_box(&text)).len()))
    });
    g.bench_function("search_rare_term", |b| {
        b.iter(|| black_box(index.search(black_box(&rare)).len()))
    });
    g.bench_function("filter_mood_tag_dates", |b| {
        b.iter(|| black_box(index.search(black_box(&filtered)).len()))
    });
    let bytes = index.to_bytes();
    println!("index of 10,000 entries: {} bytes serialized", bytes.len());
    g.bench_function("index_from_bytes", |b| {
        b.iter(|| black_box(DiaryIndex::from_bytes(black_box(&bytes)).unwrap().len()))
    });
    g.finish();
}

criterion_group!(benches, attachments, groups, padding, diary, diary_entries);
criterion_main!(benches);
