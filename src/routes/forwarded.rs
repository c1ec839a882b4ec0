//! Forwarding mode: the caller's HTTP request, unchanged, at `POST /api/ingest`.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};

use super::{finish, framing_for, read_body, AppState};
use crate::error::{IngestError, Reply};
use crate::ingest::Summary;
use crate::signature::{self, SignatureError};

pub(super) async fn ingest(State(state): State<AppState>, request: Request) -> Reply {
    let started = Instant::now();
    let outcome = handle(&state, request).await;
    finish("forwarded", started, &outcome)
}

async fn handle(state: &AppState, request: Request) -> Result<Summary, IngestError> {
    // The signature header first, then the media type: a request refused for either is
    // refused without reading its body.
    let signature = state.expect_signature(signature_header(request.headers()))?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let framing = framing_for(content_type)?;
    let (body, reservation) = read_body(request, state.max_body_bytes, &state.budget).await?;
    let task_state = state.clone();
    state
        .after_read(reservation, async move {
            if let Some(signature) = signature {
                signature.verify(&body).await?;
            }
            task_state.ingest(body, framing).await
        })
        .await
}

/// Every `X-Ingest-Signature` line, joined by `,` (HTTP allows a list either way).
fn signature_header(headers: &HeaderMap) -> Result<Option<String>, SignatureError> {
    let values = headers
        .get_all(signature::HEADER)
        .iter()
        .map(|value| {
            value
                .to_str()
                .map_err(|_| SignatureError::Malformed("the header is not visible ASCII"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((!values.is_empty()).then(|| values.join(",")))
}
