//! Channels end to end against a real daemon. Each test is named after the rule of
//! `docs/CHANNELS.md` it checks (`rule_N_...`); a few more cover bad input.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use circuit_sdk::chan::{Chan, ChanError, Raw, Receiver, RecvOptions, SendOptions, Sender};
use circuit_sdk::proto::ChanInfo;
use circuit_sdk::Client;
use circuit_testkit::{wait_until_async, Daemon};
use futures::StreamExt;

const SOON: Duration = Duration::from_secs(10);

/// Where a rule runs: on one daemon, or across three in a mesh on loopback, where node `b` owns
/// the channel, senders open it on `a` and receivers on `c` (each stream through a relay and
/// the peer links).
struct Place {
    /// The daemon senders use, and the one receivers use (the same one on one node).
    tx: Daemon,
    rx: Option<Daemon>,
    owner: Option<Daemon>,
}

impl Place {
    async fn one() -> Self {
        Self {
            tx: Daemon::start(),
            rx: None,
            owner: None,
        }
    }

    async fn across() -> Self {
        let a = Daemon::start_named("a", &["--listen", "127.0.0.1:0"]);
        let status = match a
            .client()
            .await
            .call(circuit_sdk::proto::Request::Status)
            .await
        {
            Ok(circuit_sdk::proto::Reply::Status(s)) => s,
            other => panic!("status: {other:?}"),
        };
        let addr = status.listen.expect("mesh address");
        let join = ["--listen", "127.0.0.1:0", "--join", addr.as_str()];
        let (b, c) = (
            Daemon::start_named("b", &join),
            Daemon::start_named("c", &join),
        );
        for d in [&a, &b, &c] {
            let client = d.client().await;
            wait_until_async(SOON, "a, b and c see each other", || async {
                match client.call(circuit_sdk::proto::Request::Nodes).await {
                    Ok(circuit_sdk::proto::Reply::Nodes(ns)) => (ns
                        .iter()
                        .filter(|n| n.state == circuit_sdk::proto::NodeState::Alive)
                        .count()
                        == 3)
                        .then_some(()),
                    _ => None,
                }
            })
            .await;
        }
        Self {
            tx: a,
            rx: Some(c),
            owner: Some(b),
        }
    }

    fn rx_daemon(&self) -> &Daemon {
        self.rx.as_ref().unwrap_or(&self.tx)
    }

    /// A new connection on the receivers' daemon.
    async fn rx_client(&self) -> Client {
        self.rx_daemon().client().await
    }

    /// Creates a channel (on `b` across nodes); returns it as senders and as receivers see it.
    async fn create(&self, name: &str, capacity: u64) -> (Chan, Chan) {
        let client = self.tx.client().await;
        let tx = match &self.owner {
            None => client.chan_create(name, capacity).await.expect("create"),
            Some(owner) => {
                let request = circuit_sdk::proto::Request::On {
                    node: owner.name.clone(),
                    request: Box::new(circuit_sdk::proto::Request::ChanCreate {
                        name: name.to_string(),
                        capacity,
                        exist_ok: false,
                    }),
                };
                client.call(request).await.expect("create on b");
                client.chan(name).await.expect("open on a")
            }
        };
        let rx = self
            .rx_client()
            .await
            .chan(name)
            .await
            .expect("open for receivers");
        (tx, rx)
    }
}

async fn stat(chan: &Chan) -> ChanInfo {
    chan.stat().await.expect("stat")
}

/// Waits until the channel's counts satisfy `cond`.
async fn until(chan: &Chan, what: &str, cond: impl Fn(&ChanInfo) -> bool) -> ChanInfo {
    wait_until_async(SOON, what, || async {
        let info = stat(chan).await;
        cond(&info).then_some(info)
    })
    .await
}

async fn raw_tx(chan: &Chan) -> Sender<Bytes, Raw> {
    chan.sender_with(Raw, SendOptions::default())
        .await
        .expect("sender")
}

async fn raw_rx(chan: &Chan, prefetch: u32) -> Receiver<Bytes, Raw> {
    let opts = RecvOptions {
        prefetch,
        ..Default::default()
    };
    chan.receiver_with(Raw, opts).await.expect("receiver")
}

