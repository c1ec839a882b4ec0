//! `GET /health` over real HTTP against the handler process: the local lake reachable; ADLS
//! reachable through the DFS test server, then refused (503 `degraded` within the probe
//! interval); never more than one storage request per interval however often it is asked;
//! and a storage failure of a request marking the sink unreachable at once.

mod support;

use std::time::{Duration, Instant};

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind, DEV_ACCOUNT_KEY};
use serde_json::Value;
use support::adls::server_with_container;
use support::handler::Handler;
use support::sample;

/// Asks `path` and returns the status and the parsed answer.
async fn get(handler: &Handler, path: &str) -> (u16, Value) {
    let response = reqwest::get(handler.url(path)).await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// Polls `/health` until it answers `status`; panics after `deadline` (wide: a busy
/// machine; only a probe that never comes misses it).
async fn health_becomes(handler: &Handler, status: u16, deadline: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (now, body) = get(handler, "/health").await;
        if now == status {
            return body;
        }
        assert!(
            started.elapsed() < deadline,
            "/health still {now} after {deadline:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The handler process on `dfs` with the account key and `extra` settings.
fn handler_on(dfs: &DfsServer, extra: &[(&str, &str)]) -> Handler {
    let mut settings = vec![("STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY)];
    settings.extend_from_slice(extra);
    Handler::start_on_adls(&dfs.endpoint(), &settings)
}

#[tokio::test]
async fn the_local_lake_is_healthy_and_readiness_stays_at_the_root() {
    let lake = tempfile::tempdir().expect("dir");
    let handler = Handler::start(lake.path(), &[]);
    let body = health_becomes(&handler, 200, Duration::from_secs(10)).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["sink"]["reachable"], true);
    assert!(
        body["sink"]["checkedSecondsAgo"].as_u64().is_some(),
        "{body}"
    );
    assert!(body["sink"].get("lastError").is_none(), "{body}");
    // As the Functions host forwards the `health` function's requests.
    assert_eq!(get(&handler, "/api/health").await, (200, body.clone()));
    let ready = reqwest::get(handler.url("/")).await.expect("answered");
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.expect("text"), "ready");
    // The probe leaves nothing in the lake.
    assert_eq!(support::handler::count_files(lake.path()), 0);
}

#[tokio::test]
async fn adls_health_is_cached_and_turns_degraded_within_the_probe_interval() {
    let dfs = server_with_container().await;
    let handler = handler_on(&dfs, &[("HEALTH_PROBE_SECS", "1")]);
    health_becomes(&handler, 200, Duration::from_secs(10)).await;

    // However often it is asked, at most one storage request per interval.
    dfs.reset_stats();
    let started = Instant::now();
    let mut asked = 0;
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(get(&handler, "/health").await.0, 200);
        asked += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = dfs.stats().requests;
    assert!(asked > 20, "asked {asked} times");
    assert!(
        (requests as f64) <= elapsed.ceil() + 1.0,
        "{requests} storage requests in {elapsed:.1} s for {asked} health answers"
    );
    assert_eq!(requests, dfs.stats().op(OpKind::GetFilesystemProperties));

    // The store refuses: degraded within the interval (a wide margin for a busy machine).
    dfs.faults().push(
        FaultRule::new(
            OpKind::GetFilesystemProperties,
            FaultAction::status(403, "AuthorizationPermissionMismatch", "not permitted"),
        )
        .always(),
    );
    let body = health_becomes(&handler, 503, Duration::from_secs(15)).await;
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["sink"]["reachable"], false);
    let cause = body["sink"]["lastError"].as_str().expect("a cause");
    assert!(
        cause.contains("403 AuthorizationPermissionMismatch"),
        "{cause}"
    );
    assert!(
        !cause.contains("http://") && !cause.contains(DEV_ACCOUNT_KEY),
        "no URL or secret: {cause}"
    );
    assert_eq!(get(&handler, "/api/health").await.0, 503);

    // And back once the store answers again.
    dfs.faults().clear();
    health_becomes(&handler, 200, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn a_request_that_fails_on_storage_marks_the_sink_unreachable_at_once() {
    let dfs = server_with_container().await;
    // A probe interval far beyond the test: only requests change what /health says.
    let handler = handler_on(
        &dfs,
        &[
            ("HEALTH_PROBE_SECS", "3600"),
            ("STORAGE_RETRY_BUDGET_SECS", "1"),
        ],
    );
    health_becomes(&handler, 200, Duration::from_secs(10)).await;
    dfs.faults()
        .push(FaultRule::new(OpKind::CreateFile, FaultAction::internal_error()).always());
    assert_eq!(handler.post_json(sample("insert.json")).await.status(), 503);
    let (status, body) = get(&handler, "/health").await;
    assert_eq!(status, 503, "{body}");
    let cause = body["sink"]["lastError"].as_str().expect("a cause");
    assert!(cause.contains("500 InternalError"), "{cause}");
    assert!(!cause.contains("movies"), "no path: {cause}");

    dfs.faults().clear();
    assert_eq!(handler.post_json(sample("insert.json")).await.status(), 200);
    assert_eq!(get(&handler, "/health").await.0, 200);
    assert_eq!(
        dfs.stats().op(OpKind::GetFilesystemProperties),
        1,
        "one probe, at start-up"
    );
}
