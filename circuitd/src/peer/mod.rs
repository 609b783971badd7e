//! Peer links: one multiplexed TCP connection from this daemon to each other daemon it talks
//! to, opened on first use and reopened with backoff after a failure. Requests and channel
//! streams to a node all share its link; each stream has its own flow control (credit and
//! send windows), so a blocked channel never stalls the link.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circuit_sdk::proto::{ErrorCode, NodeState};
use circuit_sdk::{Client, Target};
use tokio::time::Instant;

use crate::membership::Membership;

/// Longest wait for a peer's TCP connect and hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// First wait after a failed connect; doubles up to [`BACKOFF_MAX`].
const BACKOFF: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a peer could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No node of that name is known.
    #[error("no node named \"{0}\" in the mesh — see `circuit nodes`")]
    Unknown(String),
    /// The node is dead or left.
    #[error("node \"{0}\" is {1}")]
    Down(String, NodeState),
    /// The connection failed (or failed recently and is backing off).
    #[error("cannot reach node \"{0}\": {1}")]
    Unreachable(String, String),
}

impl PeerError {
    /// The code a request failing this way ends with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unknown(_) => ErrorCode::NotFound,
            Self::Down(..) | Self::Unreachable(..) => ErrorCode::Unreachable,
        }
    }
}

/// The link to one node.
#[derive(Default)]
struct Link {
    /// The open connection, if any.
    client: Option<Client>,
    /// The generation it was opened to: a new generation is a new daemon.
    generation: u64,
    /// No new attempt before this, after failures.
    retry_at: Option<Instant>,
    backoff: Option<Duration>,
    /// Why the last attempt failed.
    last_error: String,
}

/// Handle to the peer links: cheap to clone.
#[derive(Clone)]
pub struct Peers {
    membership: Membership,
    links: Arc<Mutex<HashMap<String, Link>>>,
    /// One connect at a time per node.
    connecting: Arc<tokio::sync::Mutex<()>>,
}

impl Peers {
    /// Links to the nodes `membership` knows.
    pub fn new(membership: Membership) -> Self {
        Self {
            membership,
            links: Arc::default(),
            connecting: Arc::default(),
        }
    }

    /// The open link to `node`, connecting if needed.
    pub async fn client(&self, node: &str) -> Result<Client, PeerError> {
        let (id, state) = self
            .membership
            .node(node)
            .ok_or_else(|| PeerError::Unknown(node.to_string()))?;
        if !state.is_up() {
            self.drop_link(node);
            return Err(PeerError::Down(node.to_string(), state));
        }
        if let Some(client) = self.cached(node, id.generation)? {
            return Ok(client);
        }
        let _one = self.connecting.lock().await;
        if let Some(client) = self.cached(node, id.generation)? {
            return Ok(client);
        }
        let target = Target::Tcp(id.addr.to_string());
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(&target)).await;
        let mut links = self.links.lock().expect("links");
        let link = links.entry(node.to_string()).or_default();
        match attempt {
            Ok(Ok(client)) if client.node() == node => {
                link.client = Some(client.clone());
                link.generation = id.generation;
                link.retry_at = None;
                link.backoff = None;
                Ok(client)
            }
            other => {
                let why = match other {
                    Ok(Ok(client)) => format!("{} answers as \"{}\"", id.addr, client.node()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer from {} within {CONNECT_TIMEOUT:?}", id.addr),
                };
                let backoff = link.backoff.map_or(BACKOFF, |b| (b * 2).min(BACKOFF_MAX));
                link.backoff = Some(backoff);
                link.retry_at = Some(Instant::now() + backoff);
                link.last_error = why.clone();
                link.client = None;
                Err(PeerError::Unreachable(node.to_string(), why))
            }
        }
    }

    /// The cached link if it is open and to the current generation; an error while backing off.
    fn cached(&self, node: &str, generation: u64) -> Result<Option<Client>, PeerError> {
        let mut links = self.links.lock().expect("links");
        let Some(link) = links.get_mut(node) else {
            return Ok(None);
        };
        if let Some(client) = &link.client {
            if !client.is_closed() && link.generation == generation {
                return Ok(Some(client.clone()));
            }
            link.client = None;
        }
        match link.retry_at {
            Some(at) if Instant::now() < at => Err(PeerError::Unreachable(
                node.to_string(),
                format!("{} (retrying)", link.last_error),
            )),
            _ => Ok(None),
        }
    }

    /// Forgets the link to `node` (it died or restarted).
    pub fn drop_link(&self, node: &str) {
        self.links.lock().expect("links").remove(node);
    }
}
