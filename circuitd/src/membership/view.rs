//! The node table: what this daemon believes about every node (state from SWIM, metadata from
//! broadcasts and push-pull), and the events its changes make. Sans-IO: fed observations and a
//! time, it returns events.

use std::collections::BTreeMap;

use circuit_sdk::proto::{EventKind, MeshEvent, NodeInfo, NodeState};

use super::identity::NodeId;
use super::meta::NodeMeta;

/// One node as seen from here.
#[derive(Debug, Clone)]
struct Entry {
    id: NodeId,
    state: NodeState,
    updated_at_ms: u64,
}

/// Every node this daemon knows, itself included.
#[derive(Debug)]
pub struct View {
    /// This daemon's name.
    me: String,
    /// Liveness, by node name.
    entries: BTreeMap<String, Entry>,
    /// Newest metadata, by node name (may arrive before SWIM reports the node).
    metas: BTreeMap<String, NodeMeta>,
    /// Channel name → owning node, rebuilt from `metas`.
    owners: BTreeMap<String, Vec<String>>,
}

impl View {
    /// A table holding only this node.
    pub fn new(me: &NodeId, meta: NodeMeta, now_ms: u64) -> Self {
        let mut view = Self {
            me: me.name.clone(),
            entries: BTreeMap::new(),
            metas: BTreeMap::new(),
            owners: BTreeMap::new(),
        };
        view.entries.insert(
            me.name.clone(),
            Entry {
                id: me.clone(),
                state: NodeState::Alive,
                updated_at_ms: now_ms,
            },
        );
        view.merge_meta(meta);
        view
    }

    /// This daemon's own identity.
    pub fn me(&self) -> &NodeId {
        &self.entries[&self.me].id
    }

    /// Records this daemon's new identity (after it renewed itself).
    pub fn renamed_me(&mut self, id: NodeId, now_ms: u64) {
        let entry = self.entries.get_mut(&self.me).expect("self entry");
        entry.id = id;
        entry.updated_at_ms = now_ms;
    }

    /// Takes SWIM's current view of one member; returns the event it makes, if any.
    pub fn observe(&mut self, id: &NodeId, state: foca::State, now_ms: u64) -> Option<MeshEvent> {
        if id.name == self.me || id.name.is_empty() {
            return None;
        }
        let leaving = self
            .metas
            .get(&id.name)
            .is_some_and(|m| m.leaving && m.generation == id.generation);
        let new_state = match state {
            foca::State::Alive => NodeState::Alive,
            foca::State::Suspect => NodeState::Suspect,
            foca::State::Down if leaving => NodeState::Left,
            foca::State::Down => NodeState::Dead,
        };
        let kind = match self.entries.get_mut(&id.name) {
            None => {
                self.entries.insert(
                    id.name.clone(),
                    Entry {
                        id: id.clone(),
                        state: new_state,
                        updated_at_ms: now_ms,
                    },
                );
                // A member first seen dead never joined as far as we know.
                new_state.is_up().then_some(EventKind::Join)?
            }
            Some(entry) if id.generation < entry.id.generation => return None,
            Some(entry) if id.generation > entry.id.generation => {
                if state == foca::State::Down && !entry.state.is_up() {
                    // A newer identity reported dead while we already had the node dead.
                    entry.id = id.clone();
                    return None;
                }
                entry.id = id.clone();
                let was_up = entry.state.is_up();
                entry.state = new_state;
                entry.updated_at_ms = now_ms;
                match (was_up, new_state.is_up()) {
                    (_, true) => EventKind::Rejoin,
                    (true, false) => down_kind(new_state),
                    (false, false) => return None,
                }
            }
            Some(entry) => {
                let old = entry.state;
                if old == new_state {
                    return None;
                }
                entry.state = new_state;
                entry.updated_at_ms = now_ms;
                match (old, new_state) {
                    (NodeState::Alive, NodeState::Suspect) => EventKind::Suspect,
                    (NodeState::Suspect, NodeState::Alive) => EventKind::Recover,
                    (NodeState::Dead | NodeState::Left, s) if s.is_up() => EventKind::Rejoin,
                    (_, s) => down_kind(s),
                }
            }
        };
        Some(MeshEvent {
            ts_ms: now_ms,
            kind,
            node: id.name.clone(),
            addr: id.addr.to_string(),
            generation: id.generation,
        })
    }

