//! Delivery (rules 8, 9, 12 and 16): no silent loss, values in flight counting against the
//! capacity, stat's counts, cancel safety, and a receiver's close waiting for its
//! acknowledgements.

use std::time::Duration;

use circuit_sdk::chan::{Json, Receiver, RecvOptions};
use circuit_testkit::Daemon;

use super::{stat, until, Place, SOON};

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
                Json,
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
    // Prefetching 2 (automatic prefetch would take half the capacity, 1).
    let opts = RecvOptions {
        prefetch: 2,
        ..RecvOptions::default()
    };
    let mut rx = rxc
        .receiver_with::<u32, _>(Json, opts)
        .await
        .expect("receiver");
    let held = rx.recv_delivery().await.expect("delivery");
    // One taken and one prefetched, both in flight: full. More senders block, and the bound
    // holds.
    let mut blocked = Vec::new();
    for i in 0..4 {
        let tx = tx.clone();
        blocked.push(tokio::spawn(async move { tx.send(10 + i).await }));
    }
    let info = until(&chan, "four sends wait", |i| i.waiting_senders == 4).await;
    assert_eq!((info.len, info.in_flight), (0, 2));
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
    // The receiver holds the delivery and, prefetched, the third value.
    assert_eq!((info.len, info.in_flight), (0, 2));
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
