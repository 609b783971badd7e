//! Peer links: one multiplexed TCP connection from this daemon to each other daemon it talks
//! to, opened on first use and reopened with backoff after a failure. Requests and channel
//! streams to a node all share its link; each stream has its own flow control (credit and
//! send windows), so a blocked channel never stalls the link.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circuit_sdk::proto::{ChanInfo, ErrorCode, EventKind, NodeState, Reply, Request};
use circuit_sdk::secure::Keyring;
use circuit_sdk::{Client, ConnectOptions, Next, ReplyStream, Target};
use futures::future::join_all;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::membership::Membership;

pub(crate) mod raft_link;
pub(crate) mod relay;
pub(crate) mod request;

pub(crate) use request::{Incoming, PeerRequest};

/// Longest wait for a peer's answer to a short request (a lookup, a list).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest wait for a peer's TCP connect and hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// First wait after a failed connect; doubles up to [`BACKOFF_MAX`].
const BACKOFF: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a request to another node failed: it could not be reached, or it answered with an error.
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
    /// The link broke while the request ran.
    #[error("lost the link to node \"{node}\": {why}")]
    LinkLost {
        /// The node.
        node: String,
        /// What the link said.
        why: String,
    },
    /// No answer within [`CALL_TIMEOUT`].
    #[error("node \"{0}\" did not answer within {CALL_TIMEOUT:?}")]
    Timeout(String),
    /// The node ran the request and it failed there: its own code and message, as they are.
    #[error("{message}")]
    Remote {
        /// The node's code.
        code: ErrorCode,
        /// The node's message.
        message: String,
    },
    /// The node that owns a channel is dead or left.
    #[error("channel \"{chan}\" is owned by node {node}, which is {state}")]
    OwnerDown {
        /// The channel.
        chan: String,
        /// Its owner.
        node: String,
        /// The owner's state.
        state: NodeState,
    },
    /// No live node owns a channel of that name.
    #[error("no channel named \"{0}\" — see `circuit chan ls`")]
    NoChannel(String),
    /// No live node has a worker of that name.
    #[error("no worker named \"{0}\"")]
    NoWorker(String),
    /// Several live nodes have a worker of that name.
    #[error("a worker named \"{name}\" runs on nodes {}: pick one with --node", .nodes.join(", "))]
    AmbiguousWorker {
        /// The worker's name.
        name: String,
        /// The nodes that have one, sorted.
        nodes: Vec<String>,
    },
}

impl PeerError {
    /// The code a request failing this way ends with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unknown(_) | Self::NoChannel(_) | Self::NoWorker(_) => ErrorCode::NotFound,
            Self::AmbiguousWorker { .. } => ErrorCode::InvalidArgument,
            Self::Down(..) | Self::Unreachable(..) | Self::LinkLost { .. } | Self::Timeout(_) => {
                ErrorCode::Unreachable
            }
            Self::Remote { code, .. } => *code,
            Self::OwnerDown { .. } => ErrorCode::OwnerLost,
        }
    }

    /// True when what the request named does not exist (there, or anywhere in the mesh).
    pub fn is_not_found(&self) -> bool {
        self.code() == ErrorCode::NotFound
    }
}

/// What the replicas of a replicated channel say of it.
#[derive(Debug, Clone)]
pub struct Replicated {
    /// The node that leads it, if one does (never the one that failed).
    pub leader: Option<String>,
    /// The description of the newest term.
    pub freshest: ChanInfo,
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
    connecting: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Per node, cancelled when the node is declared dead or leaves: relays to it end.
    lost: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// The cluster keys; links authenticate with the first.
    keys: Option<Keyring>,
    /// How long a link may stay silent before it pings (`Config::keepalive`).
    keepalive: Option<Duration>,
}

/// Why an address did not answer [`Peers::hello`].
#[derive(Debug, Clone)]
pub struct NoHello {
    /// Nothing listens there: the host refused the connection.
    pub refused: bool,
    /// What happened, for a person.
    pub reason: String,
}

impl Peers {
    /// Links to the nodes `membership` knows, pinging after `keepalive` of silence.
    pub fn new(membership: Membership, keys: Option<Keyring>, keepalive: Option<Duration>) -> Self {
        Self {
            membership,
            keys,
            keepalive,
            links: Arc::default(),
            connecting: Arc::default(),
            lost: Arc::default(),
        }
    }

