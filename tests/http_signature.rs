//! Signed requests over real HTTP, in both custom-handler modes: with `INGEST_HMAC_SECRET`
//! set, only a request carrying a fresh HMAC of its exact body is stored; anything else
//! gets 401 `invalid_signature` and writes nothing. Without the setting, nothing changes.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::{insert_event, sample, Answer, TestServer};

const SECRET: &str = "correct-horse-battery-staple-42";
const HEADER: &str = "X-Ingest-Signature";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, as the Atlas function sends it.
fn v1(secret: &str, timestamp: u64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    format!("t={timestamp},v1={}", v1(secret, timestamp, body))
}

async fn signed_server() -> TestServer {
    TestServer::start(&[("INGEST_HMAC_SECRET", SECRET)]).await
}

/// Forwarding mode with an optional signature header.
async fn post(server: &TestServer, content_type: &str, body: &str, header: Option<&str>) -> Answer {
    let mut request = server
        .client
        .post(server.url("/api/ingest"))
        .header("Content-Type", content_type)
        .body(body.to_owned());
    if let Some(header) = header {
        request = request.header(HEADER, header);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body: Value = response.json().await.expect("JSON answer");
    Answer {
        status,
        headers,
        body,
    }
}

/// Payload mode: the signature travels in `Data.req.Headers` like every other header.
/// Returns the host-level status and the caller's status and body from `Outputs.res`.
async fn invoke(server: &TestServer, body: &str, header: Option<&str>) -> (u16, u16, Value) {
    let headers: Vec<(&str, &str)> = header.map(|value| (HEADER, value)).into_iter().collect();
    let (host_status, answer) = server.invoke_with("application/json", body, &headers).await;
    (host_status, answer.status, answer.body)
}

fn assert_refused(answer: &Answer, why: &str) {
    assert_eq!(answer.status, 401, "{why}: {}", answer.body);
    assert_eq!(answer.body["error"], "invalid_signature", "{why}");
    assert!(answer.body["detail"].is_string(), "{why}");
    assert!(
        !answer.body.to_string().contains(SECRET),
        "{why}: the answer must not reveal the secret"
    );
}

/// Every way a signature can be wrong, for the body `body` signed now. The stale and future
/// timestamps keep a margin over the 300 s tolerance: seconds pass while the test runs.
fn bad_signatures(body: &str) -> Vec<(&'static str, Option<String>)> {
    let t = now();
    vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("garbage", Some("sha256=deadbeef".into())),
        ("no timestamp", Some(format!("v1={}", v1(SECRET, t, body)))),
        ("short hex", Some(format!("t={t},v1=abc123"))),
        (
            "wrong secret",
            Some(signature("another-secret-value-0123", t, body)),
        ),
        ("another body", Some(signature(SECRET, t, "{}"))),
        ("stale", Some(signature(SECRET, t - 310, body))),
        ("from the future", Some(signature(SECRET, t + 310, body))),
        (
            "timestamp moved",
            Some(format!("t={},v1={}", t - 1, v1(SECRET, t, body))),
        ),
    ]
}

