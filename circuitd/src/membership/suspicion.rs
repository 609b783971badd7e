//! Suspicions this node raised: the timer foca sets to declare a silent member down, handed back
//! to foca only while the suspicion stands. Sans-IO: fed timers and foca's entry of the member.
//!
//! Why not just fire every timer: in foca 2.0, the suspect→down timer that fires after the
//! member refuted (raised its incarnation) rightly leaves the member alive, but still sends it
//! `TurnUndead` ("you are down"); the member then renews its identity, and the mesh sees a
//! `rejoin` under a new generation although nobody declared it dead. So a timer whose suspicion
//! no longer stands is dropped here, and one suspicion has one timer (a member that misses
//! several probes gets one per miss; the first decides).

use std::collections::HashSet;

use foca::{Incarnation, Member, State, Timer, TimerToken};

use super::identity::NodeId;

/// One suspicion: the member, the incarnation suspected, and the timer token of the foca
/// instance that raised it (a timer from before a rejoin is void, so it is another suspicion).
type Key = (NodeId, Incarnation, TimerToken);

/// The suspicions with a timer pending.
#[derive(Debug, Default)]
pub(crate) struct Suspicions {
    pending: HashSet<Key>,
}

/// What to do with a timer foca asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// Not a suspicion timer: schedule it.
    Keep,
    /// A new suspicion of this member: schedule its timer.
    Suspected(NodeId),
    /// A second timer for a pending suspicion, or one set for a suspicion that no longer stands
    /// (the probe began before the member refuted): drop it.
    Drop,
}

/// What to do with a timer that is due.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// Hand it to foca (a suspicion that stands makes the member down).
    Fire,
    /// The member refuted the suspicion: drop the timer, it is not down.
    Refuted(NodeId),
    /// The suspicion is moot (the member is down already, or came back as a new identity):
    /// drop the timer.
    Drop,
}

impl Suspicions {
    /// Takes a timer foca asks for; `member` is foca's entry of the member it is about, if any.
    pub fn schedule(&mut self, timer: &Timer<NodeId>, member: Option<&Member<NodeId>>) -> Schedule {
        let Some(key) = key(timer) else {
            return Schedule::Keep;
        };
        if !stands(&key, member) || !self.pending.insert(key.clone()) {
            return Schedule::Drop;
        }
        Schedule::Suspected(key.0)
    }

    /// Takes a timer that is due; `member` is foca's entry of the member it is about, if any.
    pub fn due(&mut self, timer: &Timer<NodeId>, member: Option<&Member<NodeId>>) -> Due {
        let Some(key) = key(timer) else {
            return Due::Fire;
        };
        self.pending.remove(&key);
        if stands(&key, member) {
            Due::Fire
        } else if member.is_some_and(|m| m.incarnation() > key.1 && m.state() != State::Down) {
            Due::Refuted(key.0)
        } else {
            Due::Drop
        }
    }
}

/// The suspicion a timer is for, if it is a suspicion timer.
fn key(timer: &Timer<NodeId>) -> Option<Key> {
    match timer {
        Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            token,
        } => Some((member_id.clone(), *incarnation, *token)),
        _ => None,
    }
}

