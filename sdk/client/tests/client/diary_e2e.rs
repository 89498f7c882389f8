//! The diary client end to end against a real relay (in process, on SQLite and on the local
//! PostgreSQL): several devices of one account, concurrent edits, recovery, password change,
//! tampering by the relay, and what the relay's database holds.

use std::path::Path;

use haven_client::diary::{Diary, DiaryClientError, LocalDiaryError};
use haven_client::relay::{LoginDevice, LoginIdentifier, RelayClient};
use haven_client::store::ClientStore;
use haven_sdk::diary::entry::{EntryError, MAX_BODY_LEN};
use haven_sdk::diary::{DiaryError, DiaryQuery, Entry, KdfParams, SyncError};
use haven_sdk::identity::IdentityKeyPair;
use haven_testkit::{RelayConfig, TestDatabase};
use reqwest::Method;
use serde_json::json;

use crate::common::Relay;

const ACCOUNT_PW: &[u8] = b"account pw: orange kettle";
const PW1: &[u8] = b"diary pw one: quiet river";
const PW2: &[u8] = b"diary pw two: loud canyon";
const PW3: &[u8] = b"diary pw three: slow comet";

/// Every plaintext the tests type; none may reach the relay's database.
const SECRETS: &[&str] = &[
    "Zanzibarlighthouse",
    "marmaladeprotocol",
    "quixoticpelican",
    "velvetthunderstorm",
    "moodtangerine",
    "tagaubergine",
    "Ostrichferrywheel",
    "harmonicasunrise",
    "glaciervioloncello",
];

/// A relay on `database` (its own fresh SQLite file when `None`).
fn start_relay(database: Option<&str>) -> Relay {
    let mut config =
        RelayConfig::new().set_all(&[("HAVEN_LOG", "warn"), ("HAVEN_MAX_DEVICES", "50")]);
    if let Some(url) = database {
        config = config.database(url);
    }
    Relay::start(config)
}

fn params() -> KdfParams {
    KdfParams::MIN
}

fn store(dir: &Path, name: &str) -> ClientStore {
    ClientStore::open(&dir.join(name), &[7u8; 32]).unwrap()
}

fn identity() -> Vec<u8> {
    IdentityKeyPair::generate(&mut rand::rng())
        .public()
        .to_bytes()
        .to_vec()
}

async fn register(url: &str, username: &str) -> RelayClient {
    let relay = RelayClient::new(url).unwrap();
    relay
        .register(Some(username), ACCOUNT_PW, &identity(), None)
        .await
        .unwrap();
    relay
}

async fn login(url: &str, username: &str) -> RelayClient {
    let relay = RelayClient::new(url).unwrap();
    relay
        .login(
            LoginIdentifier::Username(username),
            ACCOUNT_PW,
            LoginDevice::New {
                identity_key: &identity(),
                name: None,
            },
            None,
        )
        .await
        .unwrap();
    relay
}

fn entry(title: &str, body: &str, mood: Option<&str>, tags: &[&str], created_ms: u64) -> Entry {
    Entry {
        title: title.into(),
        body: body.into(),
        mood: mood.map(str::to_owned),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        created_ms,
        updated_ms: created_ms,
        attachments: Vec::new(),
    }
}

fn titles(d: &Diary) -> Vec<String> {
    let mut t: Vec<String> = d
        .list(&DiaryQuery::default())
        .into_iter()
        .map(|(_, e)| e.title.clone())
        .collect();
    t.sort();
    t
}

