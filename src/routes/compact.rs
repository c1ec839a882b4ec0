//! The `compact` timer function (`compact/function.json`). A non-HTTP trigger, so the
//! Functions host always speaks payload mode to it, whatever `enableForwardingHttpRequest`
//! says: it POSTs `{"Data":{"timer":{...}},"Metadata":{...}}` to `/compact` (the function's
//! folder name, without the `api/` prefix of HTTP routes) and reads
//! `{"Outputs":{},"Logs":[..],"ReturnValue":..}` back from a 2xx answer.
//!
//! Passes never overlap in one process: a second invocation waits for the one running
//! (the pass itself is safe beside another, in this process or elsewhere; waiting only
//! saves work). On SIGTERM a running pass is stopped at once; what it finished stays done.

use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::compact::{Compactor, PassScope, PassSummary};
use crate::error::CompactFailure;

/// Where the host invokes the timer function: `/<function name>`.
pub const COMPACT_PATH: &str = "/compact";

/// The compactor the function runs, one pass at a time.
pub struct Compaction {
    compactor: Compactor,
    turn: Mutex<()>,
    /// Cancelled when the handler starts shutting down.
    stopping: CancellationToken,
}

impl Compaction {
    pub fn new(compactor: Compactor, stopping: CancellationToken) -> Compaction {
        Compaction {
            compactor,
            turn: Mutex::new(()),
            stopping,
        }
    }

    /// One `Due` pass, after any pass already running here has ended.
    async fn run_due_pass(&self) -> Result<PassSummary, CompactFailure> {
        let _turn = self.turn.lock().await;
        tokio::select! {
            outcome = self.compactor.run_pass(PassScope::Due, SystemTime::now()) => Ok(outcome?),
            () = self.stopping.cancelled() => Err(CompactFailure::ShuttingDown),
        }
    }
}

/// The parts of the timer's invocation the handler reads (all optional: a bare
/// `curl -X POST` runs a pass too).
#[derive(Deserialize, Default)]
struct TimerInvocation {
    #[serde(rename = "Data", default)]
    data: TimerData,
}

#[derive(Deserialize, Default)]
struct TimerData {
    #[serde(default)]
    timer: Option<Value>,
}

impl TimerInvocation {
    /// `Data.timer.IsPastDue`: the host missed the scheduled time (a restart, a long pass).
    fn is_past_due(body: &[u8]) -> bool {
        let invocation: TimerInvocation = serde_json::from_slice(body).unwrap_or_default();
        let timer = match invocation.data.timer {
            // Some hosts pass a binding's data as JSON text.
            Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Some(timer) => timer,
            None => Value::Null,
        };
        timer["IsPastDue"].as_bool().unwrap_or(false)
    }
}

pub(super) async fn compact(
    State(state): State<AppState>,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let started = Instant::now();
    let past_due = TimerInvocation::is_past_due(&body);
    let outcome = state.compaction.run_due_pass().await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(summary) => {
            tracing::info!(
                status = 200,
                past_due,
                hours_checked = summary.hours_checked,
                parts_written = summary.parts_written,
                records_compacted = summary.records_compacted,
                sources_deleted = summary.sources_deleted,
                more_to_do = summary.more_to_do,
                elapsed_ms,
                "compact"
            );
            let summary = serde_json::to_value(&summary).unwrap_or(Value::Null);
            let answer = json!({
                "Outputs": {},
                "Logs": [format!("compact: {summary}")],
                "ReturnValue": summary,
            });
            (StatusCode::OK, Json(answer))
        }
        Err(failure) => {
            // The host reads no body from a failed answer: this line is what shows why.
            tracing::error!(status = failure.status().as_u16(), past_due, error = %failure, elapsed_ms, "compact failed");
            if let CompactFailure::Pass(detail) = &failure {
                tracing::debug!(detail = %detail, "compact failed: detail");
            }
            let answer = json!({
                "Outputs": {},
                "Logs": [failure.to_string()],
                "ReturnValue": null,
            });
            (failure.status(), Json(answer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_due_is_read_from_the_timer_in_any_form() {
        let object = br#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":true}},"Metadata":{}}"#;
        assert!(TimerInvocation::is_past_due(object));
        let text = br#"{"Data":{"timer":"{\"IsPastDue\":true}"}}"#;
        assert!(TimerInvocation::is_past_due(text));
        for body in [
            &b""[..],
            b"not json",
            br#"{"Data":{}}"#,
            br#"{"Data":{"timer":{"IsPastDue":false}}}"#,
        ] {
            assert!(!TimerInvocation::is_past_due(body));
        }
    }
}
