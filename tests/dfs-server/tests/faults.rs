//! Each fault kind, seen through the real client, and the counters.

mod common;

use azure_core::RetryOptions;
use common::*;
use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind, OpMatch};
use futures::StreamExt;
use std::time::{Duration, Instant};

async fn server() -> DfsServer {
    DfsServer::builder()
        .filesystem("lake")
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_are_not_applied_and_are_retried() {
    let server = server().await;
    server.faults().push(FaultRule::new(
        OpKind::CreateFile,
        FaultAction::server_busy(),
    ));

    // Without retries the caller sees the 503.
    let dl = client(&server, key_credentials());
    let f = dl.file_system_client("lake").get_file_client("a.json");
    assert_eq!(
        code(&f.create().await.unwrap_err()),
        (503, "ServerBusy".into())
    );
    assert!(!server.exists("lake", "a.json"));

    // The client's retry policy retries 500 and 503 (and 408, 429, 502, 504).
    server
        .faults()
        .push(FaultRule::new(OpKind::CreateFile, FaultAction::internal_error()).times(2));
    server.reset_stats();
    let dl = retrying_client(&server, key_credentials(), 3);
    let f = dl.file_system_client("lake").get_file_client("a.json");
    f.create_if_not_exists().await.unwrap();
    assert!(server.file_exists("lake", "a.json"));
    let stats = server.stats();
    assert_eq!(stats.op(OpKind::CreateFile), 3);
    assert_eq!(stats.faults_fired, 2);
    assert_eq!(server.faults().pending(), 0);

    // 429 is retried too; an always-on rule exhausts the retries.
    server
        .faults()
        .push(FaultRule::new(OpKind::Append, FaultAction::too_many_requests()).always());
    let e = f.append(0, b"x".to_vec()).await.unwrap_err();
    assert_eq!(code(&e), (429, "TooManyRequests".into()));
    assert_eq!(server.staged_len("lake", "a.json"), Some(0));
    server.faults().clear();
    f.append(0, b"x".to_vec()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_io_errors_and_not_applied() {
    let server = server().await;
    let dl = client(&server, key_credentials());
    let f = dl.file_system_client("lake").get_file_client("a.json");
    f.create().await.unwrap();

    server
        .faults()
        .push(FaultRule::new(OpKind::Append, FaultAction::Drop));
    let e = f.append(0, b"hello".to_vec()).await.unwrap_err();
    assert!(is_io(&e), "{e:?}");
    assert_eq!(server.staged_len("lake", "a.json"), Some(0));
    assert_eq!(server.stats().connections_dropped, 1);

    // The client retries I/O errors: the retry goes through, the data is staged once.
    server
        .faults()
        .push(FaultRule::new(OpKind::Append, FaultAction::Drop));
    let dl = retrying_client(&server, key_credentials(), 2);
    let f = dl.file_system_client("lake").get_file_client("a.json");
    f.append(0, b"hello".to_vec()).await.unwrap();
    assert_eq!(server.staged_len("lake", "a.json"), Some(5));
}

/// The case that matters most: the operation happens, the answer is lost, and the client's
/// retry meets the consequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_meet_their_own_effects_on_retry() {
    let server = server().await;
    let dl = retrying_client(&server, key_credentials(), 2);
    let fs = dl.file_system_client("lake");
    let f = fs.get_file_client("d/a.tmp");

    // Create with If-None-Match: * → applied, lost → the retry gets 409 PathAlreadyExists.
    server.faults().push(FaultRule::new(
        OpKind::CreateFile,
        FaultAction::ApplyThenDrop,
    ));
    let e = f.create_if_not_exists().await.unwrap_err();
    assert_eq!(code(&e), (409, "PathAlreadyExists".into()));
    assert!(server.file_exists("lake", "d/a.tmp"));

    // Append → applied, lost → the retry at the same position replaces the same bytes: 202.
    server
        .faults()
        .push(FaultRule::new(OpKind::Append, FaultAction::ApplyThenDrop));
    f.append(0, b"abc".to_vec()).await.unwrap();
    assert_eq!(server.staged_len("lake", "d/a.tmp"), Some(3));

    // Flush → applied, lost → the retry at the same position commits nothing more: 200.
    server
        .faults()
        .push(FaultRule::new(OpKind::Flush, FaultAction::ApplyThenDrop));
    f.flush(3).close(true).await.unwrap();
    assert_eq!(server.read_string("lake", "d/a.tmp").unwrap(), "abc");

    // Rename → applied, lost → the retry finds no source: 404 SourcePathNotFound, while the
    // file sits at its destination.
    server
        .faults()
        .push(FaultRule::new(OpKind::Rename, FaultAction::ApplyThenDrop));
    let e = f.rename_if_not_exists("d/a.json").await.unwrap_err();
    assert_eq!(code(&e), (404, "SourcePathNotFound".into()));
    assert_eq!(server.read_string("lake", "d/a.json").unwrap(), "abc");
    assert!(!server.exists("lake", "d/a.tmp"));

    // Delete → applied, lost → the retry gets 404 PathNotFound.
    server
        .faults()
        .push(FaultRule::new(OpKind::Delete, FaultAction::ApplyThenDrop));
    let g = fs.get_file_client("d/a.json");
    let e = g.delete().into_stream().next().await.unwrap().unwrap_err();
    assert_eq!(code(&e), (404, "PathNotFound".into()));
    assert!(!server.exists("lake", "d/a.json"));

    let stats = server.stats();
    assert_eq!(stats.faults_fired, 5);
    assert_eq!(stats.connections_dropped, 5);
    assert_eq!(stats.op(OpKind::Rename), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_with_a_client_timeout() {
    let server = server().await;
    let dl = pooled_client(
        &server,
        key_credentials(),
        Duration::from_millis(300),
        RetryOptions::none(),
    );
    let fs = dl.file_system_client("lake");

    // Delay: the client times out; the service carries the operation out afterwards.
    server.faults().push(FaultRule::new(
        OpKind::CreateFile,
        FaultAction::Delay(Duration::from_millis(1000)),
    ));
    let e = fs.get_file_client("slow.json").create().await.unwrap_err();
    assert!(is_io(&e), "{e:?}");
    assert!(!server.exists("lake", "slow.json"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(server.file_exists("lake", "slow.json"));

    // ApplyThenDelay: applied at once, the answer comes too late for the client.
    server.faults().push(FaultRule::new(
        OpKind::CreateFile,
        FaultAction::ApplyThenDelay(Duration::from_millis(1000)),
    ));
    let e = fs.get_file_client("late.json").create().await.unwrap_err();
    assert!(is_io(&e), "{e:?}");
    assert!(server.file_exists("lake", "late.json"));

    // A delay shorter than the timeout is only slow.
    server.faults().push(FaultRule::new(
        OpKind::GetProperties,
        FaultAction::Delay(Duration::from_millis(50)),
    ));
    let t = Instant::now();
    fs.get_file_client("late.json")
        .get_properties()
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_applies_then_refuses_everything_until_recovered() {
    let server = server().await;
    let dl = client(&server, key_credentials());
    let fs = dl.file_system_client("lake");
    let f = fs.get_file_client("a.tmp");
    f.create().await.unwrap();
    f.append(0, b"data".to_vec()).await.unwrap();

    // A pooled client with a kept-alive connection from before the crash.
    let pooled = pooled_client(
        &server,
        key_credentials(),
        Duration::from_secs(5),
        RetryOptions::none(),
    );
    pooled
        .file_system_client("lake")
        .get_properties()
        .await
        .unwrap();

    server
        .faults()
        .push(FaultRule::new(OpKind::Flush, FaultAction::Crash));
    let e = f.flush(4).close(true).await.unwrap_err();
    assert!(is_io(&e), "{e:?}");
    assert!(server.is_crashed());
    // The flush happened before the crash.
    assert_eq!(server.read_string("lake", "a.tmp").unwrap(), "data");

    // Everything later is refused, on new connections and on pooled ones alike.
    let e = f.rename_if_not_exists("a.json").await.unwrap_err();
    assert!(is_io(&e), "{e:?}");
    let e = pooled
        .file_system_client("lake")
        .get_properties()
        .await
        .unwrap_err();
    assert!(is_io(&e), "{e:?}");
    assert!(server.exists("lake", "a.tmp"));

    server.recover();
    f.rename_if_not_exists("a.json").await.unwrap();
    assert_eq!(server.read_string("lake", "a.json").unwrap(), "data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_match_by_path_and_skip() {
    let server = server().await;
    let dl = client(&server, key_credentials());
    let fs = dl.file_system_client("lake");
    // The second create under hot/ fails; others pass.
    server.faults().push(
        FaultRule::new(OpMatch::Writes, FaultAction::server_busy())
            .on_path("lake/hot/")
            .after(1),
    );
    fs.get_file_client("cold/1.json").create().await.unwrap();
    fs.get_file_client("hot/1.json").create().await.unwrap();
    fs.get_file_client("cold/2.json").create().await.unwrap();
    let e = fs.get_file_client("hot/2.json").create().await.unwrap_err();
    assert_eq!(code(&e), (503, "ServerBusy".into()));
    fs.get_file_client("hot/3.json").create().await.unwrap();

    // A rename matches on its source path too.
    server
        .faults()
        .push(FaultRule::new(OpKind::Rename, FaultAction::internal_error()).on_path("cold/1.json"));
    let e = fs
        .get_file_client("cold/1.json")
        .rename_if_not_exists("cold/9.json")
        .await
        .unwrap_err();
    assert_eq!(code(&e), (500, "InternalError".into()));
    assert_eq!(server.faults().fired(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_show_connection_reuse() {
    let server = server().await;

    // The crate's default transport keeps no idle connections (pool_max_idle_per_host(0)):
    // one TCP connection per request.
    let dl = client(&server, key_credentials());
    let fs = dl.file_system_client("lake");
    for i in 0..10 {
        fs.get_file_client(format!("a/{i}.json"))
            .create()
            .await
            .unwrap();
    }
    let s = server.stats();
    assert_eq!(s.requests, 10);
    assert_eq!(s.connections, 10);
    assert_eq!(s.op(OpKind::CreateFile), 10);

    // A pooled reqwest client of one's own reuses them.
    server.reset_stats();
    assert_eq!(server.stats(), Default::default());
    let dl = pooled_client(
        &server,
        key_credentials(),
        Duration::from_secs(5),
        RetryOptions::none(),
    );
    let fs = dl.file_system_client("lake");
    for i in 0..20 {
        let f = fs.get_file_client(format!("b/{i}.json"));
        f.create().await.unwrap();
        f.append(0, b"{}".to_vec()).await.unwrap();
        f.flush(2).close(true).await.unwrap();
    }
    let s = server.stats();
    assert_eq!(s.requests, 60);
    // Usually one; the pool may open another when the next request starts before the last
    // answer's connection is back in it.
    assert!(s.connections <= 5, "{s:?}");
    assert_eq!(
        (
            s.op(OpKind::CreateFile),
            s.op(OpKind::Append),
            s.op(OpKind::Flush)
        ),
        (20, 20, 20)
    );
    assert_eq!(server.files("lake").len(), 30);
}
