//! Bad input: each case gets a clear error on its own connection while the daemon keeps serving
//! other clients and loses nothing.

use std::time::Duration;

use bytes::Bytes;
use circuit_sdk::proto::{
    ErrorCode, Frame, FrameCodec, Reply, Request, ServerMessage, WorkerState,
};
use circuit_testkit::{inspect, list, sh, spawn, Daemon};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

type Conn = Framed<UnixStream, FrameCodec>;

const HELLO: &str = r#"{"type":"hello","version":4,"client":"bad-input-test"}"#;

async fn raw(daemon: &Daemon) -> UnixStream {
    UnixStream::connect(&daemon.socket).await.expect("connect")
}

async fn greeted(daemon: &Daemon) -> Conn {
    let mut conn = Framed::new(raw(daemon).await, FrameCodec::default());
    send_json(&mut conn, HELLO).await;
    match next(&mut conn).await {
        Some(ServerMessage::Hello { node, .. }) => assert_eq!(node, "test"),
        other => panic!("expected hello, got {other:?}"),
    }
    conn
}

async fn send_json(conn: &mut Conn, json: &str) {
    conn.send(Frame::Control(Bytes::from(json.to_string())))
        .await
        .expect("send");
}

/// The next message, or None when the daemon closed the connection.
async fn next(conn: &mut Conn) -> Option<ServerMessage> {
    let frame = tokio::time::timeout(Duration::from_secs(10), conn.next())
        .await
        .expect("a reply within 10 s");
    match frame {
        Some(Ok(Frame::Control(body))) => {
            Some(serde_json::from_slice(&body).expect("daemon sends valid json"))
        }
        Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        Some(Err(_)) | None => None,
    }
}

fn expect_error(msg: Option<ServerMessage>, id: Option<u64>, code: ErrorCode) -> String {
    match msg {
        Some(ServerMessage::Error {
            id: got,
            code: c,
            message,
        }) => {
            assert_eq!((got, c), (id, code), "{message}");
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "one clear line: {message:?}"
            );
            message
        }
        other => panic!("expected a {code} error, got {other:?}"),
    }
}

/// The daemon still answers a fresh client and still has the worker it had.
async fn still_serving(daemon: &Daemon) {
    let client = daemon.client().await;
    let info = inspect(&client, "survivor").await;
    assert_eq!(info.state, WorkerState::Running);
}

async fn daemon_with_survivor() -> Daemon {
    let daemon = Daemon::start();
    spawn(&daemon.client().await, sh("survivor", "sleep 1000")).await;
    daemon
}

#[tokio::test]
async fn random_bytes_truncated_frames_and_oversized_lengths() {
    let daemon = daemon_with_survivor().await;

    // Random bytes instead of a hello: an error, then the connection closes.
    let mut rng = fastrand_bytes(4096, 7);
    rng[0] = 0x7f; // a length prefix far beyond the maximum
    let mut conn = Framed::new(raw(&daemon).await, FrameCodec::default());
    conn.get_mut().write_all(&rng).await.expect("write");
    let message = expect_error(next(&mut conn).await, None, ErrorCode::BadFrame);
    assert!(message.contains("exceeds the maximum"), "{message}");
    assert!(next(&mut conn).await.is_none(), "connection closed");
    still_serving(&daemon).await;

    // Many more random blobs, some after a valid hello.
    for seed in 0..20u64 {
        let mut conn = if seed % 2 == 0 {
            Framed::new(raw(&daemon).await, FrameCodec::default())
        } else {
            greeted(&daemon).await
        };
        let _ = conn
            .get_mut()
            .write_all(&fastrand_bytes(1 + (seed as usize * 37) % 600, seed))
            .await;
        let _ = conn.get_mut().shutdown().await;
        while next(&mut conn).await.is_some() {}
    }
    still_serving(&daemon).await;

    // A truncated frame: half a hello, then the client hangs up.
    let mut stream = raw(&daemon).await;
    let mut frame = (HELLO.len() as u32 + 1).to_be_bytes().to_vec();
    frame.push(1);
    frame.extend_from_slice(&HELLO.as_bytes()[..10]);
    stream.write_all(&frame).await.expect("write");
    drop(stream);
    still_serving(&daemon).await;

    // An oversized length prefix after the hello.
    let mut conn = greeted(&daemon).await;
    conn.get_mut()
        .write_all(&[0xff, 0xff, 0xff, 0xf0, 1])
        .await
        .expect("write");
    expect_error(next(&mut conn).await, None, ErrorCode::BadFrame);
    still_serving(&daemon).await;
}

