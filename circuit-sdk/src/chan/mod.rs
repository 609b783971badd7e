//! Named channels with Go semantics, shared by workers on any host through their daemon.
//! The contract is `docs/CHANNELS.md`; in short: bounded capacity with backpressure,
//! rendezvous at capacity 0, FIFO, close, many senders and many receivers, no silent loss.
//!
//! ```no_run
//! use circuit_sdk::{chan::Chan, Client};
//!
//! # async fn demo() -> Result<(), circuit_sdk::chan::ChanError> {
//! let client = Client::connect_default().await?;
//! let jobs = client.chan_create("jobs", 64).await?;
//! let tx = jobs.sender::<String>().await?;
//! let mut rx = jobs.receiver::<String>().await?;
//! tx.send("hello".to_string()).await?;
//! assert_eq!(rx.recv().await?, "hello");
//! jobs.close().await?;
//! assert!(rx.recv().await.unwrap_err().is_closed());
//! # Ok(()) }
//! ```
//!
//! A worker spawned with `circuit spawn --chan in=jobs -- ./worker` opens its binding by name:
//!
//! ```no_run
//! # async fn demo() -> Result<(), circuit_sdk::chan::ChanError> {
//! use futures::StreamExt;
//! let mut jobs = circuit_sdk::chan::Chan::open_from_env("in").await?.receiver::<u64>().await?;
//! while let Some(job) = jobs.next().await {
//!     println!("job {}", job?);
//! }
//! # Ok(()) }
//! ```

mod codec;
mod error;
mod pending;
mod receiver;
mod recv_state;
mod send_state;
mod sender;
mod stream;
mod stream_state;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use codec::{Binary, Codec, Json, Raw};
pub use error::ChanError;
pub use receiver::{Delivery, Receiver};
pub use recv_state::automatic_prefetch;
pub use sender::{Sender, Ticket};

use crate::client::Client;
use crate::proto::{ChanInfo, Reply, Request};

/// How a sender behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// Most values submitted and not yet accepted (pipelining depth). Default 4096.
    pub window: u32,
    /// Most bytes submitted and not yet accepted. Default 64 MiB.
    pub window_bytes: u64,
    /// Most bytes of values whose `send` completed on room the owner reserved for them,
    /// before the owner confirmed them: such a send returns as soon as its value is on its
    /// way (docs/CHANNELS.md, rule 2). 0 makes every send wait for the owner's confirmation.
    /// Counted on the wire (payload and frame). Default 1 MiB: what a crash (SIGKILL) of the
    /// sending process can lose at most. A process that returns from `main` right after its
    /// last `send` loses none of them: the connection's last write, as the runtime goes away,
    /// waits (up to 10 s) for the socket to take what is queued.
    pub ahead_bytes: u64,
    /// How long to keep trying to reconnect after the connection is lost before failing with
    /// `OwnerLost`. Default 10 s.
    pub reconnect_for: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            window: 4096,
            window_bytes: 64 << 20,
            ahead_bytes: 1 << 20,
            reconnect_for: Duration::from_secs(10),
        }
    }
}

/// How a receiver behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvOptions {
    /// Values the owner may stream to the receiver ahead of `recv`. 0 (the default) is
    /// automatic: [`automatic_prefetch`] on a channel one node owns (2048, at most half its
    /// capacity), 1 on a replicated channel. They count as in
    /// flight (against the capacity), go back to the channel if the receiver goes away, and
    /// are recalled when another receiver waits with nothing to take, so a value never sits
    /// in one receiver's hands while another waits for it (docs/CHANNELS.md, rule 7). 1 is a
    /// hand-over per `recv`: a value only ever goes to a receiver that waits.
    pub prefetch: u32,
    /// About how many bytes of values the receiver may hold ahead (credit is sized by the
    /// values it sees; at least one value). Default 4 MiB.
    pub prefetch_bytes: u64,
    /// How long to keep trying to reconnect after the connection is lost. Default 10 s.
    pub reconnect_for: Duration,
}

impl Default for RecvOptions {
    fn default() -> Self {
        Self {
            prefetch: 0,
            prefetch_bytes: 4 << 20,
            reconnect_for: Duration::from_secs(10),
        }
    }
}

