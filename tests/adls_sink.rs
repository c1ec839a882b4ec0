//! The ADLS Gen2 sink against a protocol-faithful DFS server on loopback (Shared Key, SAS
//! and bearer tokens verified for real), with injected faults: what users rely on is that
//! every acknowledged file is complete at its final path exactly once, and nothing partial
//! is ever visible there. Most tests run the DFS protocol (they break its create, append and
//! rename); refusals and a missing filesystem run both protocols (Put Blob: tests/adls_blob.rs).

use std::time::{Duration, Instant};

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind};
use mongo_lake_ingest::configuration::{AdlsSettings, Credential, Secret};
use mongo_lake_ingest::sink::{LakeFile, Sink, SinkError, Stored};

mod support;

use support::adls::{
    bearer_server, bearer_sink, blob_settings, file, key, rival_in_place,
    server_with_container as server, settings, sink, wrong_key, FILESYSTEM,
};

/// Every file outside the hidden temporary folder.
fn final_files(server: &DfsServer) -> Vec<(String, u64)> {
    server
        .files(FILESYSTEM)
        .into_iter()
        .filter(|entry| !entry.path.contains("/_tmp/"))
        .map(|entry| (entry.path, entry.len))
        .collect()
}

/// Each file is at its path, complete and byte-identical, and nothing else is outside `_tmp`.
fn assert_exactly(server: &DfsServer, files: &[LakeFile]) {
    for file in files {
        let stored = server
            .read(FILESYSTEM, &file.path.to_string())
            .unwrap_or_else(|| panic!("{} is missing", file.path));
        assert_eq!(stored.as_ref(), file.contents.as_slice(), "{}", file.path);
    }
    assert_eq!(
        final_files(server).len(),
        files.len(),
        "{:?}",
        final_files(server)
    );
}

fn written(results: &[Result<Stored, SinkError>]) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, Ok(Stored::Written)))
        .count()
}

#[tokio::test]
async fn every_auth_mode_writes_complete_files() {
    // Shared Key.
    let server = server().await;
    let files: Vec<LakeFile> = (0..5).map(|n| file("key", n)).collect();
    let results = sink(&settings(&server, key()))
        .store_all(files.clone())
        .await;
    assert_eq!(written(&results), 5, "{results:?}");
    assert_exactly(&server, &files);

    // An account SAS made with the account key (the server checks its signature).
    let sas = server.account_sas("racwdl");
    let files: Vec<LakeFile> = (0..5).map(|n| file("sas", n)).collect();
    let results = sink(&settings(&server, Credential::Sas(Secret::new(sas))))
        .store_all(files.clone())
        .await;
    assert_eq!(written(&results), 5, "{results:?}");
    for file in &files {
        assert_eq!(
            server.read(FILESYSTEM, &file.path.to_string()).as_deref(),
            Some(file.contents.as_slice())
        );
    }

    // A bearer token, as Microsoft Entra ID gives.
    let server = bearer_server("entra-token", true).await;
    let bearer = bearer_sink(&settings(&server, Credential::EntraId), "entra-token");
    let files: Vec<LakeFile> = (0..5).map(|n| file("bearer", n)).collect();
    let results = bearer.store_all(files.clone()).await;
    assert_eq!(written(&results), 5, "{results:?}");
    assert_exactly(&server, &files);
}

#[tokio::test]
async fn redelivery_leaves_one_identical_file() {
    let server = server().await;
    let sink = sink(&settings(&server, key()));
    let files: Vec<LakeFile> = (0..3).map(|n| file("again", n)).collect();
    assert_eq!(written(&sink.store_all(files.clone()).await), 3);
    let again = sink.store_all(files.clone()).await;
    assert!(
        again
            .iter()
            .all(|r| matches!(r, Ok(Stored::AlreadyPresent))),
        "{again:?}"
    );
    assert_exactly(&server, &files);

    // Concurrent duplicate deliveries of one event: exactly one of them writes.
    let one = file("dup", 7);
    let sinks: Vec<_> = (0..8).map(|_| sink.clone()).collect();
    let results =
        futures_util::future::join_all(sinks.iter().map(|s| s.store_all(vec![one.clone()]))).await;
    let results: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(written(&results), 1, "{results:?}");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        server.read(FILESYSTEM, &one.path.to_string()).as_deref(),
        Some(one.contents.as_slice())
    );
}

