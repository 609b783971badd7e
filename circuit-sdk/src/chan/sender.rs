//! [`Sender`]: the sending half of a channel. Every value carries a sequence number; the daemon
//! confirms acceptance per value, so many sends can be in flight at once (pipelining) while
//! each `send` still completes only when its value is in the channel. After a lost connection
//! the sender reconnects and sends again what was not confirmed; the owner drops duplicates.

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify, Semaphore};

use super::codec::{Codec, Json};
use super::{open_stream, reopen, ChanError, Opening, SendOptions, StreamKind};
use crate::client::{Client, StreamHandler};
use crate::proto::{ChanOpened, Frame, ServerMessage, SignalOp};

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
    rx: oneshot::Receiver<Result<(), ChanError>>,
}

impl Future for Ticket {
    type Output = Result<(), ChanError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| Err(ChanError::OwnerLost("the send was abandoned".into())))
        })
    }
}

/// Dropped when the last `Sender` clone is: the stream closes once nothing is pending.
struct SendHandle {
    core: Arc<SendCore>,
}

impl Drop for SendHandle {
    fn drop(&mut self) {
        self.core.release();
    }
}

pub(crate) struct SendCore {
    chan: String,
    sender_id: u64,
    /// Told by the owner when the stream opens.
    capacity: AtomicU64,
    max_payload: AtomicU64,
    count_window: Semaphore,
    byte_window: Semaphore,
    /// Units (KiB) in the byte window.
    byte_units: u32,
    reconnect_for: Duration,
    state: Mutex<SendState>,
    /// Woken whenever pending values are resolved, for `flush`.
    resolved: Notify,
}

struct SendState {
    client: Client,
    stream: u64,
    /// Which stream's frames count: bumped on reconnect, so frames of the old one are ignored.
    gen: u64,
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    /// The channel was closed: sends fail at once.
    closed: bool,
    /// The stream failed for good.
    failed: Option<ChanError>,
    /// A failure of a value whose ticket was dropped, reported by the next `flush`.
    unreported: Option<ChanError>,
    reconnecting: bool,
    /// Every `Sender` is gone: close the stream once nothing is pending.
    released: bool,
}

struct Pending {
    payload: Bytes,
    try_send: bool,
    /// `None` once nobody waits (a cancelled send).
    done: Option<oneshot::Sender<Result<(), ChanError>>>,
    /// Byte-window units it holds (it also holds one unit of the count window).
    units: u32,
}

/// Routes a stream's traffic to its core; one per stream generation.
struct Handler {
    core: Arc<SendCore>,
    gen: u64,
    opening: Opening,
}

impl<T, C: Codec<T>> Sender<T, C> {
    pub(crate) async fn open(
        client: &Client,
        chan: &str,
        codec: C,
        opts: SendOptions,
    ) -> Result<Self, ChanError> {
        let sender_id = fastrand::u64(1..);
        let window = opts.window.clamp(1, 1 << 16) as usize;
        let byte_units = (opts.window_bytes / 1024).clamp(1, 1 << 18) as u32;
        let core = Arc::new(SendCore {
            chan: chan.to_string(),
            sender_id,
            capacity: AtomicU64::new(0),
            max_payload: AtomicU64::new(0),
            count_window: Semaphore::new(window),
            byte_window: Semaphore::new(byte_units as usize),
            byte_units,
            reconnect_for: opts.reconnect_for,
            state: Mutex::new(SendState {
                client: client.clone(),
                stream: 0,
                gen: 1,
                next_seq: 1,
                pending: BTreeMap::new(),
                closed: false,
                failed: None,
                unreported: None,
                reconnecting: false,
                released: false,
            }),
            resolved: Notify::new(),
        });
        let (stream, opened) = core.clone().open_on(client, 1).await?;
        core.capacity.store(opened.capacity, Ordering::Relaxed);
        core.max_payload
            .store(opened.max_payload, Ordering::Relaxed);
        core.lock().stream = stream;
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
        self.handle.core.lock().pending.len()
    }

    /// Sends a value and waits until it is in the channel: buffered (capacity > 0) or taken by
    /// a receiver (capacity 0). Waits while the channel is full.
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
        let mut guard = CancelGuard {
            core,
            seq,
            armed: true,
        };
        let result = Ticket { rx }.await;
        guard.armed = false;
        result
    }

    /// Like [`send`](Self::send), but gives up after `timeout` with [`ChanError::Timeout`], in
    /// which case the value was not sent.
    pub async fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), ChanError> {
        let payload = self.codec.encode(&value)?;
        let core = &self.handle.core;
        let (seq, rx) = core.submit(payload, false).await?;
        let mut guard = CancelGuard {
            core,
            seq,
            armed: true,
        };
        let mut ticket = Ticket { rx };
        let result = tokio::select! {
            result = &mut ticket => result,
            () = tokio::time::sleep(timeout) => {
                // Ask for it back; the owner answers withdrawn (timeout) or accepted.
                core.request_cancel(seq);
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
    core: &'a SendCore,
    seq: u64,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.core.abandon(self.seq);
        }
    }
}

