//! Node metadata: what every node knows of every other besides liveness. Spread by foca custom
//! broadcasts (small updates) and by the periodic TCP push-pull (everything).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

/// Largest metadata broadcast; larger metadata goes out without its lists, marked `partial`,
/// and the lists travel by push-pull.
pub const MAX_BROADCAST: usize = 1000;

/// One node's metadata, versioned by its owner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Node name.
    pub name: String,
    /// The owner's generation when it wrote this.
    pub generation: u64,
    /// Bumped by the owner at each change.
    pub version: u64,
    /// Labels for placement.
    pub labels: BTreeMap<String, String>,
    /// Daemon version.
    pub daemon_version: String,
    /// When the daemon started (ms since the epoch).
    pub started_at_ms: u64,
    /// Active workers.
    pub workers: usize,
    /// Their names.
    pub worker_names: Vec<String>,
    /// 1-minute load average.
    pub load: f64,
    /// Channels it owns.
    pub channels: Vec<String>,
    /// The lists were left out to fit a broadcast: pull them from the node.
    pub partial: bool,
    /// The node is shutting down: when it goes, it left rather than died.
    pub leaving: bool,
    /// Its host's memory in bytes (`MemTotal`); 0 when unknown. The memory figures come last,
    /// so a daemon from before them reads the rest of a broadcast (postcard leaves trailing
    /// bytes alone), and [`NodeMeta::from_broadcast`] reads that daemon's broadcasts.
    pub mem_total_bytes: u64,
    /// Memory its host can still give without swapping (`MemAvailable`), in bytes; 0 when
    /// unknown.
    pub mem_available_bytes: u64,
}

/// [`NodeMeta`] as daemons from before the memory figures broadcast it: the same fields, in
/// the same order, without the last two.
#[derive(Deserialize)]
struct EarlierMeta {
    name: String,
    generation: u64,
    version: u64,
    labels: BTreeMap<String, String>,
    daemon_version: String,
    started_at_ms: u64,
    workers: usize,
    worker_names: Vec<String>,
    load: f64,
    channels: Vec<String>,
    partial: bool,
    leaving: bool,
}

impl From<EarlierMeta> for NodeMeta {
    fn from(m: EarlierMeta) -> Self {
        NodeMeta {
            name: m.name,
            generation: m.generation,
            version: m.version,
            labels: m.labels,
            daemon_version: m.daemon_version,
            started_at_ms: m.started_at_ms,
            workers: m.workers,
            worker_names: m.worker_names,
            load: m.load,
            channels: m.channels,
            partial: m.partial,
            leaving: m.leaving,
            mem_total_bytes: 0,
            mem_available_bytes: 0,
        }
    }
}

impl NodeMeta {
    /// Whether `self` is newer than `other` (same node).
    pub fn newer_than(&self, other: &NodeMeta) -> bool {
        (self.generation, self.version, !self.partial)
            > (other.generation, other.version, !other.partial)
    }

    /// Encodes for a broadcast, leaving out the lists if the whole does not fit.
    pub fn to_broadcast(&self) -> Vec<u8> {
        let whole = postcard::to_stdvec(self).expect("metadata serialises");
        if whole.len() <= MAX_BROADCAST {
            return whole;
        }
        let brief = NodeMeta {
            worker_names: Vec::new(),
            channels: Vec::new(),
            partial: true,
            ..self.clone()
        };
        postcard::to_stdvec(&brief).expect("metadata serialises")
    }

    /// Decodes a broadcast, from this version's daemons or from one that predates the memory
    /// figures (they are 0 then).
    pub fn from_broadcast(data: &[u8]) -> Result<NodeMeta, BadMeta> {
        match postcard::from_bytes::<NodeMeta>(data) {
            Ok(meta) => Ok(meta),
            Err(postcard::Error::DeserializeUnexpectedEnd) => {
                postcard::from_bytes::<EarlierMeta>(data)
                    .map(NodeMeta::from)
                    .map_err(|e| BadMeta(e.to_string()))
            }
            Err(e) => Err(BadMeta(e.to_string())),
        }
    }
}

/// Metadata received from broadcasts, waiting for the driver to merge into the node table.
pub type Inbox = Rc<RefCell<Vec<NodeMeta>>>;

/// Key of a metadata broadcast: a newer version of a node's metadata replaces an older one
/// still being disseminated.
#[derive(Debug)]
pub struct MetaKey {
    name: String,
    generation: u64,
    version: u64,
}

impl foca::Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name
            && (self.generation, self.version) >= (other.generation, other.version)
    }
}