/// The whole multi-device scenario.
async fn scenario(url: &str, username: &str, dir: &Path) {
    // Device A creates the account and the diary.
    let relay_a = register(url, username).await;
    let (mut a, codes) = Diary::init(store(dir, "a.db"), relay_a, PW1, params())
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);
    let day = 86_400_000u64;
    let e1 = a
        .write(entry(
            "Zanzibarlighthouse notes",
            "first line\nsecond line marmaladeprotocol\nthird line\n",
            Some("moodtangerine"),
            &["tagaubergine"],
            20 * day,
        ))
        .unwrap();
    let e2 = a
        .write(entry(
            "quixoticpelican",
            "velvetthunderstorm tonight",
            Some("calm"),
            &["travel"],
            40 * day,
        ))
        .unwrap();
    assert!(a.is_pending(&e1));
    let report = a.sync().await.unwrap();
    assert_eq!(report.pushed, 2);
    assert_eq!(report.pending, 0);

    // A second device of the account: fetches the bundle, unlocks, pulls.
    let relay_b = login(url, username).await;
    let mut b = Diary::unlock(store(dir, "b.db"), relay_b, PW1)
        .await
        .unwrap();
    b.sync().await.unwrap();
    assert_eq!(titles(&b), titles(&a));
    assert_eq!(b.show(&e1).unwrap().body, a.show(&e1).unwrap().body);

    // Filters and search run locally.
    let q =
        |mood: Option<&str>, tag: Option<&str>, from: Option<u64>, until: Option<u64>| DiaryQuery {
            mood: mood.map(str::to_owned),
            tag: tag.map(str::to_owned),
            from_ms: from,
            until_ms: until,
            text: None,
        };
    assert_eq!(b.list(&q(Some("moodtangerine"), None, None, None))[0].0, e1);
    assert_eq!(b.list(&q(None, Some("travel"), None, None))[0].0, e2);
    assert_eq!(b.list(&q(None, None, Some(30 * day), None))[0].0, e2);
    assert_eq!(b.list(&q(None, None, None, Some(30 * day))).len(), 1);
    assert_eq!(b.search("velvetthund")[0].0, e2);
    assert_eq!(b.search("marmalade")[0].0, e1);
    assert!(b.search("nonexistentword").is_empty());

    // Concurrent edits of the same entry: A changes the title and the first line, B appends
    // a line and changes the mood. B's push meets a 409, pulls, merges three-way, retries.
    let mut ea = a.show(&e1).unwrap().clone();
    ea.title = "Zanzibarlighthouse notes (edited on A)".into();
    ea.body = "first line Ostrichferrywheel\nsecond line marmaladeprotocol\nthird line\n".into();
    ea.updated_ms += 1;
    a.edit(&e1, ea).unwrap();
    let mut eb = b.show(&e1).unwrap().clone();
    eb.body =
        "first line\nsecond line marmaladeprotocol\nthird line\nfourth harmonicasunrise\n".into();
    eb.mood = Some("calm".into());
    eb.updated_ms += 2;
    b.edit(&e1, eb).unwrap();
    a.sync().await.unwrap();
    let report = b.sync().await.unwrap();
    assert!(report.conflicts >= 1, "{report:?}");
    assert_eq!(report.pending, 0);
    a.sync().await.unwrap();
    for d in [&a, &b] {
        let e = d.show(&e1).unwrap();
        assert_eq!(e.title, "Zanzibarlighthouse notes (edited on A)");
        assert!(
            e.body.contains("first line Ostrichferrywheel"),
            "{:?}",
            e.body
        );
        assert!(e.body.contains("fourth harmonicasunrise"), "{:?}", e.body);
        assert_eq!(e.mood.as_deref(), Some("calm"));
    }
    assert_eq!(a.show(&e1).unwrap(), b.show(&e1).unwrap());

    // Both change the same line: nothing typed is lost (both versions kept).
    let mut ea = a.show(&e2).unwrap().clone();
    ea.body = "velvetthunderstorm at dawn glaciervioloncello".into();
    a.edit(&e2, ea).unwrap();
    let mut eb = b.show(&e2).unwrap().clone();
    eb.body = "velvetthunderstorm at dusk".into();
    b.edit(&e2, eb).unwrap();
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    a.sync().await.unwrap();
    let merged = b.show(&e2).unwrap().body.clone();
    assert!(merged.contains("at dawn glaciervioloncello"), "{merged:?}");
    assert!(merged.contains("at dusk"), "{merged:?}");
    assert_eq!(a.show(&e2).unwrap().body, merged);
    let history = b.history(&e2).await.unwrap();
    assert!(
        history.iter().any(|r| r
            .entry
            .as_ref()
            .is_some_and(|e| e.body == "velvetthunderstorm at dusk")),
        "B's full version is a revision of its own"
    );

    // Delete and restore, seen by the other device.
    a.delete(&e2).await.unwrap();
    assert!(a.show(&e2).is_none());
    b.sync().await.unwrap();
    assert!(b.show(&e2).is_none());
    b.restore(&e2).await.unwrap();
    b.sync().await.unwrap();
    a.sync().await.unwrap();
    assert_eq!(a.show(&e2).unwrap().body, merged);

    // A pending edit survives a restart and the restart needs no relay.
    let mut eb = b.show(&e1).unwrap().clone();
    eb.tags.push("offline".into());
    b.edit(&e1, eb).unwrap();
    drop(b);
    let dead = RelayClient::new("http://127.0.0.1:1").unwrap();
    let offline = Diary::unlock(store(dir, "b.db"), dead, PW1).await.unwrap();
    assert_eq!(titles(&offline), titles(&a));
    assert!(offline.is_pending(&e1));
    assert!(
        offline
            .show(&e1)
            .unwrap()
            .tags
            .contains(&"offline".to_owned())
    );
    drop(offline);
    let relay_b = login(url, username).await;
    let mut b = Diary::unlock(store(dir, "b.db"), relay_b, PW1)
        .await
        .unwrap();
    let report = b.sync().await.unwrap();
    assert_eq!(report.pending, 0);
    a.sync().await.unwrap();
    assert!(a.show(&e1).unwrap().tags.contains(&"offline".to_owned()));

    // A third device recovers with a recovery code and sets a new password.
    let relay_c = login(url, username).await;
    let code = codes[3].to_text();
    let bad = Diary::recover(
        store(dir, "c0.db"),
        login(url, username).await,
        "not-a-code",
        PW2,
        params(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            bad,
            DiaryClientError::Diary(LocalDiaryError::Keys(DiaryError::InvalidRecoveryCode))
        ),
        "{bad:?}"
    );
    let mut c = Diary::recover(store(dir, "c.db"), relay_c, code.as_str(), PW2, params())
        .await
        .unwrap();
    c.sync().await.unwrap();
    assert_eq!(titles(&c), titles(&a));
    assert_eq!(c.show(&e1).unwrap(), a.show(&e1).unwrap());

    // C changes the password again; every device unlocks with the newest one and reads all.
    c.change_password(PW3, params()).await.unwrap();
    drop((a, b));
    for name in ["a.db", "b.db"] {
        let relay = login(url, username).await;
        let d = Diary::unlock(store(dir, name), relay, PW3).await.unwrap();
        assert_eq!(titles(&d), titles(&c));
        assert_eq!(d.show(&e1).unwrap(), c.show(&e1).unwrap());
    }
    let relay = login(url, username).await;
    let err = Diary::unlock(store(dir, "fresh.db"), relay, PW1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DiaryClientError::Diary(LocalDiaryError::Keys(DiaryError::WrongPassword))
        ),
        "{err:?}"
    );

    // A device whose bundle is stale detects the conflict instead of overwriting.
    let relay = login(url, username).await;
    let mut d = Diary::unlock(store(dir, "d.db"), relay, PW3).await.unwrap();
    c.change_password(PW1, params()).await.unwrap();
    let Err(err) = d.change_password(PW2, params()).await else {
        panic!("a stale bundle must conflict")
    };
    assert!(
        matches!(
            err,
            DiaryClientError::Diary(LocalDiaryError::BundleConflict)
        ),
        "{err:?}"
    );
}

