//! The one rule for where request work runs: work that grows with a request's size (parsing,
//! hashing) moves to the blocking pool once the request is large, so a 100 MiB body never
//! stalls the threads that serve every other request; small requests stay inline, where
//! a thread hand-off would cost more than the work.

use crate::error::IngestError;

/// Requests up to this many bytes are handled inline.
pub(crate) const INLINE_LIMIT: usize = 64 * 1024;

/// Runs `work`, which takes time in proportion to `size` bytes, where the rule above says.
pub(crate) async fn run_sized<T, F>(size: usize, work: F) -> Result<T, IngestError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if size <= INLINE_LIMIT {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| IngestError::Internal(format!("blocking task failed: {error}")))
}
