//! Forwarding mode: the caller's HTTP request, unchanged, at `POST /api/ingest`.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;

use super::{finish, read_body, AppState};
use crate::error::Reply;

pub(super) async fn ingest(State(state): State<AppState>, request: Request) -> Reply {
    let started = Instant::now();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let outcome = match read_body(request, state.max_body_bytes).await {
        Ok(body) => state.ingest(body, content_type.as_deref()).await,
        Err(error) => Err(error),
    };
    finish("forwarded", started, &outcome)
}
