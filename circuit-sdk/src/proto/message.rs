//! Control messages: the one enum per direction that travels in control frames as JSON.
//! A request's replies are zero or more `item`s and then exactly one `ok` or `error`.

use serde::{Deserialize, Serialize};

use super::chan::{ChanInfo, ChanOpened};
use super::error::ErrorCode;
use super::mesh::{Claim, MeshEvent, NodeInfo, Placement};
use super::types::{
    DaemonStatus, LogLine, SpawnSpec, StdinOpened, WorkerEnd, WorkerEvent, WorkerInfo,
};

/// Version spoken by this build; the hello of both sides carries it and they must match.
/// Version 2 added channels; version 3 the mesh.
pub const PROTOCOL_VERSION: u32 = 4;

/// A message from a client (CLI, worker SDK) to a daemon.
// Control messages are built once and serialised at once; boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Unknown fields are ignored here (a newer peer's hello may carry more); requests are strict.
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message on every connection.
    Hello {
        /// The protocol version the client speaks.
        version: u32,
        /// Who is calling, for the daemon's log (`circuit-sdk/0.1.0`).
        client: String,
    },
    /// Start an operation; replies carry the same `id`.
    Request {
        /// Chosen by the client, unique among its outstanding requests.
        id: u64,
        /// What to do.
        request: Request,
    },
    /// Abandon a streaming request (e.g. `logs -f`); the daemon ends it with an error `cancelled`.
    Cancel {
        /// The request to end.
        id: u64,
    },
}

/// A message from a daemon to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to the client's hello.
    Hello {
        /// The protocol version the daemon speaks.
        version: u32,
        /// The daemon's node name.
        node: String,
        /// The daemon's version.
        daemon_version: String,
        /// Random per daemon start: a reconnecting client tells a restarted daemon (whose
        /// channels lost their contents) from the one it was talking to.
        #[serde(default)]
        instance: u64,
    },
    /// One streamed part of a reply; more follow.
    Item {
        /// The request it answers.
        id: u64,
        /// The part.
        item: Item,
    },
    /// Terminal success.
    Ok {
        /// The request it answers.
        id: u64,
        /// The result.
        reply: Reply,
    },
    /// Terminal failure of request `id`. Without an `id` it is about the connection: a message
    /// the daemon could not attribute to a request, or the reason the daemon is closing it.
    Error {
        /// The request it answers.
        id: Option<u64>,
        /// Machine-readable class.
        code: ErrorCode,
        /// One line for a person.
        message: String,
    },
}

