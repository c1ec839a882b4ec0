//! The S3 sink against a real S3-compatible server (moto's server mode, started and
//! stopped here), with a loopback proxy for the faults moto cannot make: write-once
//! under retries and lost answers, listing, reading, deleting, large spooled files, the
//! handler process end to end, a compaction pass, and a clear fail-fast error.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use mongo_lake_ingest::domain::{LakePath, Segment};
use mongo_lake_ingest::sink::{LakeFile, S3Sink, Sink, Stored, SINGLE_PUT_MAX};
use support::handler::{numbered_batch, run, Handler};
use support::moto::{settings, FaultProxy, Moto, PutFault};

fn path(text: &str) -> LakePath {
    LakePath::new(
        text.split('/')
            .map(|s| Segment::literal(s).expect("segment"))
            .collect(),
    )
    .expect("path")
}

fn segments(text: &str) -> Vec<Segment> {
    text.split('/')
        .map(|s| Segment::literal(s).expect("segment"))
        .collect()
}

fn file(text: &str, contents: &[u8]) -> LakeFile {
    LakeFile {
        path: path(text),
        contents: contents.to_vec(),
    }
}

async fn moto_with(bucket: &str) -> Moto {
    let moto = Moto::start().await;
    moto.bucket(bucket).await;
    moto
}

#[tokio::test]
async fn a_conditional_put_writes_once_and_reports_a_second_write_as_present() {
    let moto = moto_with("once").await;
    let sink = S3Sink::new(&settings(&moto.endpoint, "once")).expect("client");
    let first = sink.store_one(file("changes/a/1.json", b"first")).await;
    assert_eq!(first.expect("stored"), Stored::Written);
    // moto honours If-None-Match: * on PutObject: the second write changes nothing.
    let second = sink.store_one(file("changes/a/1.json", b"other")).await;
    assert_eq!(second.expect("present"), Stored::AlreadyPresent);
    assert_eq!(
        moto.object("once", "changes/a/1.json").await.as_deref(),
        Some(&b"first"[..])
    );
}

#[tokio::test]
async fn keys_are_the_lake_paths_as_they_stand_escapes_included() {
    let moto = moto_with("keys").await;
    let sink = S3Sink::new(&settings(&moto.endpoint, "keys")).expect("client");
    let name = Segment::encode("a/b c%.json");
    assert!(name.as_str().contains('~'), "{name}");
    let lake_path =
        LakePath::new(vec![Segment::literal("changes").expect("segment"), name]).expect("path");
    let key = lake_path.to_string();
    let stored = sink
        .store_one(LakeFile {
            path: lake_path.clone(),
            contents: b"escaped".to_vec(),
        })
        .await;
    assert_eq!(stored.expect("stored"), Stored::Written);
    assert_eq!(
        moto.object("keys", &key).await.as_deref(),
        Some(&b"escaped"[..])
    );
    let listed: Vec<_> = sink.list(&[]).try_collect().await.expect("list");
    assert_eq!(listed.concat()[0].path, lake_path);
}

#[tokio::test]
async fn a_lost_answer_is_resolved_by_head_and_the_file_is_put_once() {
    let moto = moto_with("lost").await;
    let proxy = FaultProxy::start(&moto.endpoint, PutFault::LoseAnswer, 1).await;
    let sink = S3Sink::new(&settings(&proxy.endpoint, "lost")).expect("client");
    let stored = sink.store_one(file("changes/a/2.json", b"payload")).await;
    assert_eq!(stored.expect("stored"), Stored::Written);
    assert_eq!(proxy.puts(), 1, "HEAD found the file: no second put");
    assert_eq!(
        moto.object("lost", "changes/a/2.json").await.as_deref(),
        Some(&b"payload"[..])
    );
}

/// A lost answer over another writer's object of the same length (a compaction claim a
/// rival pass took): the object is read back, its bytes differ, so `AlreadyPresent`, never
/// `Written`, and the rival's object stays.
#[tokio::test]
async fn a_lost_answer_over_another_writers_object_is_already_present() {
    let moto = moto_with("rival").await;
    let direct = S3Sink::new(&settings(&moto.endpoint, "rival")).expect("client");
    let rival = file("claims/part-2", b"rival's");
    assert_eq!(
        direct.store_one(rival).await.expect("stored"),
        Stored::Written
    );
    let proxy = FaultProxy::start(&moto.endpoint, PutFault::LoseAnswer, 1).await;
    let sink = S3Sink::new(&settings(&proxy.endpoint, "rival")).expect("client");
    let stored = sink.store_one(file("claims/part-2", b"my claim")).await;
    assert_eq!(stored.expect("settled"), Stored::AlreadyPresent);
    assert_eq!(
        moto.object("rival", "claims/part-2").await.as_deref(),
        Some(&b"rival's"[..])
    );
}

