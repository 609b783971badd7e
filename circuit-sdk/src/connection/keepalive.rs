//! The keepalive: a ping when the client has written nothing for an interval, so a quiet but
//! healthy connection outlives the daemon's idle timeout (which closes connections that send
//! nothing and have nothing open). It lives in the writer task: it sees every write, and ends
//! with it. The interval is a parameter of the connection (`ConnectOptions::keepalive`).

use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::{encode, Outgoing};
use crate::proto::{ClientMessage, Request};

/// When to ping. A ping is a `ping` request with an id counting down from `u64::MAX`, which
/// request ids (counting up from 1) never reach. It has no route: the reader drops its reply
/// as that of an unknown request, so nothing is left behind.
pub(super) struct Keepalive {
    interval: Option<Duration>,
    /// When the writer last flushed.
    last_sent: Instant,
    timer: Pin<Box<Sleep>>,
    next_id: u64,
}

impl Keepalive {
    /// Pings after `interval` of silence; never with `None`.
    pub(super) fn new(interval: Option<Duration>) -> Self {
        let now = Instant::now();
        Self {
            interval,
            last_sent: now,
            // Without an interval the timer is never polled.
            timer: Box::pin(tokio::time::sleep_until(now + interval.unwrap_or_default())),
            next_id: u64::MAX,
        }
    }

    /// The writer wrote something out.
    pub(super) fn sent(&mut self) {
        if self.interval.is_some() {
            self.last_sent = Instant::now();
        }
    }

    /// The next thing to write: queued output, or a ping once the client has been quiet for
    /// the interval. `None` when every sender is gone.
    pub(super) async fn next(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    ) -> Option<Outgoing> {
        let Some(interval) = self.interval else {
            return rx.recv().await;
        };
        loop {
            tokio::select! {
                biased;
                out = rx.recv() => return out,
                () = self.timer.as_mut() => {
                    let (now, due) = (Instant::now(), self.last_sent + interval);
                    if now < due {
                        self.timer.as_mut().reset(due);
                        continue;
                    }
                    self.timer.as_mut().reset(now + interval);
                    let id = self.next_id;
                    self.next_id -= 1;
                    let ping = ClientMessage::Request { id, request: Request::Ping };
                    if let Ok(frame) = encode(&ping) {
                        return Some(Outgoing::Frame(frame));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::proto::Frame;

    fn ping_id(out: Option<Outgoing>) -> u64 {
        match out {
            Some(Outgoing::Frame(Frame::Control(body))) => {
                match serde_json::from_slice::<ClientMessage>(&body).expect("json") {
                    ClientMessage::Request {
                        id,
                        request: Request::Ping,
                    } => id,
                    other => panic!("expected a ping, got {other:?}"),
                }
            }
            _ => panic!("expected a control frame"),
        }
    }

    #[tokio::test]
    async fn keepalive_pings_only_when_quiet_with_ids_no_request_uses() {
        let interval = Duration::from_millis(300);
        let mut keepalive = Keepalive::new(Some(interval));
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Queued output goes first.
        tx.send(Outgoing::Frame(Frame::Control(Bytes::from_static(b"{}"))))
            .expect("send");
        assert!(matches!(
            keepalive.next(&mut rx).await,
            Some(Outgoing::Frame(Frame::Control(_)))
        ));
        keepalive.sent();
        // Just written: no ping for a while.
        let early = tokio::time::timeout(interval / 4, keepalive.next(&mut rx)).await;
        assert!(early.is_err(), "pinged a connection that just wrote");
        // Quiet: pings, with fresh ids from the top of the range.
        let wait = Duration::from_secs(10);
        let first = tokio::time::timeout(wait, keepalive.next(&mut rx)).await;
        assert_eq!(ping_id(first.expect("a ping")), u64::MAX);
        keepalive.sent();
        let second = tokio::time::timeout(wait, keepalive.next(&mut rx)).await;
        assert_eq!(ping_id(second.expect("a ping")), u64::MAX - 1);
        // Every sender gone: the writer ends.
        drop(tx);
        assert!(keepalive.next(&mut rx).await.is_none());
    }
}
