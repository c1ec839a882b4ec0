//! Shared test support: a real server on an ephemeral loopback port, an HTTP client, and
//! helpers to read the lake back.
#![allow(dead_code)] // each test binary uses a different part

pub mod adls;
pub mod handler;
pub mod identity;
pub mod moto;
pub mod node;
pub mod python;
pub mod recipes;
pub mod timer;

pub mod replicator;
pub mod rng;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mongo_lake_ingest::configuration::Settings;
use mongo_lake_ingest::startup::{Application, ServeError};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CONTAINER: &str = "mongodb";

/// A server running in this process, speaking real HTTP over loopback.
pub struct TestServer {
    pub addr: SocketAddr,
    pub lake: tempfile::TempDir,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

/// A reply, read fully.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestServer {
    /// Starts a server with the given extra settings: on a temporary local lake unless
    /// they name an ADLS account.
    pub async fn start(settings: &[(&str, &str)]) -> TestServer {
        let lake = tempfile::tempdir().expect("temp dir");
        let mut vars: HashMap<String, String> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let adls = ["STORAGE_ACCOUNT_NAME", "STORAGE_CONNECTION_STRING"]
            .iter()
            .any(|name| vars.contains_key(*name));
        if !adls {
            vars.insert("LOCAL_LAKE_DIR".into(), lake.path().display().to_string());
        }
        vars.entry("FUNCTIONS_CUSTOMHANDLER_PORT".into())
            .or_insert_with(|| "0".into());
        let settings = Settings::from_lookup(|name| vars.get(name).cloned()).expect("settings");
        let app = Application::build(&settings).await.expect("server builds");
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            lake,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Forwarding mode: the caller's request as is.
    pub async fn post(&self, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
        let response = self
            .client
            .post(self.url("/api/ingest"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        Answer::read(response).await
    }

    pub async fn post_json(&self, body: &str) -> Answer {
        self.post("application/json", body.to_owned()).await
    }

    /// Payload mode: the body wrapped in a Functions host invocation, as the host does
    /// when `enableForwardingHttpRequest` is off. Returns the host-level status and the
    /// caller's answer taken out of `Outputs.res`.
    pub async fn invoke(&self, content_type: &str, body: &str) -> (u16, Answer) {
        self.invoke_with(content_type, body, &[]).await
    }

    /// As [`TestServer::invoke`], with more headers in `Data.req.Headers`.
    pub async fn invoke_with(
        &self,
        content_type: &str,
        body: &str,
        extra_headers: &[(&str, &str)],
    ) -> (u16, Answer) {
        let mut envelope = json!({
            "Data": {
                "req": {
                    "Url": format!("http://localhost:7071/api/ingest"),
                    "Method": "POST",
                    "Query": {},
                    "Headers": {
                        "Content-Type": [content_type],
                        "User-Agent": ["MongoDB Atlas App Services"],
                    },
                    "Params": {},
                    "Body": body,
                }
            },
            "Metadata": {
                "Query": {},
                "Headers": {"Content-Type": content_type},
                "sys": {"MethodName": "ingest", "UtcNow": "2026-11-22T10:00:00Z", "RandGuid": "4a7e6b8e-1f0c-4b5e-9d43-2c1c2c4f5a10"}
            }
        });
        for (name, value) in extra_headers {
            envelope["Data"]["req"]["Headers"][*name] = json!([value]);
        }
        let response = self
            .client
            .post(self.url("/ingest"))
            .json(&envelope)
            .send()
            .await
            .expect("request sent");
        let host_status = response.status().as_u16();
        let outer: Value = response.json().await.expect("JSON envelope");
        let res = &outer["Outputs"]["res"];
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(map) = res["headers"].as_object() {
            for (name, value) in map {
                if let (Ok(name), Some(value)) = (
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                    value.as_str(),
                ) {
                    if let Ok(value) = value.parse() {
                        headers.insert(name, value);
                    }
                }
            }
        }
        assert!(outer["Logs"].is_array(), "Logs is a list: {outer}");
        assert!(outer["ReturnValue"].is_null(), "{outer}");
        let body_text = res["body"].as_str().expect("body is a JSON string");
        let answer = Answer {
            status: res["statusCode"].as_u64().expect("statusCode") as u16,
            headers,
            body: serde_json::from_str(body_text).expect("body JSON"),
        };
        (host_status, answer)
    }

    /// The container directory inside the temporary lake.
    pub fn container(&self) -> PathBuf {
        self.lake.path().join(CONTAINER)
    }

    /// Every record file in the lake (not temporary files), by path relative to the container.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        collect(&self.container(), &self.container(), &mut files);
        files
    }

    /// The record stored at `path` (relative to the container), parsed.
    pub fn record(&self, path: &str) -> Value {
        let bytes = std::fs::read(self.container().join(path)).expect("record file");
        serde_json::from_slice(&bytes).expect("record is JSON")
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
    }
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            // The sink's staging, and compaction's hidden state (late markers that these
            // tests' events of long-closed hours leave; `compact::tests` covers them).
            if path
                .file_name()
                .is_some_and(|n| n == ".tmp" || n == "_compact")
            {
                continue;
            }
            collect(root, &path, files);
        } else {
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            files.insert(relative, std::fs::read(&path).expect("readable"));
        }
    }
}

impl Answer {
    async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("answer is JSON (status {status}): {text}"));
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A header of the answer, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Paths written by this request.
    pub fn written(&self) -> Vec<String> {
        strings(&self.body["paths"]["written"])
    }

    pub fn already_present(&self) -> Vec<String> {
        strings(&self.body["paths"]["alreadyPresent"])
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A sample event file from `samples/`.
pub fn sample(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A canonical-EJSON insert event carrying `full_document` (EJSON text) as its document.
pub fn insert_event(token: &str, time: u32, full_document: &str) -> String {
    format!(
        r#"{{"_id":{{"_data":"{token}"}},"operationType":"insert","clusterTime":{{"$timestamp":{{"t":{time},"i":1}}}},"wallTime":{{"$date":{{"$numberLong":"{ms}"}}}},"ns":{{"db":"corpus","coll":"docs"}},"documentKey":{{"_id":{{"$numberInt":"{time}"}}}},"fullDocument":{full_document}}}"#,
        ms = u64::from(time) * 1000
    )
}

/// MongoDB's BSON corpus: `BSON_CORPUS_DIR`, else the copy in `tests/data/bson-corpus`.
/// Missing is a failure, never a skip.
pub fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("BSON_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/bson-corpus")
        });
    assert!(
        dir.join("double.json").is_file(),
        "the BSON corpus is missing at {} (set BSON_CORPUS_DIR); these tests do not skip",
        dir.display()
    );
    dir
}