impl SendCore {
    fn lock(&self) -> std::sync::MutexGuard<'_, SendState> {
        self.state.lock().expect("send lock")
    }

    /// Opens a send stream on `client` and waits for the owner to confirm it.
    async fn open_on(
        self: Arc<Self>,
        client: &Client,
        gen: u64,
    ) -> Result<(u64, ChanOpened), ChanError> {
        let core = self.clone();
        open_stream(
            client,
            StreamKind::Send {
                name: self.chan.clone(),
                sender: self.sender_id,
            },
            |opening| Arc::new(Handler { core, gen, opening }),
        )
        .await
    }

    async fn submit(
        &self,
        payload: Bytes,
        try_send: bool,
    ) -> Result<(u64, oneshot::Receiver<Result<(), ChanError>>), ChanError> {
        let size = payload.len() as u64;
        let max = self.max_payload.load(Ordering::Relaxed);
        if size > max {
            return Err(ChanError::TooLarge { size, max });
        }
        // Window units are given back in bulk as values resolve (see `give_room`); the common
        // case, room in the window, takes no future.
        let closed = |_| ChanError::Protocol("send window closed".into());
        match self.count_window.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(_) => {
                self.check()?;
                self.count_window.acquire().await.map_err(closed)?.forget();
            }
        }
        let units = ((size / 1024) as u32 + 1).min(self.byte_units);
        let bytes = match self.byte_window.try_acquire_many(units) {
            Ok(permit) => Ok(permit),
            Err(_) => self.byte_window.acquire_many(units).await,
        };
        match bytes {
            Ok(permit) => permit.forget(),
            Err(e) => {
                self.give_room(1, 0);
                return Err(closed(e));
            }
        }
        let mut state = self.lock();
        let refused = if state.closed {
            Some(ChanError::Closed)
        } else {
            state.failed.clone()
        };
        if let Some(e) = refused {
            drop(state);
            self.give_room(1, units as usize);
            return Err(e);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let (tx, rx) = oneshot::channel();
        if !state.reconnecting {
            write_value(&state, seq, &payload, try_send);
        }
        state.pending.insert(
            seq,
            Pending {
                payload,
                try_send,
                done: Some(tx),
                units,
            },
        );
        Ok((seq, rx))
    }

    fn check(&self) -> Result<(), ChanError> {
        let state = self.lock();
        if state.closed {
            return Err(ChanError::Closed);
        }
        match &state.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Nobody waits for `seq` any more: withdraw it if it is still waiting.
    fn abandon(&self, seq: u64) {
        let mut state = self.lock();
        if let Some(p) = state.pending.get_mut(&seq) {
            p.done = None;
            signal(&state, SignalOp::CancelSend, seq);
        }
    }

    /// Asks the owner to withdraw `seq`; its ticket learns the outcome.
    fn request_cancel(&self, seq: u64) {
        let state = self.lock();
        if state.pending.contains_key(&seq) {
            signal(&state, SignalOp::CancelSend, seq);
        }
    }

    async fn flush(&self) -> Result<(), ChanError> {
        let upto = self.lock().next_seq;
        loop {
            let notified = self.resolved.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.pending.range(..upto).next().is_none() {
                    return match state.unreported.take() {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                }
                if let Some(e) = &state.failed {
                    return Err(e.clone());
                }
            }
            notified.await;
        }
    }

    fn release(&self) {
        let mut state = self.lock();
        state.released = true;
        self.close_if_idle(&mut state);
    }

    fn close_if_idle(&self, state: &mut SendState) {
        if state.released && state.pending.is_empty() && state.failed.is_none() {
            state.client.close_stream(state.stream);
            state.failed = Some(ChanError::Protocol("sender dropped".into()));
        }
    }

    /// Settles value `seq`; adds what it held of the windows to `freed` (values, units).
    fn resolve(
        &self,
        state: &mut SendState,
        seq: u64,
        result: Result<(), ChanError>,
        freed: &mut (usize, usize),
    ) {
        if let Some(p) = state.pending.remove(&seq) {
            freed.0 += 1;
            freed.1 += p.units as usize;
            if let Some(done) = p.done {
                if let Err(Err(e)) = done.send(result) {
                    state.unreported.get_or_insert(e);
                }
            }
        }
    }

    /// Gives window room back.
    fn give_room(&self, values: usize, units: usize) {
        if values > 0 {
            self.count_window.add_permits(values);
        }
        if units > 0 {
            self.byte_window.add_permits(units);
        }
    }

    /// Handles the signals the owner sent in one batch.
    fn on_signals(&self, gen: u64, signals: impl Iterator<Item = (SignalOp, u64, u64)>) {
        let mut freed = (0, 0);
        let mut state = self.lock();
        if state.gen != gen {
            return;
        }
        for (op, a, b) in signals {
            if let Err(e) = self.on_signal(&mut state, op, a, b, &mut freed) {
                drop(state);
                self.give_room(freed.0, freed.1);
                return self.fail(gen, e);
            }
        }
        self.close_if_idle(&mut state);
        drop(state);
        self.give_room(freed.0, freed.1);
        self.resolved.notify_waiters();
    }

    fn on_signal(
        &self,
        state: &mut SendState,
        op: SignalOp,
        a: u64,
        b: u64,
        freed: &mut (usize, usize),
    ) -> Result<(), ChanError> {
        match op {
            SignalOp::Accepted | SignalOp::Closed => {
                let seqs: Vec<u64> = state
                    .pending
                    .range(a..a.saturating_add(b))
                    .map(|(s, _)| *s)
                    .collect();
                if op == SignalOp::Closed {
                    state.closed = true;
                }
                for seq in seqs {
                    let result = match op {
                        SignalOp::Accepted => Ok(()),
                        _ => Err(ChanError::Closed),
                    };
                    self.resolve(state, seq, result, freed);
                }
            }
            SignalOp::Full => self.resolve(state, a, Err(ChanError::Full), freed),
            SignalOp::Withdrawn => self.resolve(state, a, Err(ChanError::Timeout), freed),
            SignalOp::TooLarge => {
                let size = state.pending.get(&a).map_or(0, |p| p.payload.len() as u64);
                self.resolve(state, a, Err(ChanError::TooLarge { size, max: b }), freed);
            }
            other => {
                return Err(ChanError::Protocol(format!(
                    "unexpected signal {other:?} on a send stream"
                )))
            }
        }
        Ok(())
    }

    /// The stream failed for good: every pending value fails with `error`.
    fn fail(&self, gen: u64, error: ChanError) {
        let mut state = self.lock();
        if state.gen != gen || state.failed.is_some() {
            return;
        }
        state.failed = Some(error.clone());
        state.reconnecting = false;
        let seqs: Vec<u64> = state.pending.keys().copied().collect();
        let mut freed = (0, 0);
        for seq in seqs {
            self.resolve(&mut state, seq, Err(error.clone()), &mut freed);
        }
        drop(state);
        self.give_room(freed.0, freed.1);
        self.resolved.notify_waiters();
    }

    /// The connection is gone: reconnect and send again what was not confirmed.
    fn lost(self: &Arc<Self>, gen: u64) {
        let mut state = self.lock();
        if state.gen != gen || state.failed.is_some() || state.reconnecting {
            return;
        }
        if state.released && state.pending.is_empty() {
            state.failed = Some(ChanError::Protocol("sender dropped".into()));
            return;
        }
        state.reconnecting = true;
        let old = state.client.clone();
        drop(state);
        let core = self.clone();
        tokio::spawn(async move { core.reconnect(old, gen).await });
    }

    async fn reconnect(self: Arc<Self>, old: Client, gen: u64) {
        let core = self.clone();
        let open = |client: Client| {
            let core = core.clone();
            async move { core.open_on(&client, gen + 1).await }
        };
        let (client, stream) = match reopen(&old, &self.chan, self.reconnect_for, open).await {
            Ok(reopened) => reopened,
            Err(e) => return self.fail(gen, e),
        };
        let mut state = self.lock();
        if state.gen != gen || state.failed.is_some() {
            client.close_stream(stream);
            return;
        }
        state.client = client;
        state.stream = stream;
        state.gen = gen + 1;
        state.reconnecting = false;
        for (seq, p) in &state.pending {
            write_value(&state, *seq, &p.payload, p.try_send);
        }
        tracing::debug!(chan = %self.chan, "send stream reconnected");
    }
}

