//! The `mirror` timer function (`mirror/function.json`): one mirror pass per invocation
//! (every change stored before it reaches the landing zone), answered as every timer
//! function is ([`super::timer`]).

use std::future::Future;
use std::time::SystemTime;

use super::timer::{Pass, TimerFunction};
use crate::mirror::{Mirror, MirrorError, MirrorSummary};

/// Where the host invokes the timer function: `/<function name>`.
pub const MIRROR_PATH: &str = "/mirror";

/// The mirror the function runs, one pass at a time.
pub type Mirroring = TimerFunction<Mirror>;

impl Pass for Mirror {
    const NAME: &'static str = "mirror";
    type Summary = MirrorSummary;
    type Error = MirrorError;

    fn run(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<MirrorSummary, MirrorError>> + Send {
        self.pass(now)
    }

    fn log(summary: &MirrorSummary, past_due: bool, elapsed_ms: u64) {
        tracing::info!(
            status = 200,
            past_due,
            off = summary.off,
            tables = summary.tables,
            changes = summary.changes,
            upserts = summary.upserts,
            deletes = summary.deletes,
            stale = summary.stale,
            without_full_document = summary.without_full_document,
            files = summary.files,
            more_to_do = summary.more_to_do,
            elapsed_ms,
            "mirror"
        );
    }
}