#[tokio::test]
async fn injected_faults_on_every_step_leave_exactly_one_complete_file() {
    let actions = [
        FaultAction::server_busy(),
        FaultAction::internal_error(),
        FaultAction::too_many_requests(),
        FaultAction::Drop,
        FaultAction::ApplyThenDrop,
        FaultAction::Delay(Duration::from_secs(3)), // longer than the request timeout
    ];
    let ops = [
        OpKind::CreateDirectory,
        OpKind::CreateFile,
        OpKind::Append,
        OpKind::Rename,
    ];
    let server = server().await;
    let sink = sink(&settings(&server, key()));
    let mut all = Vec::new();
    for (a, action) in actions.iter().enumerate() {
        for (o, op) in ops.iter().enumerate() {
            server.faults().clear();
            // Two faults in a row on this step, for the files of this round.
            server
                .faults()
                .push(FaultRule::new(*op, action.clone()).times(2));
            let files: Vec<LakeFile> = (0..4).map(|n| file(&format!("f{a}-{o}"), n)).collect();
            let results = sink.store_all(files.clone()).await;
            assert!(
                results.iter().all(|r| matches!(r, Ok(Stored::Written))),
                "{action:?} on {op:?}: {results:?}"
            );
            all.extend(files);
            // Never anything partial at a final path, at any point.
            assert_exactly(&server, &all);
        }
    }
}

#[tokio::test]
async fn a_lost_rename_answer_is_checked_not_repeated_blindly() {
    let server = server().await;
    let sink = sink(&settings(&server, key()));
    server
        .faults()
        .push(FaultRule::new(OpKind::Rename, FaultAction::ApplyThenDrop).times(1));
    let files = vec![file("lost", 1)];
    let results = sink.store_all(files.clone()).await;
    assert!(matches!(results[0], Ok(Stored::Written)), "{results:?}");
    assert_exactly(&server, &files);
    let stats = server.stats();
    assert!(
        stats.op(OpKind::GetProperties) >= 1,
        "the final path was looked at: {stats:?}"
    );
    assert_eq!(
        stats.op(OpKind::Rename),
        1,
        "no second rename was needed: {stats:?}"
    );
}

/// A lost rename answer with another writer's file of the same length in place (a
/// compaction claim a rival pass took): the temporary file is still there, so the rename
/// did not happen: `AlreadyPresent`, never `Written`, and the rival's file stays.
#[tokio::test]
async fn a_lost_rename_answer_over_another_writers_file_is_already_present() {
    let server = server().await;
    let sink = sink(&settings(&server, key()));
    let mine = file("claims", 1);
    let rival = rival_in_place(&server, &mine, OpKind::Rename);
    let results = sink.store_all(vec![mine]).await;
    assert!(
        matches!(results[0], Ok(Stored::AlreadyPresent)),
        "{results:?}"
    );
    assert_exactly(&server, &[rival]);
}

#[tokio::test]
async fn a_writer_that_dies_between_flush_and_rename_leaves_nothing_at_the_final_path() {
    let server = server().await;
    let sink = sink(&settings(&server, key()));
    let files = vec![file("died", 1)];
    // The rename hangs; the writer is killed meanwhile (its task aborted, as a process
    // dies), after the temporary file was flushed.
    server
        .faults()
        .push(FaultRule::new(OpKind::Rename, FaultAction::Delay(Duration::from_secs(30))).times(1));
    let writer = tokio::spawn({
        let (sink, files) = (sink.clone(), files.clone());
        async move { sink.store_all(files).await }
    });
    let started = Instant::now();
    while server.stats().op(OpKind::Rename) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the rename was never sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.abort();
    assert!(
        final_files(&server).is_empty(),
        "{:?}",
        final_files(&server)
    );
    let staged = server.files(FILESYSTEM);
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(
        staged[0].path.starts_with("changes/_tmp/")
            && staged[0].len == files[0].contents.len() as u64
    );

    // The sender retries: exactly one complete file.
    let results = sink.store_all(files.clone()).await;
    assert_eq!(written(&results), 1, "{results:?}");
    assert_exactly(&server, &files);
}