/// Scans bytes for every secret (and its hex form).
fn assert_no_secrets(what: &str, haystack: &[u8]) {
    let lower = String::from_utf8_lossy(haystack).to_lowercase();
    for s in SECRETS {
        let needle = s.to_lowercase();
        assert!(!lower.contains(&needle), "{what} contains {s}");
        assert!(
            !lower.contains(&hex::encode(needle.as_bytes())),
            "{what} contains {s} (hex)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_recovery_and_password_change_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = start_relay(None);
    scenario(&relay.url(), "diary_e2e_sqlite", dir.path()).await;
    let db = relay.config().dir().join("relay.db");
    let scan = || {
        let mut scanned = 0;
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", db.display());
            if let Ok(bytes) = std::fs::read(&path) {
                scanned += bytes.len();
                assert_no_secrets(&path, &bytes);
            }
        }
        assert!(scanned > 0);
    };
    // The files as a crash would leave them (WAL not checkpointed), then after a clean stop
    // (stopped, not dropped: the files outlive it).
    scan();
    relay.stop();
    scan();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_recovery_and_password_change_on_postgres() {
    use sqlx::{Connection as _, Row as _};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(Some(url));
    scenario(&relay.url(), "diary_e2e_pg", dir.path()).await;
    drop(relay);
    // Every row of every table, as text (bytea as hex), holds none of the secrets.
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    assert!(tables.iter().any(|t| t == "vault_revisions"), "{tables:?}");
    let mut rows = 0;
    for t in &tables {
        let texts: Vec<String> = sqlx::query(&format!("SELECT t::text FROM \"{t}\" t"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        rows += texts.len();
        for text in texts {
            assert_no_secrets(t, text.as_bytes());
        }
    }
    assert!(rows > 0);
    conn.close().await.unwrap();
}

/// Runs SQL against the relay's SQLite database while it runs.
async fn sql(db: &Path, statement: &str, binds: &[&[u8]]) {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut q = sqlx::query(statement);
    for b in binds {
        q = q.bind(b.to_vec());
    }
    q.execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn blob(db: &Path, item: &[u8], column: &str) -> Vec<u8> {
    use sqlx::{Connection as _, Row as _};
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let row = sqlx::query(&format!(
        "SELECT r.{column} FROM vault_revisions r JOIN vault_items i USING (account_id, collection_id, item_id)
         WHERE r.item_id = ?1 AND r.revision = i.revision"
    ))
    .bind(item.to_vec())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let out: Vec<u8> = row.get(0);
    conn.close().await.unwrap();
    out
}

/// Makes the relay list `item` again as changed (a new sequence number).
async fn touch(db: &Path, item: &[u8]) {
    sql(
        db,
        "UPDATE vault_accounts SET last_seq = last_seq + 1
         WHERE account_id = (SELECT account_id FROM vault_items WHERE item_id = ?1)",
        &[item],
    )
    .await;
    sql(
        db,
        "UPDATE vault_items SET seq = (SELECT last_seq FROM vault_accounts a
             WHERE a.account_id = vault_items.account_id)
         WHERE item_id = ?1",
        &[item],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_oversize_and_other_accounts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(None);
    let db = relay.config().dir().join("relay.db");
    let url = relay.url();
    let (mut a, _codes) = Diary::init(
        store(dir.path(), "a.db"),
        register(&url, "tamper_a").await,
        PW1,
        params(),
    )
    .await
    .unwrap();
    let x = a.write(entry("item x", "body x", None, &[], 1)).unwrap();
    let y = a.write(entry("item y", "body y", None, &[], 2)).unwrap();
    a.sync().await.unwrap();
    let mut ex = a.show(&x).unwrap().clone();
    ex.body = "body x, second revision".into();
    a.edit(&x, ex).unwrap();
    a.sync().await.unwrap();
    let before_x = a.show(&x).unwrap().clone();
    let before_y = a.show(&y).unwrap().clone();
    let unchanged = |d: &Diary| {
        assert_eq!(d.show(&x).unwrap(), &before_x);
        assert_eq!(d.show(&y).unwrap(), &before_y);
        assert!(!d.is_pending(&x));
    };

    // Oversize entry: a clear error, nothing stored.
    let huge = entry("huge", &"a".repeat(MAX_BODY_LEN + 1), None, &[], 3);
    let err = a.write(huge).unwrap_err();
    assert!(
        matches!(
            err,
            DiaryClientError::Diary(LocalDiaryError::Entry(EntryError::FieldTooLong {
                field: "body",
                ..
            }))
        ),
        "{err:?}"
    );
    assert_eq!(a.list(&DiaryQuery::default()).len(), 2);

    // A flipped byte in the stored metadata.
    let meta = blob(&db, &x, "meta").await;
    let mut flipped = meta.clone();
    flipped[40] ^= 0x01;
    sql(
        &db,
        "UPDATE vault_revisions SET meta = ?1 WHERE item_id = ?2 AND revision = 2",
        &[&flipped, &x],
    )
    .await;
    touch(&db, &x).await;
    // A device that saw revision 2 detects a second content for it; a fresh device fails to
    // decrypt it. Neither keeps anything.
    let err = a.sync().await.unwrap_err();
    assert!(
        matches!(
            err,
            DiaryClientError::Diary(LocalDiaryError::Sync(SyncError::Forked(2)))
        ),
        "{err:?}"
    );
    assert!(err.is_tampering());
    unchanged(&a);
    let mut fresh = Diary::unlock(
        store(dir.path(), "fresh1.db"),
        login(&url, "tamper_a").await,
        PW1,
    )
    .await
    .unwrap();
    let err = fresh.sync().await.unwrap_err();
    assert!(
        matches!(
            err,
            DiaryClientError::Diary(LocalDiaryError::Sync(SyncError::Entry(_)))
        ),
        "{err:?}"
    );
    assert!(fresh.list(&DiaryQuery::default()).is_empty());
    // Still refused on retry (the token did not move past the bad page).
    assert!(a.sync().await.is_err());
    sql(
        &db,
        "UPDATE vault_revisions SET meta = ?1 WHERE item_id = ?2 AND revision = 2",
        &[&meta, &x],
    )
    .await;
    a.sync().await.unwrap();
    unchanged(&a);

    // Swapped item ids: y's blobs served as x's.
    let (xb, xm) = (blob(&db, &x, "body").await, blob(&db, &x, "meta").await);
    let (yb, ym) = (blob(&db, &y, "body").await, blob(&db, &y, "meta").await);
    sql(
        &db,
        "UPDATE vault_revisions SET body = ?1, meta = ?2 WHERE item_id = ?3 AND revision = 2",
        &[&yb, &ym, &x],
    )
    .await;
    touch(&db, &x).await;
    let err = a.sync().await.unwrap_err();
    assert!(
        matches!(
            err,
            DiaryClientError::Diary(LocalDiaryError::Sync(SyncError::Forked(2)))
        ),
        "{err:?}"
    );
    unchanged(&a);
    let err = fresh.sync().await.unwrap_err();
    assert!(
        matches!(
            err,
            DiaryClientError::Diary(LocalDiaryError::Sync(SyncError::Entry(_)))
        ),
        "{err:?}"
    );
    assert!(fresh.list(&DiaryQuery::default()).is_empty());
    sql(
        &db,
        "UPDATE vault_revisions SET body = ?1, meta = ?2 WHERE item_id = ?3 AND revision = 2",
        &[&xb, &xm, &x],
    )
    .await;
    a.sync().await.unwrap();
    unchanged(&a);
    // Nothing lost: once the relay serves the real data again, the fresh device has it all.
    fresh.sync().await.unwrap();
    unchanged(&fresh);

    // Rolled back: the relay serves revision 1 of x after 2 was seen.
    sql(
        &db,
        "UPDATE vault_items SET revision = 1 WHERE item_id = ?1",
        &[&x],
    )
    .await;
    touch(&db, &x).await;
    let err = a.sync().await.unwrap_err();
    assert!(
        matches!(
            err,
            DiaryClientError::Diary(LocalDiaryError::Sync(SyncError::RolledBack {
                seen: 2,
                served: 1
            }))
        ),
        "{err:?}"
    );
    unchanged(&a);
    // The same after a restart: the local state remembers revision 2.
    drop(a);
    let mut a = Diary::unlock(
        store(dir.path(), "a.db"),
        login(&url, "tamper_a").await,
        PW1,
    )
    .await
    .unwrap();
    unchanged(&a);
    assert!(matches!(
        a.sync().await.unwrap_err(),
        DiaryClientError::Diary(LocalDiaryError::Sync(SyncError::RolledBack { .. }))
    ));
    sql(
        &db,
        "UPDATE vault_items SET revision = 2 WHERE item_id = ?1",
        &[&x],
    )
    .await;
    a.sync().await.unwrap();
    unchanged(&a);

    // Another account's token can neither read nor write A's items.
    let eve = register(&url, "tamper_eve").await;
    let coll = hex::encode(a.collection());
    let path = format!("/v1/vault/{coll}/items/{}", hex::encode(x));
    let err = eve.request(Method::GET, &path, None).await.unwrap_err();
    assert_eq!(err.code(), Some("item_not_found"));
    let err = eve
        .request(Method::GET, &format!("{path}/history"), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    let changes = eve
        .request(Method::GET, &format!("/v1/vault/{coll}/changes"), None)
        .await
        .unwrap();
    assert!(changes["changes"].as_array().unwrap().is_empty());
    let put = json!({"expected_revision": 2, "body": "AAAA", "meta": "AAAA"});
    assert!(eve.request(Method::PUT, &path, Some(&put)).await.is_err());
    let del = eve
        .request(Method::DELETE, &format!("{path}?expected_revision=2"), None)
        .await
        .unwrap_err();
    assert_eq!(del.status(), Some(404));
    let report = a.sync().await.unwrap();
    assert_eq!(report.pulled, 0);
    unchanged(&a);
    drop(relay);
}
