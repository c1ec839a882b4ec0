//! What an operator sees in Application Insights while storage is unwell: the handler
//! process's JSON log on the ADLS sink, with faults injected by the DFS test server. Every
//! retry is a line (which attempt failed, why, how long until the next), never naming a
//! path, `_id` or URL; and every line of a request carries the same request id.

mod support;

use std::time::Duration;

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind, DEV_ACCOUNT_KEY};
use serde_json::Value;
use support::handler::Handler;
use support::{sample, CONTAINER};

const INVOCATION_ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

/// The handler binary on ADLS with JSON logs; killed when dropped.
/// The lines logged until (and including) the next `ingest` line.
fn lines_of_next_request(handler: &mut Handler) -> Vec<Value> {
    let mut lines = Vec::new();
    while let Some(entry) = handler.next_line(Duration::from_secs(30)) {
        let done = entry["message"] == "ingest";
        lines.push(entry);
        if done {
            return lines;
        }
    }
    panic!("no ingest line; got {lines:?}");
}

/// The `request_id` of the request span a line was logged in.
fn request_id(entry: &Value) -> Option<&str> {
    entry["spans"]
        .as_array()?
        .iter()
        .find(|span| span["name"] == "request")?["request_id"]
        .as_str()
}

#[tokio::test]
async fn storage_retries_are_logged_with_the_requests_id_and_without_paths() {
    let dfs = DfsServer::builder()
        .filesystem(CONTAINER)
        .start()
        .await
        .expect("DFS server starts");
    // The first two attempts to create the file are throttled; the third succeeds.
    dfs.faults()
        .push(FaultRule::new(OpKind::CreateFile, FaultAction::server_busy()).times(2));
    let mut handler = Handler::start_on_adls(
        &dfs.endpoint(),
        &[
            ("STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY),
            ("STORAGE_RETRY_BUDGET_SECS", "20"),
        ],
    );
    let client = reqwest::Client::new();
    let response = client
        .post(handler.url("/api/ingest"))
        .header("Content-Type", "application/json")
        .header("X-Azure-Functions-InvocationId", INVOCATION_ID)
        .body(sample("insert.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON");
    let path = answer["paths"]["written"][0].as_str().expect("a path");
    let name = path.rsplit('/').next().expect("a file name");

    let lines = lines_of_next_request(&mut handler);
    let retries: Vec<&Value> = lines
        .iter()
        .filter(|entry| entry["message"] == "storage attempt failed; retrying")
        .collect();
    assert_eq!(retries.len(), 2, "{lines:?}");
    for (n, retry) in retries.iter().enumerate() {
        assert_eq!(retry["level"], "WARN");
        assert_eq!(retry["attempt"], n + 1, "{retry}");
        assert_eq!(retry["operation"], "creating");
        assert_eq!(retry["cause"], "HTTP 503 ServerBusy");
        assert!(retry["retry_in_ms"].as_u64().is_some(), "{retry}");
        assert_eq!(request_id(retry), Some(INVOCATION_ID), "{retry}");
    }
    let ingest = lines.last().expect("the ingest line");
    assert_eq!(request_id(ingest), Some(INVOCATION_ID), "{ingest}");
    for line in lines.iter().map(Value::to_string) {
        assert!(
            !line.contains(name) && !line.contains("http://"),
            "no path, _id or URL in the log: {line}"
        );
    }

    // Payload mode, from a host that sent no invocation id: one is made up, and it is new
    // for each request.
    let invocation_url = handler.url("/ingest");
    let invoke = |body: String| {
        client
            .post(&invocation_url)
            .json(&serde_json::json!({"Data": {"req": {
                "Headers": {"Content-Type": ["application/json"]},
                "Body": body,
            }}}))
            .send()
    };
    let mut ids = Vec::new();
    for file in ["replace.json", "delete-with-preimage.json"] {
        assert_eq!(invoke(sample(file)).await.expect("sent").status(), 200);
        let lines = lines_of_next_request(&mut handler);
        let id = request_id(lines.last().expect("ingest line")).map(str::to_owned);
        let id = id.expect("every request has an id");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
}
