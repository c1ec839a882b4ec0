//! The Azure Functions custom-handler protocol, in both of its modes:
//!
//! - forwarding (`enableForwardingHttpRequest: true`, our `host.json`): the caller's request
//!   arrives unchanged at `POST /api/ingest` and our answer goes back unchanged;
//! - payload mode (forwarding off): the host POSTs an invocation envelope to `/ingest`
//!   and expects the answer inside `Outputs.res`.
//!
//! Both hand the body to the same [`AppState::ingest`]; the storage behind it is unknown here.
//! With `INGEST_HMAC_SECRET` set, both check the request's signature first (the header
//! before the body is read, then the body before it is parsed).

mod forwarded;
mod invocation;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::task::TaskTracker;

use crate::error::{BodyReadTimeout, IngestError, Reply};
use crate::ingest::{BodyFormat, Ingestor, Summary, INLINE_PARSE_LIMIT};
use crate::signature::{SignatureError, SignatureHeader, Verifier};

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub ingestor: Arc<Ingestor>,
    /// Ingest work runs in tracked tasks: it finishes even if the caller hangs up, and
    /// shutdown waits for it.
    pub tracker: TaskTracker,
    pub max_body_bytes: usize,
    /// Checks request signatures; `None` when `INGEST_HMAC_SECRET` is unset.
    pub verifier: Option<Arc<Verifier>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        // The host's readiness ping: any answer counts.
        .route("/", get(|| async { "ready" }))
        .route("/api/ingest", post(forwarded::ingest))
        .route("/ingest", post(invocation::ingest))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

impl AppState {
    /// Ingests one request body. Runs in a tracked task so that a write in flight
    /// is never abandoned half-way through a batch.
    async fn ingest(&self, body: Bytes, format: BodyFormat) -> Result<Summary, IngestError> {
        if body.len() > self.max_body_bytes {
            return Err(IngestError::PayloadTooLarge {
                limit: self.max_body_bytes,
            });
        }
        let ingestor = Arc::clone(&self.ingestor);
        self.tracker
            .spawn(async move { ingestor.ingest(body, format).await })
            .await
            .map_err(|error| IngestError::Internal(format!("ingest task failed: {error}")))?
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
        let outcome = if body.len() <= INLINE_PARSE_LIMIT {
            self.verifier.verify_body(&self.header, body)
        } else {
            let body = body.clone();
            tokio::task::spawn_blocking(move || self.verifier.verify_body(&self.header, &body))
                .await
                .map_err(|error| IngestError::Internal(format!("signature task failed: {error}")))?
        };
        outcome.map_err(IngestError::Unauthorized)
    }
}

/// Reads a body of at most `limit` bytes, refusing early on a larger `Content-Length`.
async fn read_body(request: Request, limit: usize) -> Result<Bytes, IngestError> {
    let too_large = IngestError::PayloadTooLarge { limit };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large);
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|error| {
            // Over the limit is 413, too slow is 408; anything else (a caller that hung
            // up, broken chunking) is the caller's problem, not a size problem.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            while let Some(cause) = source {
                if cause.is::<http_body_util::LengthLimitError>() {
                    return IngestError::PayloadTooLarge { limit };
                }
                if let Some(timeout) = cause.downcast_ref::<BodyReadTimeout>() {
                    return IngestError::BodyTimeout(*timeout);
                }
                source = cause.source();
            }
            IngestError::UnreadableBody(error.to_string())
        })
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
                latency_ms,
                "ingest"
            );
            Reply::ok(summary.to_json())
        }
        Err(error) => {
            let reply = Reply::from(error);
            match error {
                IngestError::Storage {
                    failed,
                    records,
                    first,
                } => tracing::error!(
                    mode,
                    status = reply.status.as_u16(),
                    failed,
                    records,
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
