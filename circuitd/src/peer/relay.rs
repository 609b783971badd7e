//! A stream served by another node — a channel stream whose owner is another node, or the stdin
//! of a worker that runs on another node: the relay serves the stream contract
//! ([`crate::stream`]) as a channel actor does, by passing the stream on over the peer link to
//! that node, renaming stream ids both ways. Sequence numbers and sender ids pass through
//! untouched, so the owner's de-duplication and acknowledgements work end to end; flow control
//! stays per stream (credit and send windows, a stdin stream's window), so the link itself
//! never blocks.

use std::sync::Arc;

use circuit_sdk::proto::{ErrorCode, Frame, Request, ServerMessage};
use circuit_sdk::{Client, StreamHandler};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{PeerError, Peers};
use crate::stream::{StreamMsg, StreamOut};

/// Messages a relay may have queued from its connection.
const INBOX: usize = 1024;

/// Where a connection sends the messages of a stream a relay serves.
#[derive(Debug, Clone)]
pub(crate) struct RelayInbox(mpsc::Sender<StreamMsg>);

impl RelayInbox {
    /// Where a stream served by another task of this module's kind (`raft_link`) is sent.
    pub(super) fn new(tx: mpsc::Sender<StreamMsg>) -> Self {
        Self(tx)
    }

    /// Hands a stream's message to the relay, waiting while its inbox is full; false once the
    /// relay has ended.
    pub async fn send(&self, msg: StreamMsg) -> bool {
        self.0.send(msg).await.is_ok()
    }
}

/// Starts a relay for a stream on channel `chan`, which this node does not own; returns where
/// the connection sends the stream's messages, the first of which opens it. The relay finds
/// the owner itself, so the connection never waits on the mesh.
/// With `node`, the stream goes there (the leader of a replicated channel, as this node knows).
pub(crate) fn start(
    peers: Peers,
    chan: String,
    node: Option<String>,
    tracker: &tokio_util::task::TaskTracker,
) -> RelayInbox {
    let (tx, rx) = mpsc::channel(INBOX);
    tracker.spawn(run(peers, chan, node, rx));
    RelayInbox(tx)
}

async fn run(peers: Peers, chan: String, node: Option<String>, mut rx: mpsc::Receiver<StreamMsg>) {
    // The connection's first message opens the stream and says where its output goes; the
    // owner is asked for the same stream.
    let (request, out) = match rx.recv().await {
        Some(StreamMsg::OpenSend {
            sender,
            reserve_from,
            out,
            ..
        }) => (
            Request::ChanSend {
                name: chan.clone(),
                sender,
                reserve_from,
                direct: true,
            },
            out,
        ),
        Some(StreamMsg::OpenRecv {
            out,
            receiver,
            held,
            acked,
            ..
        }) => (
            Request::ChanRecv {
                name: chan.clone(),
                receiver,
                held,
                acked,
                direct: true,
            },
            out,
        ),
        _ => return,
    };
    let back = Back {
        out,
        node: String::new(),
        role: format!("owner of channel \"{chan}\""),
        lost: ErrorCode::OwnerLost,
    };
    let mut owner = match node {
        Some(node) => Ok(node),
        None => peers.owner_of(&chan).await,
    };
    // A replicated channel's leader may have just died: the replicas name the new one, tried
    // once each, before the stream fails with `unavailable` (its handle tries again).
    for _ in 0..3 {
        // The node that failed, and the error a channel one node owns ends with.
        let (node, why) = match owner {
            Ok(node) => match connect(&peers, &node, request.clone(), &back).await {
                Ok((client, remote, back)) => {
                    let lost = peers.lost_token(&node);
                    forward(&client, remote, &mut rx, &lost, &back).await;
                    return;
                }
                Err(why) => {
                    let why = format!("channel \"{chan}\" is owned by node {node}: {why}");
                    (node, why)
                }
            },
            Err(e @ PeerError::OwnerDown { .. }) => {
                let PeerError::OwnerDown { node, .. } = &e else {
                    unreachable!("matched above")
                };
                (node.clone(), e.to_string())
            }
            Err(e) => {
                back.fail(e.code(), e.to_string());
                drain_until_gone(&mut rx).await;
                return;
            }
        };
        owner = match peers.replicated_leader(&chan, &node).await {
            Some(next) => next,
            None => {
                back.fail(ErrorCode::OwnerLost, why);
                drain_until_gone(&mut rx).await;
                return;
            }
        };
    }
    back.fail(
        ErrorCode::Unavailable,
        format!("replicated channel \"{chan}\" has no reachable leader now"),
    );
    drain_until_gone(&mut rx).await;
}

/// Starts a relay for a stream on worker `worker`'s stdin, on `node` or, without one, on the
/// one live node that has the worker; returns where the connection sends the stream's
/// messages, the first of which opens it. The relay finds the node itself, so the connection
/// never waits on the mesh.
pub(crate) fn start_stdin(
    peers: Peers,
    worker: String,
    node: Option<String>,
    keep_open: bool,
    tracker: &tokio_util::task::TaskTracker,
) -> RelayInbox {
    let (tx, rx) = mpsc::channel(INBOX);
    tracker.spawn(run_stdin(peers, worker, node, keep_open, rx));
    RelayInbox(tx)
}

