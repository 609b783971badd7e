//! How the hosts of one install learn each other's advertised addresses, so each can join the
//! others: every host thread publishes its address (or nothing, when it failed before knowing
//! it) and waits until every host has, then takes the others'.

use std::sync::{Condvar, Mutex};

/// Where the hosts of one run learn each other's advertised addresses: each host publishes
/// its own (or nothing, when it failed first), and waits for all before writing its config.
#[derive(Debug)]
pub struct Rendezvous {
    /// One slot per host: `None` until it publishes; `Some(None)` when it failed first.
    slots: Mutex<Vec<Option<Option<String>>>>,
    all_in: Condvar,
}

impl Rendezvous {
    /// A rendezvous of `n` hosts.
    pub fn new(n: usize) -> Self {
        Self {
            slots: Mutex::new(vec![None; n]),
            all_in: Condvar::new(),
        }
    }

    /// Host `i`'s address, or `None`: it has none to give. Only the first call counts.
    pub fn publish(&self, i: usize, addr: Option<String>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots[i].is_none() {
            slots[i] = Some(addr);
        }
        self.all_in.notify_all();
    }

    /// The addresses of every other host that got as far as publishing one.
    pub fn others(&self, i: usize) -> Vec<String> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        while slots.iter().any(Option::is_none) {
            slots = self.all_in.wait(slots).unwrap_or_else(|e| e.into_inner());
        }
        slots
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, s)| s.clone().flatten())
            .collect()
    }
}

/// Publishes "no address" for a host that ends before publishing one, so no one waits for it.
pub struct Slot<'a> {
    /// The run's rendezvous.
    pub rendezvous: &'a Rendezvous,
    /// This host's index among the run's hosts.
    pub index: usize,
}

impl Slot<'_> {
    /// Publishes this host's address.
    pub fn publish(&self, addr: &str) {
        self.rendezvous.publish(self.index, Some(addr.to_string()));
    }

    /// Waits for every host, then returns the other hosts' addresses.
    pub fn others(&self) -> Vec<String> {
        self.rendezvous.others(self.index)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.rendezvous.publish(self.index, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendezvous_waits_for_every_host_and_skips_failed_ones() {
        let rv = Rendezvous::new(3);
        std::thread::scope(|s| {
            let a = s.spawn(|| {
                rv.publish(0, Some("a:1".into()));
                rv.others(0)
            });
            s.spawn(|| {
                drop(Slot {
                    rendezvous: &rv,
                    index: 1,
                })
            });
            s.spawn(|| rv.publish(2, Some("c:1".into())));
            assert_eq!(a.join().unwrap(), ["c:1"]);
        });
        assert_eq!(rv.others(1), ["a:1", "c:1"]);
    }
}
