//! Forwarding mode: the caller's HTTP request, unchanged, at `POST /api/ingest`.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;

use super::{finish, read_body, AppState};
use crate::error::Reply;
use crate::ingest::BodyFormat;

pub(super) async fn ingest(State(state): State<AppState>, request: Request) -> Reply {
    let started = Instant::now();
    // The media type first: an unsupported body is refused without reading it.
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let outcome = match BodyFormat::from_content_type(content_type) {
        Ok(format) => match read_body(request, state.max_body_bytes).await {
            Ok(body) => state.ingest(body, format).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    finish("forwarded", started, &outcome)
}
