//! Membership: SWIM through `foca` on one UDP task with its own thread, plus the node table
//! (state and metadata of every node) that the rest of the daemon reads.
//!
//! - `identity`: a node's name, address and generation.
//! - `config`: SWIM timing by cluster size.
//! - `meta`: node metadata and its broadcasts.
//! - `view`: the node table and the events its changes make (sans-IO).
//! - `driver`: the task that runs foca over UDP.
//! - `join_warning`: warnings about a join that does not succeed, and their reason.
//! - `suspicion`: the timers that declare a suspect down, dropped once it refuted (sans-IO).
//! - `seal`: gossip packets authenticated and encrypted with the cluster key, replays refused.
//! - `meters`: what the SWIM task counts for `/metrics` (gossip bytes, suspicions, probe
//!   round trips); `probes`: pings matched with their acks (sans-IO).

pub mod config;
mod driver;
pub mod identity;
mod join_warning;
pub mod meta;
pub mod meters;
mod probes;
pub mod seal;
mod suspicion;
pub mod view;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use circuit_sdk::proto::{MeshEvent, NodeInfo, NodeState};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::swim_config;
pub use identity::NodeId;
pub use meta::NodeMeta;
use view::View;

/// State shared by the handle and the SWIM task.
pub(crate) struct Shared {
    /// The node table. Written by the SWIM task and push-pull; read by requests.
    view: RwLock<View>,
    /// Commands to the SWIM task; closed when there is no mesh.
    cmds: mpsc::UnboundedSender<driver::Cmd>,
    /// Membership events, for `circuit events` and the peer links.
    events: broadcast::Sender<MeshEvent>,
    /// Counted by the SWIM task, read for `/metrics`.
    meters: meters::Meters,
}

/// Handle to the membership of this daemon: cheap to clone.
#[derive(Clone)]
pub struct Membership {
    shared: Arc<Shared>,
    /// False for a daemon without a mesh port.
    meshed: bool,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The daemon has no mesh port.
    #[error("this daemon is not in a mesh: start circuitd with --listen ADDR to join one")]
    NoMesh,
    /// Nobody answered in time.
    #[error("no node answered at {0} within {1:?} (still trying in the background)")]
    Timeout(String, Duration),
}

impl Membership {
    /// A daemon on its own: the table holds only itself.
    pub fn solo(me: NodeId, meta: NodeMeta) -> Self {
        let (cmds, _) = mpsc::unbounded_channel();
        Self::with(me, meta, cmds, false)
    }