#[tokio::test]
async fn a_storage_crash_as_the_rename_lands_leaves_one_complete_file() {
    let server = server().await;
    let mut settings = settings(&server, key());
    settings.retry_budget = Duration::from_millis(500);
    let sink = sink(&settings);
    // The rename is applied, then the service goes dark (every connection closed).
    server
        .faults()
        .push(FaultRule::new(OpKind::Rename, FaultAction::Crash).times(1));
    let files = vec![file("storage-crash", 1)];
    let results = sink.store_all(files.clone()).await;
    assert!(
        results[0].is_err(),
        "no answer, so not acknowledged: {results:?}"
    );
    server.recover();
    let results = sink.store_all(files.clone()).await;
    assert!(
        matches!(results[0], Ok(Stored::AlreadyPresent)),
        "the renamed file is found: {results:?}"
    );
    assert_exactly(&server, &files);
}

#[tokio::test]
async fn renames_failing_until_the_budget_ends_leave_nothing_at_the_final_path() {
    let server = server().await;
    let mut settings = settings(&server, key());
    settings.retry_budget = Duration::from_secs(1);
    let sink = sink(&settings);
    // Every rename is refused (503); the files are complete, but only under temporary names.
    server.faults().push(
        FaultRule::new(
            OpKind::Rename,
            FaultAction::Respond {
                status: 503,
                code: "ServerBusy".into(),
                message: "down".into(),
            },
        )
        .always(),
    );
    let files = vec![file("crash", 1), file("crash", 2)];
    let results = sink.store_all(files.clone()).await;
    assert!(results.iter().all(Result::is_err), "{results:?}");
    assert!(
        final_files(&server).is_empty(),
        "{:?}",
        final_files(&server)
    );
    // The complete contents exist only under hidden temporary names.
    assert!(server
        .files(FILESYSTEM)
        .iter()
        .all(|entry| entry.path.starts_with("changes/_tmp/")));

    // The sender retries once storage is back: one complete file each.
    server.faults().clear();
    let results = sink.store_all(files.clone()).await;
    assert_eq!(written(&results), 2, "{results:?}");
    assert_exactly(&server, &files);
}

#[tokio::test]
async fn a_server_crash_mid_write_fails_the_request_and_a_retry_completes_it() {
    let server = server().await;
    let mut settings = settings(&server, key());
    settings.retry_budget = Duration::from_millis(800);
    let sink = sink(&settings);
    server
        .faults()
        .push(FaultRule::new(OpKind::Append, FaultAction::Crash).times(1));
    let files: Vec<LakeFile> = (0..3).map(|n| file("dead", n)).collect();
    let results = sink.store_all(files.clone()).await;
    assert!(results.iter().any(Result::is_err), "{results:?}");
    assert!(
        final_files(&server).iter().all(|(path, len)| {
            let expected = files.iter().find(|f| f.path.to_string() == *path);
            expected.is_some_and(|f| f.contents.len() as u64 == *len)
        }),
        "only complete files at final paths: {:?}",
        final_files(&server)
    );
    server.recover();
    let results = sink.store_all(files.clone()).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_exactly(&server, &files);
}

/// Both write protocols: `dfs` (create, append, rename) and `blob` (one Put Blob).
const PROTOCOLS: [fn(&DfsServer, Credential) -> AdlsSettings; 2] = [settings, blob_settings];

#[tokio::test]
async fn auth_failures_fail_fast_and_say_what_to_fix() {
    for protocol in PROTOCOLS {
        let server = server().await;
        let started = Instant::now();
        let results = sink(&protocol(&server, wrong_key()))
            .store_all(vec![file("auth", 1)])
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no retries on 403 (the budget is 10 s)"
        );
        let error = results[0].as_ref().expect_err("refused");
        assert!(!error.is_retryable());
        let error = error.to_string();
        assert!(
            error.contains("403") && error.contains("storage_account_key"),
            "{error}"
        );

        // A SAS that may read and list but not write.
        let read_only = Credential::Sas(Secret::new(server.account_sas("rl")));
        let results = sink(&protocol(&server, read_only))
            .store_all(vec![file("auth", 2)])
            .await;
        let error = results[0].as_ref().expect_err("refused").to_string();
        assert!(error.contains("sp=racwdl"), "{error}");

        let server = bearer_server("no-role", false).await;
        let results = bearer_sink(&protocol(&server, Credential::EntraId), "no-role")
            .store_all(vec![file("auth", 3)])
            .await;
        let error = results[0].as_ref().expect_err("refused").to_string();
        assert!(error.contains("Storage Blob Data Contributor"), "{error}");
        assert!(server.files(FILESYSTEM).is_empty());
    }
}