#[tokio::test]
async fn rule_1_names_capacity_and_owner() {
    let d = Daemon::start();
    let client = d.client().await;
    for bad in ["", "a b", "ä", "a:b", "x\n", &"x".repeat(129), "*"] {
        let err = client.chan_create(bad, 1).await.expect_err(bad);
        assert!(matches!(err, ChanError::InvalidName(_)), "{bad:?}: {err:?}");
        assert!(err.to_string().contains("channel name"), "{err}");
    }
    let long = "x".repeat(128);
    for good in ["jobs", "a.b_c-d/e", long.as_str()] {
        let chan = client.chan_create(good, 3).await.expect(good);
        let info = stat(&chan).await;
        assert_eq!((info.capacity, info.owner.as_str()), (3, "test"));
    }
    // Nothing was created by the bad names, and a taken name is refused.
    assert_eq!(client.chan_list().await.expect("list").len(), 3);
    let dup = client.chan_create("jobs", 3).await.expect_err("duplicate");
    assert!(matches!(dup, ChanError::AlreadyExists(_)), "{dup:?}");
    client
        .chan_ensure("jobs", 3)
        .await
        .expect("ensure is idempotent");
    let missing = client.chan("nope").await.expect_err("missing");
    assert!(missing.is_not_found(), "{missing:?}");
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[tokio::test]
async fn rule_2_send_completes_when_buffered_or_taken() {
    rule_2(&Place::one().await).await;
}

#[tokio::test]
async fn rule_2_across_nodes() {
    rule_2(&Place::across().await).await;
}

async fn rule_2(p: &Place) {
    // Capacity 2: two sends complete with nobody receiving; the third waits for room.
    let (chan, rxc) = p.create("buffered", 2).await;
    let tx = chan.sender::<u32>().await.expect("sender");
    tx.send(1).await.expect("first");
    tx.send(2).await.expect("second");
    let third = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(3).await }
    });
    until(&chan, "the third send waits", |i| i.waiting_senders == 1).await;
    assert!(!third.is_finished(), "a send into a full channel must wait");
    let mut rx = rxc.receiver::<u32>().await.expect("receiver");
    assert_eq!(rx.recv().await.expect("recv"), 1);
    third
        .await
        .expect("join")
        .expect("third completes once there is room");

    // Capacity 0: a send completes only when a receiver has taken the value.
    let (chan, rxc) = p.create("rendezvous", 0).await;
    let tx = chan.sender::<u32>().await.expect("sender");
    let send = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(7).await }
    });
    let info = until(&chan, "the send waits for a receiver", |i| {
        i.waiting_senders == 1
    })
    .await;
    assert_eq!(
        (info.len, info.sent),
        (0, 0),
        "nothing is buffered at capacity 0"
    );
    assert!(!send.is_finished());
    let mut rx = rxc.receiver::<u32>().await.expect("receiver");
    assert_eq!(rx.recv().await.expect("recv"), 7);
    send.await
        .expect("join")
        .expect("send completes after the hand-over");
    let info = stat(&chan).await;
    assert_eq!((info.sent, info.received, info.in_flight), (1, 1, 0));
}

#[tokio::test]
async fn rule_3_fifo_and_each_senders_order() {
    rule_3(&Place::one().await).await;
}

#[tokio::test]
async fn rule_3_across_nodes() {
    rule_3(&Place::across().await).await;
}

async fn rule_3(p: &Place) {
    let (chan, rxc) = p.create("fifo", 64).await;
    let a = chan.sender::<(u8, u32)>().await.expect("a");
    let b = p.tx.client().await.chan("fifo").await.expect("open");
    let b = b.sender::<(u8, u32)>().await.expect("b");
    let feed = |tx: Sender<(u8, u32)>, who: u8| async move {
        for i in 0..2000 {
            drop(tx.submit((who, i)).await.expect("submit"));
        }
        tx.flush().await.expect("flush");
    };
    let (fa, fb) = (tokio::spawn(feed(a, 0)), tokio::spawn(feed(b, 1)));
    let mut rx = rxc
        .receiver_with(
            circuit_sdk::chan::Json,
            RecvOptions {
                prefetch: 32,
                ..Default::default()
            },
        )
        .await
        .expect("receiver");
    let mut next = [0u32; 2];
    for _ in 0..4000 {
        let (who, i): (u8, u32) = rx.recv().await.expect("recv");
        assert_eq!(
            i, next[who as usize],
            "sender {who}'s values arrive in order"
        );
        next[who as usize] += 1;
    }
    fa.await.expect("a");
    fb.await.expect("b");
}

#[tokio::test]
async fn rule_4_recv_returns_the_oldest_and_waits_while_empty() {
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("q", 8).await.expect("create");
    let mut rx = chan.receiver::<String>().await.expect("receiver");
    let err = rx
        .recv_timeout(Duration::from_millis(100))
        .await
        .expect_err("empty");
    assert!(err.is_timeout(), "{err:?}");
    let waiting = tokio::spawn(async move {
        let v = rx.recv().await;
        (rx, v)
    });
    until(&chan, "the receiver waits", |i| i.waiting_receivers == 1).await;
    let tx = chan.sender::<String>().await.expect("sender");
    for v in ["a", "b", "c"] {
        tx.send(v.into()).await.expect("send");
    }
    let (mut rx, first) = waiting.await.expect("join");
    assert_eq!(first.expect("woken"), "a");
    assert_eq!(rx.recv().await.expect("b"), "b");
    assert_eq!(rx.recv().await.expect("c"), "c");
}

#[tokio::test]
async fn rule_5_close_fails_sends_wakes_receivers_and_drains() {
    rule_5(&Place::one().await).await;
}

#[tokio::test]
async fn rule_5_across_nodes() {
    rule_5(&Place::across().await).await;
}

