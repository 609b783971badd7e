//! Sending and receiving (rules 1–4, 6, 7 and 11 of `docs/CHANNELS.md`): names and
//! capacity, when a send completes, FIFO order, receive, many senders and receivers, fair
//! hand-out, and non-blocking and bounded waits.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use circuit_sdk::chan::{ChanError, RecvOptions, Sender};
use circuit_testkit::Daemon;

use super::{raw_rx, raw_tx, stat, until, Place, SOON};

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
async fn rule_7_a_waiting_receiver_gets_values_another_holds_untaken() {
    rule_7_recall(&Place::one().await).await;
}

#[tokio::test]
async fn rule_7_recall_across_nodes() {
    rule_7_recall(&Place::across().await).await;
}

/// Receivers prefetch by default. One that took a value and then stopped taking holds the
/// rest untaken; a second receiver that waits must get them, not starve.
async fn rule_7_recall(p: &Place) {
    let (chan, rxc) = p.create("recall", 16).await;
    let mut first = rxc.receiver::<u32>().await.expect("receiver");
    let tx = chan.sender::<u32>().await.expect("sender");
    for i in 0..6 {
        tx.send(i).await.expect("send");
    }
    assert_eq!(first.recv().await.expect("recv"), 0);
    // The other five were streamed to `first` ahead of its `recv`s.
    until(&chan, "the first receiver holds the rest", |i| {
        i.in_flight == 5 && i.len == 0
    })
    .await;
    let mut second = rxc.receiver::<u32>().await.expect("receiver");
    let mut got: Vec<u32> = Vec::new();
    for _ in 0..2 {
        let v = tokio::time::timeout(SOON, second.recv())
            .await
            .expect("a waiting receiver is served while another holds values untaken")
            .expect("recv");
        got.push(v);
    }
    // The rest is still the first receiver's to take, each value once.
    for _ in 0..3 {
        got.push(first.recv().await.expect("recv"));
    }
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3, 4, 5]);
    let info = until(&chan, "all acknowledged", |i| i.received == 6).await;
    assert_eq!((info.len, info.in_flight), (0, 0));
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
