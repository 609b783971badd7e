//! Limits (docs/LIMITS.md): each one set low by its flag, hit, and shown to refuse only what it
//! should, with its code and message; the timeouts close silent connections and spare busy ones
//! and SDK clients that ping.

use std::time::{Duration, Instant};

use bytes::Bytes;
use circuit_sdk::proto::{
    ClientMessage, ErrorCode, Frame, FrameCodec, Reply, Request, ServerMessage, WorkerState,
    PROTOCOL_VERSION,
};
use circuit_sdk::{Client, Error};
use circuit_testkit::{inspect, list, sh, spawn, wait_until_async, Daemon};
use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

const SOON: Duration = Duration::from_secs(10);

/// The code and message of a refused request.
fn refused<T: std::fmt::Debug>(result: Result<T, Error>) -> (ErrorCode, String) {
    match result {
        Err(Error::Remote { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn create(client: &Client, name: &str, exist_ok: bool) -> Result<Reply, Error> {
    let request = Request::ChanCreate {
        name: name.into(),
        capacity: 1,
        exist_ok,
        replicas: None,
        replica_labels: Vec::new(),
        storage: None,
    };
    client.call(request).await
}

#[tokio::test]
async fn max_channels_refuses_new_channels_only() {
    let daemon = Daemon::start_with(&["--max-channels", "3"]);
    let client = daemon.client().await;
    for name in ["a", "b", "c"] {
        create(&client, name, false).await.expect("under the limit");
    }
    let (code, message) = refused(create(&client, "d", false).await);
    assert_eq!(code, ErrorCode::LimitReached);
    assert_eq!(
        message,
        "this node holds 3 channels, the limit (--max-channels): \
         remove unused ones with `circuit chan rm`"
    );
    // Not a new channel: exist_ok still answers at the limit.
    assert!(matches!(
        create(&client, "a", true).await,
        Ok(Reply::Chan(info)) if info.name == "a"
    ));
    // The channels there still work.
    let chan = client.chan("a").await.expect("open a");
    let sender = chan.sender::<String>().await.expect("sender");
    let mut receiver = chan.receiver::<String>().await.expect("receiver");
    sender.send("still here".into()).await.expect("send");
    assert_eq!(receiver.recv().await.expect("recv"), "still here");
    let names: Vec<String> = client
        .chan_list()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a", "b", "c"], "the refused one was not added");
    // Removing one makes room.
    client.chan_remove("b").await.expect("rm b");
    create(&client, "d", false).await.expect("room again");
}

#[tokio::test]
async fn max_workers_counts_exited_workers_until_rm() {
    let daemon = Daemon::start_with(&["--max-workers", "2"]);
    let client = daemon.client().await;
    spawn(&client, sh("runs", "sleep 1000")).await;
    spawn(&client, sh("done", "true")).await;
    wait_until_async(SOON, "done has exited", || async {
        (inspect(&client, "done").await.state == WorkerState::Exited).then_some(())
    })
    .await;
    let (code, message) = refused(client.call(Request::Spawn(sh("third", "true"))).await);
    assert_eq!(code, ErrorCode::LimitReached);
    assert_eq!(
        message,
        "this node holds 2 workers, the limit (--max-workers): \
         remove exited ones with `circuit rm`"
    );
    let names: Vec<String> = list(&client, true)
        .await
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["done", "runs"], "the refused one was not added");
    let rm = Request::Remove {
        name: "done".into(),
        force: false,
    };
    client.call(rm).await.expect("rm done");
    let third = spawn(&client, sh("third", "true")).await;
    assert_eq!(third.name, "third");
}

#[tokio::test]
async fn max_requests_per_connection_refuses_one_more_on_that_connection_only() {
    let daemon = Daemon::start_with(&["--max-requests-per-connection", "2"]);
    let client = daemon.client().await;
    spawn(&client, sh("sleeper", "sleep 1000")).await;
    let wait = || Request::Wait {
        name: "sleeper".into(),
    };
    let first = client.stream(wait()).await.expect("first wait");
    let _second = client.stream(wait()).await.expect("second wait");
    // Replies come in order on one connection: both waits are outstanding before this one.
    let (code, message) = refused(client.call(Request::Ping).await);
    assert_eq!(code, ErrorCode::TooManyRequests);
    assert!(message.contains("more than 2 requests"), "{message}");
    // Another connection has its own allowance.
    let other = daemon.client().await;
    assert!(matches!(other.call(Request::Ping).await, Ok(Reply::Done)));
    // Ending one request frees its place.
    drop(first);
    wait_until_async(SOON, "a cancelled request frees its place", || async {
        client.call(Request::Ping).await.ok()
    })
    .await;
}

type Conn = Framed<UnixStream, FrameCodec>;

async fn raw(daemon: &Daemon) -> Conn {
    let stream = UnixStream::connect(&daemon.socket).await.expect("connect");
    Framed::new(stream, FrameCodec::default())
}

async fn send(conn: &mut Conn, msg: &ClientMessage) {
    let json = serde_json::to_vec(msg).expect("json");
    conn.send(Frame::Control(Bytes::from(json)))
        .await
        .expect("send");
}

/// A connection that has said hello.
async fn greeted(daemon: &Daemon) -> Conn {
    let mut conn = raw(daemon).await;
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: "limits-test".into(),
    };
    send(&mut conn, &hello).await;
    match next(&mut conn, SOON).await {
        Read::Msg(ServerMessage::Hello { .. }) => conn,
        other => panic!("expected hello, got {other:?}"),
    }
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a test helper: one read at a time
enum Read {
    Msg(ServerMessage),
    /// Data or signal frame of a stream.
    Stream,
    Closed,
    /// Nothing within the wait.
    Quiet,
}

async fn next(conn: &mut Conn, wait: Duration) -> Read {
    match tokio::time::timeout(wait, conn.next()).await {
        Err(_) => Read::Quiet,
        Ok(None | Some(Err(_))) => Read::Closed,
        Ok(Some(Ok(Frame::Control(body)))) => {
            Read::Msg(serde_json::from_slice(&body).expect("daemon sends valid json"))
        }
        Ok(Some(Ok(_))) => Read::Stream,
    }
}

/// Reads until the daemon closes the connection; returns the connection-level error it gave.
async fn closed_with(conn: &mut Conn, within: Duration) -> (ErrorCode, String) {
    let deadline = Instant::now() + within;
    let mut notice = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next(conn, left).await {
            Read::Closed => return notice.expect("an error before the close"),
            Read::Quiet => panic!("still open after {within:?}"),
            Read::Msg(ServerMessage::Error {
                id: None,
                code,
                message,
            }) => notice = Some((code, message)),
            Read::Msg(_) | Read::Stream => {}
        }
    }
}

/// Pings on a raw connection and waits for the answer: the connection is open and served.
async fn ping(conn: &mut Conn, id: u64) {
    send(
        conn,
        &ClientMessage::Request {
            id,
            request: Request::Ping,
        },
    )
    .await;
    loop {
        match next(conn, SOON).await {
            Read::Msg(ServerMessage::Ok { id: got, .. }) if got == id => return,
            Read::Closed | Read::Quiet => panic!("no answer to a ping"),
            Read::Msg(_) | Read::Stream => {}
        }
    }
}

#[tokio::test]
async fn handshake_timeout_closes_a_connection_that_never_says_hello() {
    let daemon = Daemon::start_with(&["--handshake-timeout", "1s"]);
    let started = Instant::now();
    let mut conn = raw(&daemon).await;
    let (code, message) = closed_with(&mut conn, Duration::from_secs(5)).await;
    assert_eq!(code, ErrorCode::HandshakeRequired, "{message}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
}

#[tokio::test]
async fn idle_timeout_closes_silent_connections_and_spares_busy_ones() {
    let daemon = Daemon::start_with(&["--idle-timeout", "1s"]);
    let client = daemon.client().await;
    client.chan_create("quiet", 1).await.expect("create");
    // Waiting on membership events: a request outstanding.
    let mut events = greeted(&daemon).await;
    send(
        &mut events,
        &ClientMessage::Request {
            id: 1,
            request: Request::Events,
        },
    )
    .await;
    // Waiting to receive from an empty channel: a stream open.
    let mut receiver = greeted(&daemon).await;
    let recv = Request::ChanRecv {
        name: "quiet".into(),
        receiver: None,
        held: Vec::new(),
        acked: Vec::new(),
        direct: false,
    };
    send(
        &mut receiver,
        &ClientMessage::Request {
            id: 1,
            request: recv,
        },
    )
    .await;
    // Nothing open, nothing sent.
    let started = Instant::now();
    let mut silent = greeted(&daemon).await;
    let (code, message) = closed_with(&mut silent, Duration::from_secs(5)).await;
    assert_eq!(code, ErrorCode::LimitReached);
    assert!(message.contains("--idle-timeout"), "{message}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Silent as long and two timeouts more, the busy ones are still open and served.
    for conn in [&mut events, &mut receiver] {
        loop {
            match next(conn, Duration::from_secs(2)).await {
                Read::Quiet => break,
                Read::Closed => panic!("a busy connection was closed"),
                Read::Msg(ServerMessage::Ok { id: 1, .. } | ServerMessage::Error { .. }) => {
                    panic!("the request or stream ended: the test needs it open")
                }
                Read::Msg(_) | Read::Stream => {}
            }
        }
        ping(conn, 2).await;
    }
    // The stream ends: the receiver has nothing open any more, and goes the same way.
    send(&mut receiver, &ClientMessage::Cancel { id: 1 }).await;
    let (code, _) = closed_with(&mut receiver, Duration::from_secs(5)).await;
    assert_eq!(code, ErrorCode::LimitReached);
}

#[tokio::test]
async fn idle_timeout_spares_a_connection_that_keeps_talking() {
    let daemon = Daemon::start_with(&["--idle-timeout", "1s"]);
    let mut conn = greeted(&daemon).await;
    let until = Instant::now() + Duration::from_secs(3);
    let mut id = 1;
    while Instant::now() < until {
        ping(&mut conn, id).await;
        id += 1;
        // Talking every 300 ms, never silent for a whole timeout.
        assert!(matches!(
            next(&mut conn, Duration::from_millis(300)).await,
            Read::Quiet
        ));
    }
    ping(&mut conn, id).await;
}

#[tokio::test]
async fn a_short_idle_timeout_sets_the_keepalive_its_workers_inherit() {
    let daemon = Daemon::start_with(&["--idle-timeout", "2s"]);
    let client = daemon.client().await;
    spawn(
        &client,
        sh("env", "echo \"keepalive=$CIRCUIT_KEEPALIVE_MS\""),
    )
    .await;
    let wait = Request::Wait { name: "env".into() };
    client.call(wait).await.expect("wait");
    // A quarter of the timeout, unless this test already runs with one set.
    let expected = std::env::var(circuit_sdk::client::KEEPALIVE_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "500".into());
    let lines = circuit_testkit::log_lines(&client, "env").await;
    assert_eq!(lines, [format!("keepalive={expected}")]);
}

/// Set for a child run of [`keepalive_child`]: the daemon socket.
const CHILD_SOCKET: &str = "LIMITS_TEST_SOCKET";
/// Set for a child run: `open` or `closed`, what the idle client must find.
const CHILD_EXPECT: &str = "LIMITS_TEST_EXPECT";

/// Runs [`keepalive_child`] in a new process of this test binary, with `keepalive_ms` as the
/// SDK's keepalive interval (read once per process, hence the process).
fn keepalive_run(daemon: &Daemon, keepalive_ms: &str, expect: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["limits::keepalive_child", "--exact", "--ignored"])
        .args(["--nocapture", "--test-threads=1"])
        .env(circuit_sdk::client::KEEPALIVE_ENV, keepalive_ms)
        .env(CHILD_SOCKET, &daemon.socket)
        .env(CHILD_EXPECT, expect)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the child test")
}

#[test]
fn sdk_keepalive_holds_an_idle_client_past_the_idle_timeout() {
    let daemon = Daemon::start_with(&["--idle-timeout", "1s"]);
    // Pinging every 200 ms: still connected after three timeouts. Never pinging: dropped.
    let pinging = keepalive_run(&daemon, "200", "open");
    let silent = keepalive_run(&daemon, "0", "closed");
    for (what, child) in [("pinging", pinging), ("silent", silent)] {
        let out = child.wait_with_output().expect("child test");
        assert!(
            out.status.success(),
            "the {what} client:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Not a test on its own: the process [`sdk_keepalive_holds_an_idle_client_past_the_idle_timeout`]
/// starts. Without its environment it does nothing.
#[tokio::test]
#[ignore = "run by sdk_keepalive_holds_an_idle_client_past_the_idle_timeout"]
async fn keepalive_child() {
    let (Some(socket), Ok(expect)) = (std::env::var_os(CHILD_SOCKET), std::env::var(CHILD_EXPECT))
    else {
        return;
    };
    let client = Client::connect_unix(socket).await.expect("connect");
    if expect == "closed" {
        wait_until_async(
            Duration::from_secs(5),
            "the idle client is dropped",
            || async { client.is_closed().then_some(()) },
        )
        .await;
        assert!(client.call(Request::Ping).await.is_err());
        return;
    }
    // Idle for three idle timeouts (the scenario itself), checking all along that the
    // daemon never drops the client.
    let idle_until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut check = tokio::time::interval(Duration::from_millis(10));
    while tokio::time::Instant::now() < idle_until {
        check.tick().await;
        assert!(!client.is_closed(), "the daemon dropped a pinging client");
    }
    assert!(matches!(client.call(Request::Ping).await, Ok(Reply::Done)));
}