async fn rule_5(p: &Place) {
    // A blocked send fails with Closed, and so does a later one.
    let (full, full_rx) = p.create("full", 1).await;
    let tx = full.sender::<u32>().await.expect("sender");
    tx.send(1).await.expect("fills the buffer");
    let blocked = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(2).await }
    });
    until(&full, "a send waits", |i| i.waiting_senders == 1).await;
    full.close().await.expect("close");
    assert_eq!(blocked.await.expect("join"), Err(ChanError::Closed));
    assert_eq!(tx.send(3).await, Err(ChanError::Closed));
    let again = full.close().await.expect_err("second close");
    assert!(again.to_string().contains("already closed"), "{again}");
    // The buffered value is still received, then Closed.
    let mut rx = full_rx.receiver::<u32>().await.expect("receiver");
    assert_eq!(rx.recv().await.expect("drain"), 1);
    assert_eq!(rx.recv().await, Err(ChanError::Closed));
    assert_eq!(
        rx.recv().await,
        Err(ChanError::Closed),
        "closed stays closed"
    );

    // Receivers blocked on an empty channel wake with Closed.
    let (empty, empty_rx) = p.create("empty", 4).await;
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let mut rx = empty_rx.receiver::<u32>().await.expect("receiver");
        waiters.push(tokio::spawn(async move { rx.recv().await }));
    }
    until(&empty, "three receivers wait", |i| i.waiting_receivers == 3).await;
    empty.close().await.expect("close");
    for w in waiters {
        assert_eq!(w.await.expect("join"), Err(ChanError::Closed));
    }
    // A closed receiver stream ends.
    let mut rx = empty_rx.receiver::<u32>().await.expect("receiver");
    assert!(rx.next().await.is_none());
}