    /// Takes a node's metadata if it is newer than what is known; true if it was.
    pub fn merge_meta(&mut self, meta: NodeMeta) -> bool {
        if let Some(known) = self.metas.get(&meta.name) {
            if !meta.newer_than(known) {
                return false;
            }
        }
        // A brief broadcast keeps the lists we had from the same generation until the whole
        // arrives by push-pull.
        let mut meta = meta;
        if meta.partial {
            if let Some(known) = self
                .metas
                .get(&meta.name)
                .filter(|k| k.generation == meta.generation)
            {
                meta.channels = known.channels.clone();
                meta.worker_names = known.worker_names.clone();
            }
        }
        if let Some(entry) = self.entries.get_mut(&meta.name) {
            if entry.id.generation == meta.generation {
                entry.updated_at_ms = entry.updated_at_ms.max(meta.started_at_ms);
            }
        }
        self.metas.insert(meta.name.clone(), meta);
        self.rebuild_owners();
        true
    }

    fn rebuild_owners(&mut self) {
        self.owners.clear();
        for meta in self.metas.values() {
            for chan in &meta.channels {
                // In node name order: the lower name wins (the same rule as creation).
                self.owners
                    .entry(chan.clone())
                    .or_default()
                    .push(meta.name.clone());
            }
        }
    }

    /// Whether the whole metadata of `node` at `generation` (or later) is known.
    pub fn knows_meta(&self, node: &str, generation: u64) -> bool {
        self.metas
            .get(node)
            .is_some_and(|m| m.generation >= generation && !m.partial)
    }

    /// Names of nodes whose metadata is partial: push-pull with them first.
    pub fn partial(&self) -> Vec<String> {
        self.metas
            .values()
            .filter(|m| m.partial)
            .map(|m| m.name.clone())
            .collect()
    }

    /// The node owning channel `name`, if any node says it does, with its state.
    pub fn owner_of(&self, chan: &str) -> Option<(String, NodeState)> {
        // Two nodes list it: the lower name wins, but an alive one wins over a suspect one, and
        // that over one down (the leader of a replicated channel changed and the old one's
        // list is stale).
        // A node that restarted lists what its earlier run owned until its new metadata
        // arrives: that list is stale (the leader of a replicated channel restarted empty
        // answered `no channel` for a channel that lived on elsewhere).
        let current = |node: &&String| match (self.entries.get(*node), self.metas.get(*node)) {
            (Some(entry), Some(meta)) => meta.generation >= entry.id.generation,
            _ => true,
        };
        let nodes: Vec<&String> = self.owners.get(chan)?.iter().filter(current).collect();
        let state = |node: &&String| self.entries.get(*node).map_or(NodeState::Dead, |e| e.state);
        let node = nodes
            .iter()
            .find(|n| state(n) == NodeState::Alive)
            .or_else(|| nodes.iter().find(|n| state(n).is_up()))
            .or_else(|| nodes.first())?;
        Some(((*node).clone(), state(node)))
    }

    /// Whether a node other than this one, alive or suspect, says it has a worker `name`.
    pub fn others_list_worker(&self, name: &str) -> bool {
        self.metas.values().any(|m| {
            m.name != self.me
                && m.worker_names.iter().any(|w| w == name)
                && self.entries.get(&m.name).is_some_and(|e| e.state.is_up())
        })
    }

    /// A node's identity and state.
    pub fn node(&self, name: &str) -> Option<(NodeId, NodeState)> {
        self.entries.get(name).map(|e| (e.id.clone(), e.state))
    }

    /// The other nodes that are alive or suspect, by name.
    pub fn live_peers(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(name, e)| **name != self.me && e.state.is_up())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Every node, for `circuit nodes`.
    pub fn snapshot(&self) -> Vec<NodeInfo> {
        self.entries
            .iter()
            .map(|(name, entry)| self.info(name, Some(entry)))
            .collect()
    }