/// What a client asks for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "op",
    content = "args",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Request {
    /// Start a worker. Reply: `worker`.
    Spawn(SpawnSpec),
    /// List workers; `all` includes exited ones. Reply: `workers`.
    List {
        /// Include exited workers.
        #[serde(default)]
        all: bool,
    },
    /// Describe one worker. Reply: `worker`.
    Inspect {
        /// Worker name.
        name: String,
    },
    /// Read a worker's output. Items: `log`. Reply: `end` when following (once the worker has
    /// ended), else `done`.
    Logs(LogsRequest),
    /// Stop workers: stop signal to each process group, SIGKILL after the grace. Reply: `workers`.
    Stop {
        /// Workers to stop; all are checked before any is touched.
        names: Vec<String>,
        /// Overrides the spec's stop signal.
        #[serde(default)]
        signal: Option<String>,
        /// Overrides the spec's grace period.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Stop (if needed) and start again, clearing `failed` and the restart count. Reply: `worker`.
    Restart {
        /// Worker name.
        name: String,
    },
    /// Send a signal. Reply: `done`.
    Signal {
        /// Worker name.
        name: String,
        /// Signal name or number.
        signal: String,
        /// Signal the whole process group instead of the worker's main process.
        #[serde(default)]
        group: bool,
    },
    /// Wait until a worker has ended (exited or failed). Reply: `end`.
    Wait {
        /// Worker name.
        name: String,
    },
    /// Forget a worker and delete its logs. Reply: `done`.
    Remove {
        /// Worker name.
        name: String,
        /// Stop it first if it is still active.
        #[serde(default)]
        force: bool,
    },
    /// Describe the daemon. Reply: `status`.
    Status,
    /// Create a channel owned by this node. Reply: `chan`.
    ChanCreate {
        /// Channel name.
        name: String,
        /// Capacity (0: rendezvous).
        capacity: u64,
        /// Succeed when a channel of that name and capacity exists already.
        #[serde(default)]
        exist_ok: bool,
        /// Replicas: 1 (absent) is a channel one node owns; 3 or 5 keep its state on that
        /// many nodes, in step through Raft, so it survives the loss of any minority of them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<u32>,
        /// Place replicas only on nodes with these labels (`k=v`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replica_labels: Vec<String>,
        /// Where replicas keep the channel's log: `memory` (absent) or `disk`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storage: Option<String>,
    },
    /// List channels. Reply: `chans`.
    ChanList,
    /// Describe one channel. Reply: `chan`.
    ChanStat {
        /// Channel name.
        name: String,
    },
    /// Close a channel: sends fail from now on; receivers drain it. Reply: `done`.
    ChanClose {
        /// Channel name.
        name: String,
    },
    /// Delete a channel; its streams end with `not_found`. Reply: `done`.
    ChanRemove {
        /// Channel name.
        name: String,
    },
    /// Open a send stream: first item `chan_opened`, then data frames from the client (one
    /// value each, seq = the sender's sequence number) and signals both ways. Ends when the
    /// client cancels it or the channel is removed.
    ChanSend {
        /// Channel name.
        name: String,
        /// Identifies the sender across reconnects: a value (sender, seq) is accepted once.
        sender: u64,
        /// The seq of the next new value, from a sender that takes reservations: the owner
        /// may reserve room for the values from that seq on (signal `reserve`), so that they
        /// complete as they are sent. Values below it (sent again after a reconnect) wait for
        /// acceptance as usual.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reserve_from: Option<u64>,
        /// Serve the stream here or fail: a daemon relaying a stream to the node that serves
        /// the channel sets it, so a stream is never relayed twice.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        direct: bool,
    },
    /// Open a receive stream: first item `chan_opened`, then credit from the client and data
    /// frames (seq = value id) from the daemon. Ends when the client cancels it or the channel
    /// is removed.
    ChanRecv {
        /// Channel name.
        name: String,
        /// Identifies the receiver across reconnects (a replicated channel keeps what it holds
        /// for it across a leader change).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        receiver: Option<u64>,
        /// Coming back to a replicated channel: ids of the values it holds and has not
        /// acknowledged, in the order it got them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        held: Vec<u64>,
        /// Coming back: ids of the values it acknowledged lately.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        acked: Vec<u64>,
        /// Serve the stream here or fail (see `chan_send`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        direct: bool,
    },
    /// Attach to the stdin of a worker spawned with `stdin`: first item `stdin_opened`, then
    /// data frames from the client (the input in chunks, seq 1, 2, …), each answered with the
    /// signal `accepted` once written to the worker's pipe, at most `window` unanswered; the
    /// signal `eof` ends the input. Reply: `done` once every chunk is written and, unless
    /// `keep_open`, the worker's stdin is closed. One stream per worker at a time.
    WorkerStdin {
        /// Worker name.
        name: String,
        /// The node the worker runs on; when absent, this one if it has the worker, else the
        /// one live node that does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// At the end of the input, leave the worker's stdin open for a later stream.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keep_open: bool,
    },
    /// Run `request` on node `node` (this one, or another through the peer link) and relay
    /// its replies, streams included.
    On {
        /// Node name.
        node: String,
        /// What to run there.
        request: Box<Request>,
    },
    /// Start one or more copies of a worker on the chosen nodes: `node`, else any node whose
    /// labels match `selector`, least loaded first. Reply: `workers`.
    Place(Placement),
    /// List the workers of every node; workers of dead nodes are `lost`. Reply: `workers`.
    ClusterList {
        /// Include exited workers.
        #[serde(default)]
        all: bool,
    },
    /// List the nodes of the mesh. Reply: `nodes`.
    Nodes,
    /// Join the mesh through nodes at these addresses (`host:port`). Reply: `done` once the
    /// node answering at one of them is a member of the daemon's mesh; `unreachable` when none
    /// is within `timeout_ms`, saying why for each address.
    Join {
        /// Mesh addresses of nodes already in the mesh.
        addrs: Vec<String>,
        /// How long to wait, in milliseconds (1 ms to 1 h; 10 s when absent, and left out
        /// when absent so that daemons from before the field accept the request).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Stream membership events as they happen, and the worker events of every node of the
    /// mesh. Items: `event`, `worker_event`. Ends when cancelled.
    Events,
    /// Stream this node's worker events as they happen (what `events` gathers from each
    /// node). Items: `worker_event`. Ends when cancelled.
    WorkerEvents,
    /// Between daemons, before creating a channel: does the callee own or create `name`?
    /// Reply: `claim`.
    ChanClaim {
        /// Channel name.
        name: String,
        /// The node about to create it.
        node: String,
    },
    /// Between daemons, after a create that claimed `name` ended (whether or not it made the
    /// channel): the callee forgets `node`'s claim on it. Reply: `done`.
    ChanRelease {
        /// Channel name.
        name: String,
        /// The node whose create ended.
        node: String,
    },
    /// Nothing; keeps an idle connection open. Reply: `done`.
    Ping,
    /// The fingerprints of the cluster keys this daemon holds. Reply: `keys`.
    KeyList,
    /// One step of a key rotation on this daemon; the keys are written to its key file.
    /// Reply: `keys`.
    KeyRotate {
        /// The step.
        step: KeyStep,
        /// The new key, 64 hex digits.
        key: String,
    },
    /// Anti-entropy between daemons: the caller's node table; the reply is the callee's.
    /// Reply: `nodes`.
    MeshSync {
        /// Every node the caller knows, with its metadata.
        nodes: Vec<NodeInfo>,
    },
    /// Between daemons: opens the stream that carries the Raft messages of replicated
    /// channels between the caller and the callee. Each data frame one way is a call (its seq
    /// the call's number), each data frame back the answer with the same seq. No reply until
    /// the stream ends.
    RaftLink,
    /// Between daemons: start a replica of replicated channel `name` here, with Raft id `id`,
    /// in the group `members` (Raft id, node); the one with `found` forms the group. Reply:
    /// `done`.
    ReplicaStart {
        /// Channel name.
        name: String,
        /// Capacity of the channel.
        capacity: u64,
        /// This replica's Raft id.
        id: u64,
        /// Every replica of the group: (Raft id, node).
        members: Vec<(u64, String)>,
        /// `memory` or `disk`.
        storage: String,
        /// Whether this replica forms the group.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        found: bool,
        /// When the channel was created (ms since the epoch).
        created_at_ms: u64,
        /// Replicas go only to nodes with these labels (`k=v`); kept for repairs.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        labels: Vec<String>,
    },
    /// Between daemons: the replica of `name` with Raft id `id` here was replaced by a
    /// repair, or (`removed`) the channel was removed; it stops and forgets the channel.
    /// Reply: `done`.
    ReplicaDrop {
        /// Channel name.
        name: String,
        /// The replica's Raft id.
        id: u64,
        /// The channel was removed (the node remembers it), not only this replica replaced.
        #[serde(default)]
        removed: bool,
    },
}

impl Request {
    /// The request's `op`, as it travels on the wire (`spawn`, `chan_stat`, …): a name for
    /// counting requests by kind without serialising them.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Spawn(_) => "spawn",
            Self::List { .. } => "list",
            Self::Inspect { .. } => "inspect",
            Self::Logs(_) => "logs",
            Self::Stop { .. } => "stop",
            Self::Restart { .. } => "restart",
            Self::Signal { .. } => "signal",
            Self::Wait { .. } => "wait",
            Self::Remove { .. } => "remove",
            Self::Status => "status",
            Self::ChanCreate { .. } => "chan_create",
            Self::ChanList => "chan_list",
            Self::ChanStat { .. } => "chan_stat",
            Self::ChanClose { .. } => "chan_close",
            Self::ChanRemove { .. } => "chan_remove",
            Self::ChanSend { .. } => "chan_send",
            Self::ChanRecv { .. } => "chan_recv",
            Self::On { .. } => "on",
            Self::Place(_) => "place",
            Self::ClusterList { .. } => "cluster_list",
            Self::Nodes => "nodes",
            Self::Join { .. } => "join",
            Self::Events => "events",
            Self::WorkerEvents => "worker_events",
            Self::ChanClaim { .. } => "chan_claim",
            Self::ChanRelease { .. } => "chan_release",
            Self::Ping => "ping",
            Self::KeyList => "key_list",
            Self::KeyRotate { .. } => "key_rotate",
            Self::MeshSync { .. } => "mesh_sync",
            Self::RaftLink => "raft_link",
            Self::ReplicaStart { .. } => "replica_start",
            Self::ReplicaDrop { .. } => "replica_drop",
            Self::WorkerStdin { .. } => "worker_stdin",
        }
    }
}

