//! Which storage failures are worth retrying, and how long to wait between attempts.
//!
//! The client's own retry policy is switched off: it replays single requests, so a create
//! whose answer was lost comes back as 409 and a rename as 404, and it knows nothing of the
//! time the caller has left. Retrying whole attempts here (fresh temporary name each time)
//! keeps every retry safe and the total bounded by one budget.

use tokio::time::Instant;

use azure_core::error::ErrorKind;

use crate::sink::backoff::Backoff;

/// Whether a failed storage request may succeed if sent again.
pub(super) fn is_transient(error: &azure_core::Error) -> bool {
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => {
            matches!(u16::from(*status), 408 | 429 | 500 | 502 | 503 | 504)
        }
        // Connection refused or reset, timeouts, a body cut short.
        ErrorKind::Io => true,
        // No token: transient only when the token endpoint could not be reached or was
        // busy. A missing identity, a wrong secret or a CLI nobody logged into fails the
        // same way every time: fail fast, with the reason in the log.
        ErrorKind::Credential => causes(error).any(|cause| {
            cause
                .downcast_ref::<azure_core::Error>()
                .is_some_and(|inner| {
                    !matches!(inner.kind(), ErrorKind::Credential) && is_transient(inner)
                })
        }),
        _ => false,
    }
}

/// The error's causes, outermost first, without the error itself.
fn causes<'e>(
    error: &'e azure_core::Error,
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(std::error::Error::source(error), |cause| cause.source())
}

/// The error and its causes on one line. Only for errors that hold no request URL (token
/// acquisition): a storage request's URL can carry a SAS signature.
pub(super) fn with_causes(error: &azure_core::Error) -> String {
    let mut text = error.to_string();
    for cause in causes(error) {
        text.push_str(": ");
        text.push_str(&cause.to_string());
    }
    text
}

/// The HTTP status and storage error code of a failed request, if it got an answer.
pub(super) fn status_and_code(error: &azure_core::Error) -> Option<(u16, Option<&str>)> {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            Some((u16::from(*status), error_code.as_deref()))
        }
        _ => None,
    }
}

/// Whether a request was answered 404 (the path, or the filesystem, is not there).
pub(super) fn is_not_found(error: &azure_core::Error) -> bool {
    status_and_code(error).is_some_and(|(status, _)| status == 404)
}

/// The retries of one operation: waits within its budget, and a `warn` line for each
/// retry, the same for writes, listings, reads and deletes.
#[derive(Debug)]
pub(super) struct Retries {
    backoff: Backoff,
    attempt: u32,
}

impl Retries {
    /// Retries end at `deadline`.
    pub(super) fn until(deadline: Instant) -> Retries {
        Retries {
            backoff: Backoff::until(deadline),
            attempt: 0,
        }
    }

    /// After a failed attempt: when `retry` is set and the budget allows, logs the retry,
    /// waits and returns `true`; otherwise `false`, and the caller gives up.
    pub(super) async fn wait(
        &mut self,
        operation: &'static str,
        error: &azure_core::Error,
        retry: bool,
    ) -> bool {
        self.attempt += 1;
        let Some(delay) = self.backoff.next_delay().filter(|_| retry) else {
            return false;
        };
        // Never the path (it holds the `_id`) or the error's text (a URL).
        tracing::warn!(
            attempt = self.attempt,
            operation,
            cause = %super::diagnosis::cause(error),
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "storage attempt failed; retrying"
        );
        crate::sink::retry_count::count_retry();
        tokio::time::sleep(delay).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::StatusCode;

    fn http(status: StatusCode, code: &str) -> azure_core::Error {
        azure_core::Error::new(
            ErrorKind::HttpResponse {
                status,
                error_code: Some(code.to_owned()),
            },
            "test",
        )
    }

    #[test]
    fn throttling_server_errors_and_broken_connections_are_transient() {
        for status in [
            StatusCode::RequestTimeout,
            StatusCode::TooManyRequests,
            StatusCode::InternalServerError,
            StatusCode::ServiceUnavailable,
            StatusCode::GatewayTimeout,
        ] {
            assert!(is_transient(&http(status, "ServerBusy")), "{status}");
        }
        assert!(is_transient(&azure_core::Error::new(
            ErrorKind::Io,
            "reset"
        )));
        // No token because the identity endpoint could not be reached.
        let unreachable = azure_core::Error::full(
            ErrorKind::Credential,
            azure_core::Error::new(ErrorKind::Io, "connection refused"),
            "failed to get bearer token",
        );
        assert!(is_transient(&unreachable));
    }

    #[test]
    fn a_credential_that_cannot_work_fails_fast_and_says_why() {
        let no_identity = azure_core::Error::full(
            ErrorKind::Credential,
            azure_core::Error::message(
                ErrorKind::Credential,
                "the requested identity has not been assigned to this resource",
            ),
            "failed to get bearer token",
        );
        assert!(!is_transient(&no_identity));
        let text = with_causes(&no_identity);
        assert!(
            text.contains("failed to get bearer token") && text.contains("has not been assigned"),
            "{text}"
        );
    }

    #[test]
    fn auth_and_client_errors_fail_fast() {
        assert!(!is_transient(&http(
            StatusCode::Forbidden,
            "AuthenticationFailed"
        )));
        assert!(!is_transient(&http(
            StatusCode::Unauthorized,
            "InvalidAuthenticationInfo"
        )));
        assert!(!is_transient(&http(
            StatusCode::NotFound,
            "FilesystemNotFound"
        )));
        assert!(!is_transient(&http(
            StatusCode::BadRequest,
            "InvalidFlushPosition"
        )));
        assert_eq!(
            status_and_code(&http(
                StatusCode::Forbidden,
                "AuthorizationPermissionMismatch"
            )),
            Some((403, Some("AuthorizationPermissionMismatch")))
        );
    }
}
