//! A user-assigned managed identity for the 0.21 storage client.
//!
//! `azure_identity` 0.21 (the line `azure_storage_datalake` 0.21 takes credentials from)
//! cannot select a user-assigned managed identity; the 1.x line's
//! `ManagedIdentityCredential` can, by client id or object id. This module wraps the 1.x
//! credential in the 0.21 `TokenCredential` trait: same scopes, same token and expiry (both
//! lines use `time` 0.3's `OffsetDateTime`), and errors mapped so the sink's retry rule
//! still tells a busy or unreachable endpoint (retried) from a refusal (fails fast).
//!
//! The 1.x credential keeps its own token cache and renews before expiry. Its requests go
//! over our reqwest 0.12 client ([`TokenHttp`]): no second HTTP and TLS stack, and none of
//! its own retries (the sink's budget decides).

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core_v1::credentials::TokenCredential as TokenCredentialV1;
use azure_core_v1::error::ErrorKind as ErrorKindV1;
use azure_core_v1::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core_v1::http::{
    AsyncRawResponse, Body, ClientOptions, HttpClient as HttpClientV1, Request as RequestV1,
    RetryOptions, StatusCode as StatusCodeV1, Transport,
};
use azure_identity_v1::{
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};

use crate::configuration::UserAssigned;

/// A user-assigned managed identity as a 0.21 credential.
pub(super) struct UserAssignedCredential {
    inner: Arc<ManagedIdentityCredential>,
}

impl std::fmt::Debug for UserAssignedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAssignedCredential")
            .finish_non_exhaustive()
    }
}

impl UserAssignedCredential {
    /// The credential for `id`, asking the managed identity endpoint of the environment
    /// (App Service's `IDENTITY_ENDPOINT`, else a VM's IMDS) over `http`. No request is sent.
    pub(super) fn new(
        id: &UserAssigned,
        http: reqwest::Client,
    ) -> azure_core::Result<UserAssignedCredential> {
        let user_assigned_id = match id {
            UserAssigned::ClientId(id) => UserAssignedId::ClientId(id.clone()),
            UserAssigned::ObjectId(id) => UserAssignedId::ObjectId(id.clone()),
        };
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: Some(user_assigned_id),
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(TokenHttp(http)))),
                retry: RetryOptions::none(),
                ..ClientOptions::default()
            },
        };
        let inner = ManagedIdentityCredential::new(Some(options)).map_err(to_v021)?;
        Ok(UserAssignedCredential { inner })
    }
}

#[async_trait]
impl TokenCredential for UserAssignedCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let token = self.inner.get_token(scopes, None).await.map_err(to_v021)?;
        Ok(AccessToken::new(
            token.token.secret().to_owned(),
            token.expires_on,
        ))
    }

    /// Nothing to clear from here: the 1.x credential renews its cached token itself.
    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

