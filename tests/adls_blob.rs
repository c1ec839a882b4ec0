//! The one-request write protocol (`STORAGE_WRITE_PROTOCOL=blob`, the default) against the
//! DFS test server's Blob endpoint, which shares its namespace as an account with a
//! hierarchical namespace does: each file costs one conditional Put Blob, is visible
//! through DFS at once, is written exactly once under redelivery, lost answers and busy
//! answers, with every credential. Refusals and a missing container: tests/adls_sink.rs runs
//! those for both protocols.

use std::time::{Duration, Instant};

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use futures_util::TryStreamExt;
use mongo_lake_ingest::configuration::{Credential, Secret, WriteProtocol};
use mongo_lake_ingest::sink::{LakeFile, Sink, SinkError, Stored};

mod support;

use support::adls::{
    bearer_server, bearer_sink, blob_settings, directory, file, key, rival_in_place,
    server_with_container as server, settings, sink, FILESYSTEM,
};
use support::handler::Handler;
use support::sample;

/// Each file is at its path, byte-identical, and no other file is anywhere (no temporary
/// file either: the blob protocol has none).
fn assert_exactly(server: &DfsServer, files: &[LakeFile]) {
    for file in files {
        let stored = server
            .read(FILESYSTEM, &file.path.to_string())
            .unwrap_or_else(|| panic!("{} is missing", file.path));
        assert_eq!(stored.as_ref(), file.contents.as_slice(), "{}", file.path);
    }
    let all = server.files(FILESYSTEM);
    assert_eq!(all.len(), files.len(), "{all:?}");
}

fn count(results: &[Result<Stored, SinkError>], wanted: Stored) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, Ok(stored) if *stored == wanted))
        .count()
}

#[tokio::test]
async fn a_file_costs_one_request_with_blob_and_three_with_dfs() {
    let server = server().await;
    let files: Vec<LakeFile> = (0..200).map(|n| file(&format!("h{}", n / 50), n)).collect();
    let (by_blob, by_dfs) = files.split_at(100);

    server.reset_stats();
    let results = sink(&blob_settings(&server, key()))
        .store_all(by_blob.to_vec())
        .await;
    assert_eq!(count(&results, Stored::Written), 100, "{results:?}");
    let stats = server.stats();
    assert_eq!(stats.requests, 100, "one request per file: {stats:?}");
    assert_eq!(stats.op(OpKind::PutBlob), 100, "{stats:?}");

    server.reset_stats();
    let results = sink(&settings(&server, key()))
        .store_all(by_dfs.to_vec())
        .await;
    assert_eq!(count(&results, Stored::Written), 100, "{results:?}");
    let stats = server.stats();
    let folders = stats.op(OpKind::CreateDirectory) + stats.op(OpKind::Delete);
    assert_eq!(
        stats.requests - folders,
        300,
        "create, append with flush, rename: {stats:?}"
    );
    assert_exactly(&server, &files);
}

#[tokio::test]
async fn put_blobs_are_files_to_the_dfs_side_of_the_sink() {
    let server = server().await;
    let sink = sink(&blob_settings(&server, key()));
    let files: Vec<LakeFile> = (0..3).map(|n| file("seen", n)).collect();
    sink.store_all(files.clone()).await;
    let listed: Vec<_> = sink
        .list(&directory())
        .try_concat()
        .await
        .expect("lists through DFS");
    assert_eq!(listed.len(), 3, "{listed:?}");
    for file in &files {
        let read = sink.read(&file.path).await.expect("reads through DFS");
        assert_eq!(read.as_ref(), file.contents.as_slice());
    }
    sink.delete(&files[0].path)
        .await
        .expect("deletes through DFS");
    assert_exactly(&server, &files[1..]);
}

#[tokio::test]
async fn redelivery_is_already_present_and_never_replaces_the_file() {
    let server = server().await;
    let sink = sink(&blob_settings(&server, key()));
    let first = file("again", 1);
    assert_eq!(
        sink.store_all(vec![first.clone()]).await[0].as_ref().ok(),
        Some(&Stored::Written)
    );
    let mut other = first.clone();
    other.contents = b"{\"different\":true}\n".to_vec();
    let results = sink.store_all(vec![first.clone(), other]).await;
    assert_eq!(count(&results, Stored::AlreadyPresent), 2, "{results:?}");
    assert_exactly(&server, &[first]);
}

#[tokio::test]
async fn a_lost_answer_is_settled_by_reading_the_file_back() {
    let server = server().await;
    let sink = sink(&blob_settings(&server, key()));
    // The first Put Blob lands and its connection is closed before the answer.
    server
        .faults()
        .push(FaultRule::new(OpKind::PutBlob, FaultAction::ApplyThenDrop).times(1));
    let files = vec![file("lost", 7)];
    let results = sink.store_all(files.clone()).await;
    assert_eq!(count(&results, Stored::Written), 1, "{results:?}");
    let stats = server.stats();
    assert_eq!(stats.op(OpKind::PutBlob), 2, "{stats:?}");
    assert_eq!(
        stats.op(OpKind::Read),
        1,
        "the retry's 409 is checked by reading the file back: {stats:?}"
    );
    assert_exactly(&server, &files);

    // A connection dropped before the write: the retry writes it, no check needed.
    server.reset_stats();
    server
        .faults()
        .push(FaultRule::new(OpKind::PutBlob, FaultAction::Drop).times(1));
    let more = vec![file("lost", 8)];
    let results = sink.store_all(more.clone()).await;
    assert_eq!(count(&results, Stored::Written), 1, "{results:?}");
    assert_eq!(server.stats().op(OpKind::Read), 0);
    assert_exactly(&server, &[files, more].concat());
}

