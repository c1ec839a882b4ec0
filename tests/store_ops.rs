//! Listing, reading and deleting through the storage abstraction (issue #9), on a real
//! local lake and on the DFS test server with injected faults: a listing sees every
//! published file exactly once and nothing of the temporary areas, whatever the page
//! boundaries and retries; reads return what was stored; deletes are idempotent.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use azure_storage::StorageCredentials;
use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind};
use futures_util::TryStreamExt;
use mongo_lake_ingest::configuration::Credential;
use mongo_lake_ingest::domain::{LakePath, Segment};
use mongo_lake_ingest::sink::{AdlsSink, LakeFile, Listed, LocalLake, Sink, SinkError, Stored};

mod support;

use support::adls::{key, settings};

const FILESYSTEM: &str = "mongodb";

fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .filter(|name| !name.is_empty())
        .map(|name| Segment::literal(name).expect("valid"))
        .collect()
}

fn lake_path(path: &str) -> LakePath {
    LakePath::new(segments(path)).expect("non-empty")
}

fn file(path: &str) -> LakeFile {
    LakeFile {
        path: lake_path(path),
        contents: format!("{{\"at\":\"{path}\"}}\n").into_bytes(),
    }
}

/// Every page of a listing of `folder`.
async fn pages(sink: &dyn Sink, folder: &str) -> Vec<Vec<Listed>> {
    sink.list(&segments(folder))
        .try_collect()
        .await
        .expect("listing succeeds")
}

/// A listing as path -> size, failing on any path listed twice.
fn by_path(pages: &[Vec<Listed>]) -> BTreeMap<String, u64> {
    let mut files = BTreeMap::new();
    for listed in pages.iter().flatten() {
        let previous = files.insert(listed.path.to_string(), listed.size);
        assert!(previous.is_none(), "{} listed twice", listed.path);
    }
    files
}

fn expected(files: &[LakeFile]) -> BTreeMap<String, u64> {
    files
        .iter()
        .map(|f| (f.path.to_string(), f.contents.len() as u64))
        .collect()
}

async fn store(sink: &dyn Sink, files: &[LakeFile]) {
    let results = sink.store_all(files.to_vec()).await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Stored::Written))),
        "{results:?}"
    );
}

/// Reads back each file, deletes one twice, and checks it is gone from reads and listings.
async fn read_and_delete(sink: &dyn Sink, files: &[LakeFile], folder: &str) {
    for file in files {
        let contents = sink.read(&file.path).await.expect("readable");
        assert_eq!(contents.as_ref(), file.contents.as_slice(), "{}", file.path);
    }
    let gone = &files[0];
    sink.delete(&gone.path).await.expect("deleted");
    sink.delete(&gone.path)
        .await
        .expect("deleting again is no error");
    let error = sink.read(&gone.path).await.expect_err("deleted");
    assert!(
        matches!(error, SinkError::NotFound { .. }) && !error.is_retryable(),
        "{error:?}"
    );
    let listed = by_path(&pages(sink, folder).await);
    assert!(!listed.contains_key(&gone.path.to_string()));
    assert_eq!(listed.len(), files.len() - 1);
}

// ---- local lake -------------------------------------------------------------------------

#[tokio::test]
async fn local_lists_nested_folders_without_temporary_or_foreign_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = LocalLake::open(dir.path(), "c", true).expect("open");
    let changes = [
        file("changes/db/coll/a.json"),
        file("changes/db/coll/deeper/b.json"),
        file("changes/db/other/c.json"),
        file("changes/top.json"),
    ];
    let elsewhere = [file("changes-hourly/db/h.jsonl")];
    store(&lake, &changes).await;
    store(&lake, &elsewhere).await;
    // What a crashed writer leaves, and names the service never writes.
    fs::write(dir.path().join("c/.tmp/left-behind.1234"), b"partial").expect("temp");
    fs::create_dir_all(dir.path().join("c/changes/.tmp")).expect("hidden folder");
    fs::write(dir.path().join("c/changes/.tmp/x"), b"partial").expect("temp");
    fs::write(dir.path().join("c/changes/db/not a segment"), b"x").expect("foreign");
    fs::create_dir_all(dir.path().join("c/changes/db/empty")).expect("empty folder");

    assert_eq!(by_path(&pages(&lake, "changes").await), expected(&changes));
    assert_eq!(
        by_path(&pages(&lake, "changes/db/coll").await),
        expected(&changes[..2])
    );
    let everything: Vec<LakeFile> = changes.iter().chain(&elsewhere).cloned().collect();
    assert_eq!(by_path(&pages(&lake, "").await), expected(&everything));
    assert!(pages(&lake, "changes/nothing/here").await.is_empty());
    assert!(
        pages(&lake, "changes/top.json").await.is_empty(),
        "a file is not a folder"
    );

    read_and_delete(&lake, &changes, "changes").await;
}

