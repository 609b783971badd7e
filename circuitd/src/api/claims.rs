//! The claim table: which node is creating which channel name, as far as this node knows.
//! A claim lasts while its create runs and ends with it (the creating node releases it here
//! and on every node it told); the time limit only ends the claims of nodes that died midway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a claim is kept when its node never releases it (it died while creating).
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(10);

/// Names being created, here or (as they told us) on other nodes: name → (node, since).
/// Cheap to clone; every clone is the same table.
#[derive(Default, Clone)]
pub(crate) struct Claims(Arc<Mutex<HashMap<String, (String, Instant)>>>);

impl Claims {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node whose claim on `name` is live at `now`, if any.
    #[cfg(test)]
    fn holder(&self, name: &str, now: Instant) -> Option<String> {
        let table = self.table();
        let (by, since) = table.get(name)?;
        (now.saturating_duration_since(*since) < CLAIM_TTL).then(|| by.clone())
    }

    /// Records `by`'s claim on `name` unless another node holds a live one, which is returned
    /// (and kept: a create that loses to it must not end it).
    pub fn claim(&self, name: &str, by: &str, now: Instant) -> Result<(), String> {
        let mut table = self.table();
        // Claims of nodes that died while creating go here.
        table.retain(|_, (_, since)| now.saturating_duration_since(*since) < CLAIM_TTL);
        match table.get(name) {
            Some((holder, _)) if holder != by => Err(holder.clone()),
            _ => {
                table.insert(name.to_string(), (by.to_string(), now));
                Ok(())
            }
        }
    }

    /// Ends `by`'s claim on `name`; a claim by another node stays.
    pub fn release(&self, name: &str, by: &str) {
        let mut table = self.table();
        if table.get(name).is_some_and(|(holder, _)| holder == by) {
            table.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_holds_until_its_node_releases_it() {
        let claims = Claims::default();
        let t0 = Instant::now();
        assert_eq!(claims.claim("x", "b", t0), Ok(()));
        assert_eq!(claims.holder("x", t0), Some("b".into()));
        claims.release("x", "b");
        assert_eq!(claims.holder("x", t0), None);
        assert_eq!(claims.claim("x", "c", t0), Ok(()), "the name is free again");
    }

    #[test]
    fn only_the_claiming_node_releases_its_claim() {
        let claims = Claims::default();
        let t0 = Instant::now();
        claims.claim("x", "b", t0).unwrap();
        claims.release("x", "c");
        assert_eq!(claims.holder("x", t0), Some("b".into()));
    }

    #[test]
    fn a_losing_create_keeps_the_rivals_claim() {
        let claims = Claims::default();
        let t0 = Instant::now();
        claims.claim("x", "b", t0).unwrap();
        assert_eq!(claims.claim("x", "c", t0), Err("b".into()));
        claims.release("x", "c");
        assert_eq!(claims.holder("x", t0), Some("b".into()));
    }

    #[test]
    fn a_node_may_claim_a_name_it_holds_again() {
        let claims = Claims::default();
        let t0 = Instant::now();
        claims.claim("x", "b", t0).unwrap();
        assert_eq!(claims.claim("x", "b", t0), Ok(()));
    }

    #[test]
    fn an_unreleased_claim_lapses_after_its_time() {
        let claims = Claims::default();
        let t0 = Instant::now();
        claims.claim("x", "b", t0).unwrap();
        let later = t0 + CLAIM_TTL;
        assert_eq!(
            claims.holder("x", later - Duration::from_millis(1)),
            Some("b".into())
        );
        assert_eq!(claims.holder("x", later), None);
        assert_eq!(claims.claim("x", "c", later), Ok(()));
    }
}
