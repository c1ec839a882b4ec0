//! The built `handler` binary, driven as the Functions host drives it: started with
//! `FUNCTIONS_CUSTOMHANDLER_PORT` in its environment, pinged on `GET /`, sent requests,
//! and stopped with SIGTERM. Also checks that `host.json` and `ingest/function.json`
//! point the host at this binary with the protocol the handler speaks.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::handler::{count_files, storage_failure, Handler};
use support::{insert_event, sample};

#[tokio::test]
async fn answers_the_host_ping_and_stores_events() {
    let lake = tempfile::tempdir().expect("lake");
    let handler = Handler::start(lake.path(), &[]);
    assert!(
        handler.addr.ip().is_loopback(),
        "listens on 127.0.0.1 by default"
    );
    let client = reqwest::Client::new();
    let ping = client.get(handler.url("/")).send().await.expect("ping");
    assert_eq!(ping.status(), 200);
    let answer = handler.post_json(sample("insert.json")).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(count_files(&lake.path().join("mongodb/changes")), 1);
    handler.terminate();
    let (code, _) = handler.wait();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn logs_never_hold_document_contents() {
    let lake = tempfile::tempdir().expect("lake");
    let handler = Handler::start(lake.path(), &[]);
    let secret = "TOP-SECRET-4111111111111111";
    let good = insert_event(
        "82AAAA",
        1_700_000_000,
        &format!(r#"{{"_id": 1, "card": "{secret}"}}"#),
    );
    let bad = insert_event(
        "82BBBB",
        1_700_000_001,
        &format!(r#"{{"_id": 2, "card": {{"$numberInt": "{secret}"}}}}"#),
    );
    let client = reqwest::Client::new();
    for body in [good, bad] {
        client
            .post(handler.url("/api/ingest"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
    }
    handler.terminate();
    let (_, log) = handler.wait();
    let text = log.join("\n");
    assert!(
        text.contains("\"status\":200") && text.contains("\"status\":400"),
        "{text}"
    );
    assert!(
        !text.contains(secret),
        "a document value reached the log: {text}"
    );
    assert!(
        log.iter().filter(|l| l.contains("\"ingest")).count() >= 2,
        "one line per request"
    );
}

#[test]
fn invalid_settings_stop_start_up_naming_the_setting() {
    let cases = [
        ("RECORD_ENCODING", "bson"),
        ("storage_container", "Not_Valid"),
        ("PATH_TEMPLATE", "{db}/../{coll}"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "seventy"),
    ];
    for (setting, value) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_handler"))
            .env_clear()
            .env(setting, value)
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{setting}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
        assert!(stderr.contains(setting), "{stderr}");
    }
}

#[test]
fn host_files_point_the_functions_host_at_this_handler() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root.join(path)).expect(path)).expect(path)
    };
    let host = read("host.json");
    assert_eq!(host["version"], "2.0");
    let binary = Path::new(env!("CARGO_BIN_EXE_handler"))
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("binary name")
        .to_owned();
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        binary
    );
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");

    let function = read("ingest/function.json");
    let bindings = function["bindings"].as_array().expect("bindings");
    let trigger = bindings
        .iter()
        .find(|b| b["type"] == "httpTrigger")
        .expect("trigger");
    assert_eq!(trigger["direction"], "in");
    assert_eq!(trigger["authLevel"], "function");
    assert_eq!(trigger["methods"], serde_json::json!(["post"]));
    assert_eq!(trigger["name"], "req", "payload mode reads Data.req");
    assert!(bindings
        .iter()
        .any(|b| b["type"] == "http" && b["direction"] == "out"));

    let settings = read("local.settings.json.example");
    assert_eq!(settings["Values"]["FUNCTIONS_WORKER_RUNTIME"], "custom");
}