/// A 1.x error as a 0.21 one: kind `Credential` (no token), caused by an HTTP status or an
/// I/O failure when that is what happened, so `retry::is_transient` retries a 5xx, a 429 or
/// an unreachable endpoint and fails fast on anything else (400: identity not assigned).
/// The message is the 1.x headline without its troubleshooting link.
fn to_v021(error: azure_core_v1::Error) -> azure_core::Error {
    let message = error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let errors = std::iter::successors(
        Some(&error as &(dyn std::error::Error + 'static)),
        |error| error.source(),
    );
    let cause = errors
        .filter_map(|error| error.downcast_ref::<azure_core_v1::Error>())
        .map(azure_core_v1::Error::kind)
        .find(|kind| !matches!(kind, ErrorKindV1::Credential));
    let cause = match cause {
        Some(ErrorKindV1::HttpResponse {
            status, error_code, ..
        }) => {
            let status = u16::from(*status);
            let kind = ErrorKind::HttpResponse {
                status: status_v021(status),
                error_code: error_code.clone(),
            };
            azure_core::Error::message(kind, format!("the identity endpoint answered {status}"))
        }
        Some(ErrorKindV1::Connection | ErrorKindV1::Io) => {
            azure_core::Error::message(ErrorKind::Io, "the identity endpoint could not be reached")
        }
        _ => return azure_core::Error::message(ErrorKind::Credential, message),
    };
    azure_core::Error::full(ErrorKind::Credential, cause, message)
}

/// The 0.21 status for a code; one it does not know counts as a plain 400 or 500, which
/// keeps whether it is retried.
fn status_v021(code: u16) -> azure_core::StatusCode {
    azure_core::StatusCode::try_from(code).unwrap_or(if code >= 500 {
        azure_core::StatusCode::InternalServerError
    } else {
        azure_core::StatusCode::BadRequest
    })
}

/// The 1.x HTTP client trait over the process's reqwest 0.12 client. Token requests only:
/// small bodies, read whole.
#[derive(Debug)]
struct TokenHttp(reqwest::Client);

#[async_trait]
impl HttpClientV1 for TokenHttp {
    async fn execute_request(
        &self,
        request: &RequestV1,
    ) -> azure_core_v1::Result<AsyncRawResponse> {
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|error| azure_core_v1::Error::new(ErrorKindV1::Other, error))?;
        let mut builder = self.0.request(method, request.url().clone());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        match request.body() {
            Body::Bytes(bytes) if bytes.is_empty() => {}
            Body::Bytes(bytes) => builder = builder.body(bytes.clone()),
            Body::SeekableStream(_) => {
                return Err(azure_core_v1::Error::with_message(
                    ErrorKindV1::Other,
                    "a streamed body in a token request",
                ))
            }
        }
        let response = builder.send().await.map_err(transport_error)?;
        let status = StatusCodeV1::from(response.status().as_u16());
        let headers: Headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                let value = value.to_str().ok()?;
                Some((
                    HeaderName::from(name.as_str().to_owned()),
                    HeaderValue::from(value.to_owned()),
                ))
            })
            .collect::<std::collections::HashMap<_, _>>()
            .into();
        let body = response.bytes().await.map_err(transport_error)?;
        Ok(AsyncRawResponse::from_bytes(status, headers, body))
    }
}

/// A failed token request: `Connection` when it was never sent, else `Io`. Without the
/// URL, which names the identity.
fn transport_error(error: reqwest::Error) -> azure_core_v1::Error {
    let kind = if error.is_connect() {
        ErrorKindV1::Connection
    } else {
        ErrorKindV1::Io
    };
    azure_core_v1::Error::new(kind, error.without_url())
}

#[cfg(test)]
mod tests {
    use super::super::retry::is_transient;
    use super::*;

    /// A failure of the endpoint as `ManagedIdentityCredential` reports it, mapped.
    fn mapped(kind: ErrorKindV1) -> azure_core::Error {
        let inner = azure_core_v1::Error::with_message(kind, "the endpoint's answer");
        to_v021(azure_core_v1::Error::with_error(
            ErrorKindV1::Credential,
            inner,
            "ManagedIdentityCredential authentication failed. the endpoint's answer\nTo troubleshoot, visit https://aka.ms/azsdk/rust/identity/troubleshoot#managed-id",
        ))
    }

    fn status(code: u16) -> ErrorKindV1 {
        ErrorKindV1::HttpResponse {
            status: StatusCodeV1::from(code),
            error_code: None,
            raw_response: None,
        }
    }

    #[test]
    fn refusals_fail_fast_and_busy_or_unreachable_endpoints_are_retried() {
        for code in [400, 401, 403, 404, 499] {
            assert!(!is_transient(&mapped(status(code))), "{code}");
        }
        for code in [429, 500, 503, 599] {
            assert!(is_transient(&mapped(status(code))), "{code}");
        }
        assert!(is_transient(&mapped(ErrorKindV1::Connection)));
        assert!(is_transient(&mapped(ErrorKindV1::Io)));
        assert!(!is_transient(&mapped(ErrorKindV1::DataConversion)));
    }

    #[test]
    fn the_error_is_a_credential_error_on_one_line() {
        let error = mapped(status(400));
        assert!(matches!(error.kind(), ErrorKind::Credential));
        assert_eq!(
            error.to_string(),
            "ManagedIdentityCredential authentication failed. the endpoint's answer"
        );
    }
}