/// Arguments of [`Request::Logs`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsRequest {
    /// Worker name.
    pub name: String,
    /// Keep streaming new lines until the worker ends.
    pub follow: bool,
    /// Start with only the last N lines (all when absent).
    pub tail: Option<usize>,
    /// Only this stream (stdout and stderr when absent).
    pub stream: Option<super::types::LogStream>,
    /// Also the supervisor's lifecycle lines (stream `circuit`: started, exited, restarting
    /// in …) between the worker's output, when no stream is picked.
    pub lifecycle: bool,
}

/// A streamed part of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Item {
    /// One log line.
    Log(LogLine),
    /// A channel stream is open.
    ChanOpened(ChanOpened),
    /// A membership event.
    Event(MeshEvent),
    /// Something happened to a worker.
    WorkerEvent(WorkerEvent),
    /// A worker's stdin stream is open.
    StdinOpened(StdinOpened),
}

/// The terminal result of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Reply {
    /// Nothing more to say.
    Done,
    /// One worker.
    Worker(Box<WorkerInfo>),
    /// Several workers.
    Workers(Vec<WorkerInfo>),
    /// How a worker ended.
    End(WorkerEnd),
    /// The daemon's status.
    Status(DaemonStatus),
    /// One channel.
    Chan(ChanInfo),
    /// Several channels.
    Chans(Vec<ChanInfo>),
    /// The nodes of the mesh.
    Nodes(Vec<NodeInfo>),
    /// The answer to a channel claim.
    Claim(Claim),
    /// The cluster keys a daemon holds.
    Keys(KeyStatus),
}

