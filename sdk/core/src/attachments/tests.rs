//! The attachment steps without a relay: pointers and resume state, blob plans from the relay's
//! answers, the encryptor cut into parts and reassembled, resumed uploads, downloads in any
//! split, tampering and wrong sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use haven_protocol::api::blobs::{BlobInfo, DownloadUrl, PartUrl, PartUrls};
use haven_sdk::attachment::{AttachmentError, AttachmentKey, is_valid_blob_size};
use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;

use super::*;

/// Small parts keep the tests quick (the relay's default is 8 MiB; S3's floor 5 MiB).
const PART: u64 = 256 * 1024;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn info(id: [u8; 16], size: u64, part_size: u64, state: &str, received: Vec<u64>) -> BlobInfo {
    BlobInfo {
        blob_id: id.into(),
        size,
        part_size,
        part_count: size.div_ceil(part_size).max(1),
        state: state.into(),
        created_at: 0,
        expires_at: 0,
        parts_received: received,
    }
}

/// Reserves a blob as the relay would, with parts of `part_size`.
fn start(size: u64, part_size: u64, received: Vec<u64>) -> (PendingUpload, UploadPlan) {
    let start = UploadStart::new(size, &mut rng()).unwrap();
    let body = start.request(Some(60));
    assert_eq!(body.ttl_secs, Some(60));
    assert!(is_valid_blob_size(body.size));
    let pending = start
        .created(&info([9; 16], body.size, part_size, "pending", vec![]))
        .unwrap();
    let plan = pending
        .plan(&info([9; 16], body.size, part_size, "pending", received))
        .unwrap();
    (pending, plan)
}

/// Encrypts `source` through the encryptor and the splitter, pushing `step` bytes at a time;
/// returns the parts that were not stored (part number, bytes) and the digest.
fn encrypt_parts(
    pending: &PendingUpload,
    plan: &UploadPlan,
    source: &[u8],
    step: usize,
) -> (Vec<(u64, Vec<u8>)>, [u8; 32]) {
    let mut enc = UploadEncryptor::new(pending).unwrap();
    let mut splitter = PartSplitter::new(plan);
    let mut parts: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut take = |piece: Vec<u8>, splitter: &mut PartSplitter| {
        for s in splitter.split(piece.len()).unwrap() {
            if !s.stored {
                current.extend_from_slice(&piece[s.start..s.end]);
            }
            if s.ends_part {
                parts.push((s.part, std::mem::take(&mut current)));
            }
        }
    };
    for chunk in source.chunks(step.max(1)) {
        let piece = enc.push(chunk).unwrap();
        take(piece, &mut splitter);
    }
    while let Some(piece) = enc.next_tail().unwrap() {
        take(piece, &mut splitter);
    }
    assert!(splitter.is_done());
    assert_eq!(splitter.progress().done, plan.blob_size());
    (parts, enc.digest().unwrap())
}

