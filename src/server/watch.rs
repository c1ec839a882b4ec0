//! Where one connection is in its request cycle, and the deadline that phase allows.
//!
//! hyper's own header-read timer also runs while a kept-alive connection waits for its
//! next request, so it cannot give a short header timeout and a long idle one at once;
//! this state does, and tells the server which connections are still uploading at
//! shutdown.

use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The per-connection timeouts, from `ServerLimits`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub header_read: Duration,
    pub body_read: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head is awaited (a new connection) or partly received.
    Head,
    /// A request is being handled; `body_complete` once its body has fully arrived.
    Busy { body_complete: bool },
    /// Kept alive between requests, nothing received yet.
    Idle,
}

/// Which timeout closed a connection (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    HeaderRead,
    Idle,
}

struct State {
    phase: Phase,
    deadline: Option<Instant>,
}

/// Shared by a connection's watchdog, its socket wrapper and its request bodies.
pub(crate) struct Watch {
    timeouts: Timeouts,
    state: Mutex<State>,
    changed: Notify,
}

impl Watch {
    /// A new connection: its first request head must arrive within the header timeout.
    pub(crate) fn new(timeouts: Timeouts) -> Watch {
        Watch {
            timeouts,
            state: Mutex::new(State {
                phase: Phase::Head,
                deadline: Some(Instant::now() + timeouts.header_read),
            }),
            changed: Notify::new(),
        }
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is two plain fields; a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, phase: Phase, deadline: Option<Instant>) {
        *self.state() = State { phase, deadline };
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle connection they start the next request's head.
    fn bytes_read(&self) {
        let mut state = self.state();
        if state.phase == Phase::Idle {
            state.phase = Phase::Head;
            state.deadline = Some(Instant::now() + self.timeouts.header_read);
            drop(state);
            self.changed.notify_one();
        }
    }

    /// A complete head was parsed: the body has its own deadline, the handler none.
    pub(crate) fn request_started(&self) {
        self.set(
            Phase::Busy {
                body_complete: false,
            },
            None,
        );
    }

    pub(crate) fn body_complete(&self) {
        let mut state = self.state();
        if let Phase::Busy { body_complete } = &mut state.phase {
            *body_complete = true;
        }
    }

    /// The response was handed over: the connection idles until the next request.
    pub(crate) fn request_finished(&self) {
        self.set(Phase::Idle, Some(Instant::now() + self.timeouts.idle));
    }

    /// When the current phase runs out (`None` while a request is handled).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.state().deadline
    }

    /// The timeout that has run out by `now`, if any.
    pub(crate) fn expired(&self, now: Instant) -> Option<Expired> {
        let state = self.state();
        match (state.phase, state.deadline) {
            (Phase::Head, Some(deadline)) if now >= deadline => Some(Expired::HeaderRead),
            (Phase::Idle, Some(deadline)) if now >= deadline => Some(Expired::Idle),
            _ => None,
        }
    }

    /// A request is being handled whose body has not fully arrived.
    pub(crate) fn uploading(&self) -> bool {
        matches!(
            self.state().phase,
            Phase::Busy {
                body_complete: false
            }
        )
    }

    /// Completes after the next phase change (at once if one happened since the last call).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// The connection's socket, telling its [`Watch`] when bytes arrive.
pub(crate) struct WatchedIo {
    tcp: TcpStream,
    watch: std::sync::Arc<Watch>,
}

impl WatchedIo {
    pub(crate) fn new(tcp: TcpStream, watch: std::sync::Arc<Watch>) -> WatchedIo {
        WatchedIo { tcp, watch }
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.watch.bytes_read();
        }
        poll
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        body_read: Duration::from_secs(60),
        idle: Duration::from_secs(120),
    };

    #[test]
    fn each_phase_has_its_own_deadline() {
        let start = Instant::now();
        let watch = Watch::new(TIMEOUTS);
        assert_eq!(
            watch.expired(start + Duration::from_secs(11)),
            Some(Expired::HeaderRead)
        );
        watch.request_started();
        assert_eq!(
            watch.deadline(),
            None,
            "no deadline while a request is handled"
        );
        assert!(watch.uploading());
        watch.body_complete();
        assert!(!watch.uploading());
        watch.request_finished();
        let idle_until = watch.deadline().expect("an idle deadline");
        assert!(idle_until >= start + TIMEOUTS.idle);
        assert_eq!(watch.expired(idle_until - Duration::from_secs(1)), None);
        assert_eq!(watch.expired(idle_until), Some(Expired::Idle));
        // The next request's first bytes switch to the (shorter) header deadline.
        watch.bytes_read();
        let head_until = watch.deadline().expect("a header deadline");
        assert!(head_until < idle_until);
        assert_eq!(watch.expired(head_until), Some(Expired::HeaderRead));
    }

    #[test]
    fn body_bytes_do_not_restart_the_header_clock() {
        let watch = Watch::new(TIMEOUTS);
        watch.request_started();
        watch.bytes_read();
        assert_eq!(watch.deadline(), None);
        assert!(watch.uploading());
    }
}