fn write_value(state: &SendState, seq: u64, payload: &Bytes, try_send: bool) {
    if try_send {
        signal(state, SignalOp::TrySend, seq);
    }
    state.client.send_frame(Frame::Data {
        id: state.stream,
        seq,
        payload: payload.clone(),
    });
}

fn signal(state: &SendState, op: SignalOp, a: u64) {
    if !state.reconnecting {
        state.client.send_frame(Frame::Signal {
            id: state.stream,
            op,
            a,
            b: 0,
        });
    }
}

impl StreamHandler for Handler {
    fn on_message(&self, msg: ServerMessage) {
        if let Some(error) = self.opening.message(msg, "send") {
            self.core.fail(self.gen, error);
        }
    }

    fn on_frames(&self, frames: Vec<Frame>) {
        if frames.iter().any(|f| !matches!(f, Frame::Signal { .. })) {
            let e = ChanError::Protocol("data frame on a send stream".into());
            return self.core.fail(self.gen, e);
        }
        let signals = frames.into_iter().filter_map(|f| match f {
            Frame::Signal { op, a, b, .. } => Some((op, a, b)),
            _ => None,
        });
        self.core.on_signals(self.gen, signals);
    }

    fn on_lost(&self, error: crate::Error) {
        if !self.opening.lost(error) {
            self.core.lost(self.gen);
        }
    }
}