/// How a channel is made: [`Client::chan_create_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChanOptions {
    /// How many nodes hold the channel: 1 (the default) is a channel one node owns; 3 or 5
    /// keep it on that many nodes in step (Raft), so it survives the loss of any minority of
    /// them with nothing lost and nothing doubled. Its handles follow the leader by themselves.
    pub replicas: u32,
    /// Replicas go only to nodes with these labels (`k=v`).
    pub replica_labels: Vec<String>,
    /// Where replicas keep the channel's log (`None`: in memory).
    pub storage: Option<Storage>,
}

impl Default for ChanOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            replica_labels: Vec::new(),
            storage: None,
        }
    }
}

impl ChanOptions {
    /// A channel held by `replicas` nodes.
    pub fn replicated(replicas: u32) -> Self {
        Self {
            replicas,
            ..Self::default()
        }
    }

    /// With its log kept where `storage` says.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = Some(storage);
        self
    }

    /// With replicas only on nodes carrying these labels (`k=v`).
    pub fn replica_labels(mut self, labels: Vec<String>) -> Self {
        self.replica_labels = labels;
        self
    }
}

/// Where a replicated channel's replicas keep its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory: a replica whose daemon restarts is rebuilt from the others.
    Memory,
    /// On disk, in the daemon's data dir (batched fsync): the channel keeps its values across
    /// a restart of its daemons, all of them at once included.
    Disk,
}

impl Storage {
    /// The wire name (`memory`, `disk`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
        }
    }
}

/// A named channel, as a handle to open senders and receivers on.
#[derive(Debug, Clone)]
pub struct Chan {
    client: Client,
    name: String,
    capacity: u64,
}

impl Chan {
    /// Opens the channel bound to `binding` in this worker's environment
    /// (`CIRCUIT_CHAN_<BINDING>`, set by `circuit spawn --chan binding=name`), through the
    /// daemon at `CIRCUIT_SOCKET`.
    pub async fn open_from_env(binding: &str) -> Result<Self, ChanError> {
        let var = format!(
            "{}{}",
            crate::paths::CHAN_ENV_PREFIX,
            binding.to_ascii_uppercase()
        );
        let name = std::env::var(&var).map_err(|_| {
            ChanError::NotFound(format!(
                "no channel bound to \"{binding}\": {var} is not set (spawn with --chan {binding}=NAME)"
            ))
        })?;
        let client = Client::connect_default().await?;
        client.chan(&name).await
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The channel's capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The client this handle uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A sender of JSON-encoded values.
    pub async fn sender<T: Serialize + DeserializeOwned>(&self) -> Result<Sender<T>, ChanError> {
        self.sender_with(Json, SendOptions::default()).await
    }

    /// A receiver of JSON-encoded values.
    pub async fn receiver<T: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<Receiver<T>, ChanError> {
        self.receiver_with(Json, RecvOptions::default()).await
    }

    /// A sender with another codec or options.
    pub async fn sender_with<T, C: Codec<T>>(
        &self,
        codec: C,
        opts: SendOptions,
    ) -> Result<Sender<T, C>, ChanError> {
        Sender::open(&self.client, &self.name, codec, opts).await
    }

    /// A receiver with another codec or options.
    pub async fn receiver_with<T, C: Codec<T>>(
        &self,
        codec: C,
        opts: RecvOptions,
    ) -> Result<Receiver<T, C>, ChanError> {
        Receiver::open(&self.client, &self.name, codec, opts).await
    }

    /// The channel's counts.
    pub async fn stat(&self) -> Result<ChanInfo, ChanError> {
        self.client.chan_stat(&self.name).await
    }

    /// Closes the channel: sends fail from now on; receivers drain what is left, then see
    /// [`ChanError::Closed`]. Closing twice is an error.
    pub async fn close(&self) -> Result<(), ChanError> {
        self.client.chan_close(&self.name).await
    }

    /// Deletes the channel; its values are dropped and its streams fail with `NotFound`.
    pub async fn remove(&self) -> Result<(), ChanError> {
        self.client.chan_remove(&self.name).await
    }
}

impl Client {
    /// Creates a channel owned by the daemon this client talks to. Fails with
    /// [`ChanError::AlreadyExists`] if the name is taken.
    pub async fn chan_create(&self, name: &str, capacity: u64) -> Result<Chan, ChanError> {
        self.create(name, capacity, false).await
    }