/// Whether the member is still suspect at the incarnation suspected.
fn stands(key: &Key, member: Option<&Member<NodeId>>) -> bool {
    member.is_some_and(|m| {
        m.id() == &key.0 && m.incarnation() == key.1 && m.state() == State::Suspect
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use foca::{AccumulatingRuntime, Codec, Foca, Message, PostcardCodec};
    use rand::SeedableRng;

    use super::*;
    use crate::membership::config::swim_config;

    type Swim = Foca<NodeId, PostcardCodec, rand::rngs::StdRng, foca::NoCustomBroadcast>;

    fn id(name: &str, port: u16) -> NodeId {
        NodeId {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            generation: 1,
        }
    }

    /// Node `a` in a mesh with `b`, its runtime, and the timers it set (in order).
    struct Node {
        swim: Swim,
        rt: AccumulatingRuntime<NodeId>,
        timers: Vec<(Duration, Timer<NodeId>)>,
        suspicions: Suspicions,
    }

    impl Node {
        fn new() -> Self {
            let mut node = Self {
                swim: Foca::new(
                    id("a", 1),
                    swim_config(2),
                    rand::rngs::StdRng::seed_from_u64(7),
                    PostcardCodec,
                ),
                rt: AccumulatingRuntime::new(),
                timers: Vec::new(),
                suspicions: Suspicions::default(),
            };
            node.apply(Member::new(id("b", 2), 0, State::Alive));
            node
        }

        /// Takes what foca asked for: timers through `schedule` (its verdicts on suspicion
        /// timers returned), sends dropped.
        fn settle(&mut self) -> Vec<Schedule> {
            while self.rt.to_send().is_some() {}
            while self.rt.to_notify().is_some() {}
            let mut verdicts = Vec::new();
            while let Some((after, timer)) = self.rt.to_schedule() {
                let member = self.member(&timer);
                let verdict = self.suspicions.schedule(&timer, member.as_ref());
                if verdict != Schedule::Drop {
                    self.timers.push((after, timer));
                }
                if verdict != Schedule::Keep {
                    verdicts.push(verdict);
                }
            }
            verdicts
        }

        fn apply(&mut self, update: Member<NodeId>) {
            self.swim
                .apply_many(std::iter::once(update), true, &mut self.rt)
                .expect("apply");
            self.settle();
        }

        /// Fires the first pending timer matching `which`, through `due` or straight to foca.
        fn fire(&mut self, which: fn(&Timer<NodeId>) -> bool, filtered: bool) -> Due {
            let at = self
                .timers
                .iter()
                .position(|(_, t)| which(t))
                .expect("timer pending");
            let (_, timer) = self.timers.remove(at);
            let member = self.member(&timer);
            let due = if filtered {
                self.suspicions.due(&timer, member.as_ref())
            } else {
                Due::Fire
            };
            if due == Due::Fire {
                self.swim.handle_timer(timer, &mut self.rt).expect("timer");
            }
            due
        }

        /// A probe of `b` that gets no answer: `b` becomes suspect, with a suspicion timer.
        fn probe_fails(&mut self) {
            let probing = |t: &Timer<NodeId>| matches!(t, Timer::SendIndirectProbe { .. });
            if !self.timers.iter().any(|(_, t)| probing(t)) {
                self.fire(|t| matches!(t, Timer::ProbeRandomMember(_)), true);
                self.settle();
            }
            self.fire(|t| matches!(t, Timer::SendIndirectProbe { .. }), true);
            self.settle();
            self.fire(|t| matches!(t, Timer::ProbeRandomMember(_)), true);
            // Not settled: the caller looks at what foca asked for.
        }

        fn member(&self, timer: &Timer<NodeId>) -> Option<Member<NodeId>> {
            let (who, ..) = key(timer)?;
            self.swim
                .iter_membership_state()
                .find(|m| m.id() == &who)
                .cloned()
        }

        fn state_of_b(&self) -> (Incarnation, State) {
            let b = self
                .swim
                .iter_membership_state()
                .find(|m| m.id().name == "b")
                .expect("b known");
            (b.incarnation(), b.state())
        }

        fn suspicion_timers(&self) -> usize {
            self.timers.iter().filter(|(_, t)| key(t).is_some()).count()
        }

        /// Messages foca asked to send to `b`.
        fn sent_to_b(&mut self) -> Vec<Message<NodeId>> {
            let mut sent = Vec::new();
            while let Some((to, data)) = self.rt.to_send() {
                if to.name == "b" {
                    let header = PostcardCodec.decode_header(&data[..]).expect("header");
                    sent.push(header.message);
                }
            }
            sent
        }
    }

    fn is_suspicion(t: &Timer<NodeId>) -> bool {
        matches!(t, Timer::ChangeSuspectToDown { .. })
    }

    #[test]
    fn a_refuted_suspicion_is_never_a_death_nor_a_turn_undead() {
        let mut a = Node::new();
        a.probe_fails();
        assert_eq!(a.settle(), vec![Schedule::Suspected(id("b", 2))]);
        assert_eq!(a.state_of_b(), (0, State::Suspect));
        let timer = a
            .timers
            .iter()
            .find(|(_, t)| is_suspicion(t))
            .expect("suspicion timer")
            .1
            .clone();

        // b refutes: it raised its incarnation.
        a.apply(Member::new(id("b", 2), 1, State::Alive));
        assert_eq!(a.state_of_b(), (1, State::Alive));

        // The timer comes due: dropped, b stays alive and is told nothing.
        assert_eq!(a.fire(is_suspicion, true), Due::Refuted(id("b", 2)));
        assert_eq!(a.state_of_b(), (1, State::Alive));
        assert!(a.sent_to_b().is_empty(), "nothing sent to b");

        // What foca does with that timer when it gets it anyway: b stays alive here, but is
        // sent TurnUndead, which makes it renew its identity. (Should this fail, foca changed
        // and the filter may be unnecessary.)
        a.swim.handle_timer(timer, &mut a.rt).expect("timer");
        assert_eq!(a.state_of_b(), (1, State::Alive));
        assert!(a.sent_to_b().contains(&Message::TurnUndead));
    }

    #[test]
    fn a_suspicion_that_stands_still_makes_the_member_dead() {
        let mut a = Node::new();
        a.probe_fails();
        a.settle();
        assert_eq!(a.suspicion_timers(), 1);
        // b misses another probe: foca sets another timer, for the same suspicion.
        a.probe_fails();
        assert_eq!(a.settle(), vec![Schedule::Drop], "one suspicion, one timer");
        assert_eq!(a.suspicion_timers(), 1);
        assert_eq!(a.fire(is_suspicion, true), Due::Fire);
        assert_eq!(a.state_of_b(), (0, State::Down));
        assert!(a.sent_to_b().contains(&Message::TurnUndead));
    }

    #[test]
    fn a_probe_begun_before_the_refutation_raises_no_suspicion() {
        let mut a = Node::new();
        // The probe starts while b is at incarnation 0...
        a.fire(|t| matches!(t, Timer::ProbeRandomMember(_)), true);
        a.settle();
        a.fire(|t| matches!(t, Timer::SendIndirectProbe { .. }), true);
        a.settle();
        // ...b refutes someone else's suspicion meanwhile...
        a.apply(Member::new(id("b", 2), 1, State::Alive));
        // ...and the probe fails: foca sets a timer for incarnation 0, which is dropped.
        a.fire(|t| matches!(t, Timer::ProbeRandomMember(_)), true);
        assert_eq!(a.settle(), vec![Schedule::Drop]);
        assert_eq!(a.suspicion_timers(), 0);
        assert_eq!(a.state_of_b(), (1, State::Alive));
    }
}