    /// Every node's metadata, for push-pull: each under the generation *it* was written in.
    /// (Under the generation of the node's current identity, a restarted node's old metadata,
    /// still held here, would pass for new at the receiver and outrank the real new one, whose
    /// version starts again at 1: the receiver listed the old start time for as long as the
    /// old run's version stayed ahead.)
    pub fn metas(&self) -> Vec<NodeInfo> {
        self.metas
            .iter()
            .map(|(name, meta)| NodeInfo {
                generation: meta.generation,
                ..self.info(name, self.entries.get(name))
            })
            .collect()
    }

    fn info(&self, name: &str, entry: Option<&Entry>) -> NodeInfo {
        let meta = self.metas.get(name).cloned().unwrap_or_default();
        NodeInfo {
            name: name.to_string(),
            addr: entry.map(|e| e.id.addr.to_string()).unwrap_or_default(),
            state: entry.map_or(NodeState::Dead, |e| e.state),
            is_self: name == self.me,
            generation: entry.map_or(meta.generation, |e| e.id.generation),
            labels: meta.labels,
            version: meta.daemon_version,
            started_at_ms: meta.started_at_ms,
            workers: meta.workers,
            worker_names: meta.worker_names,
            load: meta.load,
            mem_total_bytes: meta.mem_total_bytes,
            mem_available_bytes: meta.mem_available_bytes,
            channels: meta.channels,
            meta_version: meta.version,
            updated_at_ms: entry.map_or(0, |e| e.updated_at_ms),
        }
    }
}

/// The metadata a pushed or pulled [`NodeInfo`] carries.
pub fn meta_of(info: NodeInfo) -> NodeMeta {
    NodeMeta {
        leaving: info.state == NodeState::Left,
        name: info.name,
        generation: info.generation,
        version: info.meta_version,
        labels: info.labels,
        daemon_version: info.version,
        started_at_ms: info.started_at_ms,
        workers: info.workers,
        worker_names: info.worker_names,
        load: info.load,
        channels: info.channels,
        partial: false,
        mem_total_bytes: info.mem_total_bytes,
        mem_available_bytes: info.mem_available_bytes,
    }
}

