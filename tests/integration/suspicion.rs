//! A node paused (SIGSTOP) long enough to be suspected, then resumed: it refutes the suspicion,
//! and that is all. Three daemons on loopback; the pause is the scenario, everything else is
//! polled.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circuit_sdk::proto::{EventKind, Item, MeshEvent, NodeState, Reply, Request};
use circuit_sdk::{Client, Next};
use circuit_testkit::{converged, wait_until, wait_until_async, Daemon};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SOON: Duration = Duration::from_secs(10);

fn node(name: &str, join: Option<&str>) -> Daemon {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    if let Some(addr) = join {
        args.extend(["--join", addr]);
    }
    Daemon::start_named(name, &args)
}

/// Every membership event a daemon reports from now on.
fn record_events(client: Client) -> Arc<Mutex<Vec<MeshEvent>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        let mut stream = client.stream(Request::Events).await.expect("events");
        while let Ok(Next::Item(Item::Event(event))) = stream.next().await {
            into.lock().expect("events").push(event);
        }
    });
    seen
}

/// The state `client`'s daemon has for node `name`.
async fn state_of(client: &Client, name: &str) -> Option<NodeState> {
    match client.call(Request::Nodes).await {
        Ok(Reply::Nodes(nodes)) => nodes.into_iter().find(|n| n.name == name).map(|n| n.state),
        other => panic!("nodes: {other:?}"),
    }
}

/// The generation `observer` has for node `name`.
fn generation(observer: &Daemon, name: &str) -> u64 {
    observer
        .nodes()
        .into_iter()
        .find(|n| n.name == name)
        .map(|n| n.generation)
        .expect("node known")
}

/// The established TCP connections process `pid` has to `port` on loopback, by socket inode:
/// the peer links it opened to the node listening there.
fn links(pid: i32, port: u16) -> BTreeSet<u64> {
    let mine: BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?.to_string();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = u16::from_str_radix(f.get(2)?.rsplit(':').next()?, 16).ok()?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            (remote_port == port && *f.get(3)? == "01" && mine.contains(&inode)).then_some(inode)
        })
        .collect()
}

/// Lines of `d`'s log about node `about` that contain `what`.
fn log_count(d: &Daemon, about: &str, what: &str) -> usize {
    let node = format!("node={about}");
    d.log()
        .lines()
        .filter(|l| l.contains(what) && l.split_whitespace().any(|w| w == node))
        .count()
}

/// Resumes a stopped process when dropped, so a failing test does not leave it stopped.
struct Resume(Pid);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refuted_suspicion_forces_no_rejoin() {
    let a = node("a", None);
    let addr = a.mesh_addr();
    let b = node("b", Some(&addr));
    let c = node("c", Some(&addr));
    wait_until(SOON, "a, b, c converge", || converged(&[&a, &b, &c]));
    let b_port: u16 = b.mesh_addr().rsplit(':').next().unwrap().parse().unwrap();

    // A channel owned by b, sent to from a and received on c: both streams go over peer links.
    let (ca, cc) = (a.client().await, c.client().await);
    let create = Request::On {
        node: "b".into(),
        request: Box::new(Request::ChanCreate {
            name: "work".into(),
            capacity: 16,
            exist_ok: false,
            replicas: None,
            replica_labels: Vec::new(),
            storage: None,
        }),
    };
    assert!(matches!(ca.call(create).await, Ok(Reply::Chan(_))));
    let (tx_chan, rx_chan) = (
        ca.chan("work").await.unwrap(),
        cc.chan("work").await.unwrap(),
    );
    let tx = tx_chan.sender::<u32>().await.expect("sender on a");
    let mut rx = rx_chan.receiver::<u32>().await.expect("receiver on c");
    let mut got = Vec::new();
    for v in 1..=3 {
        tx.send(v).await.expect("send before the pause");
        got.push(rx.recv().await.expect("recv before the pause"));
    }
    let links_before = (links(a.pid(), b_port), links(c.pid(), b_port));
    assert!(
        !links_before.0.is_empty() && !links_before.1.is_empty(),
        "a and c have peer links to b: {links_before:?}"
    );
    let generations = [
        generation(&a, "b"),
        generation(&b, "b"),
        generation(&c, "b"),
    ];
    let mut recorded = Vec::new();
    for d in [&a, &b, &c] {
        recorded.push((d.name.clone(), record_events(d.client().await)));
    }
    let about_b = |kinds: &[EventKind]| -> Vec<String> {
        recorded
            .iter()
            .flat_map(|(on, seen)| {
                seen.lock()
                    .expect("events")
                    .iter()
                    .filter(|e| e.node == "b" && kinds.contains(&e.kind))
                    .map(|e| format!("{} on {on}", e.kind))
                    .collect::<Vec<_>>()
            })
            .collect()
    };

    // The scenario: b stops until another node suspects it, and goes on.
    let pid = Pid::from_raw(b.pid());
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    let resume = Resume(pid);
    wait_until_async(SOON, "a or c suspects b", || async {
        for client in [&ca, &cc] {
            if state_of(client, "b").await == Some(NodeState::Suspect) {
                return Some(());
            }
        }
        None
    })
    .await;
    drop(resume);

    // Every suspicion of b comes due, and b refuted each in time.
    let suspected = "declared dead unless it refutes in time";
    let refuted = "refuted its suspicion in time";
    wait_until_async(SOON, "every suspicion of b is over", || async {
        let over = [&a, &c]
            .iter()
            .all(|d| log_count(d, "b", suspected) == log_count(d, "b", refuted))
            && log_count(&a, "b", suspected) + log_count(&c, "b", suspected) > 0;
        let dead = !about_b(&[EventKind::Dead, EventKind::Rejoin]).is_empty();
        (over || dead).then_some(())
    })
    .await;
    assert_eq!(
        about_b(&[EventKind::Dead, EventKind::Rejoin]),
        Vec::<String>::new(),
        "b refuted its suspicion: nobody saw it die or rejoin"
    );
    assert!(
        !b.log().contains("declared dead by the mesh"),
        "b did not renew itself:\n{}",
        b.log()
    );
    wait_until_async(SOON, "a and c see b alive", || async {
        let alive = Some(NodeState::Alive);
        (state_of(&ca, "b").await == alive && state_of(&cc, "b").await == alive).then_some(())
    })
    .await;
    assert_eq!(
        [
            generation(&a, "b"),
            generation(&b, "b"),
            generation(&c, "b")
        ],
        generations,
        "b kept its generation"
    );

    // The streams go on: every value arrives once, over the same peer links.
    for v in 4..=6 {
        tx.send(v).await.expect("send after the pause");
        got.push(rx.recv().await.expect("recv after the pause"));
    }
    assert_eq!(got, (1..=6).collect::<Vec<_>>());
    wait_until_async(
        SOON,
        "the owner counts six values sent and taken",
        || async {
            let info = tx_chan.stat().await.expect("stat from a");
            let counts = (info.sent, info.received, info.len, info.in_flight);
            (counts == (6, 6, 0, 0)).then_some(())
        },
    )
    .await;
    rx_chan.stat().await.expect("stat from c");
    assert_eq!(
        (links(a.pid(), b_port), links(c.pid(), b_port)),
        links_before,
        "a and c kept their peer links to b"
    );
}
