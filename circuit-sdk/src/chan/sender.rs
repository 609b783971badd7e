//! [`Sender`]: the sending half of a channel. Every value carries a sequence number; the daemon
//! confirms acceptance per value, so many sends can be in flight at once (pipelining) while
//! each `send` still completes only when its value is in the channel — or, when the owner
//! has reserved room for it, as soon as it is on its way (it is then accepted whenever it
//! arrives; docs/CHANNELS.md rule 2). After a lost connection
//! the sender reconnects and sends again what was not confirmed; the owner drops duplicates.
//! The rules live in the state machine (`send_state.rs`) and the stream's life in the shell
//! (`stream.rs`); this file is the async API over them.

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

use super::codec::{Codec, Json};
use super::send_state::{Place, SendState, Submit, Waiter};
use super::stream::{self, Half};
use super::stream_state::{Effect, Lost};
use super::{ChanError, SendOptions};
use crate::client::Client;
use crate::connection::Pull;
use crate::proto::{Frame, Request};

/// The sending half of a channel, for values of `T` encoded with `C`. Cloning is cheap; clones
/// share one stream and one window, and keep the order of the values each of them sends.
pub struct Sender<T, C = Json> {
    handle: Arc<SendHandle>,
    codec: Arc<C>,
    _value: PhantomData<fn(T)>,
}

impl<T, C> Clone for Sender<T, C> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            codec: self.codec.clone(),
            _value: PhantomData,
        }
    }
}

impl<T, C> std::fmt::Debug for Sender<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("chan", &self.handle.core.chan)
            .finish_non_exhaustive()
    }
}

/// Completes when a submitted value is accepted (see [`Sender::submit`]).
#[derive(Debug)]
#[must_use = "a ticket does nothing unless awaited; drop it to not wait"]
pub struct Ticket {
    /// The outcome to come; `None`: the value was accepted when it was submitted (room was
    /// reserved for it), so there is nothing to wait for.
    rx: Option<oneshot::Receiver<Result<(), ChanError>>>,
}

impl Future for Ticket {
    type Output = Result<(), ChanError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        Pin::new(rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| Err(ChanError::OwnerLost("the send was abandoned".into())))
        })
    }
}

/// What a ticket's other end is: told the value's outcome by the state machine.
type Done = oneshot::Sender<Result<(), ChanError>>;

impl Waiter for Done {
    fn settle(self, result: Result<(), ChanError>) -> Result<(), Result<(), ChanError>> {
        self.send(result)
    }
}

/// Dropped when the last `Sender` clone is: the stream closes once nothing is pending.
struct SendHandle {
    core: Arc<SendCore>,
}

impl Drop for SendHandle {
    fn drop(&mut self) {
        self.core.with(|slot| slot.state.release());
    }
}

/// What the clones of one `Sender`, its stream's handler and its reconnect task share.
pub(crate) struct SendCore {
    chan: String,
    sender_id: u64,
    /// Told by the owner when the stream opens.
    capacity: AtomicU64,
    /// The channel is replicated (told when the stream opens): its stream follows the leader.
    replicated: std::sync::atomic::AtomicBool,
    reconnect_for: Duration,
    slot: Mutex<Slot>,
    /// Woken whenever pending values are answered, for `flush`.
    settled: Notify,
}

/// The state machine (its submits waiting for window room leave their task's waker), the
/// connection its stream is on, and the frames waiting for the connection's writer.
struct Slot {
    state: SendState<Done, Waker>,
    client: Client,
    /// Frames to write, in order, taken by the writer when it gets to this sender (one pull
    /// for many values: no queueing and waking per value).
    outbox: VecDeque<Frame>,
    /// A pull is queued on the writer.
    pull_queued: bool,
}

