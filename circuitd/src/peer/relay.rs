//! A channel stream whose owner is another node: the worker's connection talks to this relay
//! as it would to a local channel actor, and the relay passes the stream on over the peer link
//! to the owner, renaming stream ids both ways. Sequence numbers and sender ids pass through
//! untouched, so the owner's de-duplication and acknowledgements work end to end; flow control
//! stays per stream (credit and send windows), so the link itself never blocks.

use std::sync::Arc;

use circuit_sdk::proto::{ErrorCode, Frame, Request, ServerMessage};
use circuit_sdk::{Client, StreamHandler};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Peers;
use crate::broker::{ChanMsg, Out, StreamKey, StreamOut};

/// Messages a relay may have queued from its connection.
const INBOX: usize = 1024;

/// Starts a relay for `request` (a `chan_send` or `chan_recv` on channel `chan`, which this
/// node does not own); returns where the connection sends the stream's messages, exactly as
/// it would to a channel actor. The relay finds the owner itself, so the connection never
/// waits on the mesh.
pub(crate) fn start(
    peers: Peers,
    chan: String,
    request: Request,
    tracker: &tokio_util::task::TaskTracker,
) -> mpsc::Sender<ChanMsg> {
    let (tx, rx) = mpsc::channel(INBOX);
    tracker.spawn(run(peers, chan, request, rx));
    tx
}

async fn run(peers: Peers, chan: String, request: Request, mut rx: mpsc::Receiver<ChanMsg>) {
    // The connection's first message opens the stream and says where its output goes.
    let (key, out) = match rx.recv().await {
        Some(ChanMsg::OpenSend { stream, out, .. } | ChanMsg::OpenRecv { stream, out }) => {
            (stream, out)
        }
        _ => return,
    };
    let mut back = Back {
        out,
        key,
        node: String::new(),
        chan: chan.clone(),
    };
    let node = match peers.owner_of(&chan).await {
        Ok(node) => node,
        Err((code, why)) => {
            back.fail(code, why);
            drain_until_gone(&mut rx).await;
            return;
        }
    };
    back.node = node.clone();
    let back = Arc::new(back);
    let lost = peers.lost_token(&node);
    let opened = match peers.client(&node).await {
        Ok(client) => client
            .open_stream(request, back.clone())
            .map(|id| (client, id))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (client, remote) = match opened {
        Ok(opened) => opened,
        Err(why) => {
            back.fail(
                ErrorCode::OwnerLost,
                format!("channel \"{chan}\" is owned by node {node}: {why}"),
            );
            drain_until_gone(&mut rx).await;
            return;
        }
    };
    forward(&client, remote, &mut rx, &lost, &back).await;
}

/// Passes the connection's frames on until the stream ends on either side.
async fn forward(
    client: &Client,
    remote: u64,
    rx: &mut mpsc::Receiver<ChanMsg>,
    lost: &CancellationToken,
    back: &Back,
) {
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            () = lost.cancelled() => {
                client.close_stream(remote);
                back.fail(
                    ErrorCode::OwnerLost,
                    format!("node {} (owner of channel \"{}\") is gone", back.node, back.chan),
                );
                drain_until_gone(rx).await;
                return;
            }
        };
        match msg {
            Some(ChanMsg::Values { values, .. }) => {
                for (seq, payload) in values {
                    client.send_frame(Frame::Data {
                        id: remote,
                        seq,
                        payload,
                    });
                }
            }
            Some(ChanMsg::Signal { op, a, .. }) => {
                client.send_frame(Frame::Signal {
                    id: remote,
                    op,
                    a,
                    b: 0,
                });
            }
            // The worker's side ended: end the owner's side, which gives back what the stream
            // held. The terminal reply, if the worker asked for one, comes back from the owner.
            Some(ChanMsg::Gone {
                cancelled: true, ..
            }) => {
                client.cancel_stream(remote);
                return;
            }
            Some(ChanMsg::Gone { .. }) | None => {
                client.close_stream(remote);
                return;
            }
            Some(_) => {}
        }
    }
}

/// After failing the stream, wait for the connection to let go of it.
async fn drain_until_gone(rx: &mut mpsc::Receiver<ChanMsg>) {
    while let Some(msg) = rx.recv().await {
        if matches!(msg, ChanMsg::Gone { .. }) {
            return;
        }
    }
}

/// The owner's side of the stream, passed back to the worker's connection.
struct Back {
    out: StreamOut,
    key: StreamKey,
    node: String,
    chan: String,
}

impl Back {
    /// Ends the worker's stream with an error.
    fn fail(&self, code: ErrorCode, message: String) {
        let _ = self.out.tx.send(Out::Msg(ServerMessage::Error {
            id: Some(self.out.id),
            code,
            message,
        }));
        let _ = self.out.done.send((self.out.id, self.key));
    }
}

impl StreamHandler for Back {
    fn on_message(&self, msg: ServerMessage) {
        let id = self.out.id;
        let (msg, terminal) = match msg {
            ServerMessage::Item { item, .. } => (ServerMessage::Item { id, item }, false),
            ServerMessage::Ok { reply, .. } => (ServerMessage::Ok { id, reply }, true),
            ServerMessage::Error { code, message, .. } => (
                ServerMessage::Error {
                    id: Some(id),
                    code,
                    message,
                },
                true,
            ),
            ServerMessage::Hello { .. } => return,
        };
        let _ = self.out.tx.send(Out::Msg(msg));
        if terminal {
            let _ = self.out.done.send((id, self.key));
        }
    }

    fn on_frames(&self, mut frames: Vec<Frame>) {
        for frame in &mut frames {
            match frame {
                Frame::Data { id, .. } | Frame::Signal { id, .. } => *id = self.out.id,
                Frame::Control(_) => {}
            }
        }
        let _ = self.out.tx.send(Out::Frames(frames));
    }

    fn on_lost(&self, error: circuit_sdk::Error) {
        self.fail(
            ErrorCode::OwnerLost,
            format!(
                "lost the link to node {} (owner of channel \"{}\"): {error}",
                self.node, self.chan
            ),
        );
    }
}
