//! The web's diary and attachments against the native client through a real relay (in
//! process, SQLite, local blob backend). The web side is the wasm crate's cores
//! (`SyncedDiaryCore`, `UploadCore`, `DownloadCore`) driven over HTTP as `js/haven-client.js`
//! drives them; the other side is `haven_client::Diary` and `haven_client::attachments`, two
//! devices of one account. A diary created on the web unlocks natively and the two see each
//! other's entries, edits (merged when concurrent) and deletions; a file uploaded by the web
//! downloads natively and the other way round; the relay's files hold none of the plaintexts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(not(target_arch = "wasm32"))]

use haven_client::attachments::{AttachmentPointer, Attachments};
use haven_client::diary::Diary;
use haven_client::relay::{LoginDevice, LoginIdentifier, RelayClient};
use haven_client::{ClientStore, RelayError};
use haven_sdk::diary::{DiaryQuery, Entry, KdfParams};
use haven_sdk::identity::IdentityKeyPair;
use haven_testkit::RelayConfig;
use haven_wasm::attachments::{DownloadCore, UploadCore};
use haven_wasm::diary::SyncedDiaryCore;
use reqwest::Method;
use serde_json::Value;

const ACCOUNT_PW: &[u8] = b"account pw: brass lantern";
const DIARY_PW: &[u8] = b"diary pw: amber orchard";
const SECRETS: &[&str] = &[
    "web wrote this: periwinkle harbour",
    "native wrote this: tangerine lighthouse",
    "merged line from the web: obsidian",
    "merged line from native: marzipan",
];

fn identity() -> Vec<u8> {
    IdentityKeyPair::generate(&mut rand::rng())
        .public()
        .to_bytes()
        .to_vec()
}

/// The page's side: a logged-in session (as `HavenClient` holds) and its requests.
struct Page {
    relay: RelayClient,
    http: reqwest::Client,
}

impl Page {
    /// `HavenClient.call`: the answer's status and body text, as `fetch` gives them.
    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body: Option<Value> = body.map(|b| serde_json::from_str(b).unwrap());
        match self.relay.request(method, path, body.as_ref()).await {
            Ok(v) => (200, v.to_string()),
            Err(RelayError::Refused {
                status,
                code,
                message,
                ..
            }) => (
                status,
                serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
            ),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// Drives one diary operation to its end (`HavenDiary.drive` in haven-client.js).
    async fn drive(&self, d: &mut SyncedDiaryCore) -> Result<Value, haven_wasm::WebError> {
        while let Some(request) = d.next_request()? {
            let (status, body) = self
                .call(request.method, &request.path, request.body.as_deref())
                .await;
            d.answer(status, &body)?;
        }
        Ok(serde_json::from_str(&d.finish()?).unwrap())
    }

    fn url(&self, url: &str) -> String {
        haven_client_core::attachments::resolve_url(self.relay.base_url(), url)
    }

    /// `HavenClient.uploadAttachment`: create, plan, encrypt 64 KiB at a time, upload each part
    /// as it completes, complete; the pointer.
    async fn upload(&self, source: &[u8], content_type: &str) -> Vec<u8> {
        let mut up = UploadCore::start(source.len() as u64).unwrap();
        let (_, created) = self
            .call("POST", "/v1/blobs", Some(&up.create_body(None).unwrap()))
            .await;
        up.created(&created).unwrap();
        let (_, status) = self.call("GET", &up.status_path().unwrap(), None).await;
        let plan = up.plan(&status).unwrap();
        assert!(!plan.already_complete);
        let mut part_bytes = Vec::new();
        let mut pieces = Vec::new();
        for chunk in source.chunks(65_536) {
            pieces.extend(up.push(chunk).unwrap());
        }
        while let Some(more) = up.next_tail().unwrap() {
            pieces.extend(more);
        }
        for piece in pieces {
            part_bytes.extend_from_slice(&piece.bytes);
            if !piece.ends_part || piece.stored {
                continue;
            }
            let (_, urls) = self
                .call(
                    "POST",
                    &up.parts_path().unwrap(),
                    Some(&up.part_urls_body(piece.part).unwrap()),
                )
                .await;
            let target = up.part_target(piece.part, &urls).unwrap();
            let resp = self
                .http
                .put(self.url(&target.url))
                .body(std::mem::take(&mut part_bytes))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success());
            assert!(!target.report_etag);
        }
        self.call("POST", &up.complete_path().unwrap(), None).await;
        up.pointer(content_type, Some("notes.txt"), None)
            .unwrap()
            .to_vec()
    }