    fn with(
        me: NodeId,
        meta: NodeMeta,
        cmds: mpsc::UnboundedSender<driver::Cmd>,
        meshed: bool,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            shared: Arc::new(Shared {
                view: RwLock::new(View::new(&me, meta, crate::clock::now_ms())),
                cmds,
                events,
                meters: meters::Meters::default(),
            }),
            meshed,
        }
    }

    /// Starts the SWIM task on its own thread, gossiping on `socket` (the mesh port), sealed
    /// with `keys` when there are any. It leaves the mesh when `shutdown` is cancelled;
    /// `tracker` waits for that.
    pub fn start(
        me: NodeId,
        meta: NodeMeta,
        socket: std::net::UdpSocket,
        keys: Option<circuit_sdk::secure::Keyring>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let membership = Self::with(me, meta.clone(), cmds, true);
        let shared = membership.shared.clone();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("circuit-swim".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the gossip runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let socket = match tokio::net::UdpSocket::from_std(socket) {
                        Ok(socket) => socket,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot use the gossip socket");
                            return;
                        }
                    };
                    driver::Driver {
                        shared,
                        socket,
                        keys,
                        sealer: seal::Sealer::new(),
                        suspicions: suspicion::Suspicions::default(),
                        probes: probes::Probes::default(),
                        cmds: cmd_rx,
                        shutdown,
                        meta,
                    }
                    .run()
                    .await;
                });
                let _ = done_tx.send(());
            })?;
        tracker.spawn(async move {
            let _ = done_rx.await;
        });
        Ok(membership)
    }

    /// What the SWIM task has counted: gossip bytes, suspicions, probe round trips.
    pub fn meters(&self) -> &meters::Meters {
        &self.shared.meters
    }

    /// Whether this daemon has a mesh port.
    pub fn meshed(&self) -> bool {
        self.meshed
    }

    /// This daemon's identity.
    pub fn me(&self) -> NodeId {
        self.read().me().clone()
    }

    /// Every node this daemon knows.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.read().snapshot()
    }

    /// The other nodes that are alive or suspect, by name.
    pub fn live_peers(&self) -> Vec<String> {
        self.read().live_peers()
    }

    /// Every node's metadata, for push-pull.
    pub fn metas(&self) -> Vec<NodeInfo> {
        self.read().metas()
    }

    /// Merges metadata pulled from (or pushed by) another node.
    pub fn merge(&self, nodes: Vec<NodeInfo>) {
        let me = self.read().me().name.clone();
        let mut view = self.shared.view.write().expect("view");
        for info in nodes
            .into_iter()
            .filter(|n| n.name != me && !n.name.is_empty())
        {
            view.merge_meta(view::meta_of(info));
        }
    }

    /// Whether another live node says it has a worker `name`.
    pub fn others_list_worker(&self, name: &str) -> bool {
        self.read().others_list_worker(name)
    }

    /// A node's identity and state.
    pub fn node(&self, name: &str) -> Option<(NodeId, NodeState)> {
        self.read().node(name)
    }

    /// The node that owns channel `chan`, if any says it does.
    pub fn owner_of(&self, chan: &str) -> Option<(String, NodeState)> {
        self.read().owner_of(chan)
    }

    /// Whether the whole metadata of `node` at `generation` (or later) is known.
    pub fn knows_meta(&self, node: &str, generation: u64) -> bool {
        self.read().knows_meta(node, generation)
    }

    /// Nodes whose metadata arrived without its lists.
    pub fn partial(&self) -> Vec<String> {
        self.read().partial()
    }

    /// Sets this node's metadata (spread at once if it changed).
    pub fn set_meta(&self, meta: NodeMeta) {
        let _ = self.shared.cmds.send(driver::Cmd::SetMeta(meta));
    }

    /// Membership events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MeshEvent> {
        self.shared.events.subscribe()
    }

    /// Resolves once node `name` is alive or suspect in the table (at once if it is). A node
    /// comes up only through a change that makes an event, so this waits on the events.
    pub async fn until_up(&self, name: &str) {
        let mut events = self.subscribe();
        loop {
            if self.node(name).is_some_and(|(_, state)| state.is_up()) {
                return;
            }
            if let Err(broadcast::error::RecvError::Closed) = events.recv().await {
                return std::future::pending().await;
            }
        }
    }

    /// Starts joining through `addrs` (retried with backoff until one answers). With `wait`,
    /// returns once joined or fails after that long (the attempts go on).
    pub async fn join(
        &self,
        addrs: Vec<SocketAddr>,
        wait: Option<Duration>,
    ) -> Result<(), JoinError> {
        if !self.meshed {
            return Err(JoinError::NoMesh);
        }
        let shown = addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let (tx, rx) = oneshot::channel();
        let waiter = wait.is_some().then_some(tx);
        if self
            .shared
            .cmds
            .send(driver::Cmd::Join(addrs, waiter))
            .is_err()
        {
            return Err(JoinError::NoMesh);
        }
        if let Some(wait) = wait {
            match tokio::time::timeout(wait, rx).await {
                Ok(Ok(())) => {}
                _ => return Err(JoinError::Timeout(shown, wait)),
            }
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.shared.view.read().expect("view")
    }
}

/// The gossip packet decoder, for fuzzing: `data` is opened as a sealed packet with a fixed
/// key (a forgery: every rejection path), then sealed properly and opened again, and what that
/// yields goes to the SWIM decoder (as any key holder's packet, or a keyless loopback peer's,
/// would). Nothing here may panic, whatever `data` is.
#[doc(hidden)]
pub fn fuzz_gossip_packet(data: &[u8]) {
    use foca::{AccumulatingRuntime, Foca, PostcardCodec};
    use rand::SeedableRng;
    const NOW_MS: u64 = 1_800_000_000_000;
    let key = circuit_sdk::secure::Key::from_bytes([7; 32]);
    let keys = std::slice::from_ref(&key);
    let mut opener = seal::Opener::new();
    let _ = opener.open(keys, data, NOW_MS);
    let sealed = seal::Sealer::new().seal(&key, data, NOW_MS);
    let plain = opener
        .open(keys, &sealed, NOW_MS)
        .expect("a packet sealed with a held key opens");
    assert_eq!(plain, data, "sealing round-trips");
    let me = NodeId::new("fuzz".into(), SocketAddr::from(([127, 0, 0, 1], 7711)));
    let mut swim = Foca::with_custom_broadcast(
        me,
        swim_config(1),
        rand::rngs::StdRng::seed_from_u64(1),
        PostcardCodec,
        meta::MetaBroadcasts::new(meta::Inbox::default()),
    );
    let mut rt = AccumulatingRuntime::new();
    let _ = swim.handle_data(&plain, &mut rt);
    while rt.to_notify().is_some() {}
}