#[test]
fn pointer_and_pending_upload_round_trip() {
    let pending = PendingUpload {
        blob_id: [4; 16],
        key: AttachmentKey::from_bytes([5; 32]),
        size: 70_000,
    };
    let bytes = pending.to_bytes();
    assert_eq!(bytes.len(), PENDING_UPLOAD_LEN);
    assert_eq!(bytes[0], PENDING_UPLOAD_VERSION);
    let back = PendingUpload::from_bytes(&bytes).unwrap();
    assert_eq!(back.blob_id, [4; 16]);
    assert_eq!(back.key.as_bytes(), &[5; 32]);
    assert_eq!(back.size, 70_000);
    for cut in 0..bytes.len() {
        assert_eq!(
            PendingUpload::from_bytes(&bytes[..cut]).unwrap_err(),
            TransferError::Malformed
        );
    }
    let mut huge = bytes.to_vec();
    huge[49..57].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(PendingUpload::from_bytes(&huge).is_err());

    let pointer = pending.pointer([6; 32], "text/plain", Some("notes.txt"), Some(vec![1, 2]));
    let encoded = pointer.to_bytes().unwrap();
    // The same bytes as the protocol's layout.
    let fields = haven_protocol::attachment::decode(&encoded).unwrap();
    assert_eq!(fields.key, [5; 32]);
    assert_eq!(fields.file_name.as_deref(), Some("notes.txt"));
    let back = AttachmentPointer::from_bytes(&encoded).unwrap();
    assert_eq!(back.to_bytes().unwrap(), encoded);
    assert_eq!(back.blob_size(), pending.blob_size());
    assert_eq!(back.diary_ref().plaintext_len, 70_000);
    let from_ref = AttachmentPointer::from_diary_ref(&back.diary_ref(), [6; 32]);
    assert_eq!(from_ref.key.as_bytes(), &[5; 32]);
    let shown = format!("{back:?}");
    assert!(
        !shown.contains("notes") && !shown.contains("0505"),
        "{shown}"
    );
    assert_eq!(
        pending
            .pointer([0; 32], "bad\ttype", None, None)
            .to_bytes()
            .unwrap_err(),
        TransferError::Malformed
    );
    assert_eq!(
        pending.status_path(),
        format!("/v1/blobs/{}", "04".repeat(16))
    );
    assert_eq!(
        pending.part_report_path(3),
        format!("/v1/blobs/{}/parts/3", "04".repeat(16))
    );
}

