//! Payloads (rules 13 and 14): the size limit, and bytes the daemon never decodes.

use bytes::Bytes;
use circuit_sdk::chan::ChanError;
use circuit_testkit::Daemon;

use super::{raw_rx, raw_tx, stat};

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
