//! Request and response bodies that report to the connection's [`Watch`]: the request body
//! fails with [`BodyReadTimeout`] once its deadline passes, the response body marks the end
//! of the request when hyper has taken all of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::watch::Watch;
use crate::error::BodyReadTimeout;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that must fully arrive by a deadline set when its head was parsed.
pub(crate) struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    /// Created on the first wait, so bodies that arrive with their head cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
    watch: Arc<Watch>,
}

impl TimedBody {
    pub(crate) fn new(inner: Incoming, watch: Arc<Watch>) -> TimedBody {
        if inner.is_end_stream() {
            watch.body_complete();
        }
        TimedBody {
            inner,
            deadline: Instant::now() + watch.timeouts().body_read,
            timer: None,
            watch,
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.watch.body_complete();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                this.watch.body_complete();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyReadTimeout {
                        limit: this.watch.timeouts().body_read,
                    })))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends its request's busy phase when hyper drops it (written out,
/// or abandoned with the connection).
pub(crate) struct FinishingBody {
    inner: Body,
    watch: Arc<Watch>,
}

impl FinishingBody {
    pub(crate) fn new(inner: Body, watch: Arc<Watch>) -> FinishingBody {
        FinishingBody { inner, watch }
    }
}

impl Drop for FinishingBody {
    fn drop(&mut self) {
        self.watch.request_finished();
    }
}

impl HttpBody for FinishingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