    /// Watches membership: when a node dies or leaves, its links close and its relays end.
    pub async fn watch(self, shutdown: CancellationToken) {
        let mut events = self.membership.subscribe();
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                () = shutdown.cancelled() => return,
            };
            match event {
                Ok(e) if matches!(e.kind, EventKind::Dead | EventKind::Leave) => {
                    self.node_lost(&e.node);
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Cancelled when `node` is declared dead or leaves.
    pub fn lost_token(&self, node: &str) -> CancellationToken {
        self.lost
            .lock()
            .expect("lost")
            .entry(node.to_string())
            .or_default()
            .clone()
    }

    fn node_lost(&self, node: &str) {
        if let Some(token) = self.lost.lock().expect("lost").remove(node) {
            token.cancel();
        }
        self.drop_link(node);
    }

    /// Starts `request` on `node`, wrapped in `on` so that the node runs it itself rather
    /// than searching the mesh again; read its replies with [`next_on`].
    pub async fn open_on(&self, node: &str, request: Request) -> Result<ReplyStream, PeerError> {
        let client = self.client(node).await?;
        let request = Request::On {
            node: node.to_string(),
            request: Box::new(request),
        };
        client.stream(request).await.map_err(|e| link_lost(node, e))
    }

    /// Runs `request` on `node` and returns its terminal reply, ignoring items, within
    /// [`CALL_TIMEOUT`].
    pub async fn call_on(&self, node: &str, request: Request) -> Result<Reply, PeerError> {
        let call = async {
            let mut stream = self.open_on(node, request).await?;
            loop {
                if let Next::End(reply) = next_on(node, &mut stream).await? {
                    return Ok(reply);
                }
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(PeerError::Timeout(node.to_string())))
    }

    /// Asks every live node `request` (made per node by `make`); returns, sorted, the nodes
    /// whose reply `keep` accepts. Nodes that fail or do not answer are left out.
    pub async fn ask_all(
        &self,
        make: impl Fn() -> Request,
        keep: impl Fn(&Reply) -> bool,
    ) -> Vec<String> {
        let live = self.membership.live_peers();
        let asks = live.iter().map(|node| {
            let request = make();
            let keep = &keep;
            async move {
                match self.call_on(node, request).await {
                    Ok(reply) if keep(&reply) => Some(node.clone()),
                    _ => None,
                }
            }
        });
        let mut found: Vec<String> = join_all(asks).await.into_iter().flatten().collect();
        found.sort();
        found
    }

    /// The one other live node that has a worker named `name`, found by asking every live node.
    pub async fn worker_node(&self, name: &str) -> Result<String, PeerError> {
        let make = || Request::Inspect {
            name: name.to_string(),
        };
        let mut found = self.ask_all(make, |r| matches!(r, Reply::Worker(_))).await;
        match found.len() {
            0 => Err(PeerError::NoWorker(name.to_string())),
            1 => Ok(found.remove(0)),
            _ => Err(PeerError::AmbiguousWorker {
                name: name.to_string(),
                nodes: found,
            }),
        }
    }

    /// The node that owns channel `chan` (not this one): from the node table, or by asking
    /// every live node when the table does not know it yet.
    pub async fn owner_of(&self, chan: &str) -> Result<String, PeerError> {
        let me = self.membership.me().name;
        if let Some((node, state)) = self.membership.owner_of(chan) {
            if node != me {
                if !state.is_up() {
                    return Err(PeerError::OwnerDown {
                        chan: chan.to_string(),
                        node,
                        state,
                    });
                }
                return Ok(node);
            }
        }
        let live = self.membership.live_peers();
        let asks = live.iter().map(|node| async move {
            let stat = Request::ChanStat {
                name: chan.to_string(),
            };
            match self.call_on(node, stat).await {
                Ok(Reply::Chan(info)) => Some((node.clone(), info)),
                _ => None,
            }
        });
        let mut found: Vec<(String, ChanInfo)> =
            join_all(asks).await.into_iter().flatten().collect();
        // A replicated channel: every replica answers; the newest term names the leader.
        let leader = found
            .iter()
            .filter(|(_, info)| !info.replicas.is_empty() && !info.owner.is_empty())
            .max_by_key(|(_, info)| info.term)
            .map(|(_, info)| info.owner.clone());
        if let Some(leader) = leader {
            return Ok(leader);
        }
        if found.iter().any(|(_, info)| !info.replicas.is_empty()) {
            return Err(PeerError::Remote {
                code: ErrorCode::Unavailable,
                message: format!(
                    "replicated channel \"{chan}\" has no leader now (an election is under \
                     way, or a majority of its replicas is down)"
                ),
            });
        }
        // Two owners (made during a partition): the lowest node name wins, as everywhere.
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
            .into_iter()
            .next()
            .map(|(node, _)| node)
            .ok_or_else(|| PeerError::NoChannel(chan.to_string()))
    }

    /// For channel `chan`, whose server on `failed` could not be reached: if it is replicated
    /// (a live node holds a replica), what the replicas say of it; `None` for a channel one
    /// node owns.
    pub async fn replicated(&self, chan: &str, failed: &str) -> Option<Replicated> {
        let live: Vec<String> = self
            .membership
            .live_peers()
            .into_iter()
            .filter(|n| n != failed)
            .collect();
        let asks = live.iter().map(|node| async move {
            let stat = Request::ChanStat {
                name: chan.to_string(),
            };
            match self.call_on(node, stat).await {
                Ok(Reply::Chan(info)) if !info.replicas.is_empty() => Some(info),
                _ => None,
            }
        });
        let mut infos: Vec<ChanInfo> = join_all(asks).await.into_iter().flatten().collect();
        // The newest term first; within it, one that names a leader other than `failed`.
        infos.sort_by_key(|info| {
            let leads = !info.owner.is_empty() && info.owner != failed;
            std::cmp::Reverse((info.term, leads))
        });
        let freshest = infos.into_iter().next()?;
        let leader = (!freshest.owner.is_empty() && freshest.owner != failed)
            .then(|| freshest.owner.clone());
        Some(Replicated { leader, freshest })
    }

    /// As [`Peers::replicated`]: the node that leads, or `unavailable` if none does.
    pub async fn replicated_leader(
        &self,
        chan: &str,
        failed: &str,
    ) -> Option<Result<String, PeerError>> {
        let replicated = self.replicated(chan, failed).await?;
        Some(replicated.leader.ok_or_else(|| PeerError::Remote {
            code: ErrorCode::Unavailable,
            message: format!(
                "replicated channel \"{chan}\" has no leader now (an election is under way, \
                 or a majority of its replicas is down)"
            ),
        }))
    }

    /// The name of the daemon answering at `addr` (over a connection opened for its hello,
    /// with the cluster key as links are, and closed again), or why none answered.
    pub async fn hello(&self, addr: SocketAddr) -> Result<String, NoHello> {
        let target = Target::Tcp(addr.to_string());
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Client::connect_with(&target, self.options()),
        )
        .await;
        let other = |reason: String| NoHello {
            refused: false,
            reason,
        };
        match attempt {
            Ok(Ok(client)) => Ok(client.node().to_string()),
            Ok(Err(circuit_sdk::Error::Connect { reason, .. })) => Err(NoHello {
                refused: reason.kind() == std::io::ErrorKind::ConnectionRefused,
                reason: reason.to_string(),
            }),
            Ok(Err(circuit_sdk::Error::Handshake { error, .. })) => Err(other(error.to_string())),
            Ok(Err(e)) => Err(other(e.to_string())),
            Err(_) => Err(other(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        }
    }

    /// How links connect: with the cluster key and this daemon's keepalive.
    fn options(&self) -> ConnectOptions {
        ConnectOptions::default()
            .key(self.keys.as_ref().map(Keyring::primary))
            .keepalive(self.keepalive)
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
        let gate = self
            .connecting
            .lock()
            .expect("connecting")
            .entry(node.to_string())
            .or_default()
            .clone();
        let _one = gate.lock().await;
        if let Some(client) = self.cached(node, id.generation)? {
            return Ok(client);
        }
        let target = Target::Tcp(id.addr.to_string());
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Client::connect_with(&target, self.options()),
        )
        .await;
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

    /// Once the sending key changes (a rotation), requests open new links made with it;
    /// streams already open keep their links until they end or the old key is retired.
    pub async fn follow_keys(self, shutdown: CancellationToken) {
        let Some(keys) = self.keys.clone() else {
            return;
        };
        let mut changed = keys.subscribe();
        let mut sending = keys.primary();
        loop {
            tokio::select! {
                got = changed.changed() => if got.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            let now = keys.primary();
            if now != sending {
                tracing::info!(key = %now.fingerprint(), "new sending key: peer links reopen with it");
                sending = now;
                self.links.lock().expect("links").clear();
            }
        }
    }
}

/// The next reply of a request started with [`Peers::open_on`], its failures as wire codes: the
/// node's own error as it is, a broken link as `unreachable`.
pub async fn next_on(node: &str, stream: &mut ReplyStream) -> Result<Next, PeerError> {
    match stream.next().await {
        Ok(next) => Ok(next),
        Err(circuit_sdk::Error::Remote { code, message }) => {
            Err(PeerError::Remote { code, message })
        }
        Err(e) => Err(link_lost(node, e)),
    }
}

fn link_lost(node: &str, e: circuit_sdk::Error) -> PeerError {
    PeerError::LinkLost {
        node: node.to_string(),
        why: e.to_string(),
    }
}