    /// Creates a channel unless one of that name and capacity exists.
    pub async fn chan_ensure(&self, name: &str, capacity: u64) -> Result<Chan, ChanError> {
        self.create(name, capacity, true).await
    }

    /// Creates a channel with `options` (replicas, where they go, storage); with `exist_ok`,
    /// an existing channel of that name and capacity is fine.
    ///
    /// ```no_run
    /// # async fn demo(client: circuit_sdk::Client) -> Result<(), circuit_sdk::chan::ChanError> {
    /// use circuit_sdk::chan::ChanOptions;
    /// // Held by 3 nodes: it survives the loss of any one of them.
    /// let q = client.chan_create_with("q", 64, ChanOptions::replicated(3), false).await?;
    /// # Ok(()) }
    /// ```
    pub async fn chan_create_with(
        &self,
        name: &str,
        capacity: u64,
        options: ChanOptions,
        exist_ok: bool,
    ) -> Result<Chan, ChanError> {
        let request = Request::ChanCreate {
            name: name.to_string(),
            capacity,
            exist_ok,
            replicas: (options.replicas != 1).then_some(options.replicas),
            replica_labels: options.replica_labels,
            storage: options.storage.map(|s| s.as_str().to_string()),
        };
        match self.call(request).await? {
            Reply::Chan(info) => Ok(self.handle(info)),
            other => Err(unexpected(other)),
        }
    }

    async fn create(&self, name: &str, capacity: u64, exist_ok: bool) -> Result<Chan, ChanError> {
        let request = Request::ChanCreate {
            name: name.to_string(),
            capacity,
            exist_ok,
            replicas: None,
            replica_labels: Vec::new(),
            storage: None,
        };
        match self.call(request).await? {
            Reply::Chan(info) => Ok(self.handle(info)),
            other => Err(unexpected(other)),
        }
    }

    /// Opens an existing channel.
    pub async fn chan(&self, name: &str) -> Result<Chan, ChanError> {
        let info = self.chan_stat(name).await?;
        Ok(self.handle(info))
    }

    /// Runs a channel request; a replicated channel between two leaders (`unavailable`) is
    /// waited for, up to 10 s (the default `reconnect_for`): that is a pause, not an error.
    async fn chan_call(&self, request: Request) -> Result<Reply, ChanError> {
        let deadline = tokio::time::Instant::now() + RecvOptions::default().reconnect_for;
        let mut delay = Duration::from_millis(20);
        loop {
            match self.call(request.clone()).await.map_err(ChanError::from) {
                Err(ChanError::Unavailable(_))
                    if tokio::time::Instant::now() + delay < deadline =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    fn handle(&self, info: ChanInfo) -> Chan {
        Chan {
            client: self.clone(),
            name: info.name,
            capacity: info.capacity,
        }
    }

    /// Describes every channel the daemon owns.
    pub async fn chan_list(&self) -> Result<Vec<ChanInfo>, ChanError> {
        match self.call(Request::ChanList).await? {
            Reply::Chans(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// Describes one channel.
    pub async fn chan_stat(&self, name: &str) -> Result<ChanInfo, ChanError> {
        let request = Request::ChanStat {
            name: name.to_string(),
        };
        match self.chan_call(request).await? {
            Reply::Chan(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Closes a channel. A replicated channel between two leaders is waited for; a close that
    /// was cut short by a leader change may have been applied, so "already closed" on a
    /// retry counts as done.
    pub async fn chan_close(&self, name: &str) -> Result<(), ChanError> {
        let request = Request::ChanClose {
            name: name.to_string(),
        };
        match self.call(request.clone()).await.map_err(ChanError::from) {
            Err(ChanError::Unavailable(_)) => match self.chan_call(request).await {
                Err(ChanError::Daemon {
                    code: crate::proto::ErrorCode::InvalidState,
                    ..
                })
                | Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    /// Deletes a channel.
    pub async fn chan_remove(&self, name: &str) -> Result<(), ChanError> {
        let request = Request::ChanRemove {
            name: name.to_string(),
        };
        self.chan_call(request).await?;
        Ok(())
    }
}

fn unexpected(reply: Reply) -> ChanError {
    ChanError::Protocol(format!("unexpected reply {reply:?}"))
}