#[tokio::test]
async fn rule_6_many_senders_and_receivers_each_value_once() {
    const SENDERS: u64 = 8;
    const RECEIVERS: usize = 8;
    const PER_SENDER: u64 = 12_500; // 100,000 in all
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("many", 256).await.expect("create");
    let mut receivers = Vec::new();
    for r in 0..RECEIVERS {
        // Each receiver on its own connection; half take values one at a time, half prefetch.
        let own = d.client().await.chan("many").await.expect("open");
        let mut rx = raw_rx(&own, if r % 2 == 0 { 1 } else { 64 }).await;
        receivers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(v) = rx.recv().await {
                got.push(u64::from_be_bytes(v[..].try_into().expect("8 bytes")));
            }
            got
        }));
    }
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let own = d.client().await.chan("many").await.expect("open");
        let tx = raw_tx(&own).await;
        senders.push(tokio::spawn(async move {
            for i in 0..PER_SENDER {
                let v = s * PER_SENDER + i;
                drop(
                    tx.submit(Bytes::copy_from_slice(&v.to_be_bytes()))
                        .await
                        .expect("submit"),
                );
            }
            tx.flush().await.expect("flush");
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    chan.close().await.expect("close");
    let mut seen = HashSet::new();
    let mut busy = 0;
    for r in receivers {
        let got = r.await.expect("receiver");
        busy += usize::from(!got.is_empty());
        for v in got {
            assert!(seen.insert(v), "value {v} delivered twice");
        }
    }
    assert_eq!(seen.len() as u64, SENDERS * PER_SENDER, "no value lost");
    assert!(busy > 1, "values were spread over the receivers");
    let info = stat(&chan).await;
    assert_eq!((info.sent, info.received), (100_000, 100_000));
}

#[tokio::test]
async fn rule_7_waiting_receivers_are_served_in_order() {
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("order", 0).await.expect("create");
    let mut waiters = Vec::new();
    for k in 1..=3u64 {
        let own = d.client().await.chan("order").await.expect("open");
        let mut rx = own.receiver::<String>().await.expect("receiver");
        waiters.push(tokio::spawn(async move { rx.recv().await }));
        until(&chan, "receiver k waits", |i| i.waiting_receivers == k).await;
    }
    let tx = chan.sender::<String>().await.expect("sender");
    for v in ["first", "second", "third"] {
        tx.send(v.into()).await.expect("send");
    }
    let got: Vec<String> = futures::future::join_all(waiters)
        .await
        .into_iter()
        .map(|r| r.expect("join").expect("recv"))
        .collect();
    assert_eq!(got, ["first", "second", "third"]);
}

#[tokio::test]
async fn rule_8_a_value_not_acknowledged_goes_back_to_the_head() {
    rule_8(&Place::one().await).await;
}

#[tokio::test]
async fn rule_8_across_nodes() {
    rule_8(&Place::across().await).await;
}

async fn rule_8(p: &Place) {
    let (chan, rxc) = p.create("back", 16).await;
    let tx = chan.sender::<u32>().await.expect("sender");
    for i in 0..10 {
        tx.send(i).await.expect("send");
    }
    // A receiver on its own connection takes three values without acknowledging them (a
    // prefetching receiver holds more), then its connection goes away.
    {
        let own = p.rx_client().await.chan("back").await.expect("open");
        let mut rx: Receiver<u32> = own
            .receiver_with(
                circuit_sdk::chan::Json,
                RecvOptions {
                    prefetch: 4,
                    ..Default::default()
                },
            )
            .await
            .expect("receiver");
        let mut held = Vec::new();
        for want in 0..3u32 {
            let d = rx.recv_delivery().await.expect("delivery");
            assert_eq!(*d, want);
            held.push(d);
        }
        let info = until(&chan, "values are in flight", |i| i.in_flight >= 3).await;
        assert_eq!(info.received, 0);
        std::mem::forget(held); // as if the process died: no ack, no give-back
    }
    // The connection closed with the receiver: everything it held is back, in order.
    let info = until(&chan, "values are back", |i| i.in_flight == 0).await;
    assert_eq!(info.len, 10);
    let mut rx = rxc.receiver::<u32>().await.expect("receiver");
    for want in 0..10 {
        assert_eq!(rx.recv().await.expect("recv"), want);
    }
}

#[tokio::test]
async fn rule_9_in_flight_values_count_against_the_capacity() {
    rule_9(&Place::one().await).await;
}

#[tokio::test]
async fn rule_9_across_nodes() {
    rule_9(&Place::across().await).await;
}

async fn rule_9(p: &Place) {
    let (chan, rxc) = p.create("cap", 2).await;
    let tx = chan.sender::<u32>().await.expect("sender");
    tx.send(1).await.expect("send");
    tx.send(2).await.expect("send");
    let mut rx = rxc.receiver::<u32>().await.expect("receiver");
    let held = rx.recv_delivery().await.expect("delivery");
    // One buffered plus one in flight: full. More senders block, and the bound holds.
    let mut blocked = Vec::new();
    for i in 0..4 {
        let tx = tx.clone();
        blocked.push(tokio::spawn(async move { tx.send(10 + i).await }));
    }
    let info = until(&chan, "four sends wait", |i| i.waiting_senders == 4).await;
    assert_eq!((info.len, info.in_flight), (1, 1));
    for _ in 0..20 {
        let info = stat(&chan).await;
        assert!(
            info.len + info.in_flight <= 2,
            "capacity exceeded: {info:?}"
        );
    }
    assert!(blocked.iter().all(|b| !b.is_finished()));
    held.ack();
    until(&chan, "one send got in", |i| i.waiting_senders == 3).await;
    let mut got = Vec::new();
    while got.len() < 5 {
        got.push(rx.recv().await.expect("recv"));
        let info = stat(&chan).await;
        assert!(
            info.len + info.in_flight <= 2,
            "capacity exceeded: {info:?}"
        );
    }
    for b in blocked {
        b.await.expect("join").expect("send");
    }
    assert_eq!(got[0], 2);
}

#[tokio::test]
async fn rule_11_try_and_timeouts_change_nothing_when_they_fail() {
    rule_11(&Place::one().await).await;
}

#[tokio::test]
async fn rule_11_across_nodes() {
    rule_11(&Place::across().await).await;
}

async fn rule_11(p: &Place) {
    let (chan, rxc) = p.create("try", 1).await;
    let tx = chan.sender::<u32>().await.expect("sender");
    let mut rx = rxc.receiver::<u32>().await.expect("receiver");
    assert_eq!(rx.try_recv().await, Err(ChanError::Empty));
    tx.try_send(1).await.expect("room for one");
    assert_eq!(tx.try_send(2).await, Err(ChanError::Full));
    assert_eq!(
        tx.send_timeout(3, Duration::from_millis(100)).await,
        Err(ChanError::Timeout)
    );
    let info = stat(&chan).await;
    assert_eq!((info.len, info.sent, info.waiting_senders), (1, 1, 0));
    assert_eq!(rx.try_recv().await, Ok(1));
    assert_eq!(rx.try_recv().await, Err(ChanError::Empty));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(100)).await,
        Err(ChanError::Timeout)
    );
    tx.send_timeout(4, SOON).await.expect("room again");
    assert_eq!(rx.recv_timeout(SOON).await, Ok(4));

    // At capacity 0, try_send succeeds only when a receiver is waiting.
    let (rv, rv_rx) = p.create("try0", 0).await;
    let tx = rv.sender::<u32>().await.expect("sender");
    assert_eq!(tx.try_send(1).await, Err(ChanError::Full));
    let mut rx = rv_rx.receiver::<u32>().await.expect("receiver");
    let waiting = tokio::spawn(async move { rx.recv().await });
    until(&rv, "a receiver waits", |i| i.waiting_receivers == 1).await;
    tx.try_send(2).await.expect("taken by the waiting receiver");
    assert_eq!(waiting.await.expect("join"), Ok(2));
    let info = stat(&rv).await;
    assert_eq!((info.sent, info.received, info.len), (1, 1, 0));
}