#[tokio::test]
async fn busy_answers_are_retried_until_the_file_is_stored() {
    let moto = moto_with("busy").await;
    let proxy = FaultProxy::start(&moto.endpoint, PutFault::Busy, 2).await;
    let sink = S3Sink::new(&settings(&proxy.endpoint, "busy")).expect("client");
    let (stored, retries) =
        mongo_lake_ingest::sink::counting_retries(sink.store_one(file("c/3.json", b"x"))).await;
    assert_eq!(stored.expect("stored"), Stored::Written);
    assert_eq!(retries, 2);
    assert_eq!(proxy.puts(), 3);
    assert_eq!(
        moto.object("busy", "c/3.json").await.as_deref(),
        Some(&b"x"[..])
    );
}

#[tokio::test]
async fn listing_reading_deleting_and_folders_see_the_lake_under_the_prefix() {
    let moto = moto_with("files").await;
    let mut s3 = settings(&moto.endpoint, "files");
    s3.prefix = vec![Segment::literal("team").expect("segment")];
    let sink = S3Sink::new(&s3).expect("client");
    let files: Vec<LakeFile> = (0..1_005)
        .map(|n| file(&format!("changes/d/c{}/{n}.json", n % 2), b"{}"))
        .collect();
    for result in sink.store_all(files).await {
        assert_eq!(result.expect("stored"), Stored::Written);
    }
    let pages: Vec<_> = sink
        .list(&[Segment::literal("changes").expect("segment")])
        .try_collect()
        .await
        .expect("list");
    assert!(pages.len() >= 2, "more than one page of 1,000");
    assert_eq!(pages.iter().map(Vec::len).sum::<usize>(), 1_005);
    let mut folders = sink
        .folders(&[
            Segment::literal("changes").expect("segment"),
            Segment::literal("d").expect("segment"),
        ])
        .await
        .expect("folders");
    folders.sort();
    assert_eq!(
        folders,
        ["c0", "c1"].map(|s| Segment::literal(s).expect("segment"))
    );
    let one = path("changes/d/c1/7.json");
    assert_eq!(&sink.read(&one).await.expect("read")[..], b"{}");
    assert!(moto
        .object("files", "team/changes/d/c1/7.json")
        .await
        .is_some());
    sink.delete(&one).await.expect("delete");
    sink.delete(&one).await.expect("deleting twice is fine");
    assert!(matches!(
        sink.read(&one).await,
        Err(mongo_lake_ingest::sink::SinkError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_large_spooled_file_is_published_whole_once_and_its_upload_is_hidden() {
    let moto = moto_with("large").await;
    let sink = S3Sink::new(&settings(&moto.endpoint, "large")).expect("client");
    let dir = tempfile::tempdir().expect("dir");
    let spooled = dir.path().join("part.jsonl");
    let size = usize::try_from(SINGLE_PUT_MAX).expect("size") + 3 * 1024 * 1024 + 17;
    let contents: Vec<u8> = (0..size).map(|n| (n % 251) as u8).collect();
    std::fs::write(&spooled, &contents).expect("spool");
    let target = path("hourly/d/c/part-1.jsonl");
    assert_eq!(
        sink.store_spooled(&target, &spooled).await.expect("stored"),
        Stored::Written
    );
    assert_eq!(sink.read(&target).await.expect("read").len(), size);
    assert_eq!(&sink.read(&target).await.expect("read")[..], &contents[..]);
    // Another large file for the same path: the conditional completion refuses it.
    let other: Vec<u8> = contents.iter().rev().copied().collect();
    std::fs::write(&spooled, &other).expect("spool");
    let again = sink.store_spooled(&target, &spooled).await.expect("again");
    assert_eq!(again, Stored::AlreadyPresent);
    assert_eq!(&sink.read(&target).await.expect("read")[..], &contents[..]);
    let everything: Vec<_> = sink.list(&[]).try_collect().await.expect("list");
    let names: Vec<String> = everything
        .concat()
        .iter()
        .map(|l| l.path.to_string())
        .collect();
    assert_eq!(
        names,
        ["hourly/d/c/part-1.jsonl"],
        "no temporary upload is listed"
    );
}

/// A large file's third part answered 503 once: that part is sent again under its own
/// number, not the whole file, and the file is published whole.
#[tokio::test]
async fn a_failed_part_of_a_large_file_is_sent_again_alone() {
    let moto = moto_with("parts").await;
    let proxy = FaultProxy::start_after(&moto.endpoint, PutFault::Busy, 2, 1).await;
    let sink = S3Sink::new(&settings(&proxy.endpoint, "parts")).expect("client");
    let dir = tempfile::tempdir().expect("dir");
    let spooled = dir.path().join("part.jsonl");
    // Three 8 MiB parts and a short fourth.
    let size = 3 * 8 * 1024 * 1024 + 4096;
    let contents: Vec<u8> = (0..size).map(|n| (n % 241) as u8).collect();
    std::fs::write(&spooled, &contents).expect("spool");
    let target = path("hourly/d/c/part-1.jsonl");
    let (stored, retries) =
        mongo_lake_ingest::sink::counting_retries(sink.store_spooled(&target, &spooled)).await;
    assert_eq!(stored.expect("stored"), Stored::Written);
    assert_eq!(retries, 1);
    // Four parts, the third twice, and the copy that publishes: six PUTs.
    assert_eq!(proxy.puts(), 6);
    assert_eq!(&sink.read(&target).await.expect("read")[..], &contents[..]);
}

#[tokio::test]
async fn a_missing_bucket_fails_fast_and_names_the_setting() {
    let moto = Moto::start().await;
    let sink = S3Sink::new(&settings(&moto.endpoint, "no-such-bucket")).expect("client");
    let started = std::time::Instant::now();
    let error = sink.probe().await.expect_err("no bucket");
    assert!(!error.is_retryable(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("NoSuchBucket") && text.contains("S3_BUCKET"),
        "{text}"
    );
    let stored = sink.store_one(file("c/1.json", b"x")).await;
    let error = stored.expect_err("no bucket");
    assert!(!error.is_retryable(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "no retries for a missing bucket"
    );
}

#[tokio::test]
async fn a_refused_key_fails_the_request_at_once_and_the_log_says_which_setting() {
    let moto = Moto::start_checking_keys().await;
    let mut env = s3_env(&moto.endpoint, "lake");
    env.push(("STORAGE_RETRY_BUDGET_SECS", "120"));
    let handler = Handler::start_in(tempfile::tempdir().expect("dir").path(), &env);
    let started = std::time::Instant::now();
    let answer = handler.post_json(support::sample("insert.json")).await;
    assert_eq!(answer.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "not retried for the whole 120 s budget: {:?}",
        started.elapsed()
    );
    handler.terminate();
    let (_, log) = handler.wait();
    let failure = support::handler::storage_failure(&log);
    assert!(
        failure.contains("InvalidAccessKeyId") && failure.contains("AWS_ACCESS_KEY_ID"),
        "{failure}"
    );
    let log = log.join("\n");
    assert!(!log.contains("testing-secret"), "no secret in the log");
}

/// The handler's environment for S3 at `endpoint`.
fn s3_env<'a>(endpoint: &'a str, bucket: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("S3_BUCKET", bucket),
        ("S3_ENDPOINT", endpoint),
        ("S3_PATH_STYLE", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
    ]
}

#[tokio::test]
async fn the_handler_writes_the_same_keys_and_bytes_to_s3_as_to_the_local_lake() {
    let moto = moto_with("handler").await;
    let batch = numbered_batch(20, r#"{"n":{"$numberInt":"1"},"s":"text"}"#);
    let on_s3 = Handler::start_in(
        tempfile::tempdir().expect("dir").path(),
        &s3_env(&moto.endpoint, "handler"),
    );
    assert!(
        on_s3.ready.to_string().contains("s3://handler"),
        "{}",
        on_s3.ready
    );
    let answer = on_s3.post_json(batch.clone()).await;
    assert_eq!(answer.status(), 200);
    let lake = tempfile::tempdir().expect("lake");
    let local = Handler::start(lake.path(), &[]);
    assert_eq!(local.post_json(batch).await.status(), 200);
    let container = lake.path().join("mongodb");
    let local_files = support::handler::count_files(&container);
    assert!(local_files >= 20, "20 change files and their markers");
    let mut compared = 0;
    for entry in walk(&container) {
        let key = entry
            .strip_prefix(&container)
            .expect("inside")
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&entry).expect("local file");
        assert_eq!(
            moto.object("handler", &key).await.as_deref(),
            Some(&bytes[..]),
            "{key}"
        );
        compared += 1;
    }
    assert_eq!(compared, local_files);
    let sink = S3Sink::new(&settings(&moto.endpoint, "handler")).expect("client");
    let objects: Vec<_> = sink.list(&[]).try_collect().await.expect("list");
    assert_eq!(objects.concat().len(), local_files, "nothing more on S3");
    on_s3.terminate();
    local.terminate();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A store that ignores `If-None-Match` (here moto behind a proxy that drops the header)
/// keeps change files right (their bytes are fixed per event) but would let two passes
/// own one claim: the compaction pass checks first and refuses, naming the setting.
// Two workers: the command below blocks one while the proxy runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_refuses_a_store_that_ignores_if_none_match() {
    let moto = moto_with("unconditional").await;
    let proxy = FaultProxy::start(&moto.endpoint, PutFault::IgnoreCondition, usize::MAX).await;
    let env = s3_env(&proxy.endpoint, "unconditional");
    let output = run(&["compact"], &env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("If-None-Match") && stderr.contains("S3_ENDPOINT"),
        "{stderr}"
    );
    // Through moto itself the same pass runs.
    let direct = run(&["compact"], &s3_env(&moto.endpoint, "unconditional"));
    assert!(
        direct.status.success(),
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
}

#[tokio::test]
async fn a_compaction_pass_runs_on_s3() {
    let moto = moto_with("compact").await;
    let env = s3_env(&moto.endpoint, "compact");
    let handler = Handler::start_in(tempfile::tempdir().expect("dir").path(), &env);
    let batch = numbered_batch(30, r#"{"v":{"$numberInt":"2"}}"#);
    assert_eq!(handler.post_json(batch).await.status(), 200);
    handler.terminate();
    let output = run(&["compact"], &env);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let s3 = settings(&moto.endpoint, "compact");
    let sink: Arc<dyn Sink> = Arc::new(S3Sink::new(&s3).expect("client"));
    let hourly: Vec<_> = sink
        .list(&[Segment::literal("changes-hourly").expect("segment")])
        .try_collect()
        .await
        .expect("list");
    let parts: Vec<String> = hourly
        .concat()
        .iter()
        .map(|listed| listed.path.to_string())
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    assert!(!parts.is_empty(), "no hourly part: {hourly:?}");
    let mut lines = 0;
    for part in &parts {
        let bytes = sink.read(&path(part)).await.expect("part");
        lines += std::str::from_utf8(&bytes).expect("UTF-8").lines().count();
    }
    assert_eq!(lines, 30, "every record in exactly one part");
}

/// The AWS route's image (no docker here): every file the Dockerfile copies from the
/// repository exists, its Rust is at least the crate's `rust-version`, and it builds and
/// starts the binary Cargo names.
#[test]
fn the_dockerfile_copies_files_that_exist_and_runs_the_handler() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let mut copied = 0;
    for line in dockerfile.lines().filter(|line| line.starts_with("COPY ")) {
        if line.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(root.join(source).exists(), "{line}: {source} is missing");
            copied += 1;
        }
    }
    assert!(copied >= 5, "the build stage copies the workspace");
    let image = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("FROM rust:"))
        .expect("a rust build stage");
    let version = image.split(['-', ' ']).next().expect("version");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let wanted = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    let parse = |text: &str| -> Vec<u32> {
        text.split('.')
            .map(|n| n.parse().expect("number"))
            .collect()
    };
    assert!(parse(version) >= parse(wanted), "rust:{version} < {wanted}");
    assert!(dockerfile.contains("cargo build --release --locked --bin handler"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/handler\"]"));
    assert!(dockerfile.contains("AWS_LWA_READINESS_CHECK_PATH=/health"));
}

#[tokio::test]
async fn the_mirror_keeps_its_state_on_s3_and_a_second_pass_adds_nothing() {
    let moto = moto_with("mirror").await;
    let landing = tempfile::tempdir().expect("landing");
    let landing_text = landing.path().display().to_string();
    let mut env = s3_env(&moto.endpoint, "mirror");
    env.push(("MIRROR_LOCAL_DIR", &landing_text));
    let handler = Handler::start_in(tempfile::tempdir().expect("dir").path(), &env);
    let batch = numbered_batch(12, r#"{"v":{"$numberInt":"3"}}"#);
    assert_eq!(handler.post_json(batch).await.status(), 200);
    handler.terminate();
    let data_files = || {
        walk(landing.path())
            .into_iter()
            .filter(|file| file.extension().is_some_and(|ext| ext == "parquet"))
            .count()
    };
    for pass in 0..2 {
        let output = run(&["mirror"], &env);
        assert!(
            output.status.success(),
            "pass {pass}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(data_files(), 1, "pass {pass}: one data file for 12 changes");
    }
    let sink = S3Sink::new(&settings(&moto.endpoint, "mirror")).expect("client");
    let state: Vec<_> = sink
        .list(&segments("changes-hourly/_mirror/tables/corpus/docs"))
        .try_collect()
        .await
        .expect("list");
    let mut names: Vec<String> = state
        .concat()
        .iter()
        .map(|listed| listed.path.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "changes-hourly/_mirror/tables/corpus/docs/claims/00000000000000000001",
            "changes-hourly/_mirror/tables/corpus/docs/log/2023111422/00000000000000000001",
            "changes-hourly/_mirror/tables/corpus/docs/published/00000000000000000001",
        ],
        "the mirror's claim, log and published marker are on S3, once"
    );
}