impl<T, C: Codec<T>> Sender<T, C> {
    pub(crate) async fn open(
        client: &Client,
        chan: &str,
        codec: C,
        opts: SendOptions,
    ) -> Result<Self, ChanError> {
        let core = Arc::new(SendCore {
            chan: chan.to_string(),
            sender_id: fastrand::u64(1..),
            capacity: AtomicU64::new(0),
            replicated: Default::default(),
            reconnect_for: opts.reconnect_for,
            slot: Mutex::new(Slot {
                state: SendState::new(opts.window, opts.window_bytes, opts.ahead_bytes),
                client: client.clone(),
                outbox: VecDeque::new(),
                pull_queued: false,
            }),
            settled: Notify::new(),
        });
        let (id, opened) = stream::open_first(&core, client, opts.reconnect_for).await?;
        core.capacity.store(opened.capacity, Ordering::Relaxed);
        core.replicated
            .store(opened.replicas > 1, Ordering::Relaxed);
        core.with(|slot| slot.state.opened(id, opened.max_payload));
        Ok(Self {
            handle: Arc::new(SendHandle { core }),
            codec: Arc::new(codec),
            _value: PhantomData,
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.handle.core.chan
    }

    /// The channel's capacity.
    pub fn capacity(&self) -> u64 {
        self.handle.core.capacity.load(Ordering::Relaxed)
    }

    /// Values submitted and not yet accepted (or refused).
    pub fn pending(&self) -> usize {
        self.handle.core.lock().state.pending()
    }

    /// Sends a value and waits until it is in the channel: buffered (capacity > 0) or taken by
    /// a receiver (capacity 0). Waits while the channel is full. When the owner has reserved
    /// room for this sender's next values (a channel with room, one node owning it), the send
    /// completes as soon as the value is on its way: it is accepted whenever it arrives, even
    /// if the channel is closed meanwhile. Until then it lives in this process; see
    /// [`flush`](Self::flush) and `SendOptions::ahead_bytes`.
    ///
    /// Cancel-safe in this sense: if the future is dropped before it completes, the value is
    /// withdrawn unless the owner has already accepted it (or, at capacity 0, handed it to a
    /// receiver); it is never delivered twice.
    pub async fn send(&self, value: T) -> Result<(), ChanError> {
        self.send_and_wait(value, false).await
    }

    /// Sends a value only if that needs no waiting: there is room, or at capacity 0 a receiver
    /// is waiting. Otherwise fails with [`ChanError::Full`] and changes nothing.
    pub async fn try_send(&self, value: T) -> Result<(), ChanError> {
        self.send_and_wait(value, true).await
    }

    /// Submits a value and waits for its outcome; withdraws it if dropped first.
    async fn send_and_wait(&self, value: T, try_send: bool) -> Result<(), ChanError> {
        let payload = self.codec.encode(&value)?;
        let core = &self.handle.core;
        let (seq, rx) = core.submit(payload, try_send).await?;
        let Some(rx) = rx else {
            // Complete on reserved room. A loop of such sends never waits, so it gives way now
            // and then (tokio's budget) for the connection's writer and the rest to run.
            tokio::task::coop::consume_budget().await;
            return Ok(());
        };
        let mut guard = CancelGuard {
            core,
            seq,
            armed: true,
        };
        let result = Ticket { rx: Some(rx) }.await;
        guard.armed = false;
        result
    }

    /// Like [`send`](Self::send), but gives up after `timeout` with [`ChanError::Timeout`], in
    /// which case the value was not sent.
    pub async fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), ChanError> {
        let payload = self.codec.encode(&value)?;
        let core = &self.handle.core;
        let (seq, rx) = core.submit(payload, false).await?;
        let Some(rx) = rx else {
            tokio::task::coop::consume_budget().await;
            return Ok(());
        };
        let mut guard = CancelGuard {
            core,
            seq,
            armed: true,
        };
        let mut ticket = Ticket { rx: Some(rx) };
        let result = tokio::select! {
            result = &mut ticket => result,
            () = tokio::time::sleep(timeout) => {
                // Ask for it back; the owner answers withdrawn (timeout) or accepted.
                core.with(|slot| slot.state.request_cancel(seq));
                ticket.await
            }
        };
        guard.armed = false;
        result
    }

    /// Starts sending a value without waiting for it to be accepted: returns once the value is
    /// on its way (waiting only while the sender's window is full). The [`Ticket`] completes
    /// when the value is accepted; dropping it does not cancel the send. Values submitted by
    /// one sender are accepted in order.
    ///
    /// ```no_run
    /// # async fn demo(tx: circuit_sdk::chan::Sender<u64>) -> Result<(), circuit_sdk::chan::ChanError> {
    /// for i in 0..10_000u64 {
    ///     drop(tx.submit(i).await?); // many sends in flight at once
    /// }
    /// tx.flush().await?; // every value accepted (or the first failure)
    /// # Ok(()) }
    /// ```
    pub async fn submit(&self, value: T) -> Result<Ticket, ChanError> {
        let payload = self.codec.encode(&value)?;
        let (_, rx) = self.handle.core.submit(payload, false).await?;
        Ok(Ticket { rx })
    }

    /// Waits until every value submitted so far is accepted. Returns the first failure of a
    /// value whose ticket was dropped, if any.
    pub async fn flush(&self) -> Result<(), ChanError> {
        self.handle.core.flush().await
    }
}

/// Withdraws a send whose future was dropped before it completed.
struct CancelGuard<'a> {
    core: &'a Arc<SendCore>,
    seq: u64,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.core.with(|slot| slot.state.abandon(self.seq));
        }
    }
}

/// A submit's place in line for window room, given up if the submit is dropped while waiting.
struct InLine<'a> {
    core: &'a Arc<SendCore>,
    place: Place,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if self.place.is_waiting() {
            self.core
                .with(|slot| slot.state.leave_line(&mut self.place));
        }
    }
}

