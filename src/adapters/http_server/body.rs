//! A request body that must keep arriving: its deadline starts at `body_timeout` after
//! the request came in and moves on by one second for each `body_min_rate` bytes received
//! (Apache's `mod_reqtimeout` `body=…,MinRate=…`). A body that misses it ends in an error,
//! which the handler sees as an unreadable body, and hyper closes the connection.

use axum::body::{Body, Bytes};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Why a body stopped being read.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {rate} bytes/s after {grace:?}")]
pub struct TooSlow {
    rate: u64,
    grace: Duration,
}

/// `inner`, failing once it falls behind its deadline.
pub(super) struct MinRate {
    inner: Body,
    started: Instant,
    grace: Duration,
    rate: u64,
    received: u64,
    deadline: Pin<Box<Sleep>>,
}

impl MinRate {
    /// Wraps `inner`, read from now on with `grace` and at least `rate` bytes a second.
    pub(super) fn new(inner: Body, grace: Duration, rate: u64) -> Self {
        let started = Instant::now();
        Self {
            inner,
            started,
            grace,
            rate: rate.max(1),
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(started + grace)),
        }
    }

    /// Counts `bytes` more and moves the deadline on.
    fn received(&mut self, bytes: usize) {
        self.received = self
            .received
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        let earned = Duration::from_secs_f64(self.received as f64 / self.rate as f64);
        let deadline = self.started + self.grace.saturating_add(earned);
        self.deadline.as_mut().reset(deadline);
    }
}

impl HttpBody for MinRate {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received(data.len());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let slow = TooSlow {
                        rate: this.rate,
                        grace: this.grace,
                    };
                    tracing::debug!(error = %slow, "request body cut off");
                    Poll::Ready(Some(Err(axum::Error::new(slow))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// A body whose frames the test sends.
    struct Sent(mpsc::Receiver<Bytes>);

    impl HttpBody for Sent {
        type Data = Bytes;
        type Error = axum::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|bytes| bytes.map(|b| Ok(Frame::data(b))))
        }
    }

    async fn next(body: &mut MinRate) -> Option<Result<Frame<Bytes>, axum::Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
    }

    #[tokio::test]
    async fn a_body_that_keeps_its_rate_is_read_and_one_that_stalls_is_cut() {
        let (tx, rx) = mpsc::channel(4);
        let started = Instant::now();
        let mut body = MinRate::new(Body::new(Sent(rx)), Duration::from_millis(300), 10);
        tx.send(Bytes::from_static(&[0; 20])).await.expect("send");
        let first = next(&mut body).await.expect("a frame").expect("data");
        assert_eq!(first.into_data().expect("data").len(), 20);
        // 20 bytes at 10 bytes/s earned 2 s past the 0.3 s grace: 1 s is well in time.
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(Bytes::from_static(&[0; 1])).await.expect("send");
        assert!(next(&mut body).await.expect("a frame").is_ok());
        let cut = tokio::time::timeout(Duration::from_secs(10), next(&mut body))
            .await
            .expect("cut within 10 s")
            .expect("an error");
        assert!(
            started.elapsed() >= Duration::from_millis(2400),
            "not before its deadline"
        );
        let error = cut.expect_err("too slow").to_string();
        assert!(error.contains("slower than 10 bytes/s"), "{error}");
    }
}
