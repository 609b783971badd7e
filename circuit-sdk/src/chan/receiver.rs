//! [`Receiver`]: the receiving half of a channel. The receiver asks the owner for values with
//! credit (by default one per waiting `recv`, like a Go receiver; more with `prefetch`) and
//! acknowledges each value when the application takes it — only then does the value leave the
//! channel. Values not yet taken go back to the channel if the receiver goes away.

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::oneshot;

use super::codec::{Codec, Json};
use super::{open_stream, reopen, ChanError, Opening, RecvOptions, StreamKind};
use crate::client::{Client, StreamHandler};
use crate::connection::Pull;
use crate::proto::{ChanOpened, Frame, ServerMessage, SignalOp};

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

pub(crate) struct RecvCore {
    chan: String,
    prefetch: u64,
    capacity: std::sync::atomic::AtomicU64,
    reconnect_for: Duration,
    state: Mutex<RecvState>,
}

#[derive(Default)]
struct RecvState {
    client: Option<Client>,
    stream: u64,
    gen: u64,
    /// Delivered values the application has not taken yet, oldest first.
    buf: VecDeque<Bytes>,
    /// Credit the owner holds for us.
    credit: u64,
    /// Acknowledgements to send (a count: values leave in the order they were delivered).
    to_ack: u64,
    /// Values the application has taken on this stream: the index of the next take.
    taken: u64,
    /// Every take below this index is acknowledged (or counted in `to_ack`).
    ack_upto: u64,
    /// Takes acknowledged ahead of an older, unacknowledged [`Delivery`].
    acked_ahead: std::collections::BTreeSet<u64>,
    /// Credit to grant.
    to_credit: u64,
    /// Outstanding credit to withdraw.
    withdraw: bool,
    /// A pull is queued on the writer.
    pull_queued: bool,
    /// A try-receive is waiting for its answer.
    trying: bool,
    /// The owner answered a try-receive with nothing.
    empty: bool,
    /// The channel is closed and drained.
    drained: bool,
    failed: Option<ChanError>,
    reconnecting: bool,
    waker: Option<Waker>,
    /// Told when the owner has ended the stream we asked to close.
    closing: Option<oneshot::Sender<()>>,
}

struct Handler {
    core: Arc<RecvCore>,
    gen: u64,
    opening: Opening,
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
            prefetch: u64::from(opts.prefetch.clamp(1, 1 << 16)),
            capacity: Default::default(),
            reconnect_for: opts.reconnect_for,
            state: Mutex::new(RecvState {
                client: Some(client.clone()),
                gen: 1,
                ..Default::default()
            }),
        });
        let (stream, opened) = core.clone().open_on(client, 1).await?;
        core.capacity
            .store(opened.capacity, std::sync::atomic::Ordering::Relaxed);
        core.lock().stream = stream;
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
        self.core
            .capacity
            .load(std::sync::atomic::Ordering::Relaxed)
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
        let gen = self.core.lock().gen;
        let mut delivery = Delivery {
            value: None,
            core: self.core.clone(),
            gen,
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
        {
            let mut state = self.core.lock();
            if state.buf.is_empty() && state.failed.is_none() && !state.drained {
                state.trying = true;
                state.empty = false;
                if let Some(client) = &state.client {
                    if !state.reconnecting {
                        client.send_frame(Frame::Signal {
                            id: state.stream,
                            op: SignalOp::TryRecv,
                            a: 0,
                            b: 0,
                        });
                    }
                }
            }
        }
        let payload = std::future::poll_fn(|cx| self.core.poll_try(cx)).await?;
        self.codec.decode(payload)
    }
}

/// A value received with [`Receiver::recv_delivery`]: it leaves the channel when acknowledged.
pub struct Delivery<T> {
    value: Option<T>,
    core: Arc<RecvCore>,
    gen: u64,
    index: u64,
    settled: bool,
}

impl<T> Delivery<T> {
    /// Acknowledges the value: it leaves the channel.
    pub fn ack(mut self) {
        self.settled = true;
        self.core.ack_take(self.gen, self.index);
    }

    /// Acknowledges the value and returns it.
    pub fn into_inner(mut self) -> T {
        self.settled = true;
        self.core.ack_take(self.gen, self.index);
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
            self.core.give_back(self.gen, self.index);
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
            self.core.cancel_demand();
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
            let mut state = self.core.lock();
            if state.reconnecting || state.failed.is_some() {
                return;
            }
            let Some(client) = state.client.take() else {
                return;
            };
            state.failed = Some(ChanError::Protocol("receiver closed".into()));
            let (tx, rx) = oneshot::channel();
            state.closing = Some(tx);
            if state.to_ack > 0 {
                client.send_frame(Frame::Signal {
                    id: state.stream,
                    op: SignalOp::Ack,
                    a: std::mem::take(&mut state.to_ack),
                    b: 0,
                });
            }
            client.cancel_stream(state.stream);
            rx
        };
        // The owner answers the cancel once it has handled everything sent before it.
        let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
    }
}

