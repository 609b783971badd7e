//! A channel's life (rules 5 and 15): close, persistence until removed, removal ending its
//! streams, and opening channels that do not exist.

use circuit_sdk::chan::{Chan, ChanError};
use circuit_sdk::Client;
use circuit_testkit::Daemon;
use futures::StreamExt;

use super::{until, Place};

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