/// Decoding a metadata broadcast failed.
#[derive(Debug, thiserror::Error)]
#[error("bad metadata broadcast: {0}")]
pub struct BadMeta(String);

/// foca's hook for custom broadcasts: keeps a broadcast (and passes it on) only if it is newer
/// than what this node knows.
pub struct MetaBroadcasts {
    /// Newest (generation, version) seen per node name.
    seen: BTreeMap<String, (u64, u64)>,
    /// Accepted metadata, for the driver.
    inbox: Inbox,
}

impl MetaBroadcasts {
    /// A handler that hands accepted metadata to `inbox`.
    pub fn new(inbox: Inbox) -> Self {
        Self {
            seen: BTreeMap::new(),
            inbox,
        }
    }
}

impl<T> foca::BroadcastHandler<T> for MetaBroadcasts {
    type Key = MetaKey;
    type Error = BadMeta;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&T>,
    ) -> Result<Option<MetaKey>, BadMeta> {
        let meta = NodeMeta::from_broadcast(data)?;
        let at = (meta.generation, meta.version);
        if self.seen.get(&meta.name).is_some_and(|seen| *seen >= at) {
            return Ok(None);
        }
        self.seen.insert(meta.name.clone(), at);
        let key = MetaKey {
            name: meta.name.clone(),
            generation: meta.generation,
            version: meta.version,
        };
        self.inbox.borrow_mut().push(meta);
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::BroadcastHandler;

    fn meta(version: u64) -> NodeMeta {
        NodeMeta {
            name: "h1".into(),
            generation: 7,
            version,
            ..NodeMeta::default()
        }
    }

    #[test]
    fn only_newer_metadata_is_kept_and_passed_on() {
        let inbox = Inbox::default();
        let mut handler = MetaBroadcasts::new(inbox.clone());
        let recv = |h: &mut MetaBroadcasts, m: &NodeMeta| {
            BroadcastHandler::<()>::receive_item(h, &m.to_broadcast(), None).unwrap()
        };
        assert!(recv(&mut handler, &meta(2)).is_some());
        assert!(recv(&mut handler, &meta(2)).is_none(), "a repeat is stale");
        assert!(
            recv(&mut handler, &meta(1)).is_none(),
            "an older one is stale"
        );
        assert!(recv(&mut handler, &meta(3)).is_some());
        assert_eq!(inbox.borrow().len(), 2);
        assert!(BroadcastHandler::<()>::receive_item(&mut handler, b"\xff\xff", None).is_err());
    }

    #[test]
    fn large_metadata_is_broadcast_without_its_lists() {
        let mut big = meta(1);
        big.channels = (0..500).map(|i| format!("channel-{i}")).collect();
        let brief = NodeMeta::from_broadcast(&big.to_broadcast()).unwrap();
        assert!(brief.partial && brief.channels.is_empty());
        assert!(
            big.newer_than(&brief),
            "the whole wins over the brief at the same version"
        );
    }

    #[test]
    fn memory_figures_travel_and_older_broadcasts_still_decode() {
        let mut m = meta(4);
        (m.load, m.mem_total_bytes, m.mem_available_bytes) = (1.5, 16 << 30, 9 << 30);
        m.channels = vec!["jobs".into()];
        assert_eq!(NodeMeta::from_broadcast(&m.to_broadcast()).unwrap(), m);
        // What a daemon from before the memory figures sends: the same bytes, less the last
        // two fields (two varints); it reads ours by ignoring them.
        #[derive(Serialize)]
        struct Earlier<'a>(
            &'a str,
            u64,
            u64,
            &'a BTreeMap<String, String>,
            &'a str,
            u64,
            usize,
            &'a [String],
            f64,
            &'a [String],
            bool,
            bool,
        );
        let earlier = postcard::to_stdvec(&Earlier(
            &m.name,
            m.generation,
            m.version,
            &m.labels,
            &m.daemon_version,
            m.started_at_ms,
            m.workers,
            &m.worker_names,
            m.load,
            &m.channels,
            m.partial,
            m.leaving,
        ))
        .unwrap();
        let read = NodeMeta::from_broadcast(&earlier).unwrap();
        let want = NodeMeta {
            mem_total_bytes: 0,
            mem_available_bytes: 0,
            ..m.clone()
        };
        assert_eq!(read, want);
        let theirs: EarlierMeta = postcard::from_bytes(&m.to_broadcast()).unwrap();
        assert_eq!(
            NodeMeta::from(theirs),
            want,
            "an older daemon reads the rest"
        );
        assert!(NodeMeta::from_broadcast(&earlier[..earlier.len() - 1]).is_err());
    }
}
