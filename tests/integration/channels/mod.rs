//! Channels end to end against a real daemon. Each test is named after the rule of
//! `docs/CHANNELS.md` it checks (`rule_N_...`); a few more cover bad input. The rules run in
//! groups, one file each; this file holds what they share: where a rule runs ([`Place`]) and
//! the channel helpers.

mod delivery;
mod failures;
mod lifecycle;
mod payloads;
mod send_recv;

use std::time::Duration;

use bytes::Bytes;
use circuit_sdk::chan::{Chan, Raw, Receiver, RecvOptions, SendOptions, Sender};
use circuit_sdk::proto::ChanInfo;
use circuit_sdk::Client;
use circuit_testkit::{wait_until_async, Daemon};

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
                        replicas: None,
                        replica_labels: Vec::new(),
                        storage: None,
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
