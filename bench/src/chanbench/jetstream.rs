//! The JetStream contender (`bench-replicated`'s): roles driving a stream through async-nats —
//! publishers that wait for every publish's ack, pipelined (up to `--window` acks outstanding;
//! a publish refused or unanswered is sent again under the same message id, so the stream's
//! duplicate window drops the copy; while the stream does not answer, one message probes it
//! every [`RETRY_AFTER`] and the others wait for it), and pull consumers that ack every message. The harness
//! makes each trial's stream and consumer with [`create`]: the stream and its one subject are
//! named after the trial, the durable pull consumer is [`CONSUMER`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::context::{ContextBuilder, PublishAckFuture, PublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectOptions, Event, Subject};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt as _;

use super::ctx::{Ctx, Notes, Span};
use super::protocol::{now_ns, Acked};
use super::tally::Inbox;

/// The durable pull consumer every receiver of a trial shares.
pub const CONSUMER: &str = "bench";
/// How long a publish waits for its ack before it is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause before a refused or unanswered publish is sent again by the message probing the
/// stream (the others wait until it is acked).
pub const RETRY_AFTER: Duration = Duration::from_millis(20);
/// How long one message may go unacknowledged, republished, before its publisher fails.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// Messages a receiver asks for per pull request: the counterpart of circuit's prefetch.
pub const PULL_BATCH: usize = 1024;
/// How long a pull request lives on the consumer's leader. A receiver whose requests died with
/// their leader pulls again when they expire or miss two heartbeats, so both are kept short
/// (async-nats' defaults are 30 s and 15 s).
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How often the consumer says it is alive while it has nothing to deliver.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// Messages a subscription buffers in the client (as the NATS core roles).
const SUBSCRIPTION_CAPACITY: usize = 1 << 18;
/// How long a receiver waits before it opens its pull stream again after it ended.
const REOPEN_AFTER: Duration = Duration::from_millis(50);

/// How the harness makes a trial's stream and consumer.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    /// Servers holding the stream (and its consumer).
    pub replicas: usize,
    /// Memory or file.
    pub storage: StorageType,
    /// How long a delivered message may go unacked before the consumer delivers it again.
    pub ack_wait: Duration,
    /// Messages delivered and not yet acked, over all receivers, before the consumer pauses.
    pub max_ack_pending: i64,
}

/// Makes the work-queue stream `name` (its one subject is `name` too) and its durable pull
/// consumer [`CONSUMER`] with explicit acks.
pub async fn create(js: &Context, name: &str, spec: &StreamSpec) -> anyhow::Result<()> {
    let stream = js
        .create_stream(stream::Config {
            name: name.to_string(),
            subjects: vec![name.to_string()],
            retention: RetentionPolicy::WorkQueue,
            storage: spec.storage,
            num_replicas: spec.replicas,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create stream {name}"))?;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(CONSUMER.to_string()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_ack_pending: spec.max_ack_pending,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create consumer {CONSUMER} on stream {name}"))?;
    Ok(())
}

/// Deletes the stream `name` (and so its consumer).
pub async fn delete(js: &Context, name: &str) -> anyhow::Result<()> {
    js.delete_stream(name)
        .await
        .with_context(|| format!("cannot delete stream {name}"))?;
    Ok(())
}

/// The server name of the stream's leader, as the stream's info says; `None` while it has none.
pub async fn leader(js: &Context, name: &str) -> anyhow::Result<Option<String>> {
    let mut stream = js
        .get_stream(name)
        .await
        .with_context(|| format!("cannot find stream {name}"))?;
    let info = stream
        .info()
        .await
        .with_context(|| format!("cannot read stream {name}'s info"))?;
    Ok(info.cluster.as_ref().and_then(|c| c.leader.clone()))
}

/// Connects to the servers `endpoint` lists (comma-separated URLs), in that order: the first is
/// the one the role talks to, the others where it goes if that one dies. Connection events
/// other than the first connect become notes.
async fn connect(ctx: &Ctx) -> anyhow::Result<Client> {
    let notes = ctx.notes();
    let urls: Vec<&str> = ctx.args.endpoint.split(',').collect();
    ConnectOptions::new()
        .retain_servers_order()
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .event_callback(move |event| {
            note(&notes, event);
            std::future::ready(())
        })
        .connect(urls.as_slice())
        .await
        .with_context(|| format!("cannot connect to {}", ctx.args.endpoint))
}

