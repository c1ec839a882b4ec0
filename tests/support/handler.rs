//! The built `handler` binary as the Functions host runs it: started with
//! `FUNCTIONS_CUSTOMHANDLER_PORT` in its environment, stopped with SIGTERM, and killed if
//! a test ends (or fails) without stopping it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Handler {
    child: Child,
    pub addr: SocketAddr,
    /// The `ready` line, parsed.
    pub ready: Value,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Handler {
    /// Starts the binary with JSON logs and waits for its `ready` line.
    pub fn start(lake: &Path, extra: &[(&str, &str)]) -> Handler {
        Handler::spawn(
            Command::new(env!("CARGO_BIN_EXE_handler")),
            Some(lake),
            extra,
        )
    }

    /// Starts the binary in the folder `dir` with only `vars` set (no lake folder: the
    /// default `./lake` is then relative to `dir`).
    pub fn start_in(dir: &Path, vars: &[(&str, &str)]) -> Handler {
        let mut command = Command::new(env!("CARGO_BIN_EXE_handler"));
        command.current_dir(dir);
        Handler::spawn(command, None, vars)
    }

    /// As [`Handler::start`], under an open-file limit of `files` (soft and hard), as a
    /// small container or a tight `ulimit` gives it.
    pub fn start_with_open_file_limit(lake: &Path, extra: &[(&str, &str)], files: u32) -> Handler {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\""))
            .arg(env!("CARGO_BIN_EXE_handler"));
        Handler::spawn(command, Some(lake), extra)
    }

    /// Starts the handler on ADLS at the DFS server `endpoint`, with `extra` settings,
    /// writing files with the DFS protocol (create, append, rename) unless `extra` sets
    /// `STORAGE_WRITE_PROTOCOL`: the tests that use it break those requests.
    pub fn start_on_adls(endpoint: &str, extra: &[(&str, &str)]) -> Handler {
        let unused = tempfile::tempdir().expect("dir");
        let mut settings = vec![
            ("STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
            ("STORAGE_DFS_ENDPOINT", endpoint),
            ("STORAGE_WRITE_PROTOCOL", "dfs"),
        ];
        settings.extend_from_slice(extra);
        Handler::start(unused.path(), &settings)
    }

    /// Starts the handler on the DFS test server with the default write protocol: one Put
    /// Blob per file on the server's Blob endpoint.
    pub fn start_on_blob(server: &dfs_test_server::DfsServer, extra: &[(&str, &str)]) -> Handler {
        let (dfs, blob) = (server.endpoint(), server.blob_endpoint());
        let mut settings = vec![
            ("STORAGE_WRITE_PROTOCOL", "blob"),
            ("STORAGE_BLOB_ENDPOINT", blob.as_str()),
        ];
        settings.extend_from_slice(extra);
        Handler::start_on_adls(&dfs, &settings)
    }

    /// With `lake`, records go there unless `extra` names an ADLS account.
    fn spawn(mut command: Command, lake: Option<&Path>, extra: &[(&str, &str)]) -> Handler {
        command
            .env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", "0")
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let adls = extra
            .iter()
            .any(|(name, _)| *name == "STORAGE_ACCOUNT_NAME");
        if let (Some(lake), false) = (lake, adls) {
            command.env("LOCAL_LAKE_DIR", lake);
        }
        for (name, value) in extra {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("handler starts");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut handler = Handler {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ready: Value::Null,
            lines,
            log: Vec::new(),
        };
        handler.ready = loop {
            let line = handler
                .lines
                .recv_timeout(Duration::from_secs(10))
                .expect("a ready line within 10 s");
            handler.log.push(line.clone());
            let entry: Value = serde_json::from_str(&line).expect("JSON log line");
            if entry["message"] == "ready" {
                break entry;
            }
        };
        handler.addr = handler.ready_field("address").parse().expect("an address");
        handler
    }

    /// A text field of the `ready` line.
    pub fn ready_field(&self, name: &str) -> &str {
        self.ready[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {}", self.ready))
    }

    /// The next log line, parsed, waiting up to `timeout`; it is kept for [`Handler::wait`].
    pub fn next_line(&mut self, timeout: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.log.push(line.clone());
        Some(serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}")))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a JSON body to the forwarding-mode route, as the Functions host passes it on.
    pub async fn post_json(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/api/ingest"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post")
    }

    /// POSTs a JSON body from another task, so the test can act while it is handled.
    pub fn post_json_in_background(
        &self,
        body: String,
    ) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
        let url = self.url("/api/ingest");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
        })
    }

    /// Sends SIGTERM, as the host does when it stops a worker.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for exit and returns the exit code and every log line.
    pub fn wait(self) -> (Option<i32>, Vec<String>) {
        let (status, log) = self.wait_until(Instant::now() + Duration::from_secs(600));
        (status.and_then(|status| status.code()), log)
    }

    /// Waits for exit until `deadline`; `None` if the process is still running then (it
    /// is killed when the handler is dropped). Returns every log line so far too.
    pub fn wait_until(mut self, deadline: Instant) -> (Option<ExitStatus>, Vec<String>) {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let drain = if status.is_some() { 2 } else { 0 };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(drain)) {
            self.log.push(line);
        }
        (status, std::mem::take(&mut self.log))
    }
}

impl Drop for Handler {
    /// A test that fails (or forgets to stop it) must not leave the process behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Wide: a debug build on a busy machine. Only a hang (a server started) misses it.
const RUN_DEADLINE: Duration = Duration::from_secs(20);

/// The log line of the request that failed on storage (503), from a handler's log.
pub fn storage_failure(log: &[String]) -> &str {
    log.iter()
        .find(|line| line.contains("ingest failed: storage"))
        .expect("a log line for the failed request")
}

/// Runs the handler with `args` and only `vars` in its environment and waits for it to
/// exit, failing if it is still running at the deadline (it would be serving).
pub fn run(args: &[&str], vars: &[(&str, &str)]) -> Output {
    run_within(args, vars, RUN_DEADLINE)
}

/// As [`run`], with a deadline of the caller's (a pass over many records).
pub fn run_within(args: &[&str], vars: &[(&str, &str)], deadline: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("handler starts");
    let started = Instant::now();
    while child.try_wait().expect("status").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("handler {args:?} still running after {deadline:?}: it serves or hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A JSON array of `events` distinct insert events of `document`: large enough to be
/// still being written when a test signals the handler.
pub fn numbered_batch(events: usize, document: &str) -> String {
    let events: Vec<String> = (0..events as u32)
        .map(|n| super::insert_event(&format!("82{n:08X}"), 1_700_000_000 + n, document))
        .collect();
    format!("[{}]", events.join(","))
}

/// Waits up to 30 s for the first file under `dir` and returns how many there are then.
pub async fn first_files(dir: &Path) -> usize {
    let started = Instant::now();
    while count_files(dir) == 0 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    count_files(dir)
}

/// Files under `dir`, at any depth.
pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    let path = entry.path();
                    if path.is_dir() {
                        count_files(&path)
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
