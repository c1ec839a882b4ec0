//! What an operator sees in Application Insights while storage is unwell: the handler
//! process's JSON log on the ADLS sink, with faults injected by the DFS test server. Every
//! retry is a line (which attempt failed, why, how long until the next), never naming a
//! path, `_id` or URL; and every line of a request carries the same request id.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use serde_json::Value;
use support::{sample, CONTAINER};

const INVOCATION_ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

/// The handler binary on ADLS with JSON logs; killed when dropped.
struct Handler {
    child: Child,
    address: String,
    /// Every log line after `ready`, parsed.
    log: mpsc::Receiver<Value>,
}

impl Handler {
    fn start(dfs: &DfsServer) -> Handler {
        let mut child = Command::new(env!("CARGO_BIN_EXE_handler"))
            .env_clear()
            .envs([
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "0"),
                ("LOG_FORMAT", "json"),
                ("STORAGE_ACCOUNT_NAME", DEV_ACCOUNT),
                ("STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY),
                ("STORAGE_DFS_ENDPOINT", &dfs.endpoint()),
                ("STORAGE_RETRY_BUDGET_SECS", "20"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the handler starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (send, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let entry: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
                if send.send(entry).is_err() {
                    break;
                }
            }
        });
        let ready = std::iter::from_fn(|| log.recv_timeout(Duration::from_secs(10)).ok())
            .find(|entry| entry["message"] == "ready")
            .expect("a ready line within 10 s");
        let address = ready["address"].as_str().expect("address").to_owned();
        Handler {
            child,
            address,
            log,
        }
    }

    /// The lines logged until (and including) the next `ingest` line.
    fn lines_of_next_request(&self) -> Vec<Value> {
        let mut lines = Vec::new();
        while let Ok(entry) = self.log.recv_timeout(Duration::from_secs(30)) {
            let done = entry["message"] == "ingest";
            lines.push(entry);
            if done {
                return lines;
            }
        }
        panic!("no ingest line; got {lines:?}");
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let handler = Handler::start(&dfs);
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{}/api/ingest", handler.address))
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

    let lines = handler.lines_of_next_request();
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
    let invoke = |body: String| {
        client
            .post(format!("http://{}/ingest", handler.address))
            .json(&serde_json::json!({"Data": {"req": {
                "Headers": {"Content-Type": ["application/json"]},
                "Body": body,
            }}}))
            .send()
    };
    let mut ids = Vec::new();
    for file in ["replace.json", "delete-with-preimage.json"] {
        assert_eq!(invoke(sample(file)).await.expect("sent").status(), 200);
        let lines = handler.lines_of_next_request();
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
