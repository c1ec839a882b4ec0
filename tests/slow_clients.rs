//! Slow, stalled and idle clients, the connection limit, and SIGTERM: real TCP over
//! loopback, against the server in process (short timeouts) or the `handler` binary.
//! Time bounds here are deadlines with wide margins, never measures of speed.

mod support;

use std::time::{Duration, Instant};

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpMatch};
use serde_json::Value;
use support::handler::{count_files, first_files, numbered_batch, Handler};
use support::{sample, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PING: &[u8] = b"GET / HTTP/1.1\r\nHost: handler\r\n\r\n";

/// The head of a forwarding-mode POST announcing `length` body bytes.
fn post_head(length: usize) -> String {
    format!(
        "POST /api/ingest HTTP/1.1\r\nHost: handler\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// One response read off a kept-alive connection.
struct Response {
    status: u16,
    body: Value,
}

/// Reads one response (head, then `Content-Length` bytes); `None` if the connection ends
/// first.
async fn read_response(stream: &mut TcpStream) -> Option<Response> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while received.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    let body =
        serde_json::from_slice(&received[head_end..head_end + length]).unwrap_or(Value::Null);
    Some(Response { status, body })
}

/// Waits until the server closes `stream` (end of stream or reset), discarding anything
/// it sends; returns when, or `None` if it is still open at `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> Option<Instant> {
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut sink)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A connection that has been answered once and is now kept alive, idle.
async fn idle_connection(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(PING).await.expect("ping");
    let answer = read_response(&mut stream).await.expect("ping answered");
    assert_eq!(answer.status, 200);
    stream
}

#[tokio::test]
async fn a_header_dribbled_byte_by_byte_is_closed_after_the_header_timeout() {
    // Idle connections may stay far longer: the dribble must not count as idle.
    let server = TestServer::start(&[
        ("HEADER_READ_TIMEOUT_SECS", "1"),
        ("IDLE_TIMEOUT_SECS", "60"),
    ])
    .await;
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let opened = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let head = post_head(10);
    let dribble = tokio::spawn(async move {
        let mut sent = 0;
        for byte in head.as_bytes() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        (sent, head.len())
    });
    let mut sink = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        Instant::now()
    })
    .await
    .expect("the server closes a dribbling client");
    assert!(
        closed - opened >= Duration::from_millis(900),
        "not before the header timeout: {:?}",
        closed - opened
    );
    let (sent, total) = dribble.await.expect("dribble");
    assert!(
        sent < total,
        "closed while the head was still arriving ({sent} of {total} bytes)"
    );
    assert!(server.files().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_reusable_within_the_idle_timeout_and_closed_after_it() {
    let server = TestServer::start(&[
        ("HEADER_READ_TIMEOUT_SECS", "1"),
        ("IDLE_TIMEOUT_SECS", "3"),
    ])
    .await;
    let mut stream = idle_connection(&server).await;
    // Longer than the header timeout, well within the idle one: still open and reusable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(PING).await.expect("second request");
    let again = read_response(&mut stream)
        .await
        .expect("answered on the same connection");
    assert_eq!(again.status, 200);
    let answered = Instant::now();
    let closed = closed_by(&mut stream, answered + Duration::from_secs(20))
        .await
        .expect("an idle connection is closed");
    assert!(
        closed - answered >= Duration::from_millis(2900),
        "not before the idle timeout: {:?}",
        closed - answered
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_or_dribbled_body_gets_408_and_writes_nothing() {
    let server = TestServer::start(&[("BODY_READ_TIMEOUT_SECS", "1")]).await;
    let event = sample("insert.json");

    // Stalled: the head and part of the body, then nothing.
    let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
    let sent = Instant::now();
    stalled
        .write_all(format!("{}{}", post_head(event.len()), &event[..100]).as_bytes())
        .await
        .expect("head");
    let answer = tokio::time::timeout(Duration::from_secs(20), read_response(&mut stalled))
        .await
        .expect("answered, not left waiting")
        .expect("an answer");
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(answer.status, 408);
    assert_eq!(answer.body["error"], "request_timeout", "{}", answer.body);
    assert!(
        closed_by(&mut stalled, Instant::now() + Duration::from_secs(10))
            .await
            .is_some(),
        "the connection is not kept: its body never ended"
    );

    // Dribbled: every byte arrives, too slowly; the timeout is for the whole body.
    let mut dribbled = TcpStream::connect(server.addr).await.expect("connect");
    dribbled
        .write_all(post_head(event.len()).as_bytes())
        .await
        .expect("head");
    let (mut reader, mut writer) = dribbled.into_split();
    let body = event.clone().into_bytes();
    tokio::spawn(async move {
        for chunk in body.chunks(20) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    assert!(server.files().is_empty(), "nothing written");
    // The same event sent at once is stored: the timeout refused only slowness.
    assert_eq!(server.post_json(&event).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_connection_over_the_limit_waits_until_one_closes() {
    let server = TestServer::start(&[("MAX_CONNECTIONS", "2"), ("IDLE_TIMEOUT_SECS", "60")]).await;
    let first = idle_connection(&server).await;
    let _second = idle_connection(&server).await;
    let mut third = TcpStream::connect(server.addr)
        .await
        .expect("the kernel queues it");
    third.write_all(PING).await.expect("request");
    let early = tokio::time::timeout(Duration::from_secs(1), read_response(&mut third)).await;
    assert!(
        early.is_err(),
        "not served while two connections hold the slots"
    );
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut third))
        .await
        .expect("served once a slot frees")
        .expect("an answer");
    assert_eq!(answer.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_holding_every_slot_give_way_after_the_idle_timeout() {
    let server = TestServer::start(&[
        ("MAX_CONNECTIONS", "4"),
        ("HEADER_READ_TIMEOUT_SECS", "1"),
        ("IDLE_TIMEOUT_SECS", "2"),
    ])
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(idle_connection(&server).await);
    }
    // Clients that connect and never send a byte queue up behind them.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        server.post_json(&sample("insert.json")),
    )
    .await
    .expect("a new request is served despite every slot having been taken");
    assert_eq!(answer.status, 200);
    assert_eq!(server.files().len(), 1);
    for mut stream in idle.into_iter().chain(silent) {
        assert!(
            closed_by(&mut stream, Instant::now() + Duration::from_secs(10))
                .await
                .is_some(),
            "every idle or silent connection was closed by the server"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_open_file_limit_connections_are_capped_and_requests_still_served() {
    let lake = tempfile::tempdir().expect("lake");
    let handler = Handler::start_with_open_file_limit(
        lake.path(),
        &[
            ("HEADER_READ_TIMEOUT_SECS", "1"),
            ("IDLE_TIMEOUT_SECS", "2"),
        ],
        64,
    );
    // 200 silent connections: four times the descriptors the handler has.
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(handler.addr).await.expect("connect"));
    }
    let answer = tokio::time::timeout(
        Duration::from_secs(120),
        handler.post_json(sample("insert.json")),
    )
    .await
    .expect("served, not left hanging");
    assert_eq!(answer.status(), 200);
    assert_eq!(count_files(&lake.path().join("mongodb/changes")), 1);
    drop(silent);
    handler.terminate();
    let (code, log) = tokio::task::spawn_blocking(move || handler.wait())
        .await
        .expect("wait");
    assert_eq!(code, Some(0), "{log:?}");
    let capped = log
        .iter()
        .find(|line| line.contains("open-file limit"))
        .unwrap_or_else(|| panic!("a warning that MAX_CONNECTIONS was capped: {log:?}"));
    assert!(capped.contains("\"allowed\":32"), "{capped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drops_uploads_answers_complete_requests_and_exits_within_the_bound() {
    const BOUND_SECS: u64 = 20;
    let lake = tempfile::tempdir().expect("lake");
    let bound = BOUND_SECS.to_string();
    let handler = Handler::start(lake.path(), &[("SHUTDOWN_TIMEOUT_SECS", bound.as_str())]);

    // Clients that would hold a plain graceful shutdown forever (the timeouts are long).
    let event = sample("insert.json");
    let mut uploading = TcpStream::connect(handler.addr).await.expect("connect");
    uploading
        .write_all(format!("{}{}", post_head(event.len()), &event[..100]).as_bytes())
        .await
        .expect("half a body");
    let mut heading = TcpStream::connect(handler.addr).await.expect("connect");
    heading
        .write_all(b"POST /api/ingest HTTP/1.1\r\nHo")
        .await
        .expect("half a head");
    let mut idle = TcpStream::connect(handler.addr).await.expect("connect");
    idle.write_all(PING).await.expect("ping");
    assert_eq!(read_response(&mut idle).await.expect("ping").status, 200);

    // A complete batch, being written when the signal comes.
    const EVENTS: usize = 10_000;
    let request = handler.post_json_in_background(numbered_batch(EVENTS, r#"{"_id": 1}"#));
    let dir = lake.path().join("mongodb/changes");
    let stored_at_signal = first_files(&dir).await;
    handler.terminate();
    let signalled = Instant::now();
    assert!(
        (1..EVENTS).contains(&stored_at_signal),
        "the signal came while the batch was written ({stored_at_signal} stored)"
    );

    let response = request.await.expect("join").expect("answered, not dropped");
    assert_eq!(response.status(), 200);
    let (status, log) = tokio::task::spawn_blocking(move || {
        handler.wait_until(signalled + Duration::from_secs(BOUND_SECS + 10))
    })
    .await
    .expect("wait");
    let status =
        status.unwrap_or_else(|| panic!("still running {BOUND_SECS} s after SIGTERM: {log:?}"));
    assert_eq!(status.code(), Some(0), "{log:?}");
    assert_eq!(
        count_files(&dir),
        EVENTS,
        "every acknowledged write is there"
    );
    for (name, stream) in [
        ("uploading", &mut uploading),
        ("heading", &mut heading),
        ("idle", &mut idle),
    ] {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(
            !String::from_utf8_lossy(&rest).contains(" 200 "),
            "{name}: closed without an answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_bound_while_a_write_outlasts_it() {
    let dfs = DfsServer::builder()
        .filesystem("mongodb")
        .start()
        .await
        .expect("DFS server");
    dfs.faults().push(
        FaultRule::new(OpMatch::Writes, FaultAction::Delay(Duration::from_secs(60))).always(),
    );
    let handler = Handler::start_on_adls(
        &dfs.endpoint(),
        &[
            ("STORAGE_ACCOUNT_KEY", dfs.account_key().as_str()),
            ("STORAGE_REQUEST_TIMEOUT_SECS", "90"),
            ("STORAGE_RETRY_BUDGET_SECS", "30"),
            ("SHUTDOWN_TIMEOUT_SECS", "2"),
        ],
    );
    let request = handler.post_json_in_background(sample("insert.json"));
    let waiting = Instant::now();
    while dfs.faults().fired() == 0 && waiting.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(dfs.faults().fired() > 0, "the write reached storage");
    handler.terminate();
    let signalled = Instant::now();
    let (status, log) = tokio::task::spawn_blocking(move || {
        handler.wait_until(signalled + Duration::from_secs(2 + 10))
    })
    .await
    .expect("wait");
    let status = status.unwrap_or_else(|| panic!("still running after the bound: {log:?}"));
    assert_eq!(
        status.code(),
        Some(1),
        "an abandoned write is not a clean exit"
    );
    assert!(
        log.iter()
            .any(|line| line.contains("SHUTDOWN_TIMEOUT_SECS (2 s)")),
        "{log:?}"
    );
    let answer = request.await.expect("join");
    assert!(
        answer.is_err(),
        "no answer, so no acknowledgement: {:?}",
        answer.map(|response| response.status())
    );
}