#[tokio::test]
async fn rule_12_stat_reports_the_counts() {
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("stat", 5).await.expect("create");
    let tx = chan.sender::<u32>().await.expect("sender");
    let _tx2 = chan.sender::<u32>().await.expect("sender");
    let mut rx = chan.receiver::<u32>().await.expect("receiver");
    for i in 0..3 {
        tx.send(i).await.expect("send");
    }
    rx.recv().await.expect("recv");
    let held = rx.recv_delivery().await.expect("delivery");
    let info = until(&chan, "the ack of the first value", |i| i.received == 1).await;
    assert_eq!(info.name, "stat");
    assert_eq!(info.capacity, 5);
    assert_eq!((info.len, info.in_flight), (1, 1));
    assert_eq!((info.sent, info.received), (3, 1));
    assert_eq!((info.senders, info.receivers), (2, 1));
    assert_eq!((info.waiting_senders, info.waiting_receivers), (0, 0));
    assert!(!info.closed);
    assert_eq!(info.owner, "test");
    assert_eq!(info.max_payload, 16 * 1024 * 1024);
    held.ack();
    chan.close().await.expect("close");
    let info = until(&chan, "acked", |i| i.received == 2).await;
    assert!(info.closed);
}

#[tokio::test]
async fn rule_13_payloads_over_the_limit_are_refused() {
    let d = Daemon::start_with(&["--max-payload", "1024"]);
    let client = d.client().await;
    let chan = client.chan_create("big", 4).await.expect("create");
    let tx = raw_tx(&chan).await;
    tx.send(Bytes::from(vec![7u8; 1024]))
        .await
        .expect("at the limit");
    let err = tx
        .send(Bytes::from(vec![7u8; 1025]))
        .await
        .expect_err("over");
    assert_eq!(
        err,
        ChanError::TooLarge {
            size: 1025,
            max: 1024
        }
    );
    assert!(err.to_string().contains("1025"), "{err}");
    let info = stat(&chan).await;
    assert_eq!(
        (info.sent, info.len),
        (1, 1),
        "the refused value changed nothing"
    );

    // The default limit is 16 MiB.
    let d = Daemon::start();
    let chan = d
        .client()
        .await
        .chan_create("big", 1)
        .await
        .expect("create");
    let tx = raw_tx(&chan).await;
    let err = tx
        .send(Bytes::from(vec![0u8; 16 * 1024 * 1024 + 1]))
        .await
        .expect_err("over 16 MiB");
    assert!(matches!(err, ChanError::TooLarge { max, .. } if max == 16 * 1024 * 1024));
}

#[tokio::test]
async fn rule_14_payloads_are_opaque_bytes() {
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("bytes", 4).await.expect("create");
    let tx = raw_tx(&chan).await;
    let mut rx = raw_rx(&chan, 1).await;
    let every_byte: Vec<u8> = (0..=255).collect();
    for v in [
        Bytes::new(),
        Bytes::from(every_byte),
        Bytes::from_static(b"\xff\xfe{not json"),
    ] {
        tx.send(v.clone()).await.expect("send");
        assert_eq!(rx.recv().await.expect("recv"), v);
    }
}

#[tokio::test]
async fn rule_15_channels_persist_until_removed() {
    let mut d = Daemon::start();
    {
        let client = d.client().await;
        client.chan_create("kept", 7).await.expect("create");
        let gone = client.chan_create("gone", 1).await.expect("create");
        client
            .chan_create("closed", 1)
            .await
            .expect("create")
            .close()
            .await
            .expect("close");
        gone.remove().await.expect("rm");
        assert!(gone.stat().await.expect_err("removed").is_not_found());
    }
    assert!(d.terminate().success());
    d.launch();
    let client = d.client().await;
    let names: Vec<(String, u64, bool)> = client
        .chan_list()
        .await
        .expect("list")
        .into_iter()
        .map(|i| (i.name, i.capacity, i.closed))
        .collect();
    assert_eq!(
        names,
        [
            ("closed".to_string(), 1, true),
            ("kept".to_string(), 7, false)
        ]
    );
}

