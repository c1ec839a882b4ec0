//! The HTTP server: accepts connections up to a limit and serves each with its timeouts,
//! until shutdown. Replaces `axum::serve`, which has no header, body or idle timeouts, no
//! connection limit, and a graceful shutdown that waits forever for a stalled client.
//!
//! - At most `max_connections` are served at once: at the limit nothing is accepted, so
//!   further connections wait in the kernel's backlog instead of using descriptors.
//! - Accept errors (out of descriptors: EMFILE) pause the loop briefly, never end it.
//! - On shutdown the listener closes at once; connections uploading a body are dropped,
//!   idle ones closed, and requests whose body is in finish their response.

mod body;
mod connection;
mod watch;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::configuration::ServerLimits;
use watch::Timeouts;

/// The pause after an accept error other than a connection the client already gave up.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);

/// A listener and the router its connections are served with.
pub struct Server {
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    max_connections: usize,
}

/// The connections still open after the listener closed.
pub struct Draining {
    connections: TaskTracker,
}

impl Server {
    pub fn new(listener: TcpListener, router: Router, limits: &ServerLimits) -> Server {
        Server {
            listener,
            router,
            timeouts: Timeouts {
                header_read: limits.header_read_timeout,
                body_read: limits.body_read_timeout,
                idle: limits.idle_timeout,
            },
            max_connections: within_descriptor_limit(limits.max_connections),
        }
    }

    /// Serves until `shutdown` completes, then closes the listener and tells every
    /// connection to stop; returns at once with what is still open.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> Draining {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let connections = TaskTracker::new();
        let stop = CancellationToken::new();
        let mut failing = false;
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = Arc::clone(&slots).acquire_owned() => slot,
            };
            // The semaphore is never closed; should it be, serving stops.
            let Ok(slot) = slot else { break };
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => accepted,
            };
            let tcp = match accepted {
                Ok((tcp, _peer)) => {
                    failing = false;
                    tcp
                }
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Usually EMFILE: descriptors come back as connections close.
                    if !failing {
                        tracing::warn!(%error, "accept failed; retrying");
                    }
                    failing = true;
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            };
            // Small JSON answers should leave at once, not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
            let (router, timeouts, stop) = (self.router.clone(), self.timeouts, stop.clone());
            connections.spawn(async move {
                connection::serve(tcp, router, timeouts, stop).await;
                drop(slot);
            });
        }
        drop(self.listener);
        stop.cancel();
        connections.close();
        Draining { connections }
    }
}

impl Draining {
    /// Connections not yet closed.
    pub fn open(&self) -> usize {
        self.connections.len()
    }

    /// Completes when every connection has closed.
    pub async fn closed(&self) {
        self.connections.wait().await;
    }
}

/// The client gave up on this connection before it was accepted: nothing to pause for.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// At most half the open-file limit goes to connections: writes need descriptors too
/// (files, folders, storage connections), and a limit above it would end in EMFILE.
fn within_descriptor_limit(max_connections: usize) -> usize {
    let Some(files) = open_file_limit() else {
        return max_connections;
    };
    let allowed = (files / 2).max(1);
    if max_connections > allowed {
        tracing::warn!(
            max_connections,
            open_file_limit = files,
            allowed,
            "MAX_CONNECTIONS is above half the open-file limit; serving at most {allowed} connections"
        );
        allowed
    } else {
        max_connections
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes a plain struct owned by this frame.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (read && limit.rlim_cur != libc::RLIM_INFINITY)
        .then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<usize> {
    None
}