#[tokio::test]
async fn local_listing_comes_in_pages_and_misses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = LocalLake::open(dir.path(), "c", false).expect("open");
    let files: Vec<LakeFile> = (0..2500)
        .map(|n| file(&format!("changes/d{}/{n:05}.json", n % 3)))
        .collect();
    store(&lake, &files).await;

    let pages = pages(&lake, "changes").await;
    assert!(pages.len() >= 3, "{} pages", pages.len());
    assert!(pages
        .iter()
        .all(|page| !page.is_empty() && page.len() < 2500));
    assert_eq!(by_path(&pages), expected(&files));
}

#[tokio::test]
async fn local_read_of_a_missing_file_is_not_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = LocalLake::open(dir.path(), "c", false).expect("open");
    let missing = lake_path("changes/none.json");
    let error = lake.read(&missing).await.expect_err("missing");
    assert!(matches!(error, SinkError::NotFound { .. }), "{error:?}");
    lake.delete(&missing)
        .await
        .expect("nothing to delete is fine");
}

// ---- ADLS against the DFS test server ---------------------------------------------------

async fn adls() -> (DfsServer, AdlsSink) {
    let server = DfsServer::builder()
        .filesystem(FILESYSTEM)
        .start()
        .await
        .expect("DFS server starts");
    let sink = AdlsSink::new(&settings(&server, key()), FILESYSTEM, &segments("changes"))
        .expect("client builds");
    (server, sink)
}

fn busy() -> FaultAction {
    FaultAction::server_busy()
}

#[tokio::test]
async fn adls_lists_past_one_page_through_faults_without_temporary_files() {
    let (server, sink) = adls().await;
    // More than one List Paths page (the service's and the server's maximum is 5,000),
    // put in place directly: writing them through HTTP would only slow the test.
    let files: Vec<LakeFile> = (0..5200)
        .map(|n| file(&format!("changes/db/c{}/{n:05}.json", n % 2)))
        .collect();
    for f in &files {
        server.put_file(FILESYSTEM, &f.path.to_string(), f.contents.clone());
    }
    // The sink's staging folder, and an empty folder: neither is a file of the lake.
    server.put_file(FILESYSTEM, "changes/_tmp/00001.json.abcdef", "partial");
    server.create_dir(FILESYSTEM, "changes/db/empty");
    server.put_file(FILESYSTEM, "elsewhere/x.json", "x");

    server.reset_stats();
    let first = pages(&sink, "changes").await;
    assert_eq!(by_path(&first), expected(&files));
    assert!(first.len() >= 2, "{} pages", first.len());
    assert!(server.stats().op(OpKind::ListPaths) >= 2);

    // The second page is refused twice: it is asked for again, the listing goes on.
    server.faults().push(FaultRule {
        skip: 1,
        ..FaultRule::new(OpKind::ListPaths, busy()).times(2)
    });
    server.reset_stats();
    assert_eq!(by_path(&pages(&sink, "changes").await), expected(&files));
    assert_eq!(server.stats().faults_fired, 2, "{:?}", server.stats());
    assert!(server.stats().op(OpKind::ListPaths) >= 4);

    assert_eq!(
        by_path(&pages(&sink, "changes/db/c1").await).len(),
        2600,
        "a sub-folder"
    );
    assert!(pages(&sink, "changes/none").await.is_empty(), "no folder");
}

#[tokio::test]
async fn adls_reads_and_deletes_through_faults() {
    let (server, sink) = adls().await;
    let files: Vec<LakeFile> = (0..4)
        .map(|n| file(&format!("changes/db/c/{n}.json")))
        .collect();
    store(&sink, &files).await;

    server
        .faults()
        .push(FaultRule::new(OpKind::Read, busy()).times(2));
    server
        .faults()
        .push(FaultRule::new(OpKind::Delete, FaultAction::internal_error()).times(1));
    read_and_delete(&sink, &files, "changes").await;
    assert_eq!(server.stats().faults_fired, 3, "{:?}", server.stats());
    assert!(!server.exists(FILESYSTEM, &files[0].path.to_string()));

    // A delete whose answer is lost is retried, finds the file gone, and succeeds.
    server
        .faults()
        .push(FaultRule::new(OpKind::Delete, FaultAction::ApplyThenDrop).times(1));
    sink.delete(&files[1].path).await.expect("deleted");
    assert!(!server.exists(FILESYSTEM, &files[1].path.to_string()));

    // An empty file reads as empty (the library's ranged read cannot).
    server.put_file(FILESYSTEM, "changes/db/c/empty.json", "");
    let empty = sink
        .read(&lake_path("changes/db/c/empty.json"))
        .await
        .expect("readable");
    assert!(empty.is_empty());
}

