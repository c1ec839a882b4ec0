//! One connection: HTTP/1 over the watched socket, closed when its phase's deadline
//! passes, and at shutdown either dropped (still uploading) or let finish its response.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::body::{FinishingBody, TimedBody};
use super::watch::{Timeouts, Watch, WatchedIo};

/// Serves `tcp` until the client leaves, a timeout closes it, or shutdown ends it.
pub(super) async fn serve(
    tcp: TcpStream,
    router: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
) {
    let watch = Arc::new(Watch::new(timeouts));
    let service = hyper::service::service_fn({
        let watch = Arc::clone(&watch);
        move |request: Request<Incoming>| handle(router.clone(), Arc::clone(&watch), request)
    });
    let mut http = http1::Builder::new();
    // The watch keeps the header and idle deadlines (hyper's timer would merge them).
    http.header_read_timeout(None);
    let connection = http.serve_connection(
        TokioIo::new(WatchedIo::new(tcp, Arc::clone(&watch))),
        service,
    );
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = watch.deadline();
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = watch.changed() => {}
            () = sleep_until(deadline) => {
                if let Some(expired) = watch.expired(Instant::now()) {
                    tracing::debug!(?expired, "connection closed: timeout");
                    return;
                }
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                if watch.uploading() {
                    tracing::debug!("shutdown: connection still uploading a body dropped");
                    return;
                }
                // Idle or partial heads close at once; a request whose body is in finishes
                // its response first.
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Gives the request a body deadline and the response a way to report it was taken.
async fn handle(
    router: Router,
    watch: Arc<Watch>,
    request: Request<Incoming>,
) -> Result<Response<FinishingBody>, Infallible> {
    watch.request_started();
    let request = request.map(|body| Body::new(TimedBody::new(body, Arc::clone(&watch))));
    let response = router.oneshot(request).await?;
    Ok(response.map(|body| FinishingBody::new(body, watch)))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
