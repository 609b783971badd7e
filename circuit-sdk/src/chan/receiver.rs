//! [`Receiver`]: the receiving half of a channel. The receiver asks the owner for values with
//! credit (by default one per waiting `recv`, like a Go receiver; more with `prefetch`) and
//! acknowledges each value when the application takes it — only then does the value leave the
//! channel. Values not yet taken go back to the channel if the receiver goes away. The rules
//! live in the state machine (`recv_state.rs`) and the stream's life in the shell
//! (`stream.rs`); this file is the async API over them.

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::oneshot;

use super::codec::{Codec, Json};
use super::recv_state::RecvState;
use super::stream::{self, Half};
use super::stream_state::Lost;
use super::{ChanError, RecvOptions};
use crate::client::Client;
use crate::connection::Pull;
use crate::proto::{Frame, Request};

/// The receiving half of a channel, for values of `T` decoded with `C`. It is also a
/// [`Stream`] of values that ends when the channel is closed and drained.
pub struct Receiver<T, C = Json> {
    core: Arc<RecvCore>,
    codec: C,
    /// The stream has ended (closed and drained, or failed).
    finished: bool,
    _value: PhantomData<fn() -> T>,
}

impl<T, C> std::fmt::Debug for Receiver<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("chan", &self.core.chan)
            .finish_non_exhaustive()
    }
}

/// What a `Receiver`, its deliveries, its stream's handler and its reconnect task share.
pub(crate) struct RecvCore {
    chan: String,
    /// This receiver's id, the same across reconnects: a replicated channel keeps what it
    /// holds for it when its leader changes.
    id: u64,
    /// Told by the owner when the stream opens.
    capacity: AtomicU64,
    reconnect_for: Duration,
    slot: Mutex<Slot>,
}

/// The state machine, the connection its stream is on, and who waits.
struct Slot {
    state: RecvState,
    /// `None` once this side ended the stream, so that a connection nobody else uses can
    /// close.
    client: Option<Client>,
    /// The waiting receive.
    waker: Option<Waker>,
    /// Told when the owner has ended the stream we asked to close.
    closing: Option<oneshot::Sender<()>>,
}

impl<T, C: Codec<T>> Receiver<T, C> {
    pub(crate) async fn open(
        client: &Client,
        chan: &str,
        codec: C,
        opts: RecvOptions,
    ) -> Result<Self, ChanError> {
        let core = Arc::new(RecvCore {
            chan: chan.to_string(),
            id: fastrand::u64(1..),
            capacity: AtomicU64::new(0),
            reconnect_for: opts.reconnect_for,
            slot: Mutex::new(Slot {
                state: RecvState::new(opts.prefetch, opts.prefetch_bytes),
                client: Some(client.clone()),
                waker: None,
                closing: None,
            }),
        });
        let (id, opened) = stream::open_first(&core, client, opts.reconnect_for).await?;
        core.capacity.store(opened.capacity, Ordering::Relaxed);
        core.lock()
            .state
            .opened(id, opened.replicas, opened.capacity);
        Ok(Self {
            core,
            codec,
            finished: false,
            _value: PhantomData,
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.core.chan
    }

    /// The channel's capacity.
    pub fn capacity(&self) -> u64 {
        self.core.capacity.load(Ordering::Relaxed)
    }

    /// Receives the oldest value, waiting while the channel is empty. Fails with
    /// [`ChanError::Closed`] once the channel is closed and every value has been received.
    ///
    /// Cancel-safe: if the future is dropped before it completes (say, in `tokio::select!`), no
    /// value is lost — one that arrives later is kept for the next call.
    pub async fn recv(&mut self) -> Result<T, ChanError> {
        let (payload, _) = RecvFuture {
            core: &self.core,
            manual: false,
            done: false,
        }
        .await?;
        self.codec.decode(payload)
    }

    /// Receives the oldest value without acknowledging it: it stays in flight (counting
    /// against the capacity) until [`Delivery::ack`]. If this process dies first, the value
    /// goes back to the head of the channel for another receiver — so a worker that acks only
    /// after it has passed its result on never loses a value to a crash.
    ///
    /// A delivery dropped without `ack` goes back to the channel at once if it is the newest
    /// value this receiver took; otherwise it stays in flight until the receiver is dropped.
    ///
    /// ```no_run
    /// # async fn demo(mut rx: circuit_sdk::chan::Receiver<u64>, tx: circuit_sdk::chan::Sender<u64>)
    /// # -> Result<(), circuit_sdk::chan::ChanError> {
    /// let job = rx.recv_delivery().await?;
    /// tx.send(*job * 2).await?; // the result is safely in the next channel...
    /// job.ack(); // ...before the job leaves this one
    /// # Ok(()) }
    /// ```
    pub async fn recv_delivery(&mut self) -> Result<Delivery<T>, ChanError> {
        let (payload, index) = RecvFuture {
            core: &self.core,
            manual: true,
            done: false,
        }
        .await?;
        let epoch = self.core.lock().state.epoch();
        let mut delivery = Delivery {
            value: None,
            core: self.core.clone(),
            epoch,
            index,
            settled: false,
        };
        match self.codec.decode(payload) {
            Ok(value) => {
                delivery.value = Some(value);
                Ok(delivery)
            }
            Err(e) => {
                // A value this receiver cannot read will not get better: take it off.
                delivery.ack();
                Err(e)
            }
        }
    }

    /// Like [`recv`](Self::recv), but gives up after `timeout` with [`ChanError::Timeout`].
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<T, ChanError> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(result) => result,
            Err(_) => Err(ChanError::Timeout),
        }
    }