impl SendCore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().expect("send lock")
    }

    /// Runs `f` on the slot, then carries out what the state machine recorded and wakes the
    /// submit first in line for room and the flushes, if it says so. Frames go to the outbox,
    /// which the writer pulls; the stream's end and cancel follow them on the connection's
    /// queue (the pull was queued first).
    fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut Slot) -> R) -> R {
        let mut slot = self.lock();
        let result = f(&mut slot);
        let Slot {
            state,
            client,
            outbox,
            pull_queued,
        } = &mut *slot;
        let gen = state.stream.gen;
        for effect in state.effects.drain(..) {
            match effect {
                Effect::Write(frame) => {
                    outbox.push_back(frame);
                    if !*pull_queued {
                        *pull_queued = true;
                        client.schedule(self.clone(), gen);
                    }
                }
                other => stream::apply(Some(client), &mut vec![other], |_, _| {}),
            }
        }
        let (room, settled) = state.take_wakes();
        drop(slot);
        if let Some(room) = room {
            room.wake();
        }
        if settled {
            self.settled.notify_waiters();
        }
        result
    }

    /// Submits a payload: its seq and, unless it completed on reserved room, the receiving
    /// end of its ticket, once it is on its way.
    async fn submit(
        self: &Arc<Self>,
        payload: Bytes,
        try_send: bool,
    ) -> Result<(u64, Option<oneshot::Receiver<Result<(), ChanError>>>), ChanError> {
        let mut line = InLine {
            core: self,
            place: Place::default(),
        };
        let mut value = Some(payload);
        let mut ticket = None;
        // The common case, room in the window, is ready at the first poll; otherwise the
        // submit waits in line with its waker, which the state machine gives back to be woken
        // when it is first in line and room has come. A ticket is made only for a value that
        // must wait for its answer.
        let (seq, early) = std::future::poll_fn(|cx| {
            let payload = value.take().expect("a submit is not polled after it ends");
            let place = &mut line.place;
            let waiter = || {
                let (done, rx) = oneshot::channel();
                ticket = Some(rx);
                done
            };
            let submit = |slot: &mut Slot| {
                slot.state
                    .submit(payload, try_send, waiter, place, cx.waker())
            };
            match self.with(submit) {
                Submit::Sent { seq, early } => Poll::Ready(Ok((seq, early))),
                Submit::Refused(e) => Poll::Ready(Err(e)),
                Submit::Wait(payload) => {
                    value = Some(payload);
                    Poll::Pending
                }
            }
        })
        .await?;
        Ok((seq, if early { None } else { ticket }))
    }

    async fn flush(&self) -> Result<(), ChanError> {
        let upto = self.lock().state.next_seq();
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if let Some(result) = self.lock().state.flushed(upto) {
                return result;
            }
            settled.await;
        }
    }
}

impl Pull for SendCore {
    fn pull(&self, token: u64, out: &mut VecDeque<Frame>) {
        let mut slot = self.lock();
        if token != slot.state.stream.gen {
            return;
        }
        slot.pull_queued = false;
        out.append(&mut slot.outbox);
    }
}

impl Half for SendCore {
    const KIND: &'static str = "send";

    fn chan(&self) -> &str {
        &self.chan
    }

    fn reconnect_for(&self) -> Duration {
        self.reconnect_for
    }

    fn replicated(&self) -> bool {
        self.replicated.load(Ordering::Relaxed)
    }

    fn request(&self) -> Request {
        Request::ChanSend {
            name: self.chan.clone(),
            sender: self.sender_id,
            // Room may be reserved for the values not sent yet; those sent again after a
            // reconnect wait for their answer as before.
            reserve_from: Some(self.lock().state.next_seq()),
            direct: false,
        }
    }

    fn on_frames(self: &Arc<Self>, gen: u64, frames: Vec<Frame>) {
        self.with(|slot| slot.state.on_frames(gen, frames));
    }

    fn lost(self: &Arc<Self>, gen: u64) -> Option<Client> {
        self.with(|slot| match slot.state.lost(gen) {
            Lost::Reconnect => {
                // What was not written went with the connection; the resend covers it.
                slot.outbox.clear();
                slot.pull_queued = false;
                Some(slot.client.clone())
            }
            Lost::Ignore => None,
        })
    }

    fn resumed(self: &Arc<Self>, gen: u64, client: Client, id: u64) -> bool {
        self.with(|slot| {
            let taken = slot.state.resumed(gen, id);
            if taken {
                // The resend goes out on the new connection.
                slot.client = client;
            }
            taken
        })
    }

    fn fail(self: &Arc<Self>, gen: u64, error: ChanError) {
        self.with(|slot| slot.state.fail(gen, error));
    }
}