#[tokio::test]
async fn a_missing_filesystem_is_an_error_unless_creating_it_is_allowed() {
    for protocol in PROTOCOLS {
        let server = DfsServer::builder().start().await.expect("starts");
        let results = sink(&protocol(&server, key()))
            .store_all(vec![file("fs", 1)])
            .await;
        let error = results[0].as_ref().expect_err("no filesystem").to_string();
        assert!(error.contains("STORAGE_CREATE_FILESYSTEM"), "{error}");

        let mut settings = protocol(&server, key());
        settings.create_filesystem = true;
        let files = vec![file("fs", 1)];
        let results = sink(&settings).store_all(files.clone()).await;
        assert_eq!(written(&results), 1, "{results:?}");
        assert_exactly(&server, &files);
    }
}

#[tokio::test]
async fn persistent_failures_end_within_the_retry_budget() {
    let server = server().await;
    let mut settings = settings(&server, key());
    settings.retry_budget = Duration::from_secs(1);
    server
        .faults()
        .push(FaultRule::new(OpKind::CreateFile, FaultAction::server_busy()).always());
    let started = Instant::now();
    let results = sink(&settings).store_all(vec![file("busy", 1)]).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let error = results[0].as_ref().expect_err("gave up").to_string();
    assert!(error.contains("503"), "{error}");
    assert!(server.stats().op(OpKind::CreateFile) > 2, "it did retry");
    assert!(
        final_files(&server).is_empty(),
        "{:?}",
        final_files(&server)
    );
}

#[tokio::test]
async fn connections_are_pooled_and_a_file_costs_three_requests() {
    let server = server().await;
    let sink = sink(&settings(&server, key()));
    let files: Vec<LakeFile> = (0..400)
        .map(|n| file(&format!("h{}", n / 100), n))
        .collect();
    server.reset_stats();
    for chunk in files.chunks(100) {
        let results = sink.store_all(chunk.to_vec()).await;
        assert_eq!(written(&results), 100);
    }
    let stats = server.stats();
    assert!(
        stats.connections <= 16 + 2,
        "at most the write concurrency: {} connections for 400 files",
        stats.connections
    );
    // Create, append with flush, rename: no separate flush request.
    for op in [OpKind::CreateFile, OpKind::Append, OpKind::Rename] {
        assert_eq!(stats.op(op), 400, "{op:?}: {stats:?}");
    }
    assert_eq!(stats.op(OpKind::Flush), 0, "{stats:?}");
    // One folder creation per new folder and concurrent first writer, not per file.
    assert!(stats.op(OpKind::CreateDirectory) <= 4 * 16, "{stats:?}");
    assert_exactly(&server, &files);
}

#[tokio::test]
async fn a_hanging_endpoint_is_given_up_on_in_bounded_time() {
    let server = server().await;
    let mut settings = settings(&server, key());
    settings.retry_budget = Duration::from_secs(1);
    settings.request_timeout = Duration::from_secs(1);
    server
        .faults()
        .push(FaultRule::new(OpKind::Append, FaultAction::Delay(Duration::from_secs(30))).always());
    let started = Instant::now();
    let results = sink(&settings).store_all(vec![file("hang", 1)]).await;
    let elapsed = started.elapsed();
    assert!(results[0].is_err(), "{results:?}");
    assert!(
        elapsed <= Duration::from_secs(3) + Duration::from_millis(1500),
        "budget + two request timeouts at most: {elapsed:?}"
    );
    assert!(final_files(&server).is_empty());
}

#[tokio::test]
async fn a_batch_larger_than_the_concurrency_still_ends_at_one_deadline() {
    let server = server().await;
    let mut settings = settings(&server, key());
    settings.write_concurrency = 2;
    settings.retry_budget = Duration::from_secs(1);
    settings.request_timeout = Duration::from_secs(1);
    server
        .faults()
        .push(FaultRule::new(OpKind::Append, FaultAction::Delay(Duration::from_secs(30))).always());
    let files: Vec<LakeFile> = (0..6).map(|n| file("wave", n)).collect();
    let started = Instant::now();
    let results = sink(&settings).store_all(files).await;
    let elapsed = started.elapsed();
    assert!(results.iter().all(Result::is_err), "{results:?}");
    // Three waves of two would take three times as long without the shared deadline.
    assert!(
        elapsed <= Duration::from_secs(3) + Duration::from_millis(1500),
        "one deadline for the whole request: {elapsed:?}"
    );
}