    /// `HavenClient.openAttachment` read to the end.
    async fn download(&self, pointer: &[u8]) -> Result<Vec<u8>, haven_wasm::WebError> {
        let mut down = DownloadCore::start(pointer)?;
        let (_, located) = self.call("GET", &down.path(), None).await;
        let url = down.located(&located)?;
        let bytes = self
            .http
            .get(self.url(&url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut out = Vec::new();
        for piece in bytes.chunks(65_536) {
            out.extend_from_slice(&down.push(piece)?);
        }
        out.extend_from_slice(&down.finish()?);
        Ok(out)
    }
}

fn entry(title: &str, body: &str, at: u64) -> Entry {
    Entry {
        title: title.into(),
        body: body.into(),
        mood: None,
        tags: vec!["interop".into()],
        created_ms: at,
        updated_ms: at,
        attachments: Vec::new(),
    }
}

fn web_titles(d: &SyncedDiaryCore) -> Vec<String> {
    let rows: Value = serde_json::from_str(&d.list("{}").unwrap()).unwrap();
    let mut t: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entry"]["title"].as_str().unwrap().to_owned())
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_native_share_a_diary_and_attachments() {
    let relay = RelayConfig::new().set("HAVEN_LOG", "warn").start();
    let url = relay.url();
    let native = RelayClient::new(&url).unwrap();
    native
        .register(Some("interop_carol"), ACCOUNT_PW, &identity(), None)
        .await
        .unwrap();
    let web_session = RelayClient::new(&url).unwrap();
    web_session
        .login(
            LoginIdentifier::Username("interop_carol"),
            ACCOUNT_PW,
            LoginDevice::New {
                identity_key: &identity(),
                name: None,
            },
            None,
        )
        .await
        .unwrap();
    let page = Page {
        relay: web_session,
        http: reqwest::Client::new(),
    };

    // The web creates the diary; the native device unlocks it from the relay's bundle.
    let mut web = SyncedDiaryCore::new().unwrap();
    web.begin_create(DIARY_PW, KdfParams::MIN.m_cost_kib, KdfParams::MIN.t_cost)
        .unwrap();
    let outcome = page.drive(&mut web).await.unwrap();
    assert_eq!(outcome["recoveryCodes"].as_array().unwrap().len(), 10);
    let web_id = web
        .write(&serde_json::json!({"title": "from the web", "body": SECRETS[0], "createdMs": 1, "updatedMs": 1}).to_string())
        .unwrap();
    web.begin_sync().unwrap();
    let report = page.drive(&mut web).await.unwrap();
    assert_eq!(report["report"]["pushed"], 1);

    let store = ClientStore::open_in_memory(&[3u8; 32]).unwrap();
    let mut carol = Diary::unlock(store, native, DIARY_PW).await.unwrap();
    carol.sync().await.unwrap();
    assert_eq!(carol.search("periwinkle").len(), 1);
    assert_eq!(
        hex::encode(carol.collection()),
        web.collection_id().unwrap()
    );
    let native_id = carol.write(entry("from native", SECRETS[1], 2)).unwrap();
    carol.sync().await.unwrap();

    web.begin_sync().unwrap();
    page.drive(&mut web).await.unwrap();
    assert_eq!(web_titles(&web), ["from native", "from the web"]);
    let found: Value = serde_json::from_str(&web.list(r#"{"text":"tangerine"}"#).unwrap()).unwrap();
    assert_eq!(found[0]["itemId"], hex::encode(native_id).as_str());

    // Concurrent edits of one entry on both sides merge three-way.
    let base = format!("{}\nmiddle\n", SECRETS[0]);
    web.edit(
        &web_id,
        &serde_json::json!({"title": "from the web", "body": base, "createdMs": 1, "updatedMs": 3})
            .to_string(),
    )
    .unwrap();
    web.begin_sync().unwrap();
    page.drive(&mut web).await.unwrap();
    carol.sync().await.unwrap();
    let web_item: [u8; 16] = hex::decode(&web_id).unwrap().try_into().unwrap();
    carol
        .edit(
            &web_item,
            entry("from the web", &format!("{base}{}\n", SECRETS[3]), 4),
        )
        .unwrap();
    web.edit(&web_id, &serde_json::json!({"title": "from the web", "body": format!("{}\n{base}", SECRETS[2]), "createdMs": 1, "updatedMs": 5}).to_string())
        .unwrap();
    carol.sync().await.unwrap();
    web.begin_sync().unwrap();
    let report = page.drive(&mut web).await.unwrap();
    assert_eq!(report["report"]["conflicts"], 1);
    carol.sync().await.unwrap();
    let merged = carol.show(&web_item).unwrap().body.clone();
    assert!(
        merged.contains(SECRETS[2]) && merged.contains(SECRETS[3]),
        "{merged}"
    );
    let shown: Value = serde_json::from_str(&web.show(&web_id).unwrap().unwrap()).unwrap();
    assert_eq!(shown["entry"]["body"], merged.as_str());

    // A deletion on the web reaches native; native restores it from the history.
    web.begin_delete(&hex::encode(native_id)).unwrap();
    page.drive(&mut web).await.unwrap();
    carol.sync().await.unwrap();
    assert!(carol.show(&native_id).is_none());
    carol.restore(&native_id).await.unwrap();
    carol.sync().await.unwrap();
    web.begin_sync().unwrap();
    page.drive(&mut web).await.unwrap();
    web.begin_history(&hex::encode(native_id)).unwrap();
    let history = page.drive(&mut web).await.unwrap();
    let deleted: Vec<bool> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deleted"].as_bool().unwrap())
        .collect();
    assert_eq!(deleted, [false, true, false]);
    assert_eq!(carol.list(&DiaryQuery::default()).len(), 2);

    // Attachments: the web uploads, native downloads; native uploads, the web downloads.
    let file: Vec<u8> = (0..700_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let pointer = page.upload(&file, "application/octet-stream").await;
    let received = AttachmentPointer::from_bytes(&pointer).unwrap();
    assert_eq!(received.file_name.as_deref(), Some("notes.txt"));
    let mut got = Vec::new();
    Attachments::new(carol.relay())
        .unwrap()
        .download(&received, &mut got, |_| {})
        .await
        .unwrap();
    assert!(got == file);

    let dir = tempfile_dir();
    let path = dir.join("native.bin");
    let native_file: Vec<u8> = SECRETS.concat().into_bytes().repeat(3000);
    std::fs::write(&path, &native_file).unwrap();
    let native_pointer = Attachments::new(carol.relay())
        .unwrap()
        .upload_file(&path, "text/plain", None, None, |_| {})
        .await
        .unwrap();
    let bytes = native_pointer.to_bytes().unwrap();
    assert!(page.download(&bytes).await.unwrap() == native_file);
    // A pointer with another digest is refused at the end.
    let mut wrong = AttachmentPointer::from_bytes(&bytes).unwrap();
    wrong.digest[0] ^= 1;
    let err = page.download(&wrong.to_bytes().unwrap()).await.unwrap_err();
    assert_eq!(err.code, haven_wasm::ErrorCode::DecryptionFailed);

    // The relay's files hold no plaintext.
    let mut files = vec![relay.config().dir().to_path_buf()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        for s in SECRETS {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{} holds a plaintext",
                p.display()
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("haven-wasm-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