/// The steps of a key rotation, each run on every node before the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStep {
    /// Accept the new key as well (it is added last: the sending key does not change).
    Add,
    /// Send with the new key (it must be held already); the old ones are still accepted.
    Use,
    /// Hold only the new key (it must be the sending key): the old ones are refused from now
    /// on and connections made with them are closed.
    Retire,
}

/// The cluster keys a daemon holds, by fingerprint (never the keys themselves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyStatus {
    /// The node.
    pub node: String,
    /// Fingerprints, the sending key first; empty when the daemon runs without a key.
    pub fingerprints: Vec<String>,
    /// The key file the daemon reads and writes, if any.
    pub file: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names_each_request_as_the_wire_does() {
        let name = || "x".to_string();
        let requests = vec![
            Request::Spawn(SpawnSpec::default()),
            Request::List { all: false },
            Request::Inspect { name: name() },
            Request::Logs(LogsRequest::default()),
            Request::Stop {
                names: vec![],
                signal: None,
                timeout_ms: None,
            },
            Request::Restart { name: name() },
            Request::Signal {
                name: name(),
                signal: name(),
                group: false,
            },
            Request::Wait { name: name() },
            Request::Remove {
                name: name(),
                force: false,
            },
            Request::Status,
            Request::ChanCreate {
                name: name(),
                capacity: 1,
                exist_ok: false,
                replicas: None,
                replica_labels: vec![],
                storage: None,
            },
            Request::ChanList,
            Request::ChanStat { name: name() },
            Request::ChanClose { name: name() },
            Request::ChanRemove { name: name() },
            Request::ChanSend {
                name: name(),
                sender: 1,
                reserve_from: None,
                direct: false,
            },
            Request::ChanRecv {
                name: name(),
                receiver: None,
                held: vec![],
                acked: vec![],
                direct: false,
            },
            Request::On {
                node: name(),
                request: Box::new(Request::Ping),
            },
            Request::Place(Placement::default()),
            Request::ClusterList { all: true },
            Request::Nodes,
            Request::Join {
                addrs: vec![],
                timeout_ms: None,
            },
            Request::Events,
            Request::WorkerEvents,
            Request::ChanClaim {
                name: name(),
                node: name(),
            },
            Request::ChanRelease {
                name: name(),
                node: name(),
            },
            Request::Ping,
            Request::KeyList,
            Request::KeyRotate {
                step: KeyStep::Add,
                key: name(),
            },
            Request::MeshSync { nodes: vec![] },
            Request::RaftLink,
            Request::ReplicaStart {
                name: name(),
                capacity: 1,
                id: 1,
                members: vec![],
                storage: name(),
                found: false,
                created_at_ms: 0,
                labels: vec![],
            },
            Request::ReplicaDrop {
                name: name(),
                id: 1,
                removed: false,
            },
        ];
        for request in requests {
            let json = serde_json::to_value(&request).expect("serialize");
            assert_eq!(json["op"], request.op(), "{json}");
        }
    }

    #[test]
    fn request_json_shape_is_stable() {
        let msg = ClientMessage::Request {
            id: 3,
            request: Request::Wait { name: "w".into() },
        };
        let json = serde_json::to_string(&msg).expect("serialize");
        assert_eq!(
            json,
            r#"{"type":"request","id":3,"request":{"op":"wait","args":{"name":"w"}}}"#
        );
        assert_eq!(
            serde_json::from_str::<ClientMessage>(&json).expect("parse"),
            msg
        );
        let status: ClientMessage =
            serde_json::from_str(r#"{"type":"request","id":1,"request":{"op":"status"}}"#)
                .expect("unit op without args");
        assert!(matches!(
            status,
            ClientMessage::Request {
                request: Request::Status,
                ..
            }
        ));
    }

    #[test]
    fn a_join_without_a_timeout_keeps_the_shape_older_daemons_read() {
        let join = Request::Join {
            addrs: vec!["h1:7711".into()],
            timeout_ms: None,
        };
        let json = r#"{"op":"join","args":{"addrs":["h1:7711"]}}"#;
        assert_eq!(serde_json::to_string(&join).expect("serialize"), json);
        assert_eq!(serde_json::from_str::<Request>(json).expect("parse"), join);
        let timed: Request =
            serde_json::from_str(r#"{"op":"join","args":{"addrs":["h1"],"timeout_ms":1500}}"#)
                .expect("parse with a timeout");
        assert!(matches!(
            timed,
            Request::Join {
                timeout_ms: Some(1500),
                ..
            }
        ));
    }

    #[test]
    fn worker_stdin_leaves_out_what_is_not_set() {
        let plain = Request::WorkerStdin {
            name: "w".into(),
            node: None,
            keep_open: false,
        };
        let json = r#"{"op":"worker_stdin","args":{"name":"w"}}"#;
        assert_eq!(serde_json::to_string(&plain).expect("serialize"), json);
        assert_eq!(serde_json::from_str::<Request>(json).expect("parse"), plain);
        let full: Request = serde_json::from_str(
            r#"{"op":"worker_stdin","args":{"name":"w","node":"h2","keep_open":true}}"#,
        )
        .expect("parse");
        assert!(matches!(
            full,
            Request::WorkerStdin { node: Some(ref n), keep_open: true, .. } if n == "h2"
        ));
    }

    #[test]
    fn a_spec_without_stdin_keeps_the_shape_older_daemons_read() {
        let spec = SpawnSpec {
            command: "cat".into(),
            ..SpawnSpec::default()
        };
        let json = serde_json::to_string(&spec).expect("serialize");
        assert!(!json.contains("stdin"), "{json}");
        let piped = SpawnSpec {
            stdin: true,
            ..spec
        };
        let json = serde_json::to_string(&piped).expect("serialize");
        assert!(json.contains(r#""stdin":true"#), "{json}");
        assert_eq!(
            serde_json::from_str::<SpawnSpec>(&json).expect("parse"),
            piped
        );
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        for bad in [
            r#"{"type":"request","id":1,"request":{"op":"launch_missiles"}}"#,
            r#"{"type":"request","id":1,"request":{"op":"wait","args":{"nam":"w"}}}"#,
            r#"{"type":"request","id":"one","request":{"op":"status"}}"#,
            r#"{"type":"hello"}"#,
            r#"[1,2,3]"#,
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
    }
}