fn note(notes: &Notes, event: Event) {
    if !matches!(event, Event::Connected) {
        let mut notes = notes.lock().unwrap_or_else(|e| e.into_inner());
        notes.push(format!("nats client: {event}"));
    }
}

/// Counts of what went wrong, by kind, turned into notes at the end.
#[derive(Debug, Default)]
struct Mishaps(BTreeMap<String, u64>);

impl Mishaps {
    fn count(&mut self, what: String) {
        *self.0.entry(what).or_default() += 1;
    }

    fn into_notes(self, ctx: &Ctx) {
        let notes = ctx.notes();
        let mut notes = notes.lock().unwrap_or_else(|e| e.into_inner());
        for (what, n) in self.0 {
            notes.push(format!("{what}: {n}×"));
        }
    }
}

/// Whether a publisher's stream answers: after a failed publish, one message (the probe)
/// retries every [`RETRY_AFTER`] and the other failed ones wait until it is acked, so that a
/// stream between two leaders is not flooded with a window's worth of retries every few ms.
#[derive(Debug, Default)]
struct Gate {
    /// A message is probing.
    probing: Cell<bool>,
    /// Told when the probe is acked.
    opened: tokio::sync::Notify,
}

/// Publishes `count` stamped messages after `go` as fast as the window of outstanding acks
/// lets it, and returns once every one is acked.
pub async fn send(ctx: &mut Ctx) -> anyhow::Result<Span> {
    publish(ctx, None).await.map(|(span, _)| span)
}

/// Publishes `count` stamped messages after `go`, one every `1/rate` s on a fixed schedule (at
/// once while behind it), and times each one's ack.
pub async fn send_steady(ctx: &mut Ctx) -> anyhow::Result<(Span, Vec<Acked>)> {
    let rate = ctx.args.rate.max(1);
    publish(ctx, Some(rate)).await
}

/// The publisher: `rate` messages per second, or as fast as the window allows.
async fn publish(ctx: &mut Ctx, rate: Option<u64>) -> anyhow::Result<(Span, Vec<Acked>)> {
    let client = connect(ctx).await?;
    let window = ctx.args.window.max(1) as usize;
    let js = ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .max_ack_inflight(2 * window)
        .backpressure_on_inflight(true)
        .build(client);
    let mut payload = ctx.payload();
    let subject = Subject::from(ctx.args.name.as_str());
    let (index, count) = (ctx.args.index, ctx.args.count);
    let mishaps = Rc::new(RefCell::new(Mishaps::default()));
    let gate = Rc::new(Gate::default());
    ctx.ready();
    ctx.go().await?;
    let start_ns = now_ns();
    let start = tokio::time::Instant::now();
    let mut timeline = vec![
        Acked {
            sent_ns: 0,
            acked_ns: 0
        };
        count as usize
    ];
    let mut in_flight = FuturesUnordered::new();
    let (mut next, mut acked) = (0u64, 0u64);
    while acked < count {
        let room = next < count && in_flight.len() < window;
        let due = rate.map(|r| start + Duration::from_nanos(next * 1_000_000_000 / r));
        tokio::select! {
            biased;
            done = in_flight.next(), if !in_flight.is_empty() => {
                let (seq, acked_at): (u64, anyhow::Result<u64>) = done.expect("not empty");
                timeline[seq as usize].acked_ns = acked_at?;
                acked += 1;
            }
            () = until(due), if room => {
                let seq = next;
                next += 1;
                let message = Message {
                    subject: subject.clone(),
                    payload: payload.stamped(index, seq as u32),
                    id: format!("{index}-{seq}"),
                };
                let sent_ns = now_ns();
                timeline[seq as usize].sent_ns = sent_ns;
                let first = js.send_publish(message.subject.clone(), message.build()).await;
                let settled = settle(js.clone(), message, first, gate.clone(), mishaps.clone());
                in_flight.push(async move { (seq, settled.await) });
            }
        }
    }
    let mishaps = Rc::try_unwrap(mishaps).map_or_else(|_| Mishaps::default(), RefCell::into_inner);
    mishaps.into_notes(ctx);
    let span = Span {
        start_ns,
        end_ns: now_ns(),
    };
    Ok((span, if rate.is_some() { timeline } else { Vec::new() }))
}

