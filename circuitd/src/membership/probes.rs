//! The round trip of direct probes, sans-IO: foca's pings going out and their acks coming
//! back, matched by member address and probe number. foca does not report it, so the SWIM
//! task shows this each packet's header as it passes the socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foca::{Header, Message, ProbeNumber};

use super::identity::NodeId;

/// Pings older than this are forgotten: foca gave up on them long before (its probe period
/// is a few seconds at most).
const FORGET_AFTER: Duration = Duration::from_secs(30);

/// Pings out that have had no ack yet.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    out: HashMap<(SocketAddr, ProbeNumber), Instant>,
}

impl Probes {
    /// A packet goes out: a ping starts a round trip.
    pub fn sent(&mut self, header: &Header<NodeId>, at: Instant) {
        if let Message::Ping(n) = header.message {
            if self.out.len() >= 64 {
                self.out
                    .retain(|_, sent| at.duration_since(*sent) < FORGET_AFTER);
            }
            self.out.insert((header.dst.addr, n), at);
        }
    }

    /// A packet came in: an ack to one of our pings ends its round trip, which is returned.
    pub fn received(&mut self, header: &Header<NodeId>, at: Instant) -> Option<Duration> {
        let Message::Ack(n) = header.message else {
            return None;
        };
        let sent = self.out.remove(&(header.src.addr, n))?;
        Some(at.duration_since(sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(src: &NodeId, dst: &NodeId, message: Message<NodeId>) -> Header<NodeId> {
        Header {
            src: src.clone(),
            src_incarnation: 0,
            dst: dst.clone(),
            message,
        }
    }

    #[test]
    fn an_ack_ends_the_round_trip_of_its_ping_once() {
        let a = NodeId::new("a".into(), SocketAddr::from(([127, 0, 0, 1], 1)));
        let b = NodeId::new("b".into(), SocketAddr::from(([127, 0, 0, 1], 2)));
        let mut p = Probes::default();
        let t0 = Instant::now();
        p.sent(&header(&a, &b, Message::Ping(7)), t0);
        // Another probe number, another member, or not an ack: no round trip.
        assert_eq!(p.received(&header(&b, &a, Message::Ack(8)), t0), None);
        let c = NodeId::new("c".into(), SocketAddr::from(([127, 0, 0, 1], 3)));
        assert_eq!(p.received(&header(&c, &a, Message::Ack(7)), t0), None);
        assert_eq!(p.received(&header(&b, &a, Message::Gossip), t0), None);
        let later = t0 + Duration::from_millis(3);
        assert_eq!(
            p.received(&header(&b, &a, Message::Ack(7)), later),
            Some(Duration::from_millis(3))
        );
        assert_eq!(
            p.received(&header(&b, &a, Message::Ack(7)), later),
            None,
            "a second ack is not a second round trip"
        );
    }

    #[test]
    fn pings_never_answered_are_forgotten() {
        let a = NodeId::new("a".into(), SocketAddr::from(([127, 0, 0, 1], 1)));
        let t0 = Instant::now();
        let mut p = Probes::default();
        for port in 0..64 {
            let b = NodeId::new("b".into(), SocketAddr::from(([127, 0, 0, 1], port)));
            p.sent(&header(&a, &b, Message::Ping(1)), t0);
        }
        let b = NodeId::new("b".into(), SocketAddr::from(([127, 0, 0, 1], 99)));
        p.sent(&header(&a, &b, Message::Ping(1)), t0 + FORGET_AFTER);
        assert_eq!(p.out.len(), 1, "only the new ping is kept");
    }
}
