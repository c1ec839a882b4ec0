//! What an S3 failure means: whether retrying can help, and a one-line cause for logs
//! and errors that never holds the request's URL (the key names the document's `_id`) or
//! a response body (S3 echoes the key in `<Key>`), only the status and S3's error code,
//! with a hint for the mistakes people make.

use std::error::Error as _;

use object_store::Error;

/// One failed S3 request and what it was doing.
#[derive(Debug)]
pub(super) struct Failure {
    pub operation: &'static str,
    pub error: Error,
}

impl Failure {
    pub fn of(operation: &'static str) -> impl FnOnce(Error) -> Failure {
        move |error| Failure { operation, error }
    }

    /// Whether the same request may succeed if sent again: throttling, 5xx, a timeout or
    /// a broken connection. Credentials, permissions, a missing bucket are not.
    pub fn is_transient(&self) -> bool {
        match &self.error {
            // 409 ConditionalRequestConflict: a racing write to the same key; try again.
            Error::AlreadyExists { .. } => is_conflict(&self.error),
            Error::Generic { .. } => match answer(&self.error) {
                Some((status, _)) => matches!(status, 408 | 429 | 500..=599),
                // No status: the request got no answer (connection refused or reset, a
                // timeout), or the credential provider could not be reached.
                None => true,
            },
            _ => false,
        }
    }

    /// The cause, without URL, key or body, and a hint when one helps.
    pub fn describe(&self) -> String {
        if let Error::NotSupported { source } = &self.error {
            // Only made for the spooled file's local read errors (no path in the text).
            return format!("local file: {source}");
        }
        let (status, code) = match &self.error {
            Error::NotFound { .. } => (Some(404), None),
            Error::AlreadyExists { .. } if is_conflict(&self.error) => {
                (Some(409), code_in(&self.error))
            }
            Error::Precondition { .. } | Error::AlreadyExists { .. } => (Some(412), None),
            Error::PermissionDenied { .. } => (Some(403), code_in(&self.error)),
            Error::Unauthenticated { .. } => (Some(401), code_in(&self.error)),
            Error::Generic { .. } => match answer(&self.error) {
                Some((status, code)) => (Some(status), code),
                None => (None, None),
            },
            _ => (None, None),
        };
        let mut text = match (status, &code) {
            (Some(status), Some(code)) => format!("S3 answered {status} {code}"),
            (Some(status), None) => format!("S3 answered {status}"),
            (None, _) => format!("no answer from S3 ({})", transport(&self.error)),
        };
        if let Some(hint) = hint(status, code.as_deref()) {
            text.push_str(": ");
            text.push_str(hint);
        }
        text
    }
}

/// Whether an "already exists" was S3's 409 (a conditional write racing another to the
/// same key, which S3 asks to retry) rather than its 412 (the key is taken): object_store
/// reports both as `AlreadyExists`, the 412 wrapping its `Precondition` error.
pub(super) fn is_conflict(error: &Error) -> bool {
    match error {
        Error::AlreadyExists { source, .. } => !matches!(
            source.downcast_ref::<Error>(),
            Some(Error::Precondition { .. } | Error::NotModified { .. })
        ),
        _ => false,
    }
}

/// The HTTP status and S3 error code of a request that got an answer. object_store
/// keeps its error types private; their text says `status code: 503 Service Unavailable`
/// and holds the body, from which only `<Code>` is taken.
fn answer(error: &Error) -> Option<(u16, Option<String>)> {
    let text = chain_text(error);
    let after = text.split("status code: ").nth(1)?;
    let status = after.get(..3)?.parse().ok()?;
    Some((status, code_in(error)))
}

/// S3's `<Code>` in the answer's body, if any.
fn code_in(error: &Error) -> Option<String> {
    let text = chain_text(error);
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    let code = &text[start..end];
    code.chars()
        .all(|c| c.is_ascii_alphanumeric())
        .then(|| code.to_owned())
}

/// The error and its causes, for parsing only: it holds the URL and must never be logged.
fn chain_text(error: &Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// What kind of transport failure it was, from the innermost cause (a reqwest or I/O
/// error: "connection refused", "operation timed out"), which holds no URL.
fn transport(error: &Error) -> String {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(inner) = innermost.source() {
        innermost = inner;
    }
    let text = innermost.to_string();
    if text.contains("://") {
        "the request failed".to_owned()
    } else {
        text
    }
}

fn hint(status: Option<u16>, code: Option<&str>) -> Option<&'static str> {
    Some(match (status, code) {
        (_, Some("InvalidAccessKeyId")) => "AWS_ACCESS_KEY_ID names no key S3 knows (check the key, and S3_ENDPOINT for an S3-compatible store)",
        (_, Some("SignatureDoesNotMatch")) => "the signature is wrong: check AWS_SECRET_ACCESS_KEY, and AWS_REGION against the bucket's region",
        (_, Some("ExpiredToken" | "InvalidToken")) => "the session token (AWS_SESSION_TOKEN or the role's) expired or is wrong",
        (_, Some("NoSuchBucket")) => "S3_BUCKET names no bucket there: create it or fix the name (and AWS_REGION, S3_ENDPOINT)",
        (_, Some("AuthorizationHeaderMalformed" | "PermanentRedirect")) => "the bucket is in another region: set AWS_REGION to it",
        (Some(403), _) => "access denied: the credentials need s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject on the bucket and prefix",
        (Some(401), _) => "the credentials were refused",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_object_is_not_transient_and_says_404() {
        let failure = Failure::of("reading")(Error::NotFound {
            path: "secret/key".into(),
            source: "gone".into(),
        });
        assert!(!failure.is_transient());
        assert_eq!(failure.describe(), "S3 answered 404");
    }

    #[test]
    fn a_taken_key_is_final_but_a_racing_write_is_retried() {
        let taken = Failure::of("storing")(Error::AlreadyExists {
            path: "k".into(),
            source: Box::new(Error::Precondition {
                path: "k".into(),
                source: "412".into(),
            }),
        });
        assert!(!taken.is_transient());
        assert_eq!(taken.describe(), "S3 answered 412");
        let racing = Failure::of("storing")(Error::AlreadyExists {
            path: "k".into(),
            source: "409 <Code>ConditionalRequestConflict</Code>".into(),
        });
        assert!(racing.is_transient());
        assert_eq!(
            racing.describe(),
            "S3 answered 409 ConditionalRequestConflict"
        );
    }

    #[test]
    fn hints_name_the_setting_to_fix() {
        assert!(hint(Some(403), Some("InvalidAccessKeyId"))
            .is_some_and(|hint| hint.contains("AWS_ACCESS_KEY_ID")));
        assert!(
            hint(Some(404), Some("NoSuchBucket")).is_some_and(|hint| hint.contains("S3_BUCKET"))
        );
        assert_eq!(hint(Some(503), Some("SlowDown")), None);
    }
}
