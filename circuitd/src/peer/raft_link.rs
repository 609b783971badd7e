//! The Raft messages of replicated channels between daemons: one long-lived stream per peer
//! link (`raft_link`) carries every call of every channel's group to that node, each call a
//! data frame whose seq numbers it, each answer a data frame back with the same seq. Calls of
//! different channels run at once on the callee; nothing here knows Raft (bodies are opaque).
//!
//! A call's frame payload is `[u16 length of the channel name][name][u64 when the channel
//! was made][u64 Raft id of the replica called][body]`; an answer's is `[0][body]`, `[1][why it failed, UTF-8]`, or `[2]`: the
//! channel was removed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use circuit_sdk::proto::{Frame, Request, ServerMessage};
use circuit_sdk::{Client, StreamHandler};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::relay::RelayInbox;
use super::Peers;
use crate::broker::replica::{CallError, GroupId, Transport};
use crate::broker::Broker;
use crate::stream::{StreamMsg, StreamOut};

/// Calls a link may have queued from its connection before the reader waits.
const INBOX: usize = 1024;

/// The caller's side: a link per node, opened on first use and again after it broke.
#[derive(Clone)]
pub(crate) struct RaftLinks {
    peers: Peers,
    links: Arc<Mutex<HashMap<String, Arc<Link>>>>,
}

/// One open `raft_link` stream to a node and its calls awaiting an answer.
struct Link {
    client: Client,
    stream: u64,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, CallError>>>>,
    broken: AtomicBool,
}

impl Link {
    fn is_usable(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.client.is_closed()
    }

    /// Every call still waiting fails with `why`; the link is not used again.
    fn break_with(&self, why: &str) {
        self.broken.store(true, Ordering::Relaxed);
        let waiting = std::mem::take(&mut *self.waiting.lock().expect("raft link calls"));
        for (_, tx) in waiting {
            let _ = tx.send(Err(CallError::Failed(why.to_string())));
        }
    }
}

/// Routes the answers read off a link to their calls.
struct Answers(Mutex<Option<Arc<Link>>>);

impl Answers {
    fn link(&self) -> Option<Arc<Link>> {
        self.0.lock().expect("raft link").clone()
    }
}

impl StreamHandler for Answers {
    fn on_message(&self, msg: ServerMessage) {
        if let Some(link) = self.link() {
            let why = match msg {
                ServerMessage::Error { message, .. } => message,
                _ => "the raft link ended".to_string(),
            };
            link.break_with(&why);
        }
    }

    fn on_frames(&self, frames: Vec<Frame>) {
        let Some(link) = self.link() else { return };
        let mut waiting = link.waiting.lock().expect("raft link calls");
        for frame in frames {
            if let Frame::Data { seq, payload, .. } = frame {
                if let Some(tx) = waiting.remove(&seq) {
                    let _ = tx.send(decode_answer(payload));
                }
            }
        }
    }

    fn on_lost(&self, error: circuit_sdk::Error) {
        if let Some(link) = self.link() {
            link.break_with(&error.to_string());
        }
    }
}

impl RaftLinks {
    pub fn new(peers: Peers) -> Self {
        Self {
            peers,
            links: Arc::default(),
        }
    }

    async fn link(&self, node: &str) -> Result<Arc<Link>, String> {
        if let Some(link) = self.links.lock().expect("raft links").get(node) {
            if link.is_usable() {
                return Ok(link.clone());
            }
        }
        let client = self.peers.client(node).await.map_err(|e| e.to_string())?;
        let answers = Arc::new(Answers(Mutex::new(None)));
        let stream = client
            .open_stream(Request::RaftLink, answers.clone())
            .map_err(|e| e.to_string())?;
        let link = Arc::new(Link {
            client,
            stream,
            next: AtomicU64::new(1),
            waiting: Mutex::default(),
            broken: AtomicBool::new(false),
        });
        *answers.0.lock().expect("raft link") = Some(link.clone());
        let mut links = self.links.lock().expect("raft links");
        // Another call may have opened one meanwhile: keep the first, end ours.
        if let Some(other) = links.get(node) {
            if other.is_usable() {
                link.client.close_stream(link.stream);
                return Ok(other.clone());
            }
        }
        links.insert(node.to_string(), link.clone());
        Ok(link)
    }
}