/// Resolves at `due`, or at once without one.
async fn until(due: Option<tokio::time::Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due).await;
    }
}

/// One message, kept until acked so that it can be sent again.
struct Message {
    subject: Subject,
    payload: Bytes,
    /// Its `Nats-Msg-Id`: the sender's index and the sequence number.
    id: String,
}

impl Message {
    fn build(&self) -> PublishMessage {
        PublishMessage::build()
            .payload(self.payload.clone())
            .message_id(&self.id)
    }
}

/// Waits for a message's ack, publishing it again (same id) after a refusal or a timeout —
/// at once if the stream answered since, else as the [`Gate`] says; returns when the ack came
/// ([`now_ns`]).
async fn settle(
    js: Context,
    message: Message,
    mut publish: Result<PublishAckFuture, PublishError>,
    gate: Rc<Gate>,
    mishaps: Rc<RefCell<Mishaps>>,
) -> anyhow::Result<u64> {
    let give_up = tokio::time::Instant::now() + GIVE_UP_AFTER;
    let mut probe = false;
    loop {
        let opened = gate.opened.notified();
        let outcome = match publish {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(ack) => {
                if probe {
                    gate.probing.set(false);
                    gate.opened.notify_waiters();
                }
                if ack.duplicate {
                    mishaps.borrow_mut().count(
                        "jetstream publisher: an ack said duplicate (a resent message the stream \
                         had)"
                            .into(),
                    );
                }
                return Ok(now_ns());
            }
            Err(e) => {
                mishaps.borrow_mut().count(format!(
                    "jetstream publisher: sent again after {:?}",
                    e.kind()
                ));
                if tokio::time::Instant::now() >= give_up {
                    bail!(
                        "message {} was not acked within {GIVE_UP_AFTER:?}: {e}",
                        message.id
                    );
                }
                if !probe && gate.probing.get() {
                    // Another message probes: wait until it is acked (or for a long while).
                    let _ = tokio::time::timeout(ACK_TIMEOUT * 4, opened).await;
                } else {
                    probe = true;
                    gate.probing.set(true);
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                publish = js
                    .send_publish(message.subject.clone(), message.build())
                    .await;
            }
        }
    }
}

/// Takes messages from the trial's consumer, acking each, until stdin closes.
pub async fn recv(ctx: &mut Ctx, inbox: &mut Inbox) -> anyhow::Result<()> {
    let client = connect(ctx).await?;
    let js = jetstream::new(client);
    let name = ctx.args.name.clone();
    let consumer: PullConsumer = js
        .get_consumer_from_stream(CONSUMER, &name)
        .await
        .with_context(|| format!("cannot find consumer {CONSUMER} of stream {name}"))?;
    let mut messages = pull(&consumer).await.context("cannot start pulling")?;
    let mut mishaps = Mishaps::default();
    ctx.ready();
    let stopped = ctx.stopped();
    tokio::pin!(stopped);
    'taking: loop {
        tokio::select! {
            biased;
            () = &mut stopped => break 'taking,
            msg = messages.next() => match msg {
                Some(Ok(msg)) => {
                    inbox.take(&msg.payload);
                    if let Err(e) = msg.ack().await {
                        mishaps.count(format!("jetstream receiver: ack failed: {e}"));
                    }
                }
                Some(Err(e)) => mishaps.count(format!("jetstream receiver: {:?}", e.kind())),
                None => {
                    mishaps.count("jetstream receiver: pull stream ended, opened again".into());
                    loop {
                        tokio::select! {
                            biased;
                            () = &mut stopped => break 'taking,
                            () = tokio::time::sleep(REOPEN_AFTER) => {}
                        }
                        match pull(&consumer).await {
                            Ok(fresh) => {
                                messages = fresh;
                                break;
                            }
                            Err(e) => mishaps.count(format!(
                                "jetstream receiver: cannot pull again: {:?}",
                                e.kind()
                            )),
                        }
                    }
                }
            },
        }
    }
    mishaps.into_notes(ctx);
    Ok(())
}

/// A stream of the consumer's messages, [`PULL_BATCH`] per pull request.
async fn pull(
    consumer: &PullConsumer,
) -> Result<pull::Stream, async_nats::jetstream::consumer::StreamError> {
    consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
}
