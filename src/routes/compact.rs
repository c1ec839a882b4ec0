//! The `compact` timer function (`compact/function.json`): one compaction pass over the
//! due hours per invocation, answered as every timer function is ([`super::timer`]).

use std::future::Future;
use std::time::SystemTime;

use super::timer::{Pass, TimerFunction};
use crate::compact::{CompactError, Compactor, PassScope, PassSummary};

/// Where the host invokes the timer function: `/<function name>`.
pub const COMPACT_PATH: &str = "/compact";

/// The compactor the function runs, one pass at a time.
pub type Compaction = TimerFunction<Compactor>;

impl Pass for Compactor {
    const NAME: &'static str = "compact";
    type Summary = PassSummary;
    type Error = CompactError;

    fn run(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<PassSummary, CompactError>> + Send {
        self.run_pass(PassScope::Due, now)
    }

    fn log(summary: &PassSummary, past_due: bool, elapsed_ms: u64) {
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
    }
}