/// A lost answer over another writer's file of the same length (a compaction claim a rival
/// pass took): its bytes differ, so `AlreadyPresent`, never `Written`, and it stays.
#[tokio::test]
async fn a_lost_answer_over_another_writers_file_is_already_present() {
    let server = server().await;
    let sink = sink(&blob_settings(&server, key()));
    let mine = file("claims", 1);
    let rival = rival_in_place(&server, &mine, OpKind::PutBlob);
    let results = sink.store_all(vec![mine]).await;
    assert_eq!(count(&results, Stored::AlreadyPresent), 1, "{results:?}");
    assert_exactly(&server, &[rival]);
}

#[tokio::test]
async fn busy_answers_are_retried_and_persistent_ones_end_within_the_budget() {
    let server = server().await;
    let mut settings = blob_settings(&server, key());
    server
        .faults()
        .push(FaultRule::new(OpKind::PutBlob, FaultAction::server_busy()).times(3));
    let files = vec![file("busy", 1)];
    let results = sink(&settings).store_all(files.clone()).await;
    assert_eq!(count(&results, Stored::Written), 1, "{results:?}");
    assert_eq!(server.stats().op(OpKind::PutBlob), 4);
    assert_exactly(&server, &files);

    settings.retry_budget = Duration::from_secs(1);
    server
        .faults()
        .push(FaultRule::new(OpKind::PutBlob, FaultAction::server_busy()).always());
    let started = Instant::now();
    let results = sink(&settings).store_all(vec![file("busy", 2)]).await;
    assert!(started.elapsed() < Duration::from_secs(5), "deadline kept");
    let error = results[0].as_ref().expect_err("gave up");
    assert!(
        error.is_retryable() && error.to_string().contains("503"),
        "{error}"
    );
    assert_exactly(&server, &files);
}

#[tokio::test]
async fn every_credential_puts_blobs() {
    let server = server().await;
    let sas = Credential::Sas(Secret::new(server.account_sas("racwdl")));
    let mut files = Vec::new();
    for (n, credential) in [key(), sas].into_iter().enumerate() {
        let batch = vec![file("auth", n)];
        let results = sink(&blob_settings(&server, credential))
            .store_all(batch.clone())
            .await;
        assert_eq!(count(&results, Stored::Written), 1, "{results:?}");
        files.extend(batch);
    }
    assert_exactly(&server, &files);
    assert_eq!(server.stats().op(OpKind::CreateFile), 0, "no DFS write");

    // A bearer token, as Microsoft Entra ID gives (the user-assigned identity's bridge:
    // tests/managed_identity.rs runs the handler with it on this protocol).
    let server = bearer_server("entra-token", true).await;
    let bearer = bearer_sink(&blob_settings(&server, Credential::EntraId), "entra-token");
    let files = vec![file("bearer", 1)];
    let results = bearer.store_all(files.clone()).await;
    assert_eq!(count(&results, Stored::Written), 1, "{results:?}");
    assert_exactly(&server, &files);
}

/// The handler process with a connection string naming both endpoints: the Blob endpoint
/// comes from its `BlobEndpoint`, and a change event costs one Put Blob.
#[tokio::test]
async fn the_handler_puts_one_blob_per_event_with_a_connection_string() {
    let server = server().await;
    let connection_string = format!(
        "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};BlobEndpoint={}",
        server.blob_endpoint()
    );
    let handler = Handler::start_on_adls(
        &server.endpoint(),
        &[
            ("STORAGE_WRITE_PROTOCOL", "blob"),
            ("STORAGE_CONNECTION_STRING", &connection_string),
            ("STORAGE_CONTAINER", FILESYSTEM),
        ],
    );
    server.reset_stats();
    let answer = handler.post_json(sample("insert.json")).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let stats = server.stats();
    let stored = server.files(FILESYSTEM);
    // The change file, and a late-change marker for compaction.
    assert!(
        stored.iter().any(|f| f.path.starts_with("changes/")),
        "{stored:?}"
    );
    assert_eq!(
        stats.op(OpKind::PutBlob),
        stored.len() as u64,
        "one Put Blob per file: {stats:?}"
    );
    assert_eq!(stats.op(OpKind::CreateFile), 0, "{stats:?}");

    // Sent again (Atlas retries): the same files, acknowledged.
    let answer = handler.post_json(sample("insert.json")).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(server.files(FILESYSTEM), stored);
}

/// The start-up check asks the Blob endpoint too: an unreachable one is named, with the
/// way out for networks that reach only the DFS endpoint.
#[tokio::test]
async fn the_start_up_check_reaches_the_blob_endpoint() {
    let server = server().await;
    sink(&blob_settings(&server, key()))
        .probe()
        .await
        .expect("both endpoints answer");
    assert_eq!(server.stats().op(OpKind::GetBlobProperties), 1);

    let mut unreachable = blob_settings(&server, key());
    unreachable.write = WriteProtocol::Blob {
        // Nothing listens on the discard port.
        endpoint: "http://127.0.0.1:9/devstoreaccount1/".into(),
    };
    let error = sink(&unreachable)
        .probe()
        .await
        .expect_err("no Blob endpoint");
    assert!(
        error.to_string().contains("STORAGE_WRITE_PROTOCOL=dfs"),
        "{error}"
    );
    sink(&settings(&server, key()))
        .probe()
        .await
        .expect("dfs needs no Blob endpoint");
}