#[tokio::test]
async fn rule_16_a_cancelled_recv_loses_no_value() {
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("cancel", 0).await.expect("create");
    let tx = chan.sender::<u32>().await.expect("sender");
    let feeder = tokio::spawn(async move {
        for i in 0..300 {
            tx.send(i).await.expect("send");
        }
    });
    let mut rx = chan.receiver::<u32>().await.expect("receiver");
    let mut got = Vec::new();
    let mut cancelled = 0;
    let mut round = 0u64;
    let all = async {
        while got.len() < 300 {
            round += 1;
            // Most receives ask the owner for a value and are dropped a few scheduler turns
            // later, as when another branch of `select!` wins; every eighth one waits. A value
            // that arrives for a dropped receive must come out of a later one.
            let recv = rx.recv();
            if round.is_multiple_of(8) {
                got.push(recv.await.expect("recv"));
                continue;
            }
            let other_branch = async {
                for _ in 0..round % 8 {
                    tokio::task::yield_now().await;
                }
            };
            tokio::select! {
                biased;
                v = recv => got.push(v.expect("recv")),
                () = other_branch => cancelled += 1,
            }
        }
    };
    tokio::time::timeout(SOON, all)
        .await
        .expect("every value arrives: none was lost to a cancelled receive");
    feeder.await.expect("feeder");
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    assert!(cancelled > 0, "some receives were cancelled");

    // The race itself, made certain: the value reaches the receiver while its receive is not
    // being polled, and then that receive is dropped. The next receive returns it.
    let late = client.chan_create("late", 0).await.expect("create");
    let mut rx = late.receiver::<u32>().await.expect("receiver");
    let mut first = Box::pin(rx.recv());
    assert!(
        futures::poll!(first.as_mut()).is_pending(),
        "asks the owner"
    );
    until(&late, "the receive waits", |i| i.waiting_receivers == 1).await;
    let tx = late.sender::<u32>().await.expect("sender");
    let send = tokio::spawn(async move { tx.send(42).await });
    until(&late, "the value is on its way to the receiver", |i| {
        i.in_flight == 1
    })
    .await;
    drop(first);
    assert_eq!(
        rx.recv_timeout(SOON).await,
        Ok(42),
        "the value waited for the next receive"
    );
    send.await
        .expect("join")
        .expect("taken by the second receive");
}

#[tokio::test]
async fn rule_17_a_restarted_owner_fails_pending_operations_with_owner_lost() {
    let mut d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("owned", 1).await.expect("create");
    let tx = chan.sender::<u32>().await.expect("sender");
    tx.send(1).await.expect("fills");
    let blocked = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(2).await }
    });
    let waiting_chan = client.chan_create("waiting", 1).await.expect("create");
    let mut rx = waiting_chan.receiver::<u32>().await.expect("receiver");
    let receiver = tokio::spawn(async move { rx.recv().await });
    until(&chan, "a send waits", |i| i.waiting_senders == 1).await;
    d.kill9();
    d.launch();
    let sent = tokio::time::timeout(SOON, blocked).await.expect("no hang");
    assert!(sent.expect("join").expect_err("lost").is_owner_lost());
    let got = tokio::time::timeout(SOON, receiver).await.expect("no hang");
    assert!(got.expect("join").expect_err("lost").is_owner_lost());
    assert!(tx.send(3).await.expect_err("dead sender").is_owner_lost());
}

#[tokio::test]
async fn removing_a_channel_ends_its_streams_with_not_found() {
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("doomed", 0).await.expect("create");
    let tx = chan.sender::<u32>().await.expect("sender");
    let mut rx = chan.receiver::<u32>().await.expect("receiver");
    let send = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(1).await }
    });
    until(&chan, "a send waits", |i| i.waiting_senders == 1).await;
    chan.remove().await.expect("rm");
    assert!(send
        .await
        .expect("join")
        .expect_err("removed")
        .is_not_found());
    assert!(rx.recv().await.expect_err("removed").is_not_found());
    assert!(client
        .chan_stat("doomed")
        .await
        .expect_err("gone")
        .is_not_found());
    let err = client.chan("doomed").await.expect_err("gone");
    assert!(err.to_string().contains("circuit chan ls"), "{err}");
    // The daemon keeps serving.
    client
        .chan_create("doomed", 1)
        .await
        .expect("the name is free again");
}

#[tokio::test]
async fn opening_unknown_channels_fails_cleanly() {
    let d = Daemon::start();
    let client = d.client().await;
    client.chan_create("real", 1).await.expect("create");
    let ghost = Chan::open_from_env("nope").await.expect_err("unbound");
    assert!(ghost.to_string().contains("CIRCUIT_CHAN_NOPE"), "{ghost}");
    let chan = client.chan("real").await.expect("open");
    chan.remove().await.expect("rm");
    let err = chan.sender::<u32>().await.expect_err("removed");
    assert!(err.is_not_found(), "{err:?}");
    let err = chan.receiver::<u32>().await.expect_err("removed");
    assert!(err.is_not_found(), "{err:?}");
    assert!(client
        .chan_close("real")
        .await
        .expect_err("gone")
        .is_not_found());
    assert!(client
        .chan_remove("real")
        .await
        .expect_err("gone")
        .is_not_found());
    let _ = Client::connect_unix(&d.socket)
        .await
        .expect("still serving");
}

