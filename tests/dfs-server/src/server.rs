//! Accepting connections (each counted) and serving HTTP/1.1 on them, with a way for a
//! request to close its own connection without answering.

use crate::ops::{self, die, Resp};
use crate::{Service, Shared};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    service: Service,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(_) => {
                // Out of descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
        if shared.crashed.load(Ordering::SeqCst) {
            shared
                .counters
                .connections_dropped
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            shared.clone(),
            shutdown.clone(),
            service,
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    service: Service,
) {
    let kill = Arc::new(Notify::new());
    let mut crash = shared.crash_tx.subscribe();
    let svc = {
        let shared = shared.clone();
        let kill = kill.clone();
        service_fn(move |req: Request<Incoming>| {
            let shared = shared.clone();
            let kill = kill.clone();
            async move { Ok::<_, Infallible>(handle(shared, req, kill, peer, service).await) }
        })
    };
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    // Leaving the select drops the connection, and with it the socket: that is how a fault
    // or a crash closes a connection without answering.
    let dropped = tokio::select! {
        _ = conn.as_mut() => false,
        _ = kill.notified() => true,
        _ = crash.changed() => true,
        _ = shutdown.changed() => false,
    };
    if dropped {
        shared
            .counters
            .connections_dropped
            .fetch_add(1, Ordering::Relaxed);
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    kill: Arc<Notify>,
    peer: SocketAddr,
    service: Service,
) -> Resp {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    if shared.crashed.load(Ordering::SeqCst) {
        return die(&kill).await;
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return die(&kill).await,
    };
    ops::serve(shared, parts, body, peer, kill, service).await
}
