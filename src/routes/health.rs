//! `GET /health`: whether the sink is reachable, for operators and the README's smoke
//! test. `GET /` stays the host's readiness ping (any answer counts there). On Azure the
//! `health` function (`health/function.json`) makes it public: the host forwards
//! `GET /api/health` unchanged, so the same answer is served there too.
//!
//! The answer is what was last seen of the sink ([`SinkHealth`]), never a storage request
//! of its own: a monitor polling every second costs the store nothing. 200 when the sink
//! was reachable, 503 when not (or before the first probe has finished), so an HTTP check
//! needs no body parsing.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::AppState;
use crate::error::Reply;
use crate::sink::Observation;

/// Where the health answer is served.
pub const HEALTH_PATH: &str = "/health";
/// The same, as the Functions host forwards the `health` function's requests.
pub const HEALTH_FUNCTION_PATH: &str = "/api/health";

pub(super) async fn health(State(state): State<AppState>) -> Reply {
    let (status, body) = answer(state.health.last().as_ref());
    Reply {
        status,
        body,
        retry_after: None,
    }
}

/// The status and body for the last observation (`None`: not checked yet).
fn answer(last: Option<&Observation>) -> (StatusCode, Value) {
    let reachable = last.is_some_and(Observation::reachable);
    let mut sink = json!({
        "reachable": reachable,
        "checkedSecondsAgo": last.map(|seen| seen.at.elapsed().as_secs()),
    });
    if !reachable {
        let cause = last
            .and_then(|seen| seen.error.as_deref())
            .unwrap_or("not checked yet: the first probe has not finished");
        sink["lastError"] = json!(cause);
    }
    let (status, word) = match reachable {
        true => (StatusCode::OK, "ok"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "degraded"),
    };
    (status, json!({ "status": word, "sink": sink }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn reachable_is_200_and_anything_else_503_with_why() {
        let seen = |error: Option<&str>| Observation {
            at: Instant::now(),
            error: error.map(str::to_owned),
        };
        let (status, body) = answer(Some(&seen(None)));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"status": "ok", "sink": {"reachable": true, "checkedSecondsAgo": 0}})
        );

        let (status, body) = answer(Some(&seen(Some("checking filesystem: HTTP 503"))));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["sink"]["lastError"], "checking filesystem: HTTP 503");

        let (status, body) = answer(None);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["sink"]["checkedSecondsAgo"], Value::Null);
    }
}
