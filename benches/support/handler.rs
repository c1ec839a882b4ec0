//! The release `handler` binary as a benchmark drives it: started with settings on a free
//! loopback port, waited for as the Functions host waits, measured through /proc.
//! `BENCH_HANDLER` runs another build of it (say, an older commit's) instead.
#![allow(dead_code)] // each benchmark uses a different part

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Handler {
    pub child: Child,
    pub port: u16,
}

impl Handler {
    /// Starts the handler on a local lake.
    pub fn start(lake: PathBuf, durable: bool) -> Handler {
        Handler::start_with(&[
            ("LOCAL_LAKE_DIR", lake.display().to_string()),
            ("LOCAL_LAKE_FSYNC", durable.to_string()),
        ])
    }

    /// Starts the handler with these settings (and nothing else from the environment).
    pub fn start_with(settings: &[(&str, String)]) -> Handler {
        let port = free_port();
        let child = Command::new(binary())
            .env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .envs(
                std::env::var("BENCH_MALLOC_ARENA_MAX")
                    .ok()
                    .map(|v| ("MALLOC_ARENA_MAX", v)),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("handler starts");
        let handler = Handler { child, port };
        handler.wait_ready(Instant::now());
        handler
    }

    /// Polls `GET /` as the Functions host does; returns the time to the first answer.
    pub fn wait_ready(&self, since: Instant) -> Duration {
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut reply = [0u8; 12];
                if stream.read_exact(&mut reply).is_ok() && reply.starts_with(b"HTTP/1.1 200") {
                    return since.elapsed();
                }
            }
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "handler not ready"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/ingest", self.port)
    }

    /// CPU time the handler used so far (user + system), from /proc.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / per_second
    }

    /// Peak resident set size so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0)
            .unwrap_or(f64::NAN)
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The binary benchmarked: `BENCH_HANDLER`, else this build's.
pub fn binary() -> PathBuf {
    std::env::var_os("BENCH_HANDLER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_handler")))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// POSTs a JSON body to the ingest URL, as the Functions host passes a request on.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answer")
}

/// Runs `handler <args>` (a pass: `compact`, `mirror`) with `settings` only; returns seconds, peak RSS (MiB) and stdout.
// The child is reaped by `wait4`, which also gives its peak RSS; clippy cannot see that.
#[allow(clippy::zombie_processes)]
pub fn run_command(args: &[&str], settings: &[(&str, String)]) -> (f64, f64, String) {
    let started = Instant::now();
    let child = Command::new(binary())
        .env_clear()
        .args(args)
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the handler starts");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("stdout");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).expect("summary");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "waited for the pass");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the pass failed: {text}"
    );
    (seconds, usage.ru_maxrss as f64 / 1024.0, text)
}