#[tokio::test]
async fn adls_permission_refusals_fail_fast_with_a_typed_error() {
    let server = DfsServer::builder()
        .filesystem(FILESYSTEM)
        .bearer_token_without_permission("no-role")
        .start()
        .await
        .expect("starts");
    server.put_file(FILESYSTEM, "changes/a.json", "{}\n");
    let sink = AdlsSink::with_credentials(
        &settings(&server, Credential::EntraId),
        StorageCredentials::bearer_token("no-role"),
        FILESYSTEM,
        &segments("changes"),
    )
    .expect("builds");
    let path = lake_path("changes/a.json");

    let started = Instant::now();
    let listed: Result<Vec<Vec<Listed>>, SinkError> =
        sink.list(&segments("changes")).try_collect().await;
    let errors = [
        listed.expect_err("refused"),
        sink.read(&path).await.expect_err("refused"),
        sink.delete(&path).await.expect_err("refused"),
    ];
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no retries on 403 (the budget is 10 s): {:?}",
        started.elapsed()
    );
    for error in &errors {
        let SinkError::Storage {
            detail, retryable, ..
        } = error
        else {
            panic!("a storage error: {error:?}");
        };
        assert!(!retryable, "{error:?}");
        assert!(
            detail.contains("403") && detail.contains("Storage Blob Data Contributor"),
            "{detail}"
        );
    }
    assert!(server.file_exists(FILESYSTEM, "changes/a.json"));
}

#[tokio::test]
async fn adls_retries_until_the_budget_and_says_it_may_succeed_later() {
    let (server, _) = adls().await;
    let mut short = settings(&server, key());
    short.retry_budget = Duration::from_millis(600);
    let sink_short =
        AdlsSink::new(&short, FILESYSTEM, &segments("changes")).expect("client builds");
    server.put_file(FILESYSTEM, "changes/a.json", "{}\n");
    server
        .faults()
        .push(FaultRule::new(OpKind::Read, busy()).always());
    let error = sink_short
        .read(&lake_path("changes/a.json"))
        .await
        .expect_err("always busy");
    assert!(error.is_retryable(), "{error:?}");
    assert!(error.to_string().contains("503"), "{error}");
    assert!(server.stats().op(OpKind::Read) > 2, "it did retry");
}

/// Log lines written while the returned guard is held (this test's thread only).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn adls_retries_are_logged_like_writes_without_paths() {
    let (server, sink) = adls().await;
    let captured = Captured::default();
    let writer = captured.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let secret_name = "changes/db/c/65f0a1b2c3d4e5f601234567.json";
    server.put_file(FILESYSTEM, secret_name, "{}\n");
    for op in [OpKind::ListPaths, OpKind::Read, OpKind::Delete] {
        server.faults().push(FaultRule::new(op, busy()).times(1));
    }
    assert_eq!(by_path(&pages(&sink, "changes/db").await).len(), 1);
    sink.read(&lake_path(secret_name)).await.expect("read");
    sink.delete(&lake_path(secret_name)).await.expect("deleted");

    let text = String::from_utf8(captured.0.lock().expect("log").clone()).expect("UTF-8");
    let retries: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .filter(|line: &serde_json::Value| {
            line["fields"]["message"] == "storage attempt failed; retrying"
        })
        .collect();
    let operations: Vec<&str> = retries
        .iter()
        .filter_map(|line| line["fields"]["operation"].as_str())
        .collect();
    assert_eq!(operations, ["listing", "reading", "deleting"], "{text}");
    for retry in &retries {
        assert_eq!(retry["level"], "WARN");
        assert_eq!(retry["fields"]["cause"], "HTTP 503 ServerBusy");
        assert_eq!(retry["fields"]["attempt"], 1);
    }
    assert!(
        !text.contains("65f0a1b2c3d4e5f601234567") && !text.contains("changes/db"),
        "no path or _id in the log: {text}"
    );
}