    /// Receives a value only if one is ready now; otherwise fails with [`ChanError::Empty`]
    /// (or [`ChanError::Closed`] once closed and drained). Asks the owner, so it takes one
    /// round trip but never waits for a sender.
    pub async fn try_recv(&mut self) -> Result<T, ChanError> {
        self.core.with(RecvState::try_recv);
        let payload = std::future::poll_fn(|cx| self.core.poll_try(cx)).await?;
        self.codec.decode(payload)
    }
}

/// A value received with [`Receiver::recv_delivery`]: it leaves the channel when acknowledged.
pub struct Delivery<T> {
    value: Option<T>,
    core: Arc<RecvCore>,
    /// The epoch of the take: a value of an earlier epoch went back with its stream.
    epoch: u64,
    index: u64,
    settled: bool,
}

impl<T> Delivery<T> {
    /// Acknowledges the value: it leaves the channel.
    pub fn ack(mut self) {
        self.settled = true;
        let (epoch, index) = (self.epoch, self.index);
        self.core.with(|state| state.ack_take(epoch, index));
    }

    /// Acknowledges the value and returns it.
    pub fn into_inner(mut self) -> T {
        self.settled = true;
        let (epoch, index) = (self.epoch, self.index);
        self.core.with(|state| state.ack_take(epoch, index));
        self.value.take().expect("a delivery holds its value")
    }
}

impl<T> std::ops::Deref for Delivery<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value.as_ref().expect("a delivery holds its value")
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

impl<T> Drop for Delivery<T> {
    fn drop(&mut self) {
        if !self.settled {
            let (epoch, index) = (self.epoch, self.index);
            self.core.with(|state| state.give_back(epoch, index));
        }
    }
}

/// Waits for one value; withdraws its demand if dropped first.
struct RecvFuture<'a> {
    core: &'a Arc<RecvCore>,
    manual: bool,
    done: bool,
}

impl Future for RecvFuture<'_> {
    type Output = Result<(Bytes, u64), ChanError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let poll = self.core.poll_recv(cx, self.manual);
        if poll.is_ready() {
            self.done = true;
        }
        poll
    }
}

impl Drop for RecvFuture<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.core.with(RecvState::cancel_demand);
        }
    }
}

impl<T, C: Codec<T> + Unpin> Stream for Receiver<T, C> {
    type Item = Result<T, ChanError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.core.poll_recv(cx, false) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok((payload, _))) => Poll::Ready(Some(self.codec.decode(payload))),
            Poll::Ready(Err(ChanError::Closed)) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl<T, C> Receiver<T, C> {
    /// Closes this receiver and waits until the owner has processed it: every value the
    /// application took is acknowledged, everything else this receiver held is back in the
    /// channel. Dropping a receiver does the same without waiting; a process that returns from
    /// `main` right after its last `recv` keeps that value either way (the acknowledgement is
    /// written as the runtime shuts down). Only a process killed in that instant may have the
    /// value delivered again.
    pub async fn close(self) {
        let rx = {
            let mut slot = self.core.lock();
            if !slot.state.close() {
                return;
            }
            let (tx, rx) = oneshot::channel();
            slot.closing = Some(tx);
            self.core.finish(slot, false);
            rx
        };
        // The owner answers the cancel once it has handled everything sent before it.
        let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
    }
}

