//! Every way a request can fail, and the one place each failure becomes an HTTP answer.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::compact::CompactError;
use crate::mirror::MirrorError;
use crate::signature::SignatureError;
use crate::sink::SinkError;

/// Seconds a caller should wait before retrying after a storage failure.
pub const RETRY_AFTER_SECS: u32 = 5;
/// Seconds a caller should wait before retrying a request turned away as busy: requests
/// in flight take about a second.
pub const BUSY_RETRY_AFTER_SECS: u32 = 2;

/// A request body that had not fully arrived within `BODY_READ_TIMEOUT_SECS`: raised by the
/// server's body wrapper, recognised by the routes in the body's error chain (408).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the body did not arrive within BODY_READ_TIMEOUT_SECS ({} s)", .limit.as_secs())]
pub struct BodyReadTimeout {
    pub limit: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{detail}")]
    MalformedJson {
        detail: String,
        index: Option<usize>,
    },
    #[error("{detail}")]
    InvalidEvent {
        detail: String,
        index: Option<usize>,
    },
    #[error("the body is larger than MAX_BODY_BYTES ({limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("the body could not be read: {0}")]
    UnreadableBody(String),
    #[error(transparent)]
    BodyTimeout(#[from] BodyReadTimeout),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    BadEnvelope(String),
    /// `INGEST_HMAC_SECRET` is set and the request's signature is missing or wrong.
    #[error("{0}")]
    Unauthorized(SignatureError),
    #[error("could not store {failed} of {records} records: {first}")]
    Storage {
        failed: usize,
        records: usize,
        /// Storage attempts tried again before giving up (for the request's log line).
        retries: u32,
        first: SinkError,
    },
    /// The bytes of requests in flight are at `MAX_INFLIGHT_BYTES`; retry shortly.
    #[error("the handler is busy: requests in flight already hold MAX_INFLIGHT_BYTES ({budget} bytes); retry shortly")]
    Busy { budget: usize },
    #[error("no route for {0}")]
    NotFound(String),
    #[error("{0} is not allowed; POST change events")]
    MethodNotAllowed(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::MalformedJson { .. }
            | IngestError::InvalidEvent { .. }
            | IngestError::BadEnvelope(_)
            | IngestError::UnreadableBody(_) => StatusCode::BAD_REQUEST,
            IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngestError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            IngestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::Storage { .. } | IngestError::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            IngestError::NotFound(_) => StatusCode::NOT_FOUND,
            IngestError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            IngestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, machine-readable name for the error (the `error` field).
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::MalformedJson { .. } => "malformed_json",
            IngestError::InvalidEvent { .. } => "invalid_event",
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::UnreadableBody(_) => "unreadable_body",
            IngestError::BodyTimeout(_) => "request_timeout",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::BadEnvelope(_) => "bad_envelope",
            IngestError::Unauthorized(_) => "invalid_signature",
            IngestError::Storage { .. } => "storage_unavailable",
            IngestError::Busy { .. } => "server_busy",
            IngestError::NotFound(_) => "not_found",
            IngestError::MethodNotAllowed(_) => "method_not_allowed",
            IngestError::Internal(_) => "internal",
        }
    }

    /// The event's position in a batch (array element or NDJSON line), if it applies.
    pub fn index(&self) -> Option<usize> {
        match self {
            IngestError::MalformedJson { index, .. } | IngestError::InvalidEvent { index, .. } => {
                *index
            }
            _ => None,
        }
    }
}

/// An HTTP answer independent of how it is delivered: straight back in forwarding mode,
/// or wrapped in `Outputs.res` in the custom handler's payload mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub retry_after: Option<u32>,
}

impl Reply {
    pub fn ok(body: serde_json::Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body,
            retry_after: None,
        }
    }

    /// Headers beside `Content-Type: application/json`.
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        self.retry_after
            .map(|seconds| ("Retry-After", seconds.to_string()))
            .into_iter()
            .collect()
    }
}

impl From<&IngestError> for Reply {
    fn from(error: &IngestError) -> Reply {
        let mut body = json!({ "error": error.code(), "detail": error.to_string() });
        if let Some(index) = error.index() {
            body["index"] = json!(index);
        }
        Reply {
            status: error.status(),
            body,
            retry_after: match error {
                IngestError::Storage { .. } => Some(RETRY_AFTER_SECS),
                IngestError::Busy { .. } => Some(BUSY_RETRY_AFTER_SECS),
                _ => None,
            },
        }
    }
}

/// A pass's own error: what its failure is called, and its text without record paths.
pub trait PassError: std::error::Error {
    /// The pass, as messages name it (`compaction pass failed: ...`).
    const PASS: &'static str;