impl Transport for RaftLinks {
    fn call(
        &self,
        node: String,
        group: GroupId,
        to: u64,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, CallError>> {
        let links = self.clone();
        async move {
            let link = links.link(&node).await.map_err(CallError::Failed)?;
            let seq = link.next.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            link.waiting
                .lock()
                .expect("raft link calls")
                .insert(seq, tx);
            let payload = encode_call(&group, to, &body);
            let sent = link.client.send_frame(Frame::Data {
                id: link.stream,
                seq,
                payload,
            });
            if !sent {
                link.break_with("the link to the node is closed");
            }
            // The caller (Raft's network) bounds how long it waits.
            let answer = rx
                .await
                .unwrap_or_else(|_| Err(CallError::Failed("the raft link ended".into())));
            if answer.is_err() {
                link.waiting.lock().expect("raft link calls").remove(&seq);
            }
            answer
        }
        .boxed()
    }
}

fn encode_call(group: &GroupId, to: u64, body: &[u8]) -> Bytes {
    let name = group.name.as_bytes();
    let mut out = BytesMut::with_capacity(2 + name.len() + 16 + body.len());
    out.put_u16(u16::try_from(name.len()).unwrap_or(u16::MAX));
    out.put_slice(name);
    out.put_u64(group.born_ms);
    out.put_u64(to);
    out.put_slice(body);
    out.freeze()
}

/// A call's group, the replica called, and the RPC.
fn decode_call(mut payload: Bytes) -> Result<(GroupId, u64, Bytes), String> {
    if payload.len() < 2 {
        return Err("raft call too short".into());
    }
    let n = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
    if payload.len() < 2 + n + 16 {
        return Err("raft call shorter than its channel".into());
    }
    let rest = payload.split_off(2 + n + 16);
    let name = std::str::from_utf8(&payload[2..2 + n])
        .map_err(|_| "raft call's channel name is not UTF-8".to_string())?
        .to_string();
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&payload[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let (born_ms, to) = (word(2 + n), word(2 + n + 8));
    Ok((GroupId { name, born_ms }, to, rest))
}

fn encode_answer(answer: Result<Bytes, CallError>) -> Bytes {
    let (tag, body) = match answer {
        Ok(body) => (0u8, body),
        Err(CallError::Failed(why)) => (1u8, Bytes::from(why)),
        Err(CallError::Removed) => (2u8, Bytes::new()),
    };
    let mut out = BytesMut::with_capacity(1 + body.len());
    out.put_u8(tag);
    out.put_slice(&body);
    out.freeze()
}

fn decode_answer(payload: Bytes) -> Result<Bytes, CallError> {
    match payload.first() {
        Some(0) => Ok(payload.slice(1..)),
        Some(1) => Err(CallError::Failed(
            String::from_utf8_lossy(&payload[1..]).into_owned(),
        )),
        Some(2) => Err(CallError::Removed),
        _ => Err(CallError::Failed("bad raft answer".into())),
    }
}

/// The callee's side: serves the calls read off one `raft_link` stream (the connection's
/// first message opens it), each in a task of its own, answering on the stream.
pub(crate) fn serve(broker: Broker, tracker: &tokio_util::task::TaskTracker) -> RelayInbox {
    let (tx, rx) = mpsc::channel(INBOX);
    tracker.spawn(run(broker, rx, tracker.clone()));
    RelayInbox::new(tx)
}

async fn run(
    broker: Broker,
    mut rx: mpsc::Receiver<StreamMsg>,
    tracker: tokio_util::task::TaskTracker,
) {
    let out: StreamOut = match rx.recv().await {
        Some(StreamMsg::OpenSend { out, .. }) => out,
        _ => return,
    };
    while let Some(msg) = rx.recv().await {
        match msg {
            StreamMsg::Values { values, .. } => {
                for (seq, payload) in values {
                    let (broker, out) = (broker.clone(), out.clone());
                    tracker.spawn(async move {
                        let answer = match decode_call(payload) {
                            Ok((group, to, body)) => broker.serve_raft(&group, to, body).await,
                            Err(why) => Err(CallError::Failed(why)),
                        };
                        out.frames(vec![out.data(seq, encode_answer(answer))]);
                    });
                }
            }
            StreamMsg::Gone { .. } => {
                out.end();
                return;
            }
            StreamMsg::Signal { .. } | StreamMsg::OpenSend { .. } | StreamMsg::OpenRecv { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_answers_round_trip_and_bad_ones_are_refused() {
        let group = GroupId {
            name: "q".into(),
            born_ms: 1_700_000_000_123,
        };
        let call = encode_call(&group, 7, b"body");
        assert_eq!(
            decode_call(call).expect("decode"),
            (group, 7, Bytes::from_static(b"body"))
        );
        assert!(decode_call(Bytes::from_static(&[0, 9, b'x'])).is_err());
        assert!(decode_call(Bytes::from_static(&[0, 1, b'q', 0, 0])).is_err());
        assert!(decode_call(Bytes::from_static(&[0])).is_err());
        assert_eq!(
            decode_answer(encode_answer(Ok(Bytes::from_static(b"a")))),
            Ok(Bytes::from_static(b"a"))
        );
        assert_eq!(
            decode_answer(encode_answer(Err(CallError::Failed("no".into())))),
            Err(CallError::Failed("no".to_string()))
        );
        assert_eq!(
            decode_answer(encode_answer(Err(CallError::Removed))),
            Err(CallError::Removed)
        );
        assert!(decode_answer(Bytes::new()).is_err());
    }
}
