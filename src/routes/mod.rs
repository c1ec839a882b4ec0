//! The Azure Functions custom-handler protocol, in both of its modes:
//!
//! - forwarding (`enableForwardingHttpRequest: true`, our `host.json`): the caller's request
//!   arrives unchanged at `POST /api/ingest` and our answer goes back unchanged;
//! - payload mode (forwarding off): the host POSTs an invocation envelope to `/ingest`
//!   and expects the answer inside `Outputs.res`.
//!
//! Both hand the body to the same [`AppState::ingest`]; the storage behind it is unknown here.
//! The timer functions arrive in payload mode ([`timer`]): `compact` at `POST /compact`
//! ([`compact`]), `mirror` at `POST /mirror` ([`mirror`]).
//! With `INGEST_HMAC_SECRET` set, both check the request's signature first (the header
//! before the body is read, then the body before it is parsed).

mod budget;
mod compact;
mod forwarded;
mod health;
mod invocation;
mod mirror;
mod request_span;
mod timer;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio_util::task::TaskTracker;

use serde_json::{json, Value};

use crate::blocking::run_sized;
use crate::domain::extjson::Framing;
use crate::error::{BodyReadTimeout, IngestError, Reply};
use crate::ingest::{Ingestor, Summary};
use crate::signature::{SignatureError, SignatureHeader, Verifier};
use crate::sink::SinkHealth;

pub use budget::InflightBudget;
use budget::Reservation;
pub use compact::{Compaction, COMPACT_PATH};
pub use health::{HEALTH_FUNCTION_PATH, HEALTH_PATH};
pub use mirror::{Mirroring, MIRROR_PATH};

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub ingestor: Arc<Ingestor>,
    /// Ingest work runs in tracked tasks: it finishes even if the caller hangs up, and
    /// shutdown waits for it.
    pub tracker: TaskTracker,
    pub max_body_bytes: usize,
    /// Request bytes in flight, over all requests (`MAX_INFLIGHT_BYTES`).
    pub budget: InflightBudget,
    /// Checks request signatures; `None` when `INGEST_HMAC_SECRET` is unset.
    pub verifier: Option<Arc<Verifier>>,
    /// The compaction the timer function runs (`POST /compact`).
    pub compaction: Arc<Compaction>,
    /// The mirror the timer function runs (`POST /mirror`).
    pub mirroring: Arc<Mirroring>,
    /// What was last seen of the sink (`GET /health`).
    pub health: Arc<SinkHealth>,
}

/// Where callers (the Functions host, in forwarding mode) POST change events.
pub const INGEST_PATH: &str = "/api/ingest";

pub fn router(state: AppState) -> Router {
    let compaction = timer::route(&state.compaction);
    let mirroring = timer::route(&state.mirroring);
    Router::new()
        // The host's readiness ping: any answer counts.
        .route("/", get(|| async { "ready" }))
        .route(HEALTH_PATH, get(health::health))
        .route(HEALTH_FUNCTION_PATH, get(health::health))
        .route(INGEST_PATH, post(forwarded::ingest))
        .route("/ingest", post(invocation::ingest))
        .route(COMPACT_PATH, compaction)
        .route(MIRROR_PATH, mirroring)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(request_span::request_span))
        .with_state(state)
}

impl AppState {
    /// Runs what follows reading a body (checking it, parsing it, storing its records) in
    /// a tracked task that holds the body's reservation: the work is never abandoned
    /// half-way through a batch, even if the caller hangs up, shutdown waits for it, and
    /// the bytes go back to the budget only when it is over.
    async fn after_read<F>(&self, reservation: Reservation, work: F) -> Result<Summary, IngestError>
    where
        F: Future<Output = Result<Summary, IngestError>> + Send + 'static,
    {
        self.tracker
            .spawn(tracing::Instrument::in_current_span(async move {
                let outcome = work.await;
                drop(reservation);
                outcome
            }))
            .await
            .map_err(|error| IngestError::Internal(format!("ingest task failed: {error}")))?
    }

    /// Ingests one request body (inside [`AppState::after_read`]). Its size was checked
    /// against `MAX_BODY_BYTES` as it was read (forwarding) or taken out of its envelope
    /// (payload mode).
    async fn ingest(&self, body: Bytes, framing: Framing) -> Result<Summary, IngestError> {
        self.ingestor.ingest(body, framing).await
    }
}

/// A signature header accepted for its form and freshness; the body must still match it.
struct ExpectedSignature {
    verifier: Arc<Verifier>,
    header: SignatureHeader,
}

impl AppState {
    /// With signing on, checks the `X-Ingest-Signature` header (every value, joined by
    /// `,`; an error if it could not be read) before the body is read, and returns what
    /// the body must then match. With signing off the header is ignored.
    fn expect_signature(
        &self,
        header: Result<Option<String>, SignatureError>,
    ) -> Result<Option<ExpectedSignature>, IngestError> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let header = header
            .and_then(|header| verifier.check_header(header.as_deref()))
            .map_err(IngestError::Unauthorized)?;
        Ok(Some(ExpectedSignature {
            verifier: Arc::clone(verifier),
            header,
        }))
    }
}

