//! What both channel halves know about their stream, sans-IO: its id on the connection, its
//! generation (bumped by each reopen, so that late events of an old stream are told apart),
//! and whether it is open, being reopened or over; whether a new connection may resume it
//! (the same daemon instance only); and [`Effect`], what a half's state machine asks its stream
//! shell (`stream.rs`) to do. No I/O, no locks, no clock.

use super::ChanError;
use crate::client::Target;
use crate::proto::{Frame, SignalOp};

/// What a half's state machine asks of its stream; `stream::apply` carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Queue this frame on the connection.
    Write(Frame),
    /// Have the connection's writer pull this half's acknowledgements and credit when it next
    /// writes (the generation is the token it pulls with).
    Pull(u64),
    /// End stream `id` from this side: its route is dropped and the owner told.
    End(u64),
    /// Ask the owner to end stream `id`, keeping the route for its answer.
    Cancel(u64),
}

/// One half's stream, as its state machine sees it.
#[derive(Debug)]
pub(crate) struct StreamState {
    /// The stream's id on its connection (its request id).
    pub id: u64,
    /// Which stream counts: events of another generation are stale.
    pub gen: u64,
    /// The connection is gone and a reopen is under way: nothing is written until it ends.
    pub reconnecting: bool,
    /// Over for good (failed, closed or dropped): every operation fails with this.
    pub failed: Option<ChanError>,
}

/// What a half does when its connection is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Nothing: the event is stale, or the half is over or already reopening.
    Ignore,
    /// Reopen the stream on a new connection (the shell's reconnect task).
    Reconnect,
}

impl Default for StreamState {
    fn default() -> Self {
        Self {
            id: 0,
            gen: 1,
            reconnecting: false,
            failed: None,
        }
    }
}

impl StreamState {
    /// A signal frame on this stream.
    pub fn signal(&self, op: SignalOp, a: u64) -> Frame {
        self.signal2(op, a, 0)
    }

    /// A signal frame on this stream with both arguments.
    pub fn signal2(&self, op: SignalOp, a: u64, b: u64) -> Frame {
        Frame::Signal {
            id: self.id,
            op,
            a,
            b,
        }
    }

    /// The connection of generation `gen` is gone: reopen, unless that is stale or the half
    /// is over or already reopening.
    pub fn lost(&mut self, gen: u64) -> Lost {
        if gen != self.gen || self.failed.is_some() || self.reconnecting {
            return Lost::Ignore;
        }
        self.reconnecting = true;
        Lost::Reconnect
    }

    /// Generation `gen` was reopened as stream `id`: true if it takes over, false if the half
    /// no longer wants it (it failed meanwhile), in which case the new stream is ended.
    pub fn resumed(&mut self, gen: u64, id: u64) -> bool {
        if gen != self.gen || self.failed.is_some() {
            return false;
        }
        self.id = id;
        self.gen = gen + 1;
        self.reconnecting = false;
        true
    }

    /// The half fails for good with `error`: true unless the event is stale or it already had.
    pub fn fail(&mut self, gen: u64, error: ChanError) -> bool {
        if gen != self.gen || self.failed.is_some() {
            return false;
        }
        self.failed = Some(error);
        self.reconnecting = false;
        true
    }
}

/// Whether a stream lost with its connection may be resumed on a new connection to `at`: only
/// on the same daemon instance (`was`), since a restarted daemon (`now`) lost what the channel
/// held. The error the half fails with otherwise.
pub(crate) fn restarted(chan: &str, at: Option<&Target>, was: u64, now: u64) -> Option<ChanError> {
    (was != now).then(|| {
        let at = at.map_or_else(String::new, |t| format!(" at {t}"));
        ChanError::OwnerLost(format!(
            "circuitd{at} restarted; channel \"{chan}\" lost what it held"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_10_a_lost_stream_reopens_once_and_the_new_one_takes_over() {
        let mut st = StreamState {
            id: 7,
            ..StreamState::default()
        };
        assert_eq!(st.lost(1), Lost::Reconnect);
        assert_eq!(st.lost(1), Lost::Ignore, "already reopening");
        assert!(st.resumed(1, 9));
        assert_eq!((st.id, st.gen, st.reconnecting), (9, 2, false));
        // Late news of the old stream changes nothing.
        assert_eq!(st.lost(1), Lost::Ignore);
        assert!(!st.fail(1, ChanError::Closed));
        assert!(st.failed.is_none());
    }

    #[test]
    fn rule_17_only_the_same_daemon_instance_resumes_a_stream() {
        let at = Target::Unix("/s".into());
        assert_eq!(restarted("jobs", Some(&at), 42, 42), None);
        let lost = restarted("jobs", Some(&at), 42, 43).expect("another instance");
        assert!(lost.is_owner_lost());
        assert_eq!(
            lost.to_string(),
            "lost the channel's owner: circuitd at /s restarted; channel \"jobs\" lost what it held"
        );
    }

    #[test]
    fn rule_17_a_failure_is_final() {
        let mut st = StreamState::default();
        assert_eq!(st.lost(1), Lost::Reconnect);
        assert!(st.fail(1, ChanError::OwnerLost("restarted".into())));
        assert!(!st.reconnecting);
        assert!(
            !st.resumed(1, 9),
            "a reopen that comes too late is not taken"
        );
        assert_eq!(st.lost(1), Lost::Ignore);
        assert!(!st.fail(1, ChanError::Closed), "the first failure stays");
        assert!(st.failed.as_ref().is_some_and(ChanError::is_owner_lost));
    }
}
