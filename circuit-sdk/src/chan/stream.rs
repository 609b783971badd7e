//! The stream shell both channel halves share: opening a half's stream on a connection and
//! waiting for the owner's first answer; handing the stream's traffic to the half; reopening
//! it on a new connection when the old one is lost (the same daemon: the half resumes; a
//! restarted one, or none within `reconnect_for`: `OwnerLost`); and carrying out the effects
//! the half's state machine records. `sender.rs` and `receiver.rs` plug their half in through
//! [`Half`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::stream_state::{restarted, Effect};
use super::ChanError;
use crate::client::{Client, StreamHandler};
use crate::proto::{ChanOpened, Frame, Item, Request, ServerMessage};

/// A channel half as the shell drives it: its identity, and what it does with the events of
/// its stream. Each implementation locks its state machine, feeds it the event and carries
/// out the effects with [`apply`].
pub(crate) trait Half: Send + Sync + Sized + 'static {
    /// "send" or "receive", for errors.
    const KIND: &'static str;

    /// The channel's name.
    fn chan(&self) -> &str;

    /// How long to keep trying to reconnect.
    fn reconnect_for(&self) -> Duration;

    /// The request that opens this half's stream.
    fn request(&self) -> Request;

    /// Whether the channel is replicated: its stream then follows the leader, and an end
    /// that says so (`unavailable`, a lost owner or link) reopens it instead of failing.
    fn replicated(&self) -> bool;

    /// Frames from the owner on stream generation `gen`.
    fn on_frames(self: &Arc<Self>, gen: u64, frames: Vec<Frame>);

    /// The owner ended the stream: true if this half had asked for it (and was waiting).
    fn closed_by_owner(&self) -> bool {
        false
    }

    /// The connection of generation `gen` is gone: the client to reconnect from, if the half
    /// wants its stream back.
    fn lost(self: &Arc<Self>, gen: u64) -> Option<Client>;

    /// Generation `gen` was reopened as stream `id` on `client`: true if the half takes it.
    fn resumed(self: &Arc<Self>, gen: u64, client: Client, id: u64) -> bool;

    /// The half fails for good.
    fn fail(self: &Arc<Self>, gen: u64, error: ChanError);
}

/// Routes one stream generation's traffic to its half.
struct Handler<H> {
    half: Arc<H>,
    gen: u64,
    opening: Opening,
}

impl<H: Half> StreamHandler for Handler<H> {
    fn on_message(&self, msg: ServerMessage) {
        if self.half.closed_by_owner() {
            return;
        }
        if let Some(error) = self.opening.message(msg, H::KIND) {
            if self.half.replicated() && follows_leader(&error) {
                // The leader changed (or its link broke): open the stream on the new one.
                lost(&self.half, self.gen);
            } else {
                self.half.fail(self.gen, error);
            }
        }
    }

    fn on_frames(&self, frames: Vec<Frame>) {
        self.half.on_frames(self.gen, frames);
    }

    fn on_lost(&self, error: crate::Error) {
        if !self.opening.lost(error) {
            lost(&self.half, self.gen);
        }
    }
}

/// The opening of a stream: answered by the owner's first item, or by an error.
struct Opening(Mutex<Option<oneshot::Sender<Result<ChanOpened, ChanError>>>>);

impl Opening {
    /// Settles the opening with a control message for the stream. Returns the error that ends
    /// a stream already open, if the message is one.
    fn message(&self, msg: ServerMessage, kind: &str) -> Option<ChanError> {
        let opening = self.0.lock().expect("opening lock").take();
        let result = match msg {
            ServerMessage::Item {
                item: Item::ChanOpened(opened),
                ..
            } => Ok(opened),
            ServerMessage::Error { code, message, .. } => {
                Err(ChanError::from_remote(code, message))
            }
            other => Err(ChanError::Protocol(format!(
                "unexpected message on a {kind} stream: {other:?}"
            ))),
        };
        match (opening, result) {
            (Some(tx), result) => {
                let _ = tx.send(result);
                None
            }
            (None, Ok(_)) => None,
            (None, Err(e)) => Some(e),
        }
    }

    /// The connection was lost; true if that ended the opening (not a stream already open).
    fn lost(&self, error: crate::Error) -> bool {
        match self.0.lock().expect("opening lock").take() {
            Some(tx) => {
                let _ = tx.send(Err(error.into()));
                true
            }
            None => false,
        }
    }
}

/// Opens `half`'s stream on `client` as generation `gen` and waits for the owner's first
/// item: the stream's id and what the owner says of the channel.
pub(crate) async fn open<H: Half>(
    half: &Arc<H>,
    client: &Client,
    gen: u64,
) -> Result<(u64, ChanOpened), ChanError> {
    let (tx, opened) = oneshot::channel();
    let handler = Arc::new(Handler {
        half: half.clone(),
        gen,
        opening: Opening(Mutex::new(Some(tx))),
    });
    let id = client.open_stream(half.request(), handler)?;
    match opened.await {
        Ok(Ok(info)) => Ok((id, info)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ChanError::OwnerLost("connection to circuitd lost".into())),
    }
}