    /// The storage failure inside, if that is what it is: its text names a path.
    fn storage(&self) -> Option<&SinkError>;

    /// The error's text without the record paths a storage error names.
    fn without_paths(&self) -> String {
        match self.storage() {
            Some(source) => format!("storage: {}", source.cause()),
            None => self.to_string(),
        }
    }
}

impl PassError for CompactError {
    const PASS: &'static str = "compaction";
    fn storage(&self) -> Option<&SinkError> {
        match self {
            CompactError::Storage(source) => Some(source),
            _ => None,
        }
    }
}

impl PassError for MirrorError {
    const PASS: &'static str = "mirror";
    fn storage(&self) -> Option<&SinkError> {
        match self {
            MirrorError::Storage(source) => Some(source),
            _ => None,
        }
    }
}

/// Why a pass of a timer function (compaction's `/compact`, the mirror's `/mirror`, or
/// their commands) did not finish. Its text never holds a record's path (paths hold
/// `_id`s): it goes to the host's logs.
#[derive(Debug, thiserror::Error)]
pub enum PassFailure<E: PassError> {
    #[error("{} pass failed: {}", E::PASS, .0.without_paths())]
    Pass(#[from] E),
    /// SIGTERM arrived during the pass; what it finished stays done.
    #[error(
        "{} pass stopped: the handler is shutting down; the next pass continues",
        E::PASS
    )]
    ShuttingDown,
}

/// A compaction pass that did not finish.
pub type CompactFailure = PassFailure<CompactError>;
/// A mirror pass that did not finish.
pub type MirrorFailure = PassFailure<MirrorError>;

impl<E: PassError> PassFailure<E> {
    /// The timer invocation's status: any failure is 500, which the host counts as a
    /// failed invocation (it reads the body of a 2xx only). The timer does not retry; its
    /// next tick runs a new pass, which picks up where this one stopped.
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_failures_are_500_and_name_no_record_path() {
        let failure = CompactFailure::from(CompactError::Storage(SinkError::Storage {
            operation: "listing",
            path: "changes/shop/orders/year=2024/7b2269".into(),
            detail: "403 AuthorizationPermissionMismatch".into(),
            retryable: false,
        }));
        assert_eq!(failure.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            failure.to_string(),
            "compaction pass failed: storage: listing: 403 AuthorizationPermissionMismatch"
        );
        assert_eq!(
            CompactFailure::ShuttingDown.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn mirror_failures_are_500_and_name_no_record_path() {
        let failure = MirrorFailure::from(MirrorError::Storage(SinkError::Storage {
            operation: "storing",
            path: "LandingZone/shop.schema/orders/00000000000000000001.parquet".into(),
            detail: "403 AuthorizationPermissionMismatch".into(),
            retryable: false,
        }));
        assert_eq!(failure.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            failure.to_string(),
            "mirror pass failed: storage: storing: 403 AuthorizationPermissionMismatch"
        );
        let stopped = MirrorFailure::ShuttingDown;
        assert_eq!(stopped.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            stopped.to_string(),
            "mirror pass stopped: the handler is shutting down; the next pass continues"
        );
    }

    #[test]
    fn storage_failures_are_retryable() {
        let error = IngestError::Storage {
            failed: 1,
            records: 2,
            retries: 0,
            first: SinkError::Task("disk gone".into()),
        };
        let reply = Reply::from(&error);
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.retry_after, Some(RETRY_AFTER_SECS));
        assert_eq!(reply.body["error"], "storage_unavailable");
    }

    #[test]
    fn signature_failures_are_401_and_not_retryable() {
        let reply = Reply::from(&IngestError::Unauthorized(SignatureError::Missing));
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.retry_after, None);
        assert_eq!(
            reply.body,
            json!({"error": "invalid_signature", "detail": "the X-Ingest-Signature header is missing"})
        );
    }

    #[test]
    fn a_stalled_body_is_408_request_timeout() {
        let error = IngestError::from(BodyReadTimeout {
            limit: Duration::from_secs(60),
        });
        let reply = Reply::from(&error);
        assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(reply.body["error"], "request_timeout");
        assert!(reply.body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("BODY_READ_TIMEOUT_SECS (60 s)")));
    }

    #[test]
    fn event_errors_carry_their_index() {
        let error = IngestError::InvalidEvent {
            detail: "field `ns` is missing".into(),
            index: Some(3),
        };
        let reply = Reply::from(&error);
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            reply.body,
            json!({"error": "invalid_event", "detail": "field `ns` is missing", "index": 3})
        );
    }
}
