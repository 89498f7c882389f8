//! Attachments through the SDK against a real relay (real TCP and HTTP, SQLite), on the local
//! blob backend and on a real S3 server (`s3s-fs` from `haven-testkit`, with an access key and
//! secret key so every signature is checked). `.ci/run` installs `s3s-fs`; without it the S3
//! half is reported as `SKIPPED <test>`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use haven_client::RelayClient;
use haven_client::attachments::{
    AttachmentPointer, Attachments, AttachmentsError, Progress, TransferError,
};
use haven_testkit::{RelayConfig, S3Server, TestDatabase};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Relay, contains, files_under};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Local,
    S3,
}

/// A relay (in-process, real listener) with its blob storage, and a directory for the client's
/// files.
struct Harness {
    relay: Relay,
    url: String,
    /// The client's side: the files it uploads and downloads.
    work: tempfile::TempDir,
    s3: Option<S3Server>,
    backend: Backend,
}

impl Harness {
    /// Where the blob bytes end up on disk (the relay's blob directory or the s3s-fs bucket).
    fn storage_root(&self) -> PathBuf {
        match &self.s3 {
            Some(s3) => s3.bucket_dir(),
            None => self.relay.config().dir().join("blobs"),
        }
    }

    fn part_size(&self) -> u64 {
        part_size(self.backend)
    }
}

/// Part size used by the tests: small locally, S3's minimum on S3.
fn part_size(backend: Backend) -> u64 {
    match backend {
        Backend::Local => 64 * 1024,
        Backend::S3 => 5 << 20,
    }
}

/// A relay from `config` storing blobs on `backend`, or `None` when the S3 server is not
/// installed (the test is then reported as skipped).
fn harness(backend: Backend, config: RelayConfig) -> Option<Harness> {
    let s3 = match backend {
        Backend::Local => None,
        Backend::S3 => Some(S3Server::start()?),
    };
    let mut config = config.set("HAVEN_LOG", "warn").set(
        "HAVEN_BLOBS_PART_SIZE_BYTES",
        part_size(backend).to_string(),
    );
    if let Some(s3) = &s3 {
        config = config.set_all(&s3.relay_settings());
    }
    let relay = Relay::start(config);
    Some(Harness {
        url: relay.url(),
        relay,
        work: tempfile::tempdir().unwrap(),
        s3,
        backend,
    })
}

async fn user(url: &str, name: &str) -> RelayClient {
    let client = RelayClient::new(url).unwrap();
    client
        .register(Some(name), b"attachment password", &[9u8; 64], None)
        .await
        .unwrap();
    client
}

/// Deterministic, recognisable plaintext: a marker repeated with a counter.
fn plaintext(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("PLAINTEXT-MARKER-{i:08}|").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Fails with an I/O error once `limit` bytes were read (a crash mid-upload).
struct FailAfter {
    data: std::io::Cursor<Vec<u8>>,
    limit: u64,
}

impl Read for FailAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.data.position() >= self.limit {
            return Err(std::io::Error::other("simulated interruption"));
        }
        let room = usize::try_from(self.limit - self.data.position()).unwrap();
        let n = buf.len().min(room);
        self.data.read(&mut buf[..n])
    }
}

