//! The one module that knows openraft (pinned `=0.9.25`): the Raft type configuration of a
//! replicated channel, the state machine openraft drives (the channel's [`ChanState`],
//! applying [`Batch`]es), the log kept in memory, the network over a [`Transport`], and
//! [`RaftGroup`], which implements the small [`Consensus`] trait the rest of the code uses.
//! An upgrade of openraft touches this file, `types.rs` (the type configuration) and
//! `log_disk.rs` (the log on disk).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    ChangeMembers, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    ServerState, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use futures::FutureExt;

use super::consensus::{Commit, Consensus, ConsensusError, Replica, Role, Status, StatusWatch};
use super::event::{apply, Batch};
use super::log_disk::DiskLog;
use super::snapshot_disk::{load_snapshot, save_snapshot};
use super::{Applied, CallError, GroupId, Transport};
use crate::broker::state::ChanState;

pub(crate) use super::types::{Cfg, Member};

type Nid = u64;
type SError = StorageError<Nid>;

/// Timing of a replicated channel's Raft. Raft's own timers are off: no tick, so a leader
/// sends no heartbeats and a follower never starts an election by itself; the mesh's failure
/// detector does (`group.rs`), so an idle channel costs no traffic and no wake-ups at all. The
/// election timeout still sets the leader lease (how long a follower refuses to vote after it
/// last heard from its leader), so it is short: a leader the mesh declared suspect is replaced
/// at once. (The heartbeat interval only has to be below it to pass validation.)
fn config(chan: &str) -> openraft::Config {
    openraft::Config {
        cluster_name: chan.to_string(),
        election_timeout_min: 150,
        election_timeout_max: 300,
        heartbeat_interval: 50,
        install_snapshot_timeout: 2000,
        max_payload_entries: 64,
        replication_lag_threshold: 4096,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(2048),
        max_in_snapshot_log_to_keep: 64,
        purge_batch_size: 64,
        enable_tick: false,
        enable_heartbeat: false,
        enable_elect: false,
        ..Default::default()
    }
}

// ---- the log, in memory ----

#[derive(Debug, Default)]
struct LogInner {
    vote: Option<Vote<Nid>>,
    committed: Option<LogId<Nid>>,
    purged: Option<LogId<Nid>>,
    entries: BTreeMap<u64, Entry<Cfg>>,
}

/// The Raft log of one replica, held in memory (`--storage memory`).
#[derive(Debug, Clone, Default)]
pub(crate) struct MemLog(Arc<Mutex<LogInner>>);

impl MemLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.0.lock().expect("raft log lock")
    }
}

impl RaftLogReader<Cfg> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Cfg>>, SError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<Cfg> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> Result<LogState<Cfg>, SError> {
        let log = self.lock();
        let last = log.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: log.purged,
            last_log_id: last.or(log.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<Nid>) -> Result<(), SError> {
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<Nid>>, SError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<Nid>>) -> Result<(), SError> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<Nid>>, SError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<Cfg>) -> Result<(), SError>
    where
        I: IntoIterator<Item = Entry<Cfg>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut log = self.lock();
            for entry in entries {
                log.entries.insert(entry.log_id.index, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<Nid>) -> Result<(), SError> {
        let mut log = self.lock();
        let _ = log.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<Nid>) -> Result<(), SError> {
        let mut log = self.lock();
        let keep = log.entries.split_off(&(log_id.index + 1));
        log.entries = keep;
        log.purged = Some(log_id);
        Ok(())
    }
}

// ---- the state machine: the channel ----

/// A snapshot: the channel's state after `meta.last_log_id`.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    meta: SnapshotMeta<Nid, Member>,
    data: Vec<u8>,
}

/// What a snapshot's bytes hold.
#[derive(Serialize, Deserialize)]
struct Image {
    last_applied: Option<LogId<Nid>>,
    membership: StoredMembership<Nid, Member>,
    state: ChanState,
}

/// The channel as openraft drives it: committed batches are applied here, on every replica,
/// and what applying produced goes to the group's actor, which sends it only if it leads.
pub(crate) struct Machine {
    pub(crate) state: ChanState,
    pub(crate) last_applied: Option<LogId<Nid>>,
    pub(crate) membership: StoredMembership<Nid, Member>,
    pub(crate) current: Arc<Mutex<Option<Stored>>>,
    pub(crate) out: mpsc::UnboundedSender<Applied>,
    /// With `--storage disk`: where snapshots are kept.
    pub(crate) dir: Option<PathBuf>,
}

