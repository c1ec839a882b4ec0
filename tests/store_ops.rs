//! Listing, reading, deleting, listing folders and storing spooled files through the
//! storage abstraction (issue #9), on a real local lake and on the DFS test server with
//! injected faults: a listing sees every published file exactly once and nothing of the
//! temporary areas, whatever the page boundaries and retries; reads return what was
//! stored; deletes are idempotent; a spooled file of several chunks arrives byte for byte,
//! once, never over another file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use azure_storage::StorageCredentials;
use dfs_test_server::{DfsServer, DfsServerBuilder, FaultAction, FaultRule, OpKind};
use futures_util::TryStreamExt;
use mongo_lake_ingest::configuration::Credential;
use mongo_lake_ingest::domain::{LakePath, Segment};
use mongo_lake_ingest::sink::{
    AdlsSink, LakeFile, Listed, LocalLake, Sink, SinkError, Stored, APPEND_CHUNK,
};

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
    adls_from(DfsServer::builder()).await
}

/// A server made by `builder`, with the lake's filesystem, and a sink writing to it.
async fn adls_from(builder: DfsServerBuilder) -> (DfsServer, AdlsSink) {
    let server = builder
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

// ---- folders and spooled files, on both stores ------------------------------------------

/// Three appends' worth: two full chunks and a short one.
const MULTI_CHUNK: u64 = 2 * APPEND_CHUNK + 4 * 1024 * 1024 + 3;

/// A spooled file of `len` bytes in `dir` in which no chunk could pass for another: each
/// 8-byte word is its own index, mixed with `seed`.
fn spool(dir: &Path, name: &str, len: u64, seed: u64) -> (PathBuf, Vec<u8>) {
    let contents: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|word| (word.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed).to_le_bytes())
        .take(usize::try_from(len).expect("fits"))
        .collect();
    let path = dir.join(name);
    fs::write(&path, &contents).expect("spooled file written");
    (path, contents)
}