#[test]
fn start_and_plan_check_the_relay_answers() {
    assert!(matches!(
        UploadStart::new(u64::MAX, &mut rng()),
        Err(TransferError::Crypto(AttachmentError::TooLarge(_)))
    ));
    let start = UploadStart::new(1000, &mut rng()).unwrap();
    let size = start.blob_size();
    assert!(matches!(
        start.created(&info([1; 16], size + 1, PART, "pending", vec![])),
        Err(TransferError::SizeMismatch { .. })
    ));

    let (pending, _) = start_plan_for(600 * 1024);
    let size = pending.blob_size().unwrap();
    let good = info([9; 16], size, PART, "pending", vec![2, 0, 0, 17]);
    let plan = pending.plan(&good).unwrap();
    assert_eq!(plan.part_count(), 3);
    let parts: Vec<PartPlan> = plan.parts().collect();
    assert_eq!(parts[0].offset, 0);
    assert!(parts[0].stored && !parts[1].stored && parts[2].stored);
    assert_eq!(parts[2].len, size - 2 * PART);
    assert_eq!(plan.stored_bytes(), PART + parts[2].len);
    assert!(!plan.already_complete());

    let mut wrong = good.clone();
    wrong.part_count = 1_000_000_000;
    assert!(matches!(
        pending.plan(&wrong),
        Err(TransferError::InvalidResponse(_))
    ));
    let mut wrong = good.clone();
    wrong.part_size = 0;
    assert!(matches!(
        pending.plan(&wrong),
        Err(TransferError::SizeMismatch { .. })
    ));
    let mut wrong = good.clone();
    wrong.blob_id = [8; 16].into();
    assert!(pending.plan(&wrong).is_err());
    let mut wrong = good.clone();
    wrong.state = "lost".into();
    assert!(pending.plan(&wrong).is_err());
    let done = pending
        .plan(&info([9; 16], size, PART, "complete", vec![]))
        .unwrap();
    assert!(done.already_complete() && done.parts().all(|p| p.stored));

    // Part URLs: the relay's own (relative, recorded by the relay) or S3's (report the ETag).
    let url = |part, len, url: &str| PartUrl {
        part,
        method: "PUT".into(),
        url: url.into(),
        len,
        expires_at: 0,
    };
    let local = plan
        .part_target(
            1,
            PartUrls {
                urls: vec![url(1, PART, "/v1/blob-data/x/1?token=t")],
            },
        )
        .unwrap();
    assert!(!local.report_etag);
    assert_eq!(
        resolve_url("http://relay:8080/", &local.url),
        "http://relay:8080/v1/blob-data/x/1?token=t"
    );
    let s3 = plan
        .part_target(
            1,
            PartUrls {
                urls: vec![url(1, PART, "https://s3/bucket/x?partNumber=2")],
            },
        )
        .unwrap();
    assert!(s3.report_etag);
    assert_eq!(resolve_url("http://relay", &s3.url), s3.url);
    for bad in [
        vec![url(1, PART + 1, "/x")],
        vec![url(2, PART, "/x")],
        vec![],
    ] {
        assert!(plan.part_target(1, PartUrls { urls: bad }).is_err());
    }
    assert_eq!(part_etag(Some("\"abc\""), b"").unwrap(), "\"abc\"");
    assert_eq!(part_etag(None, br#"{"part":1,"etag":"e1"}"#).unwrap(), "e1");
    assert!(part_etag(None, b"<html>").is_err());
}

fn start_plan_for(size: u64) -> (PendingUpload, UploadPlan) {
    start(size, PART, vec![])
}

#[test]
fn encrypted_parts_reassemble_to_a_blob_that_decrypts_in_any_split() {
    let source = data(600 * 1024 + 12_345);
    let (pending, plan) = start(source.len() as u64, PART, vec![]);
    // One byte at a time is slow over 600 KiB: the small file below covers tiny pushes.
    for step in [65_536, 100_003] {
        let (parts, digest) = encrypt_parts(&pending, &plan, &source, step);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().enumerate().all(|(i, (p, _))| *p == i as u64));
        let blob: Vec<u8> = parts.into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(blob.len() as u64, plan.blob_size());
        let pointer = pending.pointer(digest, "application/octet-stream", None, None);
        for split in [1usize << 16, 65_537, 300_000] {
            let mut dec = pointer.decryptor().unwrap();
            let mut out = Vec::new();
            for piece in blob.chunks(split) {
                out.extend_from_slice(&dec.push(piece).unwrap());
            }
            assert_eq!(dec.progress().done, plan.blob_size());
            out.extend_from_slice(&dec.finish().unwrap());
            assert!(out == source, "split {split}");
        }
    }

    let small = data(3000);
    let (pending, plan) = start(3000, PART, vec![]);
    let (parts, digest) = encrypt_parts(&pending, &plan, &small, 1);
    let blob = &parts[0].1;
    let pointer = pending.pointer(digest, "", None, None);
    let mut dec = pointer.decryptor().unwrap();
    let mut out = Vec::new();
    for b in blob.chunks(7) {
        out.extend_from_slice(&dec.push(b).unwrap());
    }
    out.extend_from_slice(&dec.finish().unwrap());
    assert_eq!(out, small);
}

#[test]
fn a_resumed_upload_sends_only_the_missing_parts_with_the_same_bytes() {
    let source = data(600 * 1024);
    let (pending, plan) = start(source.len() as u64, PART, vec![]);
    let (all, digest) = encrypt_parts(&pending, &plan, &source, 65_536);
    // The relay has parts 0 and 2: the resumed run re-encrypts and keeps only part 1.
    let resumed = pending
        .plan(&info(
            [9; 16],
            plan.blob_size(),
            PART,
            "pending",
            vec![0, 2],
        ))
        .unwrap();
    let restored = PendingUpload::from_bytes(&pending.to_bytes()).unwrap();
    let (missing, again) = encrypt_parts(&restored, &resumed, &source, 100_000);
    assert_eq!(again, digest);
    assert_eq!(missing.len(), 3);
    assert!(missing[0].1.is_empty() && missing[2].1.is_empty());
    assert!(missing[1].1 == all[1].1);
}

#[test]
fn sources_of_the_wrong_length_and_streams_of_the_wrong_size_are_refused() {
    let (pending, plan) = start(1000, PART, vec![]);
    let mut enc = UploadEncryptor::new(&pending).unwrap();
    enc.push(&data(999)).unwrap();
    assert_eq!(enc.remaining(), 1);
    assert_eq!(
        enc.next_tail().unwrap_err(),
        TransferError::SourceChanged { expected: 1000 }
    );
    assert!(enc.push(b"x").is_err());

    let mut enc = UploadEncryptor::new(&pending).unwrap();
    assert_eq!(
        enc.push(&data(1001)).unwrap_err(),
        TransferError::SourceChanged { expected: 1000 }
    );
    assert_eq!(
        enc.push(b"x").unwrap_err(),
        TransferError::Crypto(AttachmentError::Poisoned)
    );

    let mut enc = UploadEncryptor::new(&pending).unwrap();
    enc.push(&data(1000)).unwrap();
    while enc.next_tail().unwrap().is_some() {}
    assert!(enc.digest().is_some());
    assert_eq!(enc.next_tail().unwrap(), None);
    assert!(matches!(
        enc.push(b"x"),
        Err(TransferError::SourceChanged { .. })
    ));

    let mut splitter = PartSplitter::new(&plan);
    let too_long = usize::try_from(plan.blob_size()).unwrap() + 1;
    assert!(matches!(
        splitter.split(too_long),
        Err(TransferError::SizeMismatch { .. })
    ));
}

#[test]
fn downloads_check_size_digest_and_tampering() {
    let source = data(200_000);
    let (pending, plan) = start(200_000, PART, vec![]);
    let (parts, digest) = encrypt_parts(&pending, &plan, &source, 65_536);
    let blob = parts.into_iter().next().unwrap().1;
    let pointer = pending.pointer(digest, "", None, None);
    assert!(pointer.download_path().ends_with("/download"));
    let located = |size| DownloadUrl {
        url: "/v1/blob-data/x?token=t".into(),
        size,
        expires_at: 0,
    };
    pointer.check_located(&located(plan.blob_size())).unwrap();
    assert!(matches!(
        pointer.check_located(&located(plan.blob_size() + 16)),
        Err(TransferError::SizeMismatch { .. })
    ));

    // One byte too many, too few, a flipped byte, the wrong digest, the wrong key.
    let mut dec = pointer.decryptor().unwrap();
    let mut long = blob.clone();
    long.push(0);
    assert!(matches!(
        dec.push(&long),
        Err(TransferError::SizeMismatch { .. })
    ));
    let mut dec = pointer.decryptor().unwrap();
    dec.push(&blob[..blob.len() - 1]).unwrap();
    assert!(matches!(
        dec.finish(),
        Err(TransferError::SizeMismatch { .. })
    ));
    let mut flipped = blob.clone();
    flipped[70_000] ^= 1;
    let mut dec = pointer.decryptor().unwrap();
    let result = dec.push(&flipped).and_then(|_| dec.finish());
    assert_eq!(
        result.unwrap_err(),
        TransferError::Crypto(AttachmentError::InvalidCiphertext)
    );
    let mut wrong_digest = pointer.clone();
    wrong_digest.digest[0] ^= 1;
    let mut dec = wrong_digest.decryptor().unwrap();
    dec.push(&blob).unwrap();
    assert_eq!(
        dec.finish().unwrap_err(),
        TransferError::Crypto(AttachmentError::DigestMismatch)
    );
    let mut wrong_key = pointer.clone();
    wrong_key.key = AttachmentKey::from_bytes([1; 32]);
    let mut dec = wrong_key.decryptor().unwrap();
    assert!(dec.push(&blob).and_then(|_| dec.finish()).is_err());
}

#[test]
fn refusals_carry_the_relay_or_s3_code() {
    assert_eq!(
        transfer_refusal(
            403,
            r#"{"error":{"code":"transfer_token_expired","message":"late"}}"#
        ),
        TransferError::Refused {
            status: 403,
            code: "transfer_token_expired".into()
        }
    );
    assert_eq!(
        transfer_refusal(
            403,
            "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code></Error>"
        ),
        TransferError::Refused {
            status: 403,
            code: "SignatureDoesNotMatch".into()
        }
    );
    assert_eq!(
        transfer_refusal(500, "<Code>"),
        TransferError::Refused {
            status: 500,
            code: String::new()
        }
    );
}