impl Machine {
    fn image(&self) -> postcard::Result<Vec<u8>> {
        let image = Image {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.clone(),
        };
        postcard::to_allocvec(&image)
    }

    fn report(
        &mut self,
        index: u64,
        closed: Option<Result<(), String>>,
        removed: bool,
        reset: bool,
    ) {
        let _ = self.out.send(Applied {
            index,
            effects: std::mem::take(&mut self.state.effects),
            closed,
            removed,
            reset,
            counts: self.state.counts(),
            closed_now: self.state.is_closed(),
            detached: self.state.detached_receivers(),
        });
    }
}

/// Builds a snapshot from an image taken when openraft asked for a builder.
pub(crate) struct Builder {
    meta: SnapshotMeta<Nid, Member>,
    data: Vec<u8>,
    current: Arc<Mutex<Option<Stored>>>,
    dir: Option<PathBuf>,
}

/// Keeps a snapshot on disk (before openraft purges the log it replaces).
async fn keep(dir: Option<&PathBuf>, stored: &Stored) -> Result<(), SError> {
    let Some(dir) = dir.cloned() else {
        return Ok(());
    };
    let (meta, data) = (stored.meta.clone(), stored.data.clone());
    let signature = meta.signature();
    tokio::task::spawn_blocking(move || save_snapshot(&dir, &meta, &data))
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(signature.clone()), &e))?
        .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e).into())
}