impl<T, C> Drop for Receiver<T, C> {
    fn drop(&mut self) {
        self.core.with(RecvState::dropped);
    }
}

impl RecvCore {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().expect("recv lock")
    }

    /// Runs `f` on the state machine, then carries out what it recorded.
    fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut RecvState) -> R) -> R {
        let mut slot = self.lock();
        let result = f(&mut slot.state);
        self.finish(slot, false);
        result
    }

    /// Carries out what the state machine recorded (a pull goes to the writer with this core
    /// as its source), lets the client go once this side ended the stream, and wakes the
    /// waiting receive if `wake`, after the lock is released.
    fn finish(self: &Arc<Self>, mut slot: MutexGuard<'_, Slot>, wake: bool) {
        let Slot { state, client, .. } = &mut *slot;
        stream::apply(client.as_ref(), &mut state.effects, |client, gen| {
            client.schedule(self.clone(), gen);
        });
        if state.ended() {
            *client = None;
        }
        let waker = if wake { slot.waker.take() } else { None };
        drop(slot);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Takes the oldest delivered value (acknowledging it unless `manual`), or asks for one and
    /// waits. Returns the value and the index of the take.
    fn poll_recv(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        manual: bool,
    ) -> Poll<Result<(Bytes, u64), ChanError>> {
        let mut slot = self.lock();
        if slot.state.should_yield() {
            drop(slot);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let poll = slot.state.take(manual);
        if poll.is_pending() {
            slot.waker = Some(cx.waker().clone());
        }
        self.finish(slot, false);
        poll
    }

    /// The answer to a try-receive, or waits for it.
    fn poll_try(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Result<Bytes, ChanError>> {
        let mut slot = self.lock();
        let poll = slot.state.try_take();
        if poll.is_pending() {
            slot.waker = Some(cx.waker().clone());
        }
        self.finish(slot, false);
        poll
    }
}

impl Pull for RecvCore {
    fn pull(&self, token: u64, out: &mut VecDeque<Frame>) {
        self.lock().state.pull(token, out);
    }
}

impl Half for RecvCore {
    const KIND: &'static str = "receive";

    fn chan(&self) -> &str {
        &self.chan
    }

    fn reconnect_for(&self) -> Duration {
        self.reconnect_for
    }

    fn request(&self) -> Request {
        let (held, acked) = self.lock().state.resume_info();
        Request::ChanRecv {
            name: self.chan.clone(),
            receiver: Some(self.id),
            held,
            acked,
            direct: false,
        }
    }

    fn replicated(&self) -> bool {
        self.lock().state.replicated()
    }

    fn on_frames(self: &Arc<Self>, gen: u64, frames: Vec<Frame>) {
        let mut slot = self.lock();
        let wake = slot.state.on_frames(gen, frames);
        self.finish(slot, wake);
    }

    fn closed_by_owner(&self) -> bool {
        // The owner ended the stream we asked to close: it has handled all we sent.
        let closing = self.lock().closing.take();
        closing.map(|done| done.send(())).is_some()
    }

    fn lost(self: &Arc<Self>, gen: u64) -> Option<Client> {
        let mut slot = self.lock();
        let old = match slot.state.lost(gen) {
            Lost::Reconnect => slot.client.clone(),
            Lost::Ignore => None,
        };
        self.finish(slot, false);
        old
    }

    fn resumed(self: &Arc<Self>, gen: u64, client: Client, id: u64) -> bool {
        let mut slot = self.lock();
        let taken = slot.state.resumed(gen, id);
        if taken {
            slot.client = Some(client);
        }
        // A waiting receive asks again, on the new stream.
        self.finish(slot, taken);
        taken
    }

    fn fail(self: &Arc<Self>, gen: u64, error: ChanError) {
        let mut slot = self.lock();
        let wake = slot.state.fail(gen, error);
        self.finish(slot, wake);
    }
}