/// A TCP proxy in front of a daemon's API whose connections the test can cut at will.
struct Proxy {
    addr: String,
    current: std::sync::Arc<std::sync::Mutex<tokio_util::sync::CancellationToken>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let current = std::sync::Arc::new(std::sync::Mutex::new(
            tokio_util::sync::CancellationToken::new(),
        ));
        let tokens = current.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let token = tokens.lock().expect("token").clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        Self {
            addr,
            current,
            task,
        }
    }

    /// Drops every connection open now; later ones pass again.
    fn cut(&self) {
        let mut token = self.current.lock().expect("token");
        token.cancel();
        *token = tokio_util::sync::CancellationToken::new();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn tcp_daemon() -> (Daemon, String) {
    let d = Daemon::start_with(&["--listen", "127.0.0.1:0"]);
    let status = match d
        .client()
        .await
        .call(circuit_sdk::proto::Request::Status)
        .await
    {
        Ok(circuit_sdk::proto::Reply::Status(s)) => s,
        other => panic!("status: {other:?}"),
    };
    let addr = status.listen.expect("tcp address");
    (d, addr)
}

#[tokio::test]
async fn rule_10_a_reconnecting_sender_neither_loses_nor_duplicates() {
    const N: u64 = 20_000;
    let (d, addr) = tcp_daemon().await;
    let proxy = Proxy::start(addr).await;
    let local = d.client().await;
    let chan = local.chan_create("retry", 64).await.expect("create");
    let remote = Client::connect_tcp(&proxy.addr).await.expect("via proxy");
    let tx = remote
        .chan("retry")
        .await
        .expect("open")
        .sender_with(Raw, SendOptions::default())
        .await
        .expect("sender");
    let feeder = tokio::spawn(async move {
        for i in 0..N {
            drop(
                tx.submit(Bytes::copy_from_slice(&i.to_be_bytes()))
                    .await
                    .expect("submit"),
            );
        }
        tx.flush()
            .await
            .expect("every value accepted despite the cuts");
    });
    let mut rx = raw_rx(&chan, 16).await;
    let mut got = Vec::with_capacity(N as usize);
    let mut cuts = 0;
    while (got.len() as u64) < N {
        let v = rx.recv_timeout(SOON).await.expect("recv");
        got.push(u64::from_be_bytes(v[..].try_into().expect("8 bytes")));
        if got.len() % 4000 == 0 && got.len() < N as usize {
            proxy.cut();
            cuts += 1;
        }
    }
    tokio::time::timeout(SOON, feeder)
        .await
        .expect("sender finished")
        .expect("join");
    assert_eq!(cuts, 4);
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "in order, none lost or doubled"
    );
    assert_eq!(
        rx.try_recv().await,
        Err(ChanError::Empty),
        "no duplicate left over"
    );
    let info = stat(&chan).await;
    assert_eq!((info.sent, info.received), (N, N));
}

#[tokio::test]
async fn rule_10_a_reconnecting_receiver_loses_nothing() {
    const N: u64 = 5_000;
    let (d, addr) = tcp_daemon().await;
    let proxy = Proxy::start(addr).await;
    let chan = d
        .client()
        .await
        .chan_create("again", 32)
        .await
        .expect("create");
    let tx = raw_tx(&chan).await;
    let feeder = tokio::spawn(async move {
        for i in 0..N {
            drop(
                tx.submit(Bytes::copy_from_slice(&i.to_be_bytes()))
                    .await
                    .expect("submit"),
            );
        }
        tx.flush().await.expect("flush");
    });
    let remote = Client::connect_tcp(&proxy.addr).await.expect("via proxy");
    let mut rx = raw_rx(&remote.chan("again").await.expect("open"), 8).await;
    let mut seen = HashSet::new();
    let mut n = 0;
    while (seen.len() as u64) < N {
        let v = rx.recv_timeout(SOON).await.expect("recv");
        seen.insert(u64::from_be_bytes(v[..].try_into().expect("8 bytes")));
        n += 1;
        if n % 1000 == 0 {
            proxy.cut();
        }
    }
    feeder.await.expect("feeder");
    let info = until(&chan, "all acknowledged", |i| i.received >= N).await;
    assert_eq!(info.len + info.in_flight, 0);
}

