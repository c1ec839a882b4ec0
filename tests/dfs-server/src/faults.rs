//! Programmable faults: which requests they hit and what happens to them.

use crate::OpKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Which requests a [`FaultRule`] matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpMatch {
    /// Every request that got past authentication.
    Any,
    /// One kind of operation.
    Op(OpKind),
    /// Filesystem-level operations (create, properties, delete, list paths, list filesystems).
    FilesystemOps,
    /// Operations that change state (creates, append, flush, rename, set properties, deletes).
    Writes,
}

impl From<OpKind> for OpMatch {
    fn from(k: OpKind) -> Self {
        OpMatch::Op(k)
    }
}

impl OpMatch {
    fn matches(self, op: OpKind) -> bool {
        match self {
            OpMatch::Any => true,
            OpMatch::Op(k) => k == op,
            OpMatch::FilesystemOps => op.is_filesystem_op(),
            OpMatch::Writes => op.is_write(),
        }
    }
}

/// What a fault does to a request it hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status and error code; the operation is not applied.
    Respond {
        status: u16,
        code: String,
        message: String,
    },
    /// Close the connection without answering; the operation is not applied.
    Drop,
    /// Apply the operation, then close the connection without answering: a lost response.
    ApplyThenDrop,
    /// Wait, then apply the operation and answer. The operation is applied after the delay
    /// even if the client has given up by then (a slow service still carries it out).
    Delay(Duration),
    /// Apply the operation at once, answer after the delay.
    ApplyThenDelay(Duration),
    /// Apply the operation, close the connection without answering, then behave as a dead
    /// server: every open connection is closed and every new one is closed on accept, until
    /// [`crate::DfsServer::recover`].
    Crash,
}

impl FaultAction {
    /// 503 `ServerBusy`, the service's throttling answer.
    pub fn server_busy() -> Self {
        FaultAction::status(
            503,
            "ServerBusy",
            "The server is currently unable to receive requests. Please retry your request.",
        )
    }

    /// 500 `InternalError`.
    pub fn internal_error() -> Self {
        FaultAction::status(
            500,
            "InternalError",
            "The server encountered an internal error. Please retry the request.",
        )
    }

    /// 500 `OperationTimedOut`.
    pub fn operation_timed_out() -> Self {
        FaultAction::status(
            500,
            "OperationTimedOut",
            "The operation could not be completed within the permitted time.",
        )
    }

    /// 429 `TooManyRequests` (what a gateway in front of the account may answer).
    pub fn too_many_requests() -> Self {
        FaultAction::status(429, "TooManyRequests", "Too many requests.")
    }

    /// Any status and error code.
    pub fn status(status: u16, code: &str, message: &str) -> Self {
        FaultAction::Respond {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A fault: the requests it matches, how many of them it skips, how many it hits, and what
/// it does to them. Rules are tried in the order pushed; the first that matches a request
/// decides it.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub ops: OpMatch,
    /// Only requests whose `<filesystem>/<path>` (or a rename's source) contains this.
    pub path_contains: Option<String>,
    /// Matching requests to let through untouched before firing.
    pub skip: u64,
    /// Matching requests to hit (`u64::MAX`: every one).
    pub times: u64,
    pub action: FaultAction,
}

impl FaultRule {
    /// Hits the next matching request once.
    pub fn new(ops: impl Into<OpMatch>, action: FaultAction) -> Self {
        FaultRule {
            ops: ops.into(),
            path_contains: None,
            skip: 0,
            times: 1,
            action,
        }
    }

    /// Only requests whose path contains `s`.
    pub fn on_path(mut self, s: impl Into<String>) -> Self {
        self.path_contains = Some(s.into());
        self
    }

    /// Hits `n` matching requests.
    pub fn times(mut self, n: u64) -> Self {
        self.times = n;
        self
    }

    /// Hits every matching request until the rules are cleared.
    pub fn always(mut self) -> Self {
        self.times = u64::MAX;
        self
    }

    /// Lets `n` matching requests through first.
    pub fn after(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    fn matches(&self, op: OpKind, paths: &[&str]) -> bool {
        self.ops.matches(op)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|s| paths.iter().any(|p| p.contains(s)))
    }
}

/// The server's fault rules (see [`crate::DfsServer::faults`]).
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
    fired: AtomicU64,
}

impl Faults {
    /// Adds a rule after the existing ones.
    pub fn push(&self, rule: FaultRule) {
        self.rules.lock().unwrap().push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Rules still armed.
    pub fn pending(&self) -> usize {
        self.rules.lock().unwrap().len()
    }

    /// Requests hit so far.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }

    pub(crate) fn take(&self, op: OpKind, paths: &[&str]) -> Option<FaultAction> {
        let mut rules = self.rules.lock().unwrap();
        if rules.is_empty() {
            return None;
        }
        let i = rules.iter().position(|r| r.matches(op, paths))?;
        let rule = &mut rules[i];
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        let action = rule.action.clone();
        if rule.times != u64::MAX {
            rule.times -= 1;
            if rule.times == 0 {
                rules.remove(i);
            }
        }
        self.fired.fetch_add(1, Ordering::Relaxed);
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_times_and_paths() {
        let f = Faults::default();
        f.push(
            FaultRule::new(OpKind::Append, FaultAction::Drop)
                .on_path("x/")
                .after(1)
                .times(2),
        );
        assert_eq!(f.take(OpKind::Flush, &["fs/x/a"]), None);
        assert_eq!(f.take(OpKind::Append, &["fs/y/a"]), None);
        assert_eq!(f.take(OpKind::Append, &["fs/x/a"]), None); // skipped
        assert_eq!(f.take(OpKind::Append, &["fs/x/a"]), Some(FaultAction::Drop));
        assert_eq!(f.take(OpKind::Append, &["fs/x/b"]), Some(FaultAction::Drop));
        assert_eq!(f.take(OpKind::Append, &["fs/x/a"]), None);
        assert_eq!(f.pending(), 0);
        assert_eq!(f.fired(), 2);
    }
}