async fn round_trip_and_blindness(backend: Backend) {
    let Some(h) = harness(backend, RelayConfig::new()) else {
        return;
    };
    let alice = user(&h.url, "alice_files").await;
    let bob = user(&h.url, "bob_files").await;
    let up = Attachments::new(&alice).unwrap();
    // Two and a half parts, so the last part is short.
    let len = usize::try_from(h.part_size() * 5 / 2).unwrap();
    let data = plaintext(len);
    let src = h.work.path().join("holiday-secret-name.txt");
    std::fs::write(&src, &data).unwrap();
    let mut seen: Vec<Progress> = Vec::new();
    let pointer = up
        .upload_file(
            &src,
            "text/plain",
            Some("holiday-secret-name.txt"),
            Some(b"thumb".to_vec()),
            |p| seen.push(p),
        )
        .await
        .unwrap();
    let total = pointer.blob_size().unwrap();
    assert_eq!(seen.last().copied(), Some(Progress { done: total, total }));
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));

    // The pointer survives its encoding; it is all a recipient needs.
    let bytes = pointer.to_bytes().unwrap();
    let received = AttachmentPointer::from_bytes(&bytes).unwrap();
    assert_eq!(
        received.file_name.as_deref(),
        Some("holiday-secret-name.txt")
    );
    assert_eq!(received.thumbnail.as_deref(), Some(&b"thumb"[..]));

    // Another account downloads it, to a writer and (resumably) to a file.
    let down = Attachments::new(&bob).unwrap();
    let mut out = Vec::new();
    let mut last = None;
    down.download(&received, &mut out, |p| last = Some(p))
        .await
        .unwrap();
    assert_eq!(out, data);
    assert_eq!(last, Some(Progress { done: total, total }));
    let dest = h.work.path().join("downloaded");
    down.download_to_file(&received, &dest, |_| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);

    // Diary media: the entry's reference (no digest) opens the same blob; another key fails.
    let reference = received.diary_ref();
    let diary_dest = h.work.path().join("diary-media");
    down.download_diary_attachment(&reference, &diary_dest, |_| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&diary_dest).unwrap(), data);
    let mut forged = received.diary_ref();
    forged.key[0] ^= 1;
    let err = down
        .download_diary_attachment(&forged, &h.work.path().join("forged"), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttachmentsError::Transfer(TransferError::Crypto(_))),
        "{err:?}"
    );

    // A pointer with another key or digest is refused and leaves no file behind.
    let mut wrong = received.clone();
    wrong.digest[0] ^= 1;
    let bad = h.work.path().join("bad");
    let err = down
        .download_to_file(&wrong, &bad, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttachmentsError::Transfer(TransferError::Crypto(_))),
        "{err:?}"
    );
    assert!(!bad.exists());

    // The storage holds ciphertext only: no plaintext, no file name, only padded sizes.
    let files = files_under(&h.storage_root());
    assert!(!files.is_empty());
    let mut stored = 0u64;
    for f in &files {
        let name = f.to_string_lossy();
        assert!(!name.contains("holiday"), "{name}");
        let bytes = std::fs::read(f).unwrap();
        stored += bytes.len() as u64;
        assert!(!contains(&bytes, b"PLAINTEXT-MARKER"), "{name}");
        assert!(!contains(&bytes, b"holiday-secret-name"), "{name}");
    }
    // s3s-fs may keep metadata files next to objects; the blob bytes are all there.
    assert!(stored >= total);
    let listing = alice.request(Method::GET, "/v1/blobs", None).await.unwrap();
    assert_eq!(listing["used_bytes"], json!(total));
    assert_eq!(listing["blobs"][0]["state"], json!("complete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_round_trip_and_blindness() {
    round_trip_and_blindness(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip_and_blindness() {
    round_trip_and_blindness(Backend::S3).await;
}

async fn interrupted_upload_resumes(backend: Backend) {
    let Some(h) = harness(backend, RelayConfig::new()) else {
        return;
    };
    let alice = user(&h.url, "alice_resume").await;
    let up = Attachments::new(&alice).unwrap();
    let part = h.part_size();
    let data = plaintext(usize::try_from(part * 2 + part / 5).unwrap());
    let pending = up.start_upload(data.len() as u64, None).await.unwrap();
    // The "crash": the reader fails after ~1.9 parts, so part 0 is stored, part 1 is not.
    let failing = FailAfter {
        data: std::io::Cursor::new(data.clone()),
        limit: part * 19 / 10,
    };
    let err = up.upload(&pending, failing, |_| {}).await.unwrap_err();
    assert!(matches!(err, AttachmentsError::Io(_)), "{err:?}");
    let path = format!("/v1/blobs/{}", hex::encode(pending.blob_id));
    let status = alice.request(Method::GET, &path, None).await.unwrap();
    assert_eq!(status["state"], json!("pending"));
    assert_eq!(status["parts_received"], json!([0]));

    // The pending upload is what an app persists; resuming sends only the missing parts.
    let restored =
        haven_client::attachments::PendingUpload::from_bytes(&pending.to_bytes()).unwrap();
    let mut first_progress = None;
    let digest = up
        .upload(&restored, std::io::Cursor::new(data.clone()), |p| {
            first_progress.get_or_insert(p);
        })
        .await
        .unwrap();
    // Part 0 counted as already done before anything was sent.
    assert_eq!(first_progress.unwrap().done, part);
    let pointer = restored.pointer(digest, "application/octet-stream", None, None);
    let mut out = Vec::new();
    up.download(&pointer, &mut out, |_| {}).await.unwrap();
    assert_eq!(out, data);

    // A source that changed length is refused instead of producing a wrong blob.
    let again = up.start_upload(10, None).await.unwrap();
    let err = up
        .upload(&again, std::io::Cursor::new(vec![1u8; 11]), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttachmentsError::Transfer(TransferError::SourceChanged { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_interrupted_upload_resumes() {
    interrupted_upload_resumes(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_interrupted_upload_resumes() {
    interrupted_upload_resumes(Backend::S3).await;
}

/// Raw part URL for part 0 of a fresh blob of `size` bytes.
async fn part_url(h: &Harness, client: &RelayClient, size: u64) -> (String, Value) {
    let created = client
        .request(Method::POST, "/v1/blobs", Some(&json!({ "size": size })))
        .await
        .unwrap();
    let id = created["blob_id"].as_str().unwrap().to_owned();
    let urls = client
        .request(
            Method::POST,
            &format!("/v1/blobs/{id}/parts"),
            Some(&json!({ "parts": [0] })),
        )
        .await
        .unwrap();
    let url = urls["urls"][0]["url"].as_str().unwrap();
    let url = if url.starts_with('/') {
        format!("{}{url}", h.url)
    } else {
        url.to_owned()
    };
    (url, urls["urls"][0].clone())
}

fn tamper(url: &str) -> String {
    // Flip one character of the signature or token (the last query value).
    let mut bytes = url.as_bytes().to_vec();
    let last = bytes.len() - 3;
    bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

async fn urls_are_checked(backend: Backend) {
    let Some(h) = harness(
        backend,
        RelayConfig::new().set("HAVEN_BLOBS_URL_TTL_SECS", "2"),
    ) else {
        return;
    };
    let alice = user(&h.url, "alice_urls").await;
    let http = reqwest::Client::new();
    // A one-part blob: 1 + 256 + 16 bytes, the smallest valid size.
    let size = 273u64;
    let (url, info) = part_url(&h, &alice, size).await;
    assert_eq!(info["len"], json!(size));

    // Tampered: refused (403), nothing stored.
    let r = http
        .put(tamper(&url))
        .body(vec![0u8; 273])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());

    // Wrong size: the local backend refuses the part itself; S3 stores what it is given and
    // the relay refuses to complete a blob of the wrong size (and deletes it).
    match h.backend {
        Backend::Local => {
            for len in [272usize, 274] {
                let r = http.put(&url).body(vec![0u8; len]).send().await.unwrap();
                assert_eq!(r.status(), 400);
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], json!("wrong_size"));
            }
        }
        Backend::S3 => {
            let (wrong_url, _) = part_url(&h, &alice, size).await;
            let id = wrong_url
                .split("/blobs/")
                .nth(1)
                .unwrap()
                .split('?')
                .next()
                .unwrap()
                .to_owned();
            let r = http
                .put(&wrong_url)
                .body(vec![0u8; 300])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let etag = r.headers()["etag"].to_str().unwrap().to_owned();
            alice
                .request(
                    Method::PUT,
                    &format!("/v1/blobs/{id}/parts/0"),
                    Some(&json!({ "etag": etag })),
                )
                .await
                .unwrap();
            let err = alice
                .request(Method::POST, &format!("/v1/blobs/{id}/complete"), None)
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some("wrong_size"));
            let err = alice
                .request(Method::GET, &format!("/v1/blobs/{id}"), None)
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some("blob_not_found"));
        }
    }

    // Expired: refused. Not synchronisation: the URL's 2 s lifetime has to pass.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = http.put(&url).body(vec![0u8; 273]).send().await.unwrap();
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());

    // The relay refuses sizes that are not padded blob sizes, and too large blobs.
    for bad in [0u64, 272, 274, 1000] {
        let err = alice
            .request(Method::POST, "/v1/blobs", Some(&json!({ "size": bad })))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("invalid_blob_size"), "{bad}");
    }
    let listing = alice.request(Method::GET, "/v1/blobs", None).await.unwrap();
    assert_eq!(listing["used_blobs"], json!(1));

    // Download URLs: tampered or expired ones are refused too.
    let up = Attachments::new(&alice).unwrap();
    let src = h.work.path().join("small");
    std::fs::write(&src, b"tiny").unwrap();
    let pointer = up
        .upload_file(&src, "text/plain", None, None, |_| {})
        .await
        .unwrap();
    let located = alice
        .request(
            Method::GET,
            &format!("/v1/blobs/{}/download", pointer.blob_id_hex()),
            None,
        )
        .await
        .unwrap();
    let url = located["url"].as_str().unwrap();
    let url = if url.starts_with('/') {
        format!("{}{url}", h.url)
    } else {
        url.to_owned()
    };
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(http.get(tamper(&url)).send().await.unwrap().status(), 403);
    // Not synchronisation: the URL's 2 s lifetime has to pass.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(http.get(&url).send().await.unwrap().status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_urls_are_checked() {
    urls_are_checked(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_urls_are_checked() {
    urls_are_checked(Backend::S3).await;
}

async fn quota_expiry_and_deletion(backend: Backend) {
    // Room for one 5 MiB-ish blob, not two.
    let Some(h) = harness(
        backend,
        RelayConfig::new().set_all(&[
            ("HAVEN_BLOBS_QUOTA_BYTES", "8000000"),
            ("HAVEN_BLOBS_GC_INTERVAL_SECS", "1"),
        ]),
    ) else {
        return;
    };
    let alice = user(&h.url, "alice_quota").await;
    let up = Attachments::new(&alice).unwrap();
    let big = 5_000_000u64;
    let first = up.start_upload(big, None).await.unwrap();
    let err = up.start_upload(big, None).await.unwrap_err();
    match err {
        AttachmentsError::Relay(e) => {
            assert_eq!(e.code(), Some("blob_quota_exceeded"));
            assert_eq!(e.status(), Some(507));
        }
        other => panic!("{other:?}"),
    }
    // Deleting frees the quota.
    up.delete(&first.blob_id).await.unwrap();
    let second = up.start_upload(big, None).await.unwrap();
    up.delete(&second.blob_id).await.unwrap();

    // Expiry: a blob asked to live 2 s is collected with its objects.
    let pending = up.start_upload(1000, Some(2)).await.unwrap();
    let digest = up
        .upload(&pending, std::io::Cursor::new(vec![7u8; 1000]), |_| {})
        .await
        .unwrap();
    assert!(!files_under(&h.storage_root()).is_empty());
    let path = format!("/v1/blobs/{}", hex::encode(pending.blob_id));
    // Polls the condition itself: the blob's 2 s lifetime has to pass, then the collector (every
    // second) removes it.
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if alice.request(Method::GET, &path, None).await.is_err()
            && files_under(&h.storage_root()).is_empty()
        {
            gone = true;
            break;
        }
    }
    assert!(gone, "expired blob not collected");
    let pointer = pending.pointer(digest, "", None, None);
    let err = up
        .download(&pointer, &mut Vec::new(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, AttachmentsError::Relay(ref e) if e.code() == Some("blob_not_found")));

    // Account deletion deletes the account's blobs from the storage at once.
    let src = h.work.path().join("keep");
    std::fs::write(&src, plaintext(3000)).unwrap();
    up.upload_file(&src, "", None, None, |_| {}).await.unwrap();
    assert!(!files_under(&h.storage_root()).is_empty());
    let fresh = alice
        .reauthenticate(b"attachment password", None)
        .await
        .unwrap();
    alice.delete_account(fresh).await.unwrap();
    assert!(files_under(&h.storage_root()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_quota_expiry_and_deletion() {
    quota_expiry_and_deletion(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_quota_expiry_and_deletion() {
    quota_expiry_and_deletion(Backend::S3).await;
}

#[test]
fn pointer_encoding_is_strict() {
    let pending = haven_client::attachments::PendingUpload::from_bytes(&{
        let mut b = vec![1u8];
        b.extend_from_slice(&[3u8; 16]);
        b.extend_from_slice(&[4u8; 32]);
        b.extend_from_slice(&1234u64.to_be_bytes());
        b
    })
    .unwrap();
    let p = pending.pointer([5u8; 32], "image/jpeg", Some("a.jpg"), Some(vec![1, 2, 3]));
    let bytes = p.to_bytes().unwrap();
    // version, id, key, digest, size, ct, flags, name, thumbnail
    assert_eq!(
        bytes.len(),
        1 + 16 + 32 + 32 + 8 + 1 + 10 + 1 + 2 + 5 + 4 + 3
    );
    let back = AttachmentPointer::from_bytes(&bytes).unwrap();
    assert_eq!(back.to_bytes().unwrap(), bytes);
    assert!(!format!("{back:?}").contains("a.jpg"));
    for cut in 0..bytes.len() {
        assert!(
            AttachmentPointer::from_bytes(&bytes[..cut]).is_err(),
            "{cut}"
        );
    }
    let mut trailing = bytes.to_vec();
    trailing.push(0);
    assert!(AttachmentPointer::from_bytes(&trailing).is_err());
    let mut flags = bytes.to_vec();
    flags[1 + 16 + 32 + 32 + 8 + 1 + 10] |= 0x80;
    assert!(AttachmentPointer::from_bytes(&flags).is_err());
    let mut version = bytes.to_vec();
    version[0] = 2;
    assert!(AttachmentPointer::from_bytes(&version).is_err());
}

/// The blob metadata SQL on Postgres (a fresh database on the local PostgreSQL): the resume,
/// URL, quota, expiry and deletion flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_metadata_flows() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let h = harness(Backend::Local, RelayConfig::new().database(db.url())).unwrap();
    let alice = user(&h.url, "alice_pg").await;
    let up = Attachments::new(&alice).unwrap();
    let data = plaintext(200_000);
    let pending = up.start_upload(data.len() as u64, None).await.unwrap();
    let failing = FailAfter {
        data: std::io::Cursor::new(data.clone()),
        limit: 100_000,
    };
    assert!(up.upload(&pending, failing, |_| {}).await.is_err());
    let digest = up
        .upload(&pending, std::io::Cursor::new(data.clone()), |_| {})
        .await
        .unwrap();
    let pointer = pending.pointer(digest, "", None, None);
    let mut out = Vec::new();
    up.download(&pointer, &mut out, |_| {}).await.unwrap();
    assert_eq!(out, data);
    let listing = alice.request(Method::GET, "/v1/blobs", None).await.unwrap();
    assert_eq!(listing["used_blobs"], json!(1));
    up.delete(&pending.blob_id).await.unwrap();
    let listing = alice.request(Method::GET, "/v1/blobs", None).await.unwrap();
    assert_eq!(listing["used_bytes"], json!(0));
    let again = up.start_upload(10, None).await.unwrap();
    up.upload(&again, std::io::Cursor::new(vec![1u8; 10]), |_| {})
        .await
        .unwrap();
    let fresh = alice
        .reauthenticate(b"attachment password", None)
        .await
        .unwrap();
    alice.delete_account(fresh).await.unwrap();
    assert!(files_under(&h.storage_root()).is_empty());
}