/// The first open of `half`'s stream. A replicated channel that is between leaders answers
/// `unavailable`: that is a pause, not an error, so the open is retried for up to `within`.
pub(crate) async fn open_first<H: Half>(
    half: &Arc<H>,
    client: &Client,
    within: Duration,
) -> Result<(u64, ChanOpened), ChanError> {
    let deadline = tokio::time::Instant::now() + within;
    let mut delay = Duration::from_millis(20);
    loop {
        match open(half, client, 1).await {
            Err(ChanError::Unavailable(why)) => {
                if tokio::time::Instant::now() + delay > deadline {
                    return Err(ChanError::Unavailable(why));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Carries out the effects a half recorded, in order, on the client of its stream (none once
/// the half let it go); a pull request goes to `pull`, which knows the half.
pub(crate) fn apply(
    client: Option<&Client>,
    effects: &mut Vec<Effect>,
    mut pull: impl FnMut(&Client, u64),
) {
    let Some(client) = client else {
        effects.clear();
        return;
    };
    for effect in effects.drain(..) {
        match effect {
            Effect::Write(frame) => {
                client.send_frame(frame);
            }
            Effect::Pull(gen) => pull(client, gen),
            Effect::End(id) => client.close_stream(id),
            Effect::Cancel(id) => client.cancel_stream(id),
        }
    }
}

/// Whether a replicated channel's stream that ended with `error` is to be opened again: its
/// leader changed, is being elected, or its link broke.
fn follows_leader(error: &ChanError) -> bool {
    use crate::proto::ErrorCode;
    match error {
        ChanError::Unavailable(_) | ChanError::OwnerLost(_) => true,
        ChanError::Daemon { code, .. } => {
            matches!(code, ErrorCode::Unreachable | ErrorCode::ShuttingDown)
        }
        _ => false,
    }
}

/// The connection of generation `gen` is gone: reopen the stream in a task of its own, if the
/// half wants it.
fn lost<H: Half>(half: &Arc<H>, gen: u64) {
    if let Some(old) = half.lost(gen) {
        tokio::spawn(reconnect(half.clone(), old, gen));
    }
}

/// Reopens `half`'s stream on a new connection to where `old` was connected; the half resumes
/// on it, or fails.
async fn reconnect<H: Half>(half: Arc<H>, old: Client, gen: u64) {
    let open_again = |client: Client| {
        let half = half.clone();
        async move { open(&half, &client, gen + 1).await }
    };
    let replicated = half.replicated();
    match reopen(
        &old,
        half.chan(),
        replicated,
        half.reconnect_for(),
        open_again,
    )
    .await
    {
        Ok((client, id)) => {
            if half.resumed(gen, client.clone(), id) {
                tracing::debug!(chan = %half.chan(), kind = H::KIND, "stream reconnected");
            } else {
                client.close_stream(id);
            }
        }
        Err(e) => half.fail(gen, e),
    }
}

/// Connects again the way `old` connected (or, while `old`'s connection is still up, reuses
/// it) and reopens a stream with `open`, retrying with backoff for up to `within`. A channel
/// one node owns fails with `OwnerLost` when the daemon that answers is a restarted one (the
/// channel lost what it held) or none answers in time; a replicated channel survives its
/// daemons, so it only fails, with `Unavailable`, when no leader serves it in time. Both fail
/// with the owner's error when the channel is gone.
async fn reopen<F, Fut>(
    old: &Client,
    chan: &str,
    replicated: bool,
    within: Duration,
    mut open: F,
) -> Result<(Client, u64), ChanError>
where
    F: FnMut(Client) -> Fut,
    Fut: Future<Output = Result<(u64, ChanOpened), ChanError>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut delay = Duration::from_millis(20);
    loop {
        let client = if replicated && !old.is_closed() {
            Ok(old.clone())
        } else {
            old.reconnect().await
        };
        let why = match client {
            Ok(client) => {
                if let Some(lost) = restarted(chan, old.target(), old.instance(), client.instance())
                {
                    if !replicated {
                        return Err(lost);
                    }
                }
                match open(client.clone()).await {
                    Ok((stream, _)) => return Ok((client, stream)),
                    Err(e @ ChanError::InvalidName(_)) => return Err(e),
                    // While a replicated channel changes leader, the node asked may not know it
                    // yet; once the time is up, gone is gone.
                    Err(e @ ChanError::NotFound(_)) if !replicated => return Err(e),
                    Err(ChanError::NotFound(why)) => Err(ChanError::NotFound(why)),
                    Err(e) => Ok(e.to_string()),
                }
            }
            Err(e) => Ok(e.to_string()),
        };
        if tokio::time::Instant::now() + delay > deadline {
            return Err(match why {
                Err(not_found) => not_found,
                Ok(why) if replicated => ChanError::Unavailable(why),
                Ok(why) => ChanError::OwnerLost(why),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}