#[tokio::test]
async fn handshake_errors() {
    let daemon = daemon_with_survivor().await;
    let mut conn = Framed::new(raw(&daemon).await, FrameCodec::default());
    send_json(
        &mut conn,
        r#"{"type":"hello","version":999,"client":"future"}"#,
    )
    .await;
    let message = expect_error(next(&mut conn).await, None, ErrorCode::VersionMismatch);
    assert!(message.contains("999"), "{message}");

    let mut conn = Framed::new(raw(&daemon).await, FrameCodec::default());
    send_json(
        &mut conn,
        r#"{"type":"request","id":1,"request":{"op":"status"}}"#,
    )
    .await;
    expect_error(next(&mut conn).await, None, ErrorCode::HandshakeRequired);
    still_serving(&daemon).await;
}

#[tokio::test]
async fn unknown_messages_and_wrong_shapes_get_errors_and_the_connection_goes_on() {
    let daemon = daemon_with_survivor().await;
    let mut conn = greeted(&daemon).await;
    let cases = [
        (
            r#"{"type":"request","id":1,"request":{"op":"launch_missiles"}}"#,
            Some(1),
        ),
        (r#"{"type":"teleport","id":2}"#, Some(2)),
        (
            r#"{"type":"request","id":3,"request":{"op":"spawn","args":{"command":42}}}"#,
            Some(3),
        ),
        (
            r#"{"type":"request","id":4,"request":{"op":"stop","args":{"names":"not-a-list"}}}"#,
            Some(4),
        ),
        (r#"[1,2,3]"#, None),
        (r#"not json at all"#, None),
        ("\u{0}\u{1}binary", None),
    ];
    for (json, id) in cases {
        send_json(&mut conn, json).await;
        expect_error(next(&mut conn).await, id, ErrorCode::BadRequest);
    }
    // A data frame where none is expected.
    conn.send(Frame::Data {
        id: 9,
        seq: 1,
        payload: Bytes::from_static(b"xyz"),
    })
    .await
    .expect("send");
    expect_error(next(&mut conn).await, Some(9), ErrorCode::BadRequest);
    // The same connection still works.
    send_json(
        &mut conn,
        r#"{"type":"request","id":5,"request":{"op":"inspect","args":{"name":"survivor"}}}"#,
    )
    .await;
    match next(&mut conn).await {
        Some(ServerMessage::Ok {
            id: 5,
            reply: Reply::Worker(info),
        }) => assert_eq!(info.name, "survivor"),
        other => panic!("unexpected {other:?}"),
    }
    still_serving(&daemon).await;
}

#[tokio::test]
async fn bad_spawns_and_signals_are_refused_and_change_nothing() {
    let daemon = daemon_with_survivor().await;
    let client = daemon.client().await;
    let not_executable = daemon.dir.path().join("notes.txt");
    std::fs::write(&not_executable, "just text").expect("write");
    let not_executable = not_executable.display().to_string();
    let cases: Vec<(circuit_sdk::proto::SpawnSpec, ErrorCode, &str)> = vec![
        (
            sh("x", "true").tap(|s| s.command = "no-such-binary-xyz".into()),
            ErrorCode::SpawnFailed,
            "not found in PATH",
        ),
        (
            sh("x", "true").tap(|s| s.command = "/no/such/path".into()),
            ErrorCode::SpawnFailed,
            "no such file or directory",
        ),
        (
            sh("x", "true").tap(|s| s.cwd = Some("/no/such/dir".into())),
            ErrorCode::SpawnFailed,
            "working directory /no/such/dir",
        ),
        (
            sh("x", "true").tap(|s| s.command = not_executable.clone()),
            ErrorCode::SpawnFailed,
            "not executable",
        ),
        (
            sh("x", "true").tap(|s| s.stop.signal = "SIGNOPE".into()),
            ErrorCode::InvalidArgument,
            "unknown signal",
        ),
        (
            sh("../escape", "true"),
            ErrorCode::InvalidArgument,
            "invalid worker name",
        ),
        (
            sh("survivor", "true"),
            ErrorCode::AlreadyExists,
            "already exists",
        ),
        (
            sh("x", "true").tap(|s| s.command = String::new()),
            ErrorCode::InvalidArgument,
            "empty command",
        ),
    ];
    for (spec, code, text) in cases {
        let err = client
            .call(Request::Spawn(spec.clone()))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Some(code), "{spec:?}: {err}");
        assert!(err.to_string().contains(text), "{err}");
    }
    let err = client
        .call(Request::Signal {
            name: "survivor".into(),
            signal: "NOPE".into(),
            group: false,
        })
        .await
        .expect_err("unknown signal");
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));
    let err = client
        .call(Request::Stop {
            names: vec!["survivor".into(), "ghost".into()],
            signal: None,
            timeout_ms: None,
        })
        .await
        .expect_err("unknown worker");
    assert!(err.is_not_found(), "{err}");
    // A placement of more copies than any request may start (it would be a task per copy).
    let err = client
        .call(Request::Place(circuit_sdk::proto::Placement {
            spec: sh("many", "true"),
            replicas: u32::MAX,
            ..Default::default()
        }))
        .await
        .expect_err("too many replicas");
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert!(err.to_string().contains("limit of 1000"), "{err}");
    // Nothing was created or stopped.
    let all = list(&client, true).await;
    assert_eq!(
        all.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["survivor"]
    );
    assert!(!daemon.data_dir.join("workers/x").exists());
    still_serving(&daemon).await;
}