impl RaftSnapshotBuilder<Cfg> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Cfg>, SError> {
        let stored = Stored {
            meta: self.meta.clone(),
            data: std::mem::take(&mut self.data),
        };
        keep(self.dir.as_ref(), &stored).await?;
        *self.current.lock().expect("snapshot lock") = Some(stored.clone());
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<Cfg> for Machine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<Nid>>, StoredMembership<Nid, Member>), SError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, SError>
    where
        I: IntoIterator<Item = Entry<Cfg>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut answers = Vec::new();
        let mut closed = None;
        let mut removed = false;
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    let applied = apply(&mut self.state, &batch);
                    if applied.closed.is_some() {
                        closed = applied.closed;
                    }
                    removed |= applied.removed;
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            answers.push(());
        }
        let index = self.last_applied.map_or(0, |l| l.index);
        self.report(index, closed, removed, false);
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let data = self.image().unwrap_or_default();
        let id = self.last_applied.map_or_else(
            || "0".to_string(),
            |l| format!("{}-{}", l.leader_id, l.index),
        );
        Builder {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id: id,
            },
            data,
            current: self.current.clone(),
            dir: self.dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<Nid, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SError> {
        let data = snapshot.into_inner();
        let image: Image = postcard::from_bytes(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = Stored {
            meta: meta.clone(),
            data,
        };
        keep(self.dir.as_ref(), &stored).await?;
        self.state = image.state;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        *self.current.lock().expect("snapshot lock") = Some(stored);
        let index = self.last_applied.map_or(0, |l| l.index);
        self.report(index, None, false, true);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Cfg>>, SError> {
        let current = self.current.lock().expect("snapshot lock").clone();
        Ok(current.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

// ---- the network: RPCs over the transport ----

/// An RPC between replicas, as the transport carries it.
#[derive(Serialize, Deserialize)]
enum Rpc {
    Append(AppendEntriesRequest<Cfg>),
    Vote(VoteRequest<Nid>),
    Snapshot(InstallSnapshotRequest<Cfg>),
}

/// The answer to an [`Rpc`].
#[derive(Serialize, Deserialize)]
enum Answer {
    Append(Result<AppendEntriesResponse<Nid>, RaftError<Nid>>),
    Vote(Result<VoteResponse<Nid>, RaftError<Nid>>),
    Snapshot(Result<InstallSnapshotResponse<Nid>, RaftError<Nid, InstallSnapshotError>>),
}

/// Why an RPC did not get through.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

/// Makes a [`Link`] to each replica.
struct Net {
    group: GroupId,
    transport: Arc<dyn Transport>,
    /// Where a replica learns that its channel was removed while it was away.
    out: mpsc::UnboundedSender<Applied>,
}

/// The way to one replica.
pub(crate) struct Link {
    group: GroupId,
    /// The replica called.
    to: Nid,
    node: String,
    transport: Arc<dyn Transport>,
    out: mpsc::UnboundedSender<Applied>,
}

impl RaftNetworkFactory<Cfg> for Net {
    type Network = Link;

    async fn new_client(&mut self, target: Nid, node: &Member) -> Link {
        Link {
            group: self.group.clone(),
            to: target,
            node: node.name.clone(),
            transport: self.transport.clone(),
            out: self.out.clone(),
        }
    }
}

impl Link {
    async fn call<E: std::error::Error>(
        &self,
        rpc: &Rpc,
        option: &RPCOption,
    ) -> Result<Answer, RPCError<Nid, Member, E>> {
        let body =
            postcard::to_allocvec(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let call = self.transport.call(
            self.node.clone(),
            self.group.clone(),
            self.to,
            Bytes::from(body),
        );
        let answer = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(CallError::Failed(why))) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Failed(why))))
            }
            Ok(Err(CallError::Removed)) => {
                let _ = self.out.send(Applied::removed_elsewhere());
                let why = Failed(format!("{} says the channel was removed", self.node));
                return Err(RPCError::Unreachable(Unreachable::new(&why)));
            }
            Err(_) => {
                let why = Failed(format!("no answer from {} in time", self.node));
                return Err(RPCError::Unreachable(Unreachable::new(&why)));
            }
        };
        postcard::from_bytes(&answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

/// An answer of the wrong kind, which a sound peer never sends.
fn mismatch<E: std::error::Error>() -> RPCError<Nid, Member, E> {
    RPCError::Network(NetworkError::new(&Failed("answer of another kind".into())))
}

impl RaftNetwork<Cfg> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Cfg>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<Nid>, RPCError<Nid, Member, RaftError<Nid>>> {
        match self.call(&Rpc::Append(rpc), &option).await? {
            Answer::Append(Ok(r)) => Ok(r),
            Answer::Append(Err(e)) => Err(RPCError::RemoteError(
                openraft::error::RemoteError::new(0, e),
            )),
            _ => Err(mismatch()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Cfg>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<Nid>,
        RPCError<Nid, Member, RaftError<Nid, InstallSnapshotError>>,
    > {
        match self.call(&Rpc::Snapshot(rpc), &option).await? {
            Answer::Snapshot(Ok(r)) => Ok(r),
            Answer::Snapshot(Err(e)) => Err(RPCError::RemoteError(
                openraft::error::RemoteError::new(0, e),
            )),
            _ => Err(mismatch()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<Nid>,
        option: RPCOption,
    ) -> Result<VoteResponse<Nid>, RPCError<Nid, Member, RaftError<Nid>>> {
        match self.call(&Rpc::Vote(rpc), &option).await? {
            Answer::Vote(Ok(r)) => Ok(r),
            Answer::Vote(Err(e)) => Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                0, e,
            ))),
            _ => Err(mismatch()),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // A replica that does not answer is retried soon: the mesh says when it is dead.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}

// ---- the group ----

/// One replica of a replicated channel, running Raft.
#[derive(Clone)]
pub(crate) struct RaftGroup {
    raft: openraft::Raft<Cfg>,
}

impl RaftGroup {
    /// Starts replica `me` of channel `group` (empty: capacity `capacity`, payload limit
    /// `max_payload`), talking to the others over `transport`; what applying produces goes to
    /// `out`. With `dir` (`--storage disk`) the log and the last snapshot are kept there, and
    /// a replica that restarts goes on from them.
    pub async fn start(
        group: &GroupId,
        me: u64,
        capacity: u64,
        max_payload: u64,
        dir: Option<&Path>,
        transport: Arc<dyn Transport>,
        out: mpsc::UnboundedSender<Applied>,
    ) -> Result<Self, ConsensusError> {
        let fail = |e: &dyn std::fmt::Display| ConsensusError::Other(e.to_string());
        let net = Net {
            group: group.clone(),
            transport,
            out: out.clone(),
        };
        let mut machine = Machine {
            state: ChanState::new(capacity, max_payload, false),
            last_applied: None,
            membership: StoredMembership::default(),
            current: Arc::new(Mutex::new(None)),
            out,
            dir: dir.map(Path::to_path_buf),
        };
        let config = Arc::new(config(&group.name).validate().map_err(|e| fail(&e))?);
        let raft = match dir {
            None => openraft::Raft::new(me, config, net, MemLog::default(), machine).await,
            Some(dir) => {
                let owned = dir.to_path_buf();
                let (log, saved) = tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&owned)?;
                    Ok::<_, std::io::Error>((DiskLog::open(&owned)?, load_snapshot(&owned)?))
                })
                .await
                .map_err(|e| fail(&e))?
                .map_err(|e| fail(&e))?;
                if let Some(saved) = saved {
                    let image: Image = postcard::from_bytes(&saved.data).map_err(|e| fail(&e))?;
                    machine.state = image.state;
                    machine.last_applied = saved.meta.last_log_id;
                    machine.membership = saved.meta.last_membership.clone();
                    *machine.current.lock().expect("snapshot lock") = Some(Stored {
                        meta: saved.meta,
                        data: saved.data,
                    });
                }
                openraft::Raft::new(me, config, net, log, machine).await
            }
        }
        .map_err(|e| fail(&e))?;
        Ok(Self { raft })
    }

    /// Makes this replica and `members` the group (called on one replica, once).
    pub async fn found(&self, members: &[Replica]) -> Result<(), ConsensusError> {
        let members: BTreeMap<Nid, Member> = members
            .iter()
            .map(|r| {
                (
                    r.id,
                    Member {
                        name: r.node.clone(),
                    },
                )
            })
            .collect();
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ConsensusError::Other(e.to_string()))
    }

    /// Serves an RPC another replica sent (the bytes its [`Link`] made); answers in kind.
    pub async fn serve(&self, body: &[u8]) -> Result<Bytes, String> {
        let rpc: Rpc = postcard::from_bytes(body).map_err(|e| format!("bad raft rpc: {e}"))?;
        let answer = match rpc {
            Rpc::Append(r) => Answer::Append(self.raft.append_entries(r).await),
            Rpc::Vote(r) => Answer::Vote(self.raft.vote(r).await),
            Rpc::Snapshot(r) => Answer::Snapshot(self.raft.install_snapshot(r).await),
        };
        postcard::to_allocvec(&answer)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }
}

/// Follows Raft's metrics as a [`Status`].
pub(crate) struct Watch(watch::Receiver<openraft::RaftMetrics<Nid, Member>>);

impl StatusWatch for Watch {
    fn status(&self) -> Status {
        let m = self.0.borrow();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let membership = m.membership_config.membership();
        let voters: Vec<Nid> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Replica {
                id: *id,
                node: node.name.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let matched = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| (*id, log.map(|l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        Status {
            me: m.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            members,
            last_log: m.last_log_index,
            applied: m.last_applied.map(|l| l.index),
            matched,
        }
    }

    async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

impl Consensus for RaftGroup {
    type Watch = Watch;

    async fn propose(&self, batch: Batch) -> Result<Commit, ConsensusError> {
        let applied = self
            .raft
            .client_write_ff(batch)
            .await
            .map_err(|e| ConsensusError::Other(e.to_string()))?;
        Ok(async move {
            match applied.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(ConsensusError::Other(e.to_string())),
                Err(_) => Err(ConsensusError::Other("the replica stopped".into())),
            }
        }
        .boxed())
    }

    fn watch(&self) -> Watch {
        Watch(self.raft.metrics())
    }

    async fn elect(&self) {
        let _ = self.raft.trigger().elect().await;
    }

    async fn add_learner(&self, replica: &Replica) -> Result<(), ConsensusError> {
        let member = Member {
            name: replica.node.clone(),
        };
        self.raft
            .add_learner(replica.id, member, false)
            .await
            .map(drop)
            .map_err(|e| ConsensusError::Other(e.to_string()))
    }

    async fn set_voters(&self, voters: &[u64]) -> Result<(), ConsensusError> {
        let voters: std::collections::BTreeSet<Nid> = voters.iter().copied().collect();
        self.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map(drop)
            .map_err(|e| ConsensusError::Other(e.to_string()))
    }

    async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;

    use super::*;
    use crate::broker::replica::event::{stream_key, Event};
    use crate::broker::state::Effect;

    /// Replicas of one process, reached through a table; a node in `down` answers nothing.
    #[derive(Default)]
    struct Loopback {
        groups: StdMutex<HashMap<String, RaftGroup>>,
        down: StdMutex<Vec<String>>,
    }

    impl Transport for Loopback {
        fn call(
            &self,
            node: String,
            _group: GroupId,
            _to: u64,
            body: Bytes,
        ) -> futures::future::BoxFuture<'static, Result<Bytes, CallError>> {
            let group = if self.down.lock().expect("down").contains(&node) {
                None
            } else {
                self.groups.lock().expect("groups").get(&node).cloned()
            };
            async move {
                match group {
                    Some(g) => g.serve(&body).await.map_err(CallError::Failed),
                    None => Err(CallError::Failed(format!("{node} is down"))),
                }
            }
            .boxed()
        }
    }

    async fn wait_for(mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn three_replicas_apply_the_same_batches_and_a_new_leader_takes_over() {
        let net = Arc::new(Loopback::default());
        let group = GroupId {
            name: "q".into(),
            born_ms: 1,
        };
        let names = ["a", "b", "c"];
        let mut outs = Vec::new();
        let mut groups = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            let g = RaftGroup::start(&group, i as u64 + 1, 8, 1024, None, net.clone(), tx)
                .await
                .expect("start");
            net.groups
                .lock()
                .expect("groups")
                .insert(name.to_string(), g.clone());
            outs.push(rx);
            groups.push(g);
        }
        let members: Vec<Replica> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Replica {
                id: i as u64 + 1,
                node: n.to_string(),
                voter: true,
            })
            .collect();
        groups[0].found(&members).await.expect("found");
        let watches: Vec<Watch> = groups.iter().map(Consensus::watch).collect();
        wait_for(|| watches[0].status().role == Role::Leader).await;
        // A sender and a receiver, and two values: every replica applies them.
        let (s, r) = (stream_key(1, 1), stream_key(1, 2));
        let batch = Batch {
            now_ms: 1,
            events: vec![
                Event::OpenSend {
                    stream: s,
                    sender: 7,
                },
                Event::OpenRecv {
                    stream: r,
                    receiver: 9,
                    held: vec![],
                    acked: vec![],
                },
                Event::Values {
                    stream: s,
                    values: vec![(1, Bytes::from_static(b"x")), (2, Bytes::from_static(b"y"))],
                },
                Event::Signal {
                    stream: r,
                    op: circuit_sdk::proto::SignalOp::Credit as u8,
                    a: 1,
                    b: 0,
                },
            ],
        };
        let commit = groups[0].propose(batch).await.expect("propose");
        commit.await.expect("applied");
        for out in &mut outs {
            let mut effects = Vec::new();
            let mut sent = 0;
            while sent < 2 {
                let applied = out.recv().await.expect("applied");
                sent = applied.counts.sent;
                effects.extend(applied.effects);
            }
            assert!(effects.contains(&Effect::Deliver {
                stream: r,
                id: 1,
                payload: Bytes::from_static(b"x"),
            }));
        }
        // The leader goes away; b is elected when asked (the mesh would ask it; a vote is
        // refused while c's lease on a's leadership lasts, so it asks again).
        net.down.lock().expect("down").push("a".into());
        groups[0].shutdown().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while watches[1].status().role != Role::Leader {
            assert!(tokio::time::Instant::now() < deadline, "b was not elected");
            groups[1].elect().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = watches[1].status();
        assert_eq!(status.leader_node(), Some("b"));
        assert!(status.term > 1);
        // It serves: a batch proposed now is applied by the replicas still up.
        let commit = groups[1]
            .propose(Batch {
                now_ms: 2,
                events: vec![Event::Close],
            })
            .await
            .expect("propose");
        commit.await.expect("applied");
        for out in &mut outs[1..] {
            loop {
                let applied = out.recv().await.expect("applied");
                if applied.closed_now {
                    break;
                }
            }
        }
    }
}
