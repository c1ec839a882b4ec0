//! A real S3-compatible server for the S3 sink's tests: moto's server mode on a free
//! loopback port, started and stopped by the test; and a loopback proxy in front of it
//! that injects the faults moto cannot (a lost answer, a 503).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongo_lake_ingest::configuration::Secret;
use mongo_lake_ingest::configuration::{S3Settings, StaticKeys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A moto server; killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// Starts moto and waits (up to 60 s) until it answers.
    pub async fn start() -> Moto {
        Moto::spawn(None).await
    }

    /// As [`Moto::start`], checking credentials as S3 does: only keys made through its
    /// IAM API are known, so any other key is refused (403 `InvalidAccessKeyId`).
    pub async fn start_checking_keys() -> Moto {
        Moto::spawn(Some("0")).await
    }

    async fn spawn(unchecked_actions: Option<&str>) -> Moto {
        let port = free_port();
        let mut command = super::python::moto_server();
        if let Some(count) = unchecked_actions {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", count);
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto's server starts (tests/python/requirements-moto.txt)");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        let client = reqwest::Client::new();
        while client.get(&moto.endpoint).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto's server did not answer on {} within 60 s",
                moto.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    /// Creates a bucket (moto checks no signature by default).
    pub async fn bucket(&self, name: &str) {
        let answer = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(
            answer.status().is_success(),
            "create bucket: {}",
            answer.status()
        );
    }

    /// An object's bytes, `None` when it is missing: read past the sink, as another
    /// S3 client would (moto checks no signature, but refuses anonymous reads).
    pub async fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let answer = reqwest::Client::new()
            .get(format!("{}/{bucket}/{key}", self.endpoint))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            )
            .send()
            .await
            .expect("get object");
        answer
            .status()
            .is_success()
            .then_some(answer.bytes().await.expect("body").to_vec())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

/// S3 settings for `bucket` at `endpoint`, path-style, static test keys, short budgets.
pub fn settings(endpoint: &str, bucket: &str) -> S3Settings {
    S3Settings {
        bucket: bucket.to_owned(),
        prefix: Vec::new(),
        region: Some("us-east-1".to_owned()),
        endpoint: Some(endpoint.to_owned()),
        path_style: true,
        static_keys: Some(StaticKeys {
            access_key_id: "testing".to_owned(),
            secret_access_key: Secret::new("testing"),
            session_token: None,
        }),
        write_concurrency: 32,
        request_timeout: Duration::from_secs(10),
        retry_budget: Duration::from_secs(20),
    }
}

/// What the proxy does to `PUT` requests, the first `count` of them.
#[derive(Clone, Copy)]
pub enum PutFault {
    /// Forward the request, then close the connection without the answer.
    LoseAnswer,
    /// Answer 503 SlowDown without forwarding.
    Busy,
    /// Forward the request without its `If-None-Match`: a store that ignores the
    /// condition.
    IgnoreCondition,
}

/// A loopback proxy to moto that spoils the first `count` PUTs; counts every PUT.
pub struct FaultProxy {
    pub endpoint: String,
    pub puts: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Spoils the first `count` PUTs.
    pub async fn start(upstream: &str, fault: PutFault, count: usize) -> FaultProxy {
        FaultProxy::start_after(upstream, fault, 0, count).await
    }

    /// Lets `skip` PUTs through, then spoils the next `count`.
    pub async fn start_after(
        upstream: &str,
        fault: PutFault,
        skip: usize,
        count: usize,
    ) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("upstream address");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let puts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&puts);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let puts = Arc::clone(&counted);
                tokio::spawn(relay(client, upstream, puts, fault, skip..skip + count));
            }
        });
        FaultProxy { endpoint, puts }
    }

    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }
}

/// One connection: the first request's head decides; the rest is copied both ways. Every
/// request forwarded asks the server to close the connection after it, so the client
/// opens a new one for its next request and the proxy sees (counts, spoils) each.
async fn relay(
    mut client: tokio::net::TcpStream,
    upstream: SocketAddr,
    puts: Arc<AtomicUsize>,
    fault: PutFault,
    spoiled: std::ops::Range<usize>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let spoil = head.starts_with(b"PUT ") && spoiled.contains(&puts.fetch_add(1, Ordering::SeqCst));
    if !spoil {
        if server.write_all(&closing(&head)).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
        return;
    }
    match fault {
        PutFault::IgnoreCondition => {
            let text = String::from_utf8_lossy(&head);
            let unconditional: Vec<&str> = text
                .split("\r\n")
                .filter(|line| !line.to_ascii_lowercase().starts_with("if-none-match:"))
                .collect();
            let head = closing(unconditional.join("\r\n").as_bytes());
            if server.write_all(&head).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        }
        PutFault::Busy => {
            let body =
                "<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>";
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
        }
        PutFault::LoseAnswer => {
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length: usize = text
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if client.read_exact(&mut body).await.is_err() {
                return;
            }
            let _ = server.write_all(&head).await;
            let _ = server.write_all(&body).await;
            // Wait for the answer's first bytes, so the write happened, then drop both.
            let mut answer = [0u8; 64];
            let _ = server.read(&mut answer).await;
        }
    }
}

/// The request head with `connection: close` in place of any `connection` header.
fn closing(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = text
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
}