impl<T, C> Drop for Receiver<T, C> {
    fn drop(&mut self) {
        let mut state = self.core.lock();
        state
            .failed
            .get_or_insert(ChanError::Protocol("receiver dropped".into()));
        if state.reconnecting {
            return;
        }
        if let Some(client) = state.client.take() {
            // Acknowledge what the application took, then end the stream: the owner puts
            // everything else this receiver held back at the head of the queue.
            if state.to_ack > 0 {
                client.send_frame(Frame::Signal {
                    id: state.stream,
                    op: SignalOp::Ack,
                    a: std::mem::take(&mut state.to_ack),
                    b: 0,
                });
            }
            client.close_stream(state.stream);
        }
    }
}

impl RecvCore {
    fn lock(&self) -> std::sync::MutexGuard<'_, RecvState> {
        self.state.lock().expect("recv lock")
    }

    async fn open_on(
        self: Arc<Self>,
        client: &Client,
        gen: u64,
    ) -> Result<(u64, ChanOpened), ChanError> {
        let core = self.clone();
        open_stream(
            client,
            StreamKind::Recv {
                name: self.chan.clone(),
            },
            |opening| Arc::new(Handler { core, gen, opening }),
        )
        .await
    }

    /// Takes the oldest delivered value (acknowledging it unless `manual`), or asks for one and
    /// waits. Returns the value and the index of the take.
    fn poll_recv(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        manual: bool,
    ) -> Poll<Result<(Bytes, u64), ChanError>> {
        let mut state = self.lock();
        if let Some(payload) = state.buf.pop_front() {
            let index = take(&mut state, manual);
            // With prefetch, keep the owner's credit topped up while the application reads.
            if self.prefetch > 1 {
                let held = state.buf.len() as u64 + state.credit;
                if held <= self.prefetch / 2 {
                    let more = self.prefetch - held;
                    state.to_credit += more;
                    state.credit += more;
                }
            }
            if state.to_credit > 0 || state.buf.is_empty() || state.to_ack >= self.prefetch / 4 {
                self.schedule(&mut state);
            }
            return Poll::Ready(Ok((payload, index)));
        }
        if let Some(e) = &state.failed {
            return Poll::Ready(Err(e.clone()));
        }
        if state.drained {
            return Poll::Ready(Err(ChanError::Closed));
        }
        if state.credit == 0 && !state.reconnecting {
            state.credit = self.prefetch;
            state.to_credit += self.prefetch;
            state.withdraw = false;
            self.schedule(&mut state);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_try(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Result<Bytes, ChanError>> {
        let mut state = self.lock();
        if let Some(payload) = state.buf.pop_front() {
            state.trying = false;
            take(&mut state, false);
            self.schedule(&mut state);
            return Poll::Ready(Ok(payload));
        }
        if let Some(e) = &state.failed {
            return Poll::Ready(Err(e.clone()));
        }
        if state.drained {
            return Poll::Ready(Err(ChanError::Closed));
        }
        if state.empty || !state.trying {
            state.trying = false;
            state.empty = false;
            return Poll::Ready(Err(ChanError::Empty));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The application acknowledged take `index` of stream generation `gen`.
    fn ack_take(self: &Arc<Self>, gen: u64, index: u64) {
        let mut state = self.lock();
        if state.gen != gen {
            // The stream it came from is gone; the owner has put the value back already.
            return;
        }
        mark_acked(&mut state, index);
        self.schedule(&mut state);
    }

    /// A delivery was dropped unacknowledged: if it is the newest take, it goes back to the
    /// channel with everything delivered after it.
    fn give_back(self: &Arc<Self>, gen: u64, index: u64) {
        let mut state = self.lock();
        if state.gen != gen || state.reconnecting || index + 1 != state.taken {
            return;
        }
        let Some(client) = state.client.clone() else {
            return;
        };
        let n = state.buf.len() as u64 + 1;
        state.buf.clear();
        state.taken -= 1;
        client.send_frame(Frame::Signal {
            id: state.stream,
            op: SignalOp::Return,
            a: n,
            b: 0,
        });
    }

    /// A waiting `recv` was dropped: with one-at-a-time credit (no prefetch), take the demand
    /// back so this receiver does not hold a value it is not waiting for.
    fn cancel_demand(self: &Arc<Self>) {
        if self.prefetch > 1 {
            return;
        }
        let mut state = self.lock();
        if state.credit > 0 {
            state.credit = 0;
            state.to_credit = 0;
            state.withdraw = true;
            self.schedule(&mut state);
        }
    }

    fn schedule(self: &Arc<Self>, state: &mut RecvState) {
        if state.pull_queued || state.reconnecting {
            return;
        }
        if let Some(client) = &state.client {
            state.pull_queued = true;
            client.schedule(self.clone(), state.gen);
        }
    }

    fn on_frames(&self, gen: u64, frames: Vec<Frame>) {
        let mut state = self.lock();
        if state.gen != gen {
            return;
        }
        for frame in frames {
            if let Err(e) = on_frame(&mut state, frame) {
                drop(state);
                return self.fail(gen, e);
            }
        }
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }

    fn fail(&self, gen: u64, error: ChanError) {
        let mut state = self.lock();
        if state.gen != gen || state.failed.is_some() {
            return;
        }
        state.failed = Some(error);
        state.reconnecting = false;
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }

    fn lost(self: &Arc<Self>, gen: u64) {
        let mut state = self.lock();
        if state.gen != gen || state.failed.is_some() || state.reconnecting {
            return;
        }
        state.reconnecting = true;
        let Some(old) = state.client.clone() else {
            return;
        };
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
        // What we held went back to the channel with the old connection.
        state.buf.clear();
        state.credit = 0;
        state.to_ack = 0;
        state.taken = 0;
        state.ack_upto = 0;
        state.acked_ahead.clear();
        state.to_credit = 0;
        state.withdraw = false;
        state.pull_queued = false;
        state.trying = false;
        state.client = Some(client);
        state.stream = stream;
        state.gen = gen + 1;
        state.reconnecting = false;
        // A waiting recv asks again.
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }
}

/// Applies one frame from the owner to the receive state.
fn on_frame(state: &mut RecvState, frame: Frame) -> Result<(), ChanError> {
    match frame {
        Frame::Data { payload, .. } => {
            state.buf.push_back(payload);
            state.credit = state.credit.saturating_sub(1);
        }
        Frame::Signal {
            op: SignalOp::Empty,
            ..
        } => state.empty = true,
        Frame::Signal {
            op: SignalOp::Drained,
            ..
        } => {
            state.drained = true;
            state.credit = 0;
        }
        other => {
            return Err(ChanError::Protocol(format!(
                "unexpected frame on a receive stream: {other:?}"
            )))
        }
    }
    Ok(())
}

/// Counts a take; unless `manual`, it is acknowledged at once. Returns its index.
fn take(state: &mut RecvState, manual: bool) -> u64 {
    let index = state.taken;
    state.taken += 1;
    if !manual {
        mark_acked(state, index);
    }
    index
}

/// Acknowledges take `index`; acknowledgements go out in take order, as the owner counts them.
fn mark_acked(state: &mut RecvState, index: u64) {
    if index != state.ack_upto {
        state.acked_ahead.insert(index);
        return;
    }
    state.ack_upto += 1;
    state.to_ack += 1;
    while state.acked_ahead.remove(&state.ack_upto) {
        state.ack_upto += 1;
        state.to_ack += 1;
    }
}

impl Pull for RecvCore {
    fn pull(&self, token: u64, out: &mut Vec<Frame>) {
        let mut state = self.lock();
        if state.gen != token {
            return;
        }
        state.pull_queued = false;
        let id = state.stream;
        let signal = |op, a| Frame::Signal { id, op, a, b: 0 };
        if state.to_ack > 0 {
            out.push(signal(SignalOp::Ack, std::mem::take(&mut state.to_ack)));
        }
        if std::mem::take(&mut state.withdraw) {
            out.push(signal(SignalOp::Withdraw, 0));
        }
        if state.to_credit > 0 {
            out.push(signal(
                SignalOp::Credit,
                std::mem::take(&mut state.to_credit),
            ));
        }
    }
}

impl StreamHandler for Handler {
    fn on_message(&self, msg: ServerMessage) {
        let closing = self.core.lock().closing.take();
        if let Some(done) = closing {
            // The owner ended the stream we asked to close: it has handled all we sent.
            let _ = done.send(());
            return;
        }
        if let Some(error) = self.opening.message(msg, "receive") {
            self.core.fail(self.gen, error);
        }
    }

    fn on_frames(&self, frames: Vec<Frame>) {
        self.core.on_frames(self.gen, frames);
    }

    fn on_lost(&self, error: crate::Error) {
        if !self.opening.lost(error) {
            self.core.lost(self.gen);
        }
    }
}