async fn folder_names(sink: &dyn Sink, folder: &str) -> BTreeSet<String> {
    sink.folders(&segments(folder))
        .await
        .expect("folders listed")
        .iter()
        .map(|segment| segment.to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// What both stores answer for folders written through `store_all`: the folders one
/// level down, never files, never deeper, nothing for a missing folder or a file. The
/// caller has put hidden and foreign folders under `changes/` first.
async fn folders_contract(sink: &dyn Sink) {
    store(
        sink,
        &[
            file("changes/db1/coll1/a.json"),
            file("changes/db1/coll2/deeper/b.json"),
            file("changes/db2/c.json"),
            file("changes/top.json"),
        ],
    )
    .await;
    assert_eq!(folder_names(sink, "changes").await, set(&["db1", "db2"]));
    assert_eq!(
        folder_names(sink, "changes/db1").await,
        set(&["coll1", "coll2"])
    );
    assert_eq!(
        folder_names(sink, "changes/db1/coll2").await,
        set(&["deeper"])
    );
    assert!(
        folder_names(sink, "changes/db2").await.is_empty(),
        "files are not folders"
    );
    assert!(folder_names(sink, "changes/none/here").await.is_empty());
    assert!(
        folder_names(sink, "changes/top.json").await.is_empty(),
        "a file has no folders"
    );
    assert_eq!(folder_names(sink, "").await, set(&["changes"]));
}

fn same_bytes(stored: &[u8], expected: &[u8]) -> bool {
    // Not assert_eq!: a failure would print 20 MiB.
    stored.len() == expected.len() && stored == expected
}

/// What both stores do with spooled files: a file of three chunks arrives byte for byte;
/// another file at the same path is refused (`AlreadyPresent`) and the first stays; an
/// empty file is stored; a missing spooled file is a local error. Returns the paths stored.
async fn spooled_contract(sink: &dyn Sink, spool_dir: &Path) -> [LakePath; 2] {
    let part = lake_path("changes-hourly/db/coll/hour=10/events-20240616-10.jsonl");
    let (first, contents) = spool(spool_dir, "part-a", MULTI_CHUNK, 1);
    let stored = sink.store_spooled(&part, &first).await.expect("stored");
    assert_eq!(stored, Stored::Written);
    let read = sink.read(&part).await.expect("readable");
    assert!(same_bytes(&read, &contents), "{} bytes read", read.len());

    let (other, _) = spool(spool_dir, "part-b", MULTI_CHUNK - 1, 2);
    let again = sink.store_spooled(&part, &other).await.expect("answered");
    assert_eq!(again, Stored::AlreadyPresent);
    let read = sink.read(&part).await.expect("readable");
    assert!(same_bytes(&read, &contents), "the first file stays");

    let empty_part = lake_path("changes-hourly/db/coll/hour=11/events-20240616-11.jsonl");
    let (empty, _) = spool(spool_dir, "empty", 0, 0);
    let stored = sink
        .store_spooled(&empty_part, &empty)
        .await
        .expect("stored");
    assert_eq!(stored, Stored::Written);
    assert!(sink.read(&empty_part).await.expect("readable").is_empty());

    let missing = sink
        .store_spooled(
            &lake_path("changes-hourly/x.jsonl"),
            &spool_dir.join("none"),
        )
        .await
        .expect_err("nothing to store");
    assert!(matches!(missing, SinkError::Io { .. }), "{missing:?}");

    let listed = by_path(&pages(sink, "changes-hourly").await);
    let expected: BTreeMap<String, u64> =
        [(part.to_string(), MULTI_CHUNK), (empty_part.to_string(), 0)]
            .into_iter()
            .collect();
    assert_eq!(listed, expected, "nothing else, nothing temporary");
    [part, empty_part]
}

#[tokio::test]
async fn local_folders_are_one_level_without_files_or_hidden_folders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = LocalLake::open(dir.path(), "c", true).expect("open");
    fs::create_dir_all(dir.path().join("c/changes/.tmp")).expect("hidden folder");
    fs::create_dir_all(dir.path().join("c/changes/not a segment")).expect("foreign folder");
    folders_contract(&lake).await;
    assert!(
        dir.path().join("c/.tmp").is_dir(),
        "the lake's own staging is left out"
    );
}

#[tokio::test]
async fn local_spooled_files_on_the_lake_file_system_are_linked_not_copied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = LocalLake::open(&dir.path().join("lake"), "c", true).expect("open");
    let spool_dir = dir.path().join("spool");
    fs::create_dir(&spool_dir).expect("spool dir");

    let [part, _] = spooled_contract(&lake, &spool_dir).await;

    use std::os::unix::fs::MetadataExt;
    let stored = fs::metadata(part.under(&dir.path().join("lake/c"))).expect("stored");
    let spooled = fs::metadata(spool_dir.join("part-a")).expect("spooled");
    assert_eq!(stored.ino(), spooled.ino(), "the same file, no copy");
    assert_eq!(
        stored.mode() & 0o777,
        0o644,
        "readable as the lake's other files"
    );
    fs::remove_file(spool_dir.join("part-a")).expect("the caller removes its file");
    assert_eq!(
        lake.read(&part).await.expect("still there").len() as u64,
        MULTI_CHUNK
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn local_spooled_files_from_another_file_system_are_copied_in_place() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let lake = LocalLake::open(dir.path(), "c", true).expect("open");
    // tmpfs: another file system than the target directory's on any Linux machine.
    let spool_dir = tempfile::tempdir_in("/dev/shm").expect("a folder on /dev/shm");
    let lake_device = fs::metadata(dir.path()).expect("lake").dev();
    let spool_device = fs::metadata(spool_dir.path()).expect("spool").dev();
    assert_ne!(lake_device, spool_device, "the test needs two file systems");

    let [part, _] = spooled_contract(&lake, spool_dir.path()).await;

    let stored = fs::metadata(part.under(&dir.path().join("c"))).expect("stored");
    assert_eq!(stored.dev(), lake_device);
    assert_eq!(stored.nlink(), 1, "a copy of its own");
    let leftovers = fs::read_dir(dir.path().join("c/.tmp"))
        .expect("tmp")
        .count();
    assert_eq!(leftovers, 0, "no staged copy is left behind");
}

#[tokio::test]
async fn adls_folders_are_one_level_without_files_or_hidden_folders() {
    let (server, sink) = adls().await;
    server.create_dir(FILESYSTEM, "changes/with space");
    folders_contract(&sink).await;
    assert_eq!(
        server.kind(FILESYSTEM, "changes/_tmp"),
        Some(dfs_test_server::PathKind::Directory),
        "the sink's staging folder exists, and was left out"
    );
}

#[tokio::test]
async fn adls_folders_past_one_page_through_faults() {
    let (server, sink) = adls().await;
    for n in 0..5100 {
        server.create_dir(FILESYSTEM, &format!("changes/many/f{n:05}"));
    }
    server.put_file(FILESYSTEM, "changes/many/a-file.json", "{}");
    server.faults().push(FaultRule {
        skip: 1,
        ..FaultRule::new(OpKind::ListPaths, busy()).times(1)
    });
    let found = folder_names(&sink, "changes/many").await;
    assert_eq!(found.len(), 5100);
    assert!(found.contains("f00000") && found.contains("f05099"));
    assert_eq!(
        server.stats().op(OpKind::ListPaths),
        3,
        "two pages, one asked twice"
    );
}

/// The requests on temporary files, in order, with their `position`.
fn temporary_file_requests(server: &DfsServer) -> Vec<(OpKind, Option<u64>)> {
    server
        .requests()
        .into_iter()
        .filter(|request| {
            request.uri.contains("/_tmp/")
                || request
                    .header("x-ms-rename-source")
                    .is_some_and(|source| source.contains("_tmp"))
        })
        .map(|request| {
            let position = request
                .uri
                .split(['?', '&'])
                .find_map(|pair| pair.strip_prefix("position="))
                .map(|value| value.parse().expect("a number"));
            (request.op, position)
        })
        .collect()
}

#[tokio::test]
async fn adls_spooled_files_keep_the_contract() {
    let (server, sink) = adls().await;
    let spool_dir = tempfile::tempdir().expect("temp dir");
    spooled_contract(&sink, spool_dir.path()).await;
    let temporary: Vec<String> = server
        .files(FILESYSTEM)
        .into_iter()
        .map(|entry| entry.path)
        .filter(|path| path.contains("/_tmp/"))
        .collect();
    assert!(temporary.is_empty(), "{temporary:?}");
}

#[tokio::test]
async fn adls_spooled_file_goes_up_in_chunks_and_a_refused_append_is_sent_again() {
    let (server, sink) = adls_from(DfsServer::builder().record_requests()).await;
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let (spooled, contents) = spool(spool_dir.path(), "part", MULTI_CHUNK, 7);
    let part = lake_path("changes-hourly/db/coll/events-20240616-10.jsonl");
    server
        .faults()
        .push(FaultRule::new(OpKind::Append, busy()).after(1));

    let stored = sink.store_spooled(&part, &spooled).await.expect("stored");

    assert_eq!(stored, Stored::Written);
    let read = server.read(FILESYSTEM, &part.to_string()).expect("stored");
    assert!(same_bytes(&read, &contents));
    assert_eq!(server.stats().faults_fired, 1);
    // One create, the appends at 0, one chunk (refused), one chunk again, two chunks; one
    // flush at the full length; one rename. Nothing is sent twice but the refused append.
    assert_eq!(
        temporary_file_requests(&server),
        [
            (OpKind::CreateFile, None),
            (OpKind::Append, Some(0)),
            (OpKind::Append, Some(APPEND_CHUNK)),
            (OpKind::Append, Some(APPEND_CHUNK)),
            (OpKind::Append, Some(2 * APPEND_CHUNK)),
            (OpKind::Flush, Some(MULTI_CHUNK)),
            (OpKind::Rename, None),
        ]
    );
}

#[tokio::test]
async fn adls_spooled_file_is_exact_after_lost_answers_and_a_slow_append() {
    let (server, sink) = adls().await;
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let (spooled, contents) = spool(spool_dir.path(), "part", MULTI_CHUNK, 9);
    let part = lake_path("changes-hourly/db/coll/events-20240616-10.jsonl");
    let faults = server.faults();
    // The first append is applied and its answer lost; the next new chunk answers after
    // the request timeout (2 s) and is applied late, beside its retry; the flush and the
    // rename are applied with their answers lost.
    faults.push(FaultRule::new(OpKind::Append, FaultAction::ApplyThenDrop));
    faults
        .push(FaultRule::new(OpKind::Append, FaultAction::Delay(Duration::from_secs(3))).after(1));
    faults.push(FaultRule::new(OpKind::Flush, FaultAction::ApplyThenDrop));
    faults.push(FaultRule::new(OpKind::Rename, FaultAction::ApplyThenDrop));

    let stored = sink.store_spooled(&part, &spooled).await.expect("stored");

    assert_eq!(stored, Stored::Written, "the lost rename is found in place");
    assert_eq!(server.stats().faults_fired, 4, "{:?}", server.stats());
    // Let the late append land, then look: still exact.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read = server.read(FILESYSTEM, &part.to_string()).expect("stored");
    assert!(same_bytes(&read, &contents), "{} bytes", read.len());
    assert_eq!(server.files(FILESYSTEM).len(), 1, "no temporary file left");
}