/// A stand-in for the App Service managed-identity endpoint the Functions host provides
/// (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`): answers a token for Azure Storage only when
/// the secret header is right.
async fn identity_endpoint(header_secret: &'static str, token: &'static str) -> SocketAddr {
    use axum::http::{HeaderMap, StatusCode, Uri};

    let app = axum::Router::new().route(
        "/msi/token",
        axum::routing::get(move |headers: HeaderMap, uri: Uri| async move {
            let secret_ok = headers
                .get("x-identity-header")
                .is_some_and(|value| value == header_secret);
            let query = uri
                .query()
                .unwrap_or_default()
                .replace("%3A", ":")
                .replace("%2F", "/");
            let for_storage = query
                .split('&')
                .any(|pair| pair == "resource=https://storage.azure.com");
            if !secret_ok || !for_storage {
                return (StatusCode::BAD_REQUEST, "{}".to_owned());
            }
            let expires_on = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs()
                + 3600;
            let body = serde_json::json!({
                "access_token": token,
                "expires_on": expires_on.to_string(),
                "resource": "https://storage.azure.com",
                "token_type": "Bearer",
            });
            (StatusCode::OK, body.to_string())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The handler on ADLS with `STORAGE_AUTH=identity`, as on a Function App: its managed
/// identity endpoint answers the token `mi-token` (which the DFS server accepts) only to
/// callers sending the header secret `host-secret`; the handler is given `sent_secret`.
async fn on_managed_identity(
    sent_secret: &str,
    extra: &[(&str, &str)],
) -> (dfs_test_server::DfsServer, Handler) {
    let identity = identity_endpoint("host-secret", "mi-token").await;
    let dfs = dfs_test_server::DfsServer::builder()
        .filesystem("mongodb")
        .bearer_token("mi-token")
        .start()
        .await
        .expect("DFS server");
    let identity_url = format!("http://{identity}/msi/token");
    let mut settings = vec![
        ("STORAGE_AUTH", "identity"),
        ("IDENTITY_ENDPOINT", identity_url.as_str()),
        ("IDENTITY_HEADER", sent_secret),
    ];
    settings.extend_from_slice(extra);
    let handler = Handler::start_on_adls(&dfs.endpoint(), &settings);
    (dfs, handler)
}

#[tokio::test]
async fn entra_id_through_the_function_apps_managed_identity_writes_to_adls() {
    let (dfs, handler) = on_managed_identity("host-secret", &[]).await;
    let answer = handler.post_json(sample("batch.json")).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    // The change files (compaction's late markers for these old events are empty).
    let stored: Vec<_> = dfs
        .files("mongodb")
        .into_iter()
        .filter(|entry| entry.path.starts_with("changes/") && !entry.path.contains("/_tmp/"))
        .collect();
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|entry| entry.len > 0));
    handler.terminate();
    let (code, log) = handler.wait();
    assert_eq!(code, Some(0));
    let log = log.join("\n");
    assert!(
        !log.contains("mi-token") && !log.contains("host-secret"),
        "no secrets in logs"
    );
}

#[tokio::test]
async fn an_identity_that_cannot_get_a_token_fails_fast_with_the_reason() {
    // The token endpoint refuses (400: no identity assigned), as on a Function App whose
    // managed identity was never turned on.
    let (dfs, handler) =
        on_managed_identity("wrong-secret", &[("STORAGE_RETRY_BUDGET_SECS", "120")]).await;
    let started = Instant::now();
    let answer = handler.post_json(sample("insert.json")).await;
    assert_eq!(answer.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "not retried for the whole 120 s budget: {:?}",
        started.elapsed()
    );
    handler.terminate();
    let (_, log) = handler.wait();
    let failure = storage_failure(&log);
    assert!(failure.contains("Entra ID token"), "{failure}");
    assert!(dfs.files("mongodb").is_empty());
}

#[tokio::test]
async fn debug_logs_hold_no_sas_signature_or_document() {
    let dfs = dfs_test_server::DfsServer::builder()
        .filesystem("mongodb")
        .start()
        .await
        .expect("DFS server");
    let sas = dfs.account_sas("racwdl");
    let signature = sas
        .split('&')
        .find_map(|pair| pair.strip_prefix("sig="))
        .expect("sig")
        .to_owned();
    let handler = Handler::start_on_adls(
        &dfs.endpoint(),
        &[("STORAGE_SAS_TOKEN", &sas), ("RUST_LOG", "debug")],
    );
    let answer = handler.post_json(sample("insert.json")).await;
    assert_eq!(answer.status(), 200);
    handler.terminate();
    let (code, log) = handler.wait();
    assert_eq!(code, Some(0));
    let log = log.join("\n");
    // Without the telemetry's quiet list, the storage client logs each request URL here.
    assert!(
        !log.contains(&signature) && !log.contains("sig="),
        "no SAS signature in the log"
    );
    assert!(
        !log.contains("Great Train Robbery"),
        "no document contents in the log"
    );
}

#[test]
fn an_account_without_a_credential_stops_start_up() {
    let output = Command::new(env!("CARGO_BIN_EXE_handler"))
        .env_clear()
        .env("storage_account_name", "lakeacct")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("storage_account_name") && stderr.contains("STORAGE_AUTH=identity"),
        "{stderr}"
    );
}