#[tokio::test]
async fn garbage_on_channel_streams_is_refused_and_the_daemon_keeps_serving() {
    use circuit_sdk::proto::{ClientMessage, Frame, FrameCodec, Request, ServerMessage, SignalOp};
    use futures::SinkExt;
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("g", 4).await.expect("create");
    let stream = tokio::net::UnixStream::connect(&d.socket)
        .await
        .expect("connect");
    let mut conn = tokio_util::codec::Framed::new(stream, FrameCodec::default());
    let send =
        |msg: ClientMessage| Frame::Control(Bytes::from(serde_json::to_vec(&msg).expect("json")));
    conn.send(send(ClientMessage::Hello {
        version: circuit_sdk::proto::PROTOCOL_VERSION,
        client: "garbage".into(),
    }))
    .await
    .expect("hello");
    assert!(matches!(
        next(&mut conn).await,
        Some(ServerMessage::Hello { .. })
    ));
    // A receive stream that acknowledges values it never got is ended with bad_request.
    let open = ClientMessage::Request {
        id: 1,
        request: Request::ChanRecv { name: "g".into() },
    };
    conn.send(send(open)).await.expect("open");
    assert!(matches!(
        next(&mut conn).await,
        Some(ServerMessage::Item { id: 1, .. })
    ));
    conn.send(Frame::Signal {
        id: 1,
        op: SignalOp::Ack,
        a: 5,
        b: 0,
    })
    .await
    .expect("ack");
    match next(&mut conn).await {
        Some(ServerMessage::Error {
            id: Some(1),
            code,
            message,
        }) => {
            assert_eq!(code, circuit_sdk::proto::ErrorCode::BadRequest);
            assert!(message.contains("acknowledged 5"), "{message}");
        }
        other => panic!("expected the stream to fail, got {other:?}"),
    }
    // Data for a stream that does not exist, and a daemon-only signal from a client.
    conn.send(Frame::Data {
        id: 77,
        seq: 1,
        payload: Bytes::from_static(b"x"),
    })
    .await
    .expect("data");
    assert!(matches!(
        next(&mut conn).await,
        Some(ServerMessage::Error {
            code: circuit_sdk::proto::ErrorCode::BadRequest,
            ..
        })
    ));
    let open = ClientMessage::Request {
        id: 2,
        request: Request::ChanSend {
            name: "g".into(),
            sender: 9,
        },
    };
    conn.send(send(open)).await.expect("open");
    assert!(matches!(
        next(&mut conn).await,
        Some(ServerMessage::Item { id: 2, .. })
    ));
    conn.send(Frame::Signal {
        id: 2,
        op: SignalOp::Accepted,
        a: 1,
        b: 1,
    })
    .await
    .expect("signal");
    assert!(matches!(
        next(&mut conn).await,
        Some(ServerMessage::Error { id: Some(2), .. })
    ));
    // Opening a stream on a bad or unknown name.
    let open = ClientMessage::Request {
        id: 3,
        request: Request::ChanSend {
            name: "no such".into(),
            sender: 9,
        },
    };
    conn.send(send(open)).await.expect("open");
    assert!(matches!(
        next(&mut conn).await,
        Some(ServerMessage::Error {
            id: Some(3),
            code: circuit_sdk::proto::ErrorCode::InvalidArgument,
            ..
        })
    ));
    let open = ClientMessage::Request {
        id: 4,
        request: Request::ChanRecv {
            name: "ghost".into(),
        },
    };
    conn.send(send(open)).await.expect("open");
    assert!(matches!(
        next(&mut conn).await,
        Some(ServerMessage::Error {
            id: Some(4),
            code: circuit_sdk::proto::ErrorCode::NotFound,
            ..
        })
    ));
    // An unknown signal op is unframeable: the connection is closed, nothing else changes.
    let mut bad = vec![0, 0, 0, 26, 3];
    bad.extend_from_slice(&1u64.to_be_bytes());
    bad.push(99);
    bad.extend_from_slice(&[0; 16]);
    let mut raw = conn.into_inner();
    tokio::io::AsyncWriteExt::write_all(&mut raw, &bad)
        .await
        .expect("write");
    let mut conn = tokio_util::codec::Framed::new(raw, FrameCodec::default());
    match next(&mut conn).await {
        Some(ServerMessage::Error { id: None, code, .. }) => {
            assert_eq!(code, circuit_sdk::proto::ErrorCode::BadFrame)
        }
        other => panic!("expected bad_frame, got {other:?}"),
    }
    // The channel still works for everyone else.
    let tx = chan.sender::<u32>().await.expect("sender");
    let mut rx = chan.receiver::<u32>().await.expect("receiver");
    tx.send(5).await.expect("send");
    assert_eq!(rx.recv().await, Ok(5));
    let info = stat(&chan).await;
    assert_eq!((info.len, info.in_flight, info.receivers), (0, 0, 1));
}

type RawConn = tokio_util::codec::Framed<tokio::net::UnixStream, circuit_sdk::proto::FrameCodec>;

/// The next control message from the daemon, or None when it closed the connection.
async fn next(conn: &mut RawConn) -> Option<circuit_sdk::proto::ServerMessage> {
    use circuit_sdk::proto::Frame;
    match tokio::time::timeout(SOON, conn.next())
        .await
        .expect("reply")
    {
        Some(Ok(Frame::Control(b))) => Some(serde_json::from_slice(&b).expect("msg")),
        Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        Some(Err(e)) => panic!("bad frame from daemon: {e}"),
        None => None,
    }
}

#[tokio::test]
async fn closing_a_receiver_waits_for_its_acknowledgements() {
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("closing", 4).await.expect("create");
    let tx = chan.sender::<u32>().await.expect("sender");
    tx.send(1).await.expect("send");
    tx.send(2).await.expect("send");
    let own = d.client().await.chan("closing").await.expect("open");
    let mut rx = own.receiver::<u32>().await.expect("receiver");
    assert_eq!(rx.recv().await, Ok(1));
    tokio::time::timeout(Duration::from_secs(2), rx.close())
        .await
        .expect("close returns once the owner has processed it");
    let info = stat(&chan).await;
    assert_eq!((info.received, info.len, info.receivers), (1, 1, 0));
}