fn down_kind(state: NodeState) -> EventKind {
    if state == NodeState::Left {
        EventKind::Leave
    } else {
        EventKind::Dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, generation: u64) -> NodeId {
        NodeId {
            name: name.into(),
            addr: format!("10.0.0.{}:7711", name.len()).parse().unwrap(),
            generation,
        }
    }

    fn view() -> View {
        let me = id("me", 1);
        let meta = NodeMeta {
            name: "me".into(),
            generation: 1,
            version: 1,
            ..NodeMeta::default()
        };
        View::new(&me, meta, 0)
    }

    fn kind(event: Option<MeshEvent>) -> Option<EventKind> {
        event.map(|e| e.kind)
    }

    #[test]
    fn push_pull_never_passes_a_restarted_nodes_old_metadata_off_as_new() {
        let meta = |generation, version, started_at_ms| NodeMeta {
            name: "a".into(),
            generation,
            version,
            started_at_ms,
            ..NodeMeta::default()
        };
        // This node heard that a restarted (generation 9) but still holds its old metadata
        // (generation 5, version 40 after a long run).
        let mut stale = view();
        stale.observe(&id("a", 9), foca::State::Alive, 1);
        stale.merge_meta(meta(5, 40, 500));
        let pushed = stale
            .metas()
            .into_iter()
            .find(|n| n.name == "a")
            .expect("a");
        assert_eq!((pushed.generation, pushed.meta_version), (5, 40));
        // A node that has the new metadata keeps it...
        let mut fresh = view();
        fresh.observe(&id("a", 9), foca::State::Alive, 1);
        assert!(fresh.merge_meta(meta(9, 1, 900)));
        assert!(!fresh.merge_meta(meta_of(pushed.clone())));
        assert_eq!(fresh.info("a", None).started_at_ms, 900);
        // ...and one that has neither still takes the new one after the old.
        let mut other = view();
        other.merge_meta(meta_of(pushed));
        assert!(other.merge_meta(meta(9, 1, 900)));
        assert_eq!(other.info("a", None).started_at_ms, 900);
    }

    #[test]
    fn a_life_makes_join_suspect_recover_dead_rejoin() {
        let mut v = view();
        let a = id("a", 5);
        assert_eq!(
            kind(v.observe(&a, foca::State::Alive, 1)),
            Some(EventKind::Join)
        );
        assert_eq!(
            kind(v.observe(&a, foca::State::Alive, 2)),
            None,
            "no change, no event"
        );
        assert_eq!(
            kind(v.observe(&a, foca::State::Suspect, 3)),
            Some(EventKind::Suspect)
        );
        assert_eq!(
            kind(v.observe(&a, foca::State::Alive, 4)),
            Some(EventKind::Recover)
        );
        assert_eq!(
            kind(v.observe(&a, foca::State::Down, 5)),
            Some(EventKind::Dead)
        );
        let a2 = id("a", 6);
        assert_eq!(
            kind(v.observe(&a2, foca::State::Alive, 7)),
            Some(EventKind::Rejoin)
        );
        assert_eq!(
            kind(v.observe(&a2, foca::State::Alive, 7)),
            None,
            "already back"
        );
        assert_eq!(
            kind(v.observe(&a, foca::State::Down, 8)),
            None,
            "the stale identity is ignored"
        );
        assert_eq!(v.node("a").unwrap().1, NodeState::Alive);
    }

    #[test]
    fn a_node_that_said_it_was_leaving_left() {
        let mut v = view();
        let a = id("a", 5);
        v.observe(&a, foca::State::Alive, 1);
        v.merge_meta(NodeMeta {
            name: "a".into(),
            generation: 5,
            version: 9,
            leaving: true,
            ..NodeMeta::default()
        });
        assert_eq!(
            kind(v.observe(&a, foca::State::Down, 2)),
            Some(EventKind::Leave)
        );
        assert_eq!(v.node("a").unwrap().1, NodeState::Left);
    }

    #[test]
    fn metadata_merges_by_version_and_finds_channel_owners() {
        let mut v = view();
        let m = |version: u64, chans: &[&str]| NodeMeta {
            name: "b".into(),
            generation: 2,
            version,
            channels: chans.iter().map(|c| c.to_string()).collect(),
            ..NodeMeta::default()
        };
        assert!(v.merge_meta(m(3, &["jobs"])));
        assert!(!v.merge_meta(m(2, &["old"])), "older metadata is ignored");
        assert_eq!(v.owner_of("jobs").map(|o| o.0), Some("b".to_string()));
        assert_eq!(
            v.owner_of("jobs").map(|o| o.1),
            Some(NodeState::Dead),
            "not seen by SWIM yet"
        );
        let mut brief = m(4, &[]);
        brief.partial = true;
        assert!(v.merge_meta(brief));
        assert!(
            v.owner_of("jobs").is_some(),
            "a brief update keeps the lists"
        );
        assert_eq!(v.partial(), vec!["b".to_string()]);
        assert!(
            v.merge_meta(m(4, &["jobs", "more"])),
            "the whole replaces the brief"
        );
        assert!(v.partial().is_empty());
        assert!(v.owner_of("more").is_some());
    }

    #[test]
    fn a_restarted_node_owns_nothing_until_its_new_metadata_arrives() {
        let mut v = view();
        let meta = |generation: u64, chans: &[&str]| NodeMeta {
            name: "b".into(),
            generation,
            version: 1,
            channels: chans.iter().map(|c| c.to_string()).collect(),
            ..NodeMeta::default()
        };
        v.observe(&id("b", 2), foca::State::Alive, 1);
        v.merge_meta(meta(2, &["jobs"]));
        assert_eq!(v.owner_of("jobs").map(|o| o.0), Some("b".to_string()));
        // Restarted: SWIM has the new run before its metadata.
        v.observe(&id("b", 9), foca::State::Alive, 2);
        assert_eq!(v.owner_of("jobs"), None, "the earlier run's list is stale");
        v.merge_meta(meta(9, &["jobs"]));
        assert_eq!(v.owner_of("jobs").map(|o| o.0), Some("b".to_string()));
    }
}