#[tokio::test]
async fn clients_that_vanish_mid_request_or_mid_follow() {
    let daemon = daemon_with_survivor().await;
    spawn(
        &daemon.client().await,
        sh("ticker", "while :; do echo tick; sleep 0.02; done"),
    )
    .await;
    for _ in 0..10 {
        let mut conn = greeted(&daemon).await;
        send_json(&mut conn, r#"{"type":"request","id":1,"request":{"op":"logs","args":{"name":"ticker","follow":true}}}"#).await;
        assert!(matches!(
            next(&mut conn).await,
            Some(ServerMessage::Item { id: 1, .. })
        ));
        send_json(
            &mut conn,
            r#"{"type":"request","id":2,"request":{"op":"wait","args":{"name":"survivor"}}}"#,
        )
        .await;
        drop(conn);
    }
    // A cancelled follow ends with `cancelled` and the connection goes on.
    let mut conn = greeted(&daemon).await;
    send_json(&mut conn, r#"{"type":"request","id":1,"request":{"op":"logs","args":{"name":"ticker","follow":true}}}"#).await;
    send_json(&mut conn, r#"{"type":"cancel","id":1}"#).await;
    loop {
        match next(&mut conn).await {
            Some(ServerMessage::Item { .. }) => continue,
            other => {
                expect_error(other, Some(1), ErrorCode::Cancelled);
                break;
            }
        }
    }
    still_serving(&daemon).await;
    let client = daemon.client().await;
    assert_eq!(inspect(&client, "ticker").await.state, WorkerState::Running);
}

fn fastrand_bytes(len: usize, seed: u64) -> Vec<u8> {
    // xorshift: deterministic garbage without another dependency.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl<T> Tap for T {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[tokio::test]
async fn a_reused_request_id_never_gets_a_second_terminal_reply() {
    let daemon = daemon_with_survivor().await;
    let mut conn = greeted(&daemon).await;
    let wait = r#"{"type":"request","id":1,"request":{"op":"wait","args":{"name":"survivor"}}}"#;
    send_json(&mut conn, wait).await;
    send_json(&mut conn, wait).await;
    conn.send(Frame::Data {
        id: 1,
        seq: 1,
        payload: Bytes::from_static(b"x"),
    })
    .await
    .expect("send");
    // The cancel comes last: the read loop reports the two misuses before it cancels request
    // 1, whose task then ends it (sending the cancel first made that order a race).
    send_json(&mut conn, r#"{"type":"cancel","id":1,"extra":"field"}"#).await;
    // Each misuse is reported without the id, since request 1 is still running.
    for _ in 0..2 {
        expect_error(next(&mut conn).await, None, ErrorCode::BadRequest);
    }
    // The tolerant cancel (unknown fields are ignored) ended request 1 exactly once.
    expect_error(next(&mut conn).await, Some(1), ErrorCode::Cancelled);
    // The id is free again once its reply is out.
    send_json(
        &mut conn,
        r#"{"type":"request","id":1,"request":{"op":"inspect","args":{"name":"survivor"}}}"#,
    )
    .await;
    assert!(matches!(
        next(&mut conn).await,
        Some(ServerMessage::Ok { id: 1, .. })
    ));
}

#[tokio::test]
async fn a_client_that_stops_reading_cannot_hold_up_shutdown() {
    let mut daemon = daemon_with_survivor().await;
    let client = daemon.client().await;
    // About 8 MiB of log, far more than the socket buffers hold.
    spawn(
        &client,
        sh(
            "loud",
            "yes 'a line of log output that is long enough to fill buffers' | head -c 8000000",
        ),
    )
    .await;
    client
        .call(Request::Wait {
            name: "loud".into(),
        })
        .await
        .expect("wait");
    let mut conn = greeted(&daemon).await;
    send_json(
        &mut conn,
        r#"{"type":"request","id":1,"request":{"op":"logs","args":{"name":"loud","follow":true}}}"#,
    )
    .await;
    assert!(matches!(
        next(&mut conn).await,
        Some(ServerMessage::Item { id: 1, .. })
    ));
    // ... and never reads again, while asking for more replies than the daemon will queue.
    for _ in 0..400 {
        send_json(&mut conn, "not json").await;
    }
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    drop(conn);
}