async fn run_stdin(
    peers: Peers,
    worker: String,
    node: Option<String>,
    keep_open: bool,
    mut rx: mpsc::Receiver<StreamMsg>,
) {
    let Some(StreamMsg::OpenSend { out, .. }) = rx.recv().await else {
        return;
    };
    let back = Back {
        out,
        node: String::new(),
        role: format!("where worker \"{worker}\" runs"),
        lost: ErrorCode::Unreachable,
    };
    let node = match node {
        Some(node) => node,
        None => match peers.worker_node(&worker).await {
            Ok(node) => node,
            Err(e) => {
                back.fail(e.code(), e.to_string());
                drain_until_gone(&mut rx).await;
                return;
            }
        },
    };
    // A node that is not in the mesh, or not up, is refused as such (not as a broken link).
    if let Err(e) = peers.client(&node).await {
        back.fail(e.code(), e.to_string());
        drain_until_gone(&mut rx).await;
        return;
    }
    // Named, the node serves the stream itself: it is never relayed twice.
    let request = Request::WorkerStdin {
        name: worker.clone(),
        node: Some(node.clone()),
        keep_open,
    };
    match connect(&peers, &node, request, &back).await {
        Ok((client, remote, back)) => {
            let lost = peers.lost_token(&node);
            forward(&client, remote, &mut rx, &lost, &back).await;
        }
        Err(why) => {
            back.fail(
                ErrorCode::Unreachable,
                format!("cannot reach node {node} (where worker \"{worker}\" runs): {why}"),
            );
            drain_until_gone(&mut rx).await;
        }
    }
}

/// Opens the stream on `node`: the client, the stream's id there, and where its traffic goes.
async fn connect(
    peers: &Peers,
    node: &str,
    request: Request,
    back: &Back,
) -> Result<(Client, u64, Arc<Back>), String> {
    let back = Arc::new(Back {
        out: back.out.clone(),
        node: node.to_string(),
        role: back.role.clone(),
        lost: back.lost,
    });
    let client = peers.client(node).await.map_err(|e| e.to_string())?;
    let id = client
        .open_stream(request, back.clone())
        .map_err(|e| e.to_string())?;
    Ok((client, id, back))
}

/// Passes the connection's frames on until the stream ends on either side.
async fn forward(
    client: &Client,
    remote: u64,
    rx: &mut mpsc::Receiver<StreamMsg>,
    lost: &CancellationToken,
    back: &Back,
) {
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            () = lost.cancelled() => {
                client.close_stream(remote);
                back.fail(back.lost, format!("node {} ({}) is gone", back.node, back.role));
                drain_until_gone(rx).await;
                return;
            }
        };
        match msg {
            Some(StreamMsg::Values { values, .. }) => {
                for (seq, payload) in values {
                    client.send_frame(Frame::Data {
                        id: remote,
                        seq,
                        payload,
                    });
                }
            }
            Some(StreamMsg::Signal { op, a, b, .. }) => {
                client.send_frame(Frame::Signal {
                    id: remote,
                    op,
                    a,
                    b,
                });
            }
            // The worker's side ended: end the owner's side, which gives back what the stream
            // held. The terminal reply, if the worker asked for one, comes back from the owner.
            Some(StreamMsg::Gone {
                cancelled: true, ..
            }) => {
                client.cancel_stream(remote);
                return;
            }
            Some(StreamMsg::Gone { .. }) | None => {
                client.close_stream(remote);
                return;
            }
            // Opened already: the connection sends one open per stream.
            Some(StreamMsg::OpenSend { .. } | StreamMsg::OpenRecv { .. }) => {}
        }
    }
}

/// After failing the stream, wait for the connection to let go of it.
async fn drain_until_gone(rx: &mut mpsc::Receiver<StreamMsg>) {
    while let Some(msg) = rx.recv().await {
        if matches!(msg, StreamMsg::Gone { .. }) {
            return;
        }
    }
}

/// The serving node's side of the stream, passed back to the client's connection.
struct Back {
    out: StreamOut,
    /// The node that serves the stream.
    node: String,
    /// What that node is to the stream, for errors: `owner of channel "q"`.
    role: String,
    /// The code the stream ends with when that node is lost.
    lost: ErrorCode,
}

impl Back {
    /// Ends the worker's stream with an error.
    fn fail(&self, code: ErrorCode, message: String) {
        self.out.fail(code, message);
    }
}

impl StreamHandler for Back {
    fn on_message(&self, msg: ServerMessage) {
        self.out.pass(msg);
    }

    fn on_frames(&self, frames: Vec<Frame>) {
        self.out.pass_frames(frames);
    }

    fn on_lost(&self, error: circuit_sdk::Error) {
        self.fail(
            self.lost,
            format!(
                "lost the link to node {} ({}): {error}",
                self.node, self.role
            ),
        );
    }
}
