//! Failures (rules 10 and 17, and bad input): senders and receivers reconnecting through a
//! proxy that cuts their connections, an owner that restarted, and garbage on channel streams.

use std::collections::HashSet;

use bytes::Bytes;
use circuit_sdk::chan::{ChanError, Raw, SendOptions};
use circuit_sdk::Client;
use circuit_testkit::Daemon;
use futures::StreamExt;

use super::{raw_rx, raw_tx, stat, until, SOON};

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
        request: Request::ChanRecv {
            name: "g".into(),
            receiver: None,
            held: Vec::new(),
            acked: Vec::new(),
            direct: false,
        },
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
            reserve_from: None,
            direct: false,
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
            reserve_from: None,
            direct: false,
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
            receiver: None,
            held: Vec::new(),
            acked: Vec::new(),
            direct: false,
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

/// The next frame from the daemon: a control message is decoded, a data or signal frame
/// returned as it is.
async fn next_frame(conn: &mut RawConn) -> Result<circuit_sdk::proto::ServerMessage, Frame> {
    match tokio::time::timeout(SOON, conn.next())
        .await
        .expect("a frame in time")
    {
        Some(Ok(Frame::Control(b))) => Ok(serde_json::from_slice(&b).expect("msg")),
        Some(Ok(other)) => Err(other),
        other => panic!("expected a frame, got {other:?}"),
    }
}

use circuit_sdk::proto::Frame;

#[tokio::test]
async fn bad_numbers_in_returns_recalls_and_reservations_end_one_stream_only() {
    use circuit_sdk::proto::{ClientMessage, FrameCodec, Request, ServerMessage, SignalOp};
    use futures::SinkExt;
    let d = Daemon::start();
    let client = d.client().await;
    let chan = client.chan_create("r", 4).await.expect("create");
    let tx = chan.sender::<u32>().await.expect("sender");
    let stream = tokio::net::UnixStream::connect(&d.socket)
        .await
        .expect("connect");
    let mut conn = tokio_util::codec::Framed::new(stream, FrameCodec::default());
    let control =
        |msg: ClientMessage| Frame::Control(Bytes::from(serde_json::to_vec(&msg).expect("json")));
    let signal = |id, op, a, b| Frame::Signal { id, op, a, b };
    conn.send(control(ClientMessage::Hello {
        version: circuit_sdk::proto::PROTOCOL_VERSION,
        client: "numbers".into(),
    }))
    .await
    .expect("hello");
    assert!(matches!(
        next_frame(&mut conn).await,
        Ok(ServerMessage::Hello { .. })
    ));
    let recv = |id| {
        control(ClientMessage::Request {
            id,
            request: Request::ChanRecv {
                name: "r".into(),
                receiver: None,
                held: Vec::new(),
                acked: Vec::new(),
                direct: false,
            },
        })
    };
    let bad_request = |got: Result<ServerMessage, Frame>, id: u64, what: &str| match got {
        Ok(ServerMessage::Error {
            id: Some(got_id),
            code,
            message,
        }) if got_id == id => {
            assert_eq!(code, circuit_sdk::proto::ErrorCode::BadRequest, "{message}");
            assert!(message.contains(what), "{message}");
        }
        other => panic!("expected stream {id} to end with bad_request, got {other:?}"),
    };

    // Two values delivered; giving back one "of five received" is refused.
    conn.send(recv(1)).await.expect("open");
    assert!(matches!(
        next_frame(&mut conn).await,
        Ok(ServerMessage::Item { id: 1, .. })
    ));
    conn.send(signal(1, SignalOp::Credit, 2, 0))
        .await
        .expect("credit");
    tx.send(1).await.expect("send");
    tx.send(2).await.expect("send");
    for _ in 0..2 {
        assert!(matches!(
            next_frame(&mut conn).await,
            Err(Frame::Data { id: 1, .. })
        ));
    }
    conn.send(signal(1, SignalOp::Return, 1, 5))
        .await
        .expect("return");
    bad_request(next_frame(&mut conn).await, 1, "returned 1 of 5");

    // Both went back. A wrong count of values received in `waiting` is ignored; a recall
    // answer giving back more than it holds ends the stream.
    conn.send(recv(2)).await.expect("open");
    assert!(matches!(
        next_frame(&mut conn).await,
        Ok(ServerMessage::Item { id: 2, .. })
    ));
    conn.send(signal(2, SignalOp::Credit, 2, 0))
        .await
        .expect("credit");
    for _ in 0..2 {
        assert!(matches!(
            next_frame(&mut conn).await,
            Err(Frame::Data { id: 2, .. })
        ));
    }
    conn.send(signal(2, SignalOp::Waiting, 999, 0))
        .await
        .expect("waiting");
    conn.send(signal(2, SignalOp::Recalled, 3, 2))
        .await
        .expect("recalled");
    bad_request(next_frame(&mut conn).await, 2, "returned 3 of 2");

    // A send stream asking for room from an absurd seq gets none (and no overflow); a release
    // with nothing reserved changes nothing; a daemon's signal from a client ends the stream.
    conn.send(control(ClientMessage::Request {
        id: 3,
        request: Request::ChanSend {
            name: "r".into(),
            sender: 42,
            reserve_from: Some(u64::MAX),
            direct: false,
        },
    }))
    .await
    .expect("open");
    assert!(matches!(
        next_frame(&mut conn).await,
        Ok(ServerMessage::Item { id: 3, .. })
    ));
    conn.send(signal(3, SignalOp::Release, 0, 0))
        .await
        .expect("release");
    conn.send(signal(3, SignalOp::Reserve, 9, 0))
        .await
        .expect("reserve");
    bad_request(next_frame(&mut conn).await, 3, "not sent by clients");

    // The channel holds both values, nothing in flight, and serves everyone else.
    let info = until(&chan, "both values back", |i| i.len == 2).await;
    assert_eq!((info.in_flight, info.receivers, info.senders), (0, 0, 1));
    let mut rx = chan.receiver::<u32>().await.expect("receiver");
    tx.send(3).await.expect("send");
    for want in 1..=3 {
        assert_eq!(rx.recv().await, Ok(want));
    }
}
