//! What the timer functions (`compact`, `mirror`) share. A non-HTTP trigger, so the
//! Functions host always speaks payload mode to it, whatever `enableForwardingHttpRequest`
//! says: it POSTs `{"Data":{"timer":{...}},"Metadata":{...}}` to `/<function name>`
//! (without the `api/` prefix of HTTP routes) and reads
//! `{"Outputs":{},"Logs":[..],"ReturnValue":..}` back from a 2xx answer.
//!
//! Passes of one function never overlap in one process: a second invocation waits for
//! the one running (a pass is safe beside another, in this process or elsewhere; waiting
//! only saves work). On SIGTERM a running pass is stopped at once; what it finished stays
//! done.

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, MethodRouter};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::{PassError, PassFailure};

/// The pass a timer function runs (compaction's, the mirror's).
pub trait Pass: Send + Sync + 'static {
    /// The function's name: its route (`/<name>`), its log lines and its answer's log.
    const NAME: &'static str;
    type Summary: Serialize + Send;
    type Error: PassError + Send;

    /// One timer pass: whatever is due at `now`.
    fn run(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<Self::Summary, Self::Error>> + Send;

    /// Logs one line about a finished pass: its counts, never a path.
    fn log(summary: &Self::Summary, past_due: bool, elapsed_ms: u64);
}

/// A timer function's pass, one at a time.
pub struct TimerFunction<P> {
    pass: P,
    turn: Mutex<()>,
    /// Cancelled when the handler starts shutting down.
    stopping: CancellationToken,
}

impl<P: Pass> TimerFunction<P> {
    pub fn new(pass: P, stopping: CancellationToken) -> TimerFunction<P> {
        TimerFunction {
            pass,
            turn: Mutex::new(()),
            stopping,
        }
    }

    /// One pass, after any pass already running here has ended.
    async fn run_pass(&self) -> Result<P::Summary, PassFailure<P::Error>> {
        let _turn = self.turn.lock().await;
        tokio::select! {
            outcome = self.pass.run(SystemTime::now()) => Ok(outcome?),
            () = self.stopping.cancelled() => Err(PassFailure::ShuttingDown),
        }
    }

    /// Answers one invocation: 200 with the summary, or 500 with the failure's one line
    /// (which the host does not read: the error line logged here is what shows why).
    pub(super) async fn invoke(&self, body: Bytes) -> (StatusCode, Json<Value>) {
        let started = Instant::now();
        let past_due = TimerInvocation::is_past_due(&body);
        let outcome = self.run_pass().await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let name = P::NAME;
        match outcome {
            Ok(summary) => {
                P::log(&summary, past_due, elapsed_ms);
                let summary = serde_json::to_value(&summary).unwrap_or(Value::Null);
                let answer = json!({
                    "Outputs": {},
                    "Logs": [format!("{name}: {summary}")],
                    "ReturnValue": summary,
                });
                (StatusCode::OK, Json(answer))
            }
            Err(failure) => {
                tracing::error!(status = failure.status().as_u16(), past_due, error = %failure, elapsed_ms, "{name} failed");
                if let PassFailure::Pass(detail) = &failure {
                    tracing::debug!(detail = %detail, "{name} failed: detail");
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
}

/// A timer function's route: `POST` runs a pass.
pub(super) fn route<S, P>(function: &Arc<TimerFunction<P>>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
    P: Pass,
{
    post(invoked::<P>).with_state(Arc::clone(function))
}

async fn invoked<P: Pass>(
    State(function): State<Arc<TimerFunction<P>>>,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    function.invoke(body).await
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
