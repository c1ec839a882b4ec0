//! One span per request, carrying a request id, so every line a request logs (the
//! storage sink's retries included) can be found together in Application Insights.
//!
//! The id is the host's invocation id: the Functions host sends it as
//! `X-Azure-Functions-InvocationId` with every request to a custom handler, in forwarding
//! and payload mode alike, and logs it with the invocation. Without it (a local run, a
//! test) the handler makes one up.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header the Functions host puts the invocation id in.
const INVOCATION_ID: &str = "x-azure-functions-invocationid";
/// Longer values, or values with other characters, are not taken as an id: the header
/// could come from a caller, and its text goes into every log line of the request.
const MAX_ID_LEN: usize = 64;

/// Runs the rest of the request inside a `request` span with its `request_id`.
pub(super) async fn request_span(request: Request, next: Next) -> Response {
    let id = invocation_id(request.headers()).unwrap_or_else(generated_id);
    let span = tracing::info_span!("request", request_id = %id);
    next.run(request).instrument(span).await
}

/// The host's invocation id. The host adds its header after copying the caller's, so
/// with several the last is the host's.
fn invocation_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get_all(INVOCATION_ID).iter().next_back()?;
    let id = value.to_str().ok()?;
    let plausible = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    plausible.then(|| id.to_owned())
}

/// 128 random bits in hex.
fn generated_id() -> String {
    let mut bytes = [0u8; 16];
    let id = match getrandom::getrandom(&mut bytes) {
        Ok(()) => u128::from_le_bytes(bytes),
        // Without an OS random source, the time still tells requests apart.
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    };
    format!("{id:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                INVOCATION_ID,
                HeaderValue::from_str(value).expect("valid header"),
            );
        }
        headers
    }

    #[test]
    fn the_hosts_invocation_id_is_used_when_plausible() {
        let id = "83a33220-a921-460a-bec0-b3f043dcf1ff";
        assert_eq!(invocation_id(&headers(&[id])).as_deref(), Some(id));
        assert_eq!(
            invocation_id(&headers(&["from-a-caller", id])).as_deref(),
            Some(id),
            "the host's value comes last"
        );
        assert_eq!(invocation_id(&headers(&[])), None);
        assert_eq!(invocation_id(&headers(&["a b\"c"])), None);
        assert_eq!(invocation_id(&headers(&[&"a".repeat(65)])), None);
    }

    #[test]
    fn generated_ids_differ() {
        let (a, b) = (generated_id(), generated_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