impl ExpectedSignature {
    /// Over the exact bytes the sender signed, before anything parses them. Large bodies
    /// are hashed on the blocking pool, where large bodies are parsed too.
    async fn verify(self, body: &Bytes) -> Result<(), IngestError> {
        let body = body.clone();
        run_sized(body.len(), move || {
            self.verifier.verify_body(&self.header, &body)
        })
        .await?
        .map_err(IngestError::Unauthorized)
    }
}

/// How the events are framed, from the request's `Content-Type`.
fn framing_for(content_type: Option<&str>) -> Result<Framing, IngestError> {
    let Some(content_type) = content_type else {
        return Err(IngestError::UnsupportedMediaType(
            "Content-Type is missing; send application/json or application/x-ndjson".into(),
        ));
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Framing::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
            Ok(Framing::Ndjson)
        }
        _ => Err(IngestError::UnsupportedMediaType(format!(
            "Content-Type {essence:?} is not supported; send application/json or application/x-ndjson"
        ))),
    }
}

/// The body of the 200 answer.
fn summary_json(summary: &Summary) -> Value {
    json!({
        "events": summary.events,
        "written": summary.written.len(),
        "alreadyPresent": summary.already_present.len(),
        "skipped": summary.skipped,
        "paths": { "written": summary.written, "alreadyPresent": summary.already_present },
    })
}

/// Reads a body of at most `limit` bytes, refusing early on a larger `Content-Length`,
/// and holds its bytes in the in-flight budget: all of a declared length before reading,
/// else step by step as the bytes arrive.
async fn read_body(
    request: Request,
    limit: usize,
    budget: &InflightBudget,
) -> Result<(Bytes, Reservation), IngestError> {
    let too_large = IngestError::PayloadTooLarge { limit };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large);
    }
    let declared = declared.map(|length| length as usize);
    let mut reserved = declared.unwrap_or(budget::STEP);
    let mut reservation = budget.reserve(reserved).await?;
    let mut collected = BytesMut::with_capacity(declared.unwrap_or(0));
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue; // trailers
        };
        let length = collected.len() + data.len();
        if length > limit {
            return Err(too_large);
        }
        if length > reserved {
            let more = (length - reserved).max(budget::STEP);
            budget.extend(&mut reservation, more).await?;
            reserved += more;
        }
        collected.extend_from_slice(&data);
    }
    Ok((collected.freeze(), reservation))
}

/// A body that could not be read: too slow (408), or the caller hung up or sent broken
/// chunking (the caller's problem, not a size problem).
fn unreadable(error: axum::Error) -> IngestError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(timeout) = cause.downcast_ref::<BodyReadTimeout>() {
            return IngestError::BodyTimeout(*timeout);
        }
        source = cause.source();
    }
    IngestError::UnreadableBody(error.to_string())
}

/// Turns the outcome of a request into its reply and logs one line about it.
/// Only counts, codes and timings are logged: never bodies, documents or paths.
fn finish(mode: &'static str, started: Instant, outcome: &Result<Summary, IngestError>) -> Reply {
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(summary) => {
            tracing::info!(
                mode,
                status = 200,
                events = summary.events,
                written = summary.written.len(),
                already_present = summary.already_present.len(),
                skipped = summary.skipped,
                storage_retries = summary.storage_retries,
                latency_ms,
                "ingest"
            );
            Reply::ok(summary_json(summary))
        }
        Err(error) => {
            let reply = Reply::from(error);
            match error {
                IngestError::Storage {
                    failed,
                    records,
                    retries,
                    first,
                } => tracing::error!(
                    mode,
                    status = reply.status.as_u16(),
                    failed,
                    records,
                    storage_retries = retries,
                    cause = %first.cause(),
                    latency_ms,
                    "ingest failed: storage"
                ),
                other => {
                    tracing::warn!(
                        mode,
                        status = reply.status.as_u16(),
                        error = other.code(),
                        index = other.index(),
                        latency_ms,
                        "ingest refused"
                    );
                    // The detail may quote a bad value from the event: debug only.
                    tracing::debug!(detail = %other, "ingest refused: detail");
                }
            }
            reply
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, Body::from(self.body.to_string())).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.extra_headers() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

async fn not_found(request: Request) -> Reply {
    Reply::from(&IngestError::NotFound(format!(
        "{} {}",
        request.method(),
        request.uri().path()
    )))
}

async fn method_not_allowed(request: Request) -> Reply {
    Reply::from(&IngestError::MethodNotAllowed(format!(
        "{} {}",
        request.method(),
        request.uri().path()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_recognised() {
        let parse = |ct| framing_for(ct).ok();
        assert_eq!(parse(Some("application/json")), Some(Framing::Json));
        assert_eq!(
            parse(Some("Application/JSON; charset=utf-8")),
            Some(Framing::Json)
        );
        assert_eq!(parse(Some("application/x-ndjson")), Some(Framing::Ndjson));
        assert_eq!(parse(Some("text/plain")), None);
        assert_eq!(parse(Some("application/x-www-form-urlencoded")), None);
        assert_eq!(parse(None), None);
    }
}
