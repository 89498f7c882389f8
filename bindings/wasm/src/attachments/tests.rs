#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn blob_info(id: &str, size: u64, part_size: u64, state: &str, received: &[u64]) -> String {
    serde_json::json!({
        "blob_id": id, "size": size, "part_size": part_size,
        "part_count": size.div_ceil(part_size).max(1), "state": state,
        "created_at": 0, "expires_at": 0, "parts_received": received,
    })
    .to_string()
}

/// Uploads `source` through the core as the page does; returns the parts (number, bytes) that
/// were not stored, and the pointer.
fn upload(source: &[u8], part_size: u64, received: &[u64]) -> (Vec<(u64, Vec<u8>)>, Vec<u8>) {
    let mut up = UploadCore::start(source.len() as u64).unwrap();
    let body: serde_json::Value = serde_json::from_str(&up.create_body(Some(60)).unwrap()).unwrap();
    let size = body["size"].as_u64().unwrap();
    let id = "ab".repeat(16);
    assert_eq!(up.status_path().unwrap_err().code, ErrorCode::InvalidState);
    up.created(&blob_info(&id, size, part_size, "pending", &[]))
        .unwrap();
    assert_eq!(up.blob_id().unwrap(), id);
    let plan = up
        .plan(&blob_info(&id, size, part_size, "pending", received))
        .unwrap();
    assert_eq!(plan.blob_size, size);
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut take = |pieces: Vec<Piece>| {
        for p in pieces {
            current.extend_from_slice(&p.bytes);
            if p.ends_part {
                parts.push((p.part, std::mem::take(&mut current)));
            }
        }
    };
    assert_eq!(
        up.pointer("", None, None).unwrap_err().code,
        ErrorCode::InvalidState
    );
    for chunk in source.chunks(65_536) {
        take(up.push(chunk).unwrap());
    }
    while let Some(pieces) = up.next_tail().unwrap() {
        take(pieces);
    }
    assert_eq!(up.progress().done, size);
    let pointer = up.pointer("text/plain", Some("notes.txt"), None).unwrap();
    (parts, pointer.to_vec())
}

#[test]
fn upload_then_download_through_the_cores() {
    let source: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (parts, pointer) = upload(&source, 128 * 1024, &[]);
    assert_eq!(parts.len(), 3);
    let blob: Vec<u8> = parts.into_iter().flat_map(|(_, b)| b).collect();

    let (info, thumb) = describe_pointer(&pointer).unwrap();
    assert_eq!(info.size, 300_000);
    assert_eq!(info.file_name.as_deref(), Some("notes.txt"));
    assert!(thumb.is_none());

    let mut down = DownloadCore::start(&pointer).unwrap();
    assert_eq!(
        down.push(&blob[..10]).unwrap_err().code,
        ErrorCode::InvalidState
    );
    let located =
        serde_json::json!({"url": "/v1/blob-data/x?token=t", "size": blob.len(), "expires_at": 0});
    let wrong = serde_json::json!({"url": "/x", "size": blob.len() + 1, "expires_at": 0});
    assert_eq!(
        down.located(&wrong.to_string()).unwrap_err().code,
        ErrorCode::InvalidResponse
    );
    assert_eq!(
        down.located(&located.to_string()).unwrap(),
        "/v1/blob-data/x?token=t"
    );
    let mut out = Vec::new();
    for piece in blob.chunks(50_000) {
        out.extend_from_slice(&down.push(piece).unwrap());
    }
    out.extend_from_slice(&down.finish().unwrap());
    assert_eq!(out, source);

    // Tampered: a flipped byte fails the chunk; the wrong digest fails at the end.
    let mut bad = blob.clone();
    bad[1000] ^= 1;
    let mut down = DownloadCore::start(&pointer).unwrap();
    down.located(&located.to_string()).unwrap();
    let r = down.push(&bad).and_then(|_| down.finish());
    assert_eq!(r.unwrap_err().code, ErrorCode::DecryptionFailed);
    let mut down = DownloadCore::start(&pointer).unwrap();
    down.located(&located.to_string()).unwrap();
    down.push(&blob[..blob.len() - 1]).unwrap();
    assert_eq!(down.finish().unwrap_err().code, ErrorCode::InvalidResponse);
    assert_eq!(
        DownloadCore::start(&pointer[..20]).unwrap_err().code,
        ErrorCode::Malformed
    );
}

#[test]
fn resumed_uploads_skip_stored_parts_and_bad_input_is_typed() {
    let source: Vec<u8> = (0..300_000u32).map(|i| (i % 7) as u8).collect();
    let (parts, _) = upload(&source, 128 * 1024, &[0, 2]);
    assert!(parts[0].1.is_empty() && parts[2].1.is_empty());
    assert_eq!(parts[1].1.len(), 128 * 1024);

    let mut up = UploadCore::start(10).unwrap();
    assert_eq!(up.push(b"x").unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(
        up.created("{}").unwrap_err().code,
        ErrorCode::InvalidResponse
    );
    let body: serde_json::Value = serde_json::from_str(&up.create_body(None).unwrap()).unwrap();
    assert!(body.get("ttl_secs").is_none());
    let size = body["size"].as_u64().unwrap();
    up.created(&blob_info(&"cd".repeat(16), size, 1 << 20, "pending", &[]))
        .unwrap();
    let state = up.resume_state().unwrap();
    let mut again = UploadCore::resume(&state).unwrap();
    assert_eq!(again.blob_id().unwrap(), "cd".repeat(16));
    again
        .plan(&blob_info(&"cd".repeat(16), size, 1 << 20, "pending", &[]))
        .unwrap();
    assert_eq!(
        again.push(&[0; 11]).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        UploadCore::resume(&state[..5]).unwrap_err().code,
        ErrorCode::Malformed
    );
    assert_eq!(
        UploadCore::start(u64::MAX).unwrap_err().code,
        ErrorCode::Limit
    );
    assert!(content_type_arg("image/png").is_ok());
    assert_eq!(
        content_type_arg("a\u{7f}").unwrap_err().code,
        ErrorCode::InvalidArgument
    );
}
