//! Payload mode: the Functions host wraps the caller's request in an invocation envelope
//! (`{"Data":{"req":{...,"Headers":{..},"Body":"<original body>"}},"Metadata":{..}}`) and
//! expects `{"Outputs":{"res":{statusCode, body, headers}},"Logs":[..],"ReturnValue":null}`
//! back. The host always gets 200; the caller's status is `Outputs.res.statusCode`.
//! A signature is checked over `Body` as sent, the text the caller signed.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{finish, framing_for, read_body, AppState, Reservation};
use crate::blocking::run_sized;
use crate::error::{IngestError, Reply};
use crate::ingest::Summary;
use crate::signature;

/// Room for the envelope around a body of the maximum size (JSON string escaping).
const ENVELOPE_OVERHEAD: usize = 1024 * 1024;

#[derive(Deserialize)]
struct Invocation {
    #[serde(rename = "Data")]
    data: InvocationData,
}

#[derive(Deserialize)]
struct InvocationData {
    /// Named after the trigger binding in `ingest/function.json`.
    req: HttpRequestData,
}

#[derive(Deserialize)]
struct HttpRequestData {
    #[serde(rename = "Headers", default)]
    headers: HashMap<String, HeaderValues>,
    #[serde(rename = "Body", default)]
    body: Value,
}

/// The host sends each header as a list of values; a plain string is accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderValues {
    Many(Vec<String>),
    One(String),
}

impl HttpRequestData {
    fn header(&self, name: &str) -> Option<&str> {
        match self.values(name)? {
            HeaderValues::Many(list) => list.first().map(String::as_str),
            HeaderValues::One(value) => Some(value),
        }
    }

    /// Every value of a header, joined by `,`.
    fn header_values(&self, name: &str) -> Option<String> {
        match self.values(name)? {
            HeaderValues::Many(list) if list.is_empty() => None,
            HeaderValues::Many(list) => Some(list.join(",")),
            HeaderValues::One(value) => Some(value.clone()),
        }
    }

    /// A header's values; header names are case-insensitive.
    fn values(&self, name: &str) -> Option<&HeaderValues> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, values)| values)
    }

    /// The original body: a JSON string holding it, or (some hosts) the parsed JSON.
    fn into_body(self) -> Bytes {
        match self.body {
            Value::Null => Bytes::new(),
            Value::String(text) => Bytes::from(text),
            other => Bytes::from(other.to_string()),
        }
    }
}

pub(super) async fn ingest(State(state): State<AppState>, request: Request) -> Json<Value> {
    let started = Instant::now();
    let limit = state
        .max_body_bytes
        .saturating_mul(2)
        .saturating_add(ENVELOPE_OVERHEAD);
    // The envelope's bytes stay reserved until its events are stored.
    let outcome = match read_body(request, limit, &state.budget).await {
        Ok((body, reservation)) => match parse_envelope(body).await {
            Ok(req) => handle(&state, req, reservation).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    let log_line = match &outcome {
        Ok(summary) => format!(
            "ingest: {} events, {} written, {} already present, {} skipped",
            summary.events,
            summary.written.len(),
            summary.already_present.len(),
            summary.skipped
        ),
        Err(error) => format!("ingest refused: {}", error.code()),
    };
    Json(envelope(finish("payload", started, &outcome), log_line))
}

/// The caller's request inside the envelope: its signature (from `Data.req.Headers`), its
/// media type, then its body, checked against the signature before anything parses it.
async fn handle(
    state: &AppState,
    req: HttpRequestData,
    reservation: Reservation,
) -> Result<Summary, IngestError> {
    let signature = state.expect_signature(Ok(req.header_values(signature::HEADER)))?;
    let framing = framing_for(req.header("Content-Type"))?;
    let body = req.into_body();
    if let Some(signature) = signature {
        signature.verify(&body).await?;
    }
    state.ingest(body, framing, reservation).await
}

/// Reads the invocation; large ones on the blocking pool, so a 100 MiB envelope does not
/// stall the threads serving other requests.
async fn parse_envelope(body: Bytes) -> Result<HttpRequestData, IngestError> {
    let size = body.len();
    let parse = move || {
        serde_json::from_slice::<Invocation>(&body)
            .map(|invocation| invocation.data.req)
            .map_err(|error| {
                IngestError::BadEnvelope(format!(
                    "not a custom handler invocation (Data.req): {error}"
                ))
            })
    };
    run_sized(size, parse).await?
}

fn envelope(reply: Reply, log_line: String) -> Value {
    let mut headers = serde_json::Map::new();
    headers.insert("Content-Type".into(), "application/json".into());
    for (name, value) in reply.extra_headers() {
        headers.insert(name.into(), value.into());
    }
    json!({
        "Outputs": {
            "res": {
                "statusCode": reply.status.as_u16(),
                "body": reply.body.to_string(),
                "headers": headers,
            }
        },
        "Logs": [log_line],
        "ReturnValue": null,
    })
}
