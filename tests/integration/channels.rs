//! Channels end to end against a real daemon: the rules of `docs/CHANNELS.md`, each test named
//! after the rule it checks (`rule_N_...`).

use std::time::Duration;

use circuit_sdk::chan::{ChanError, Raw, RecvOptions, SendOptions};
use circuit_tests::Daemon;

#[tokio::test]
async fn smoke_send_recv_close() {
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("jobs", 4).await.expect("create");
    let tx = chan.sender::<String>().await.expect("sender");
    let mut rx = chan.receiver::<String>().await.expect("receiver");
    for i in 0..10 {
        let tx = tx.clone();
        tokio::spawn(async move { tx.send(format!("v{i}")).await });
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(rx.recv().await.expect("recv"));
    }
    assert_eq!(got.len(), 10);
    chan.close().await.expect("close");
    assert!(matches!(rx.recv().await, Err(ChanError::Closed)));
    assert!(matches!(tx.send("x".into()).await, Err(ChanError::Closed)));
    let _ = (Raw, RecvOptions::default(), SendOptions::default(), Duration::ZERO);
}