#[tokio::test]
async fn a_valid_signature_is_stored_in_forwarding_mode() {
    let server = signed_server().await;
    let body = sample("insert.json");
    let header = signature(SECRET, now(), &body);
    let answer = post(&server, "application/json", &body, Some(&header)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["written"], 1);
    assert_eq!(server.files().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_signatures_get_401_and_write_nothing_in_forwarding_mode() {
    let server = signed_server().await;
    let body = sample("insert.json");
    for (why, header) in bad_signatures(&body) {
        let answer = post(&server, "application/json", &body, header.as_deref()).await;
        assert_refused(&answer, why);
    }
    // The signature is checked before the media type and the size: an unsigned caller
    // learns nothing else about the endpoint.
    let answer = post(&server, "text/plain", "hello", None).await;
    assert_refused(&answer, "unsigned text/plain");
    assert!(server.files().is_empty(), "nothing may be written");
    server.stop().await;
}

#[tokio::test]
async fn a_rotating_sender_may_offer_several_signatures() {
    let server = signed_server().await;
    let body = sample("insert.json");
    let t = now();
    let old = v1("the-previous-secret-value", t, &body);
    let new = v1(SECRET, t, &body);
    let answer = post(
        &server,
        "application/json",
        &body,
        Some(&format!("t={t},v1={old},v1={new}")),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The same list split over two header lines is one list.
    let response = server
        .client
        .post(server.url("/api/ingest"))
        .header("Content-Type", "application/json")
        .header(HEADER, format!("t={t},v1={old}"))
        .header(HEADER, format!("v1={new}"))
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    // Neither signature from the right secret: refused.
    let answer = post(
        &server,
        "application/json",
        &body,
        Some(&format!("t={t},v1={old},v1={old}")),
    )
    .await;
    assert_refused(&answer, "two wrong signatures");
    server.stop().await;
}

#[tokio::test]
async fn batches_and_ndjson_are_signed_as_sent() {
    let server = signed_server().await;
    let events: Vec<String> = (0..3)
        .map(|n| insert_event(&format!("82{n:08X}"), 1_700_000_000 + n, r#"{"_id":1}"#))
        .collect();
    let array = format!("[{}]", events.join(","));
    let ndjson = events.join("\n");
    for (content_type, body) in [
        ("application/json", &array),
        ("application/x-ndjson", &ndjson),
    ] {
        let header = signature(SECRET, now(), body);
        let answer = post(&server, content_type, body, Some(&header)).await;
        assert_eq!(answer.status, 200, "{content_type}: {}", answer.body);
        assert_eq!(answer.body["events"], 3, "{content_type}");
    }
    // One byte changed (a space added) breaks the signature.
    let header = signature(SECRET, now(), &array);
    let answer = post(
        &server,
        "application/json",
        &format!("{array} "),
        Some(&header),
    )
    .await;
    assert_refused(&answer, "body with a trailing space");
    assert_eq!(server.files().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn large_bodies_are_checked_too() {
    // Over the 64 KiB inline limit: the HMAC runs on the blocking pool.
    let server = signed_server().await;
    let document = format!(r#"{{"_id":1,"plot":"{}"}}"#, "x".repeat(200 * 1024));
    let body = insert_event("82000000AA", 1_700_000_000, &document);
    let answer = post(
        &server,
        "application/json",
        &body,
        Some(&signature(SECRET, now(), &body)),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let tampered = body.replacen("xxx", "xxy", 1);
    let header = signature(SECRET, now(), &body);
    let answer = post(&server, "application/json", &tampered, Some(&header)).await;
    assert_refused(&answer, "a large body changed by one byte");
    let (_, status, _) = invoke(&server, &tampered, Some(&header)).await;
    assert_eq!(
        status, 401,
        "payload mode, a large body changed by one byte"
    );
    assert_eq!(server.files().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn payload_mode_checks_the_signature_from_the_envelope_headers() {
    let server = signed_server().await;
    let body = sample("insert.json");
    for (why, header) in bad_signatures(&body) {
        let (host, status, answer) = invoke(&server, &body, header.as_deref()).await;
        assert_eq!(host, 200, "{why}: the host itself always gets 200");
        assert_eq!(status, 401, "{why}: {answer}");
        assert_eq!(answer["error"], "invalid_signature", "{why}");
    }
    assert!(server.files().is_empty(), "nothing may be written");

    let header = signature(SECRET, now(), &body);
    let (host, status, answer) = invoke(&server, &body, Some(&header)).await;
    assert_eq!((host, status), (200, 200), "{answer}");
    assert_eq!(answer["written"], 1);
    assert_eq!(server.files().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn without_a_secret_unsigned_and_signed_requests_are_accepted() {
    let server = TestServer::start(&[]).await;
    let body = sample("insert.json");
    let answer = post(&server, "application/json", &body, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = post(
        &server,
        "application/json",
        &body,
        Some("not even a signature"),
    )
    .await;
    assert_eq!(answer.status, 200, "the header is ignored: {}", answer.body);
    let (_, status, answer) = invoke(&server, &body, None).await;
    assert_eq!(status, 200, "{answer}");
    server.stop().await;
}

/// Payload mode with the caller's headers exactly as listed (names in this order, any
/// casing, each value a one-element list) and `body_json` as the text of `Body`.
async fn invoke_raw(
    server: &TestServer,
    headers: &[(&str, &str)],
    body_json: &str,
) -> (u16, Value) {
    let headers: Vec<String> = headers
        .iter()
        .map(|(name, value)| format!("{}:[{}]", Value::from(*name), Value::from(*value)))
        .collect();
    let envelope = format!(
        r#"{{"Data":{{"req":{{"Method":"POST","Headers":{{{}}},"Body":{body_json}}}}},"Metadata":{{}}}}"#,
        headers.join(",")
    );
    let response = server
        .client
        .post(server.url("/ingest"))
        .header("Content-Type", "application/json")
        .body(envelope)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "the host always gets 200");
    let outer: Value = response.json().await.expect("envelope");
    let res = &outer["Outputs"]["res"];
    let body = serde_json::from_str(res["body"].as_str().expect("body")).expect("JSON");
    (res["statusCode"].as_u64().expect("status") as u16, body)
}

#[tokio::test]
async fn payload_mode_headers_differing_in_case_are_one_list_in_envelope_order() {
    let server = signed_server().await;
    let body = sample("insert.json");
    let body_json = Value::from(body.as_str()).to_string();
    let t = now();
    let signed = signature(SECRET, t, &body);

    // The signature is found whichever casing carries it.
    for name in [
        "x-ingest-signature",
        "X-INGEST-SIGNATURE",
        "X-Ingest-Signature",
    ] {
        let headers = [
            ("content-type", "application/json"),
            (name, signed.as_str()),
        ];
        let (status, answer) = invoke_raw(&server, &headers, &body_json).await;
        assert_eq!(status, 200, "{name}: {answer}");
    }
    // Two casings are one header: `t` under one, `v1` under the other.
    let v1_only = format!("v1={}", v1(SECRET, t, &body));
    let split = [
        ("Content-Type", "application/json"),
        ("X-Ingest-Signature", &format!("t={t}") as &str),
        ("x-ingest-signature", &v1_only),
    ];
    let (status, answer) = invoke_raw(&server, &split, &body_json).await;
    assert_eq!(status, 200, "{answer}");

    // Conflicting Content-Types: the first in the envelope counts, every time (a map
    // with random iteration order answered 200 or 415 from run to run).
    let json_first = [
        ("Content-Type", "application/json"),
        ("content-type", "text/plain"),
        (HEADER, signed.as_str()),
    ];
    let text_first = [
        ("content-type", "text/plain"),
        ("Content-Type", "application/json"),
        (HEADER, signed.as_str()),
    ];
    for _ in 0..16 {
        let (status, answer) = invoke_raw(&server, &json_first, &body_json).await;
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = invoke_raw(&server, &text_first, &body_json).await;
        assert_eq!(
            (status, &answer["error"]),
            (415, &Value::from("unsupported_media_type"))
        );
    }
    assert_eq!(server.files().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn payload_mode_refuses_an_unsigned_body_of_any_shape_before_reading_it() {
    let server = signed_server().await;
    let event = sample("insert.json");
    // A host passing the body as JSON rather than a string: unsigned, it is refused like
    // any other (and never parsed: the memory benchmark measures that).
    let array = format!("[{event}, {event}]");
    let (status, answer) =
        invoke_raw(&server, &[("Content-Type", "application/json")], &array).await;
    assert_eq!(
        (status, &answer["error"]),
        (401, &Value::from("invalid_signature"))
    );
    // Signed, it is checked over its text as it stands in the envelope.
    let header = signature(SECRET, now(), &array);
    let headers = [
        ("Content-Type", "application/json"),
        (HEADER, header.as_str()),
    ];
    let (status, answer) = invoke_raw(&server, &headers, &array).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events"], 2);
    server.stop().await;
}
