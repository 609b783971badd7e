//! The `circuit` binary's mesh commands (`nodes`, `join`, `events`, placement, `--node`) against
//! a scripted stand-in for circuitd: which request each command line sends, and how each reply
//! is shown. What a real daemon answers is tested with the daemon.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use circuit_sdk::proto::{
    ChanInfo, ClientMessage, ErrorCode, EventKind, ExitStatus, Frame, FrameCodec, Item, MeshEvent,
    NodeInfo, NodeState, Placement, Reply, Request, ServerMessage, SpawnSpec, WorkerEnd,
    WorkerInfo, WorkerState, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio_util::codec::Framed;

/// How long any step may take.
const LIMIT: Duration = Duration::from_secs(10);

/// A stand-in for circuitd on a temp socket: the test accepts each connection and answers its
/// request itself.
struct Fake {
    listener: UnixListener,
    socket: PathBuf,
    /// Holds the socket's directory until the test ends.
    _dir: tempfile::TempDir,
}

/// A greeted connection and the one request it carries.
struct Call {
    conn: Framed<UnixStream, FrameCodec>,
    id: u64,
    request: Request,
}

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        Self {
            listener,
            socket,
            _dir: dir,
        }
    }

    /// Starts `circuit args` against this socket; it is killed if the test fails.
    fn circuit(&self, args: &[&str]) -> Child {
        Command::new(circuit_testkit::bin("circuit"))
            .args(args)
            .env("CIRCUIT_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start circuit")
    }

    /// Accepts the next connection, answers its hello as node `h1`, and reads its request.
    async fn accept(&self) -> Call {
        let (stream, _) = tokio::time::timeout(LIMIT, self.listener.accept())
            .await
            .expect("circuit connects in time")
            .expect("accept");
        let mut conn = Framed::new(stream, FrameCodec::default());
        match read(&mut conn).await {
            ClientMessage::Hello { version, .. } => assert_eq!(version, PROTOCOL_VERSION),
            other => panic!("expected a hello, got {other:?}"),
        }
        let hello = ServerMessage::Hello {
            version: PROTOCOL_VERSION,
            node: "h1".into(),
            daemon_version: "0.0.0-fake".into(),
            instance: 1,
        };
        write(&mut conn, &hello).await;
        match read(&mut conn).await {
            ClientMessage::Request { id, request } => Call { conn, id, request },
            other => panic!("expected a request, got {other:?}"),
        }
    }
}

impl Call {
    async fn item(&mut self, item: Item) {
        let msg = ServerMessage::Item { id: self.id, item };
        write(&mut self.conn, &msg).await;
    }

    async fn ok(mut self, reply: Reply) {
        let msg = ServerMessage::Ok { id: self.id, reply };
        write(&mut self.conn, &msg).await;
    }

    async fn error(mut self, code: ErrorCode, message: &str) {
        let msg = ServerMessage::Error {
            id: Some(self.id),
            code,
            message: message.into(),
        };
        write(&mut self.conn, &msg).await;
    }
}

async fn read(conn: &mut Framed<UnixStream, FrameCodec>) -> ClientMessage {
    match tokio::time::timeout(LIMIT, conn.next()).await {
        Ok(Some(Ok(Frame::Control(body)))) => serde_json::from_slice(&body).expect("valid json"),
        other => panic!("expected a control frame, got {other:?}"),
    }
}

async fn write(conn: &mut Framed<UnixStream, FrameCodec>, msg: &ServerMessage) {
    let body = serde_json::to_vec(msg).expect("serialize");
    conn.send(Frame::Control(Bytes::from(body)))
        .await
        .expect("send");
}

async fn finish(child: Child) -> Output {
    tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("circuit exits in time")
        .expect("wait for circuit")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8 output")
}

/// Runs `circuit args`, answers its request with `reply`; returns the request and the output.
async fn exchange(args: &[&str], reply: Reply) -> (Request, Output) {
    let fake = Fake::new();
    let child = fake.circuit(args);
    let call = fake.accept().await;
    let request = call.request.clone();
    call.ok(reply).await;
    (request, finish(child).await)
}

fn worker(name: &str, node: &str, state: WorkerState, pid: Option<u32>) -> WorkerInfo {
    WorkerInfo {
        usage: None,
        escaped: Vec::new(),
        name: name.into(),
        node: node.into(),
        state,
        pid,
        restarts: 0,
        started_at_ms: Some(1_000),
        exited_at_ms: None,
        last_exit: None,
        reason: None,
        next_start_at_ms: None,
        spec: SpawnSpec {
            command: "./analyze".into(),
            ..SpawnSpec::default()
        },
    }
}

fn node(name: &str, is_self: bool) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        addr: format!("10.0.0.{}:7711", &name[1..]),
        state: NodeState::Alive,
        is_self,
        generation: 1,
        labels: [("zone".to_string(), "a".to_string())].into(),
        version: "0.1.0".into(),
        started_at_ms: 1_000,
        workers: 2,
        worker_names: vec!["a".into(), "b".into()],
        load: 0.5,
        mem_total_bytes: 8 << 30,
        mem_available_bytes: 6 << 30,
        channels: vec!["jobs".into()],
        meta_version: 1,
        updated_at_ms: 1_000,
    }
}

fn on(node: &str, request: Request) -> Request {
    Request::On {
        node: node.into(),
        request: Box::new(request),
    }
}

#[tokio::test]
async fn per_worker_commands_run_on_the_named_node() {
    let running = worker("w", "h2", WorkerState::Running, Some(7));
    let end = WorkerEnd {
        name: "w".into(),
        state: WorkerState::Exited,
        exit: Some(ExitStatus::Code { code: 0 }),
        reason: None,
    };
    let chan = ChanInfo {
        name: "jobs".into(),
        capacity: 0,
        len: 0,
        in_flight: 0,
        waiting_senders: 0,
        waiting_receivers: 0,
        senders: 0,
        receivers: 0,
        sent: 0,
        received: 0,
        closed: false,
        owner: "h2".into(),
        max_payload: 1 << 20,
        created_at_ms: 1_000,
        ..Default::default()
    };
    let logs = |name: &str| {
        Request::Logs(circuit_sdk::proto::LogsRequest {
            name: name.into(),
            lifecycle: true,
            ..Default::default()
        })
    };
    let cases: Vec<(&[&str], Request, Reply)> = vec![
        (
            &["logs", "--node", "h2", "w"],
            on("h2", logs("w")),
            Reply::Done,
        ),
        // Without --node the request goes as is: circuitd finds the worker.
        (&["logs", "w"], logs("w"), Reply::Done),
        (
            &["stop", "--node", "h2", "w"],
            on(
                "h2",
                Request::Stop {
                    names: vec!["w".into()],
                    signal: None,
                    timeout_ms: None,
                },
            ),
            Reply::Workers(vec![running.clone()]),
        ),
        (
            &["restart", "w", "--node", "h2"],
            on("h2", Request::Restart { name: "w".into() }),
            Reply::Worker(Box::new(running)),
        ),
        (
            &["signal", "--node", "h2", "HUP", "w"],
            on(
                "h2",
                Request::Signal {
                    name: "w".into(),
                    signal: "HUP".into(),
                    group: false,
                },
            ),
            Reply::Done,
        ),
        (
            &["wait", "--node", "h2", "w"],
            on("h2", Request::Wait { name: "w".into() }),
            Reply::End(end),
        ),
        (
            &["rm", "--node", "h2", "w"],
            on(
                "h2",
                Request::Remove {
                    name: "w".into(),
                    force: false,
                },
            ),
            Reply::Done,
        ),
        (
            &["chan", "create", "jobs", "--node", "h2"],
            on(
                "h2",
                Request::ChanCreate {
                    name: "jobs".into(),
                    capacity: 0,
                    exist_ok: false,
                    replicas: None,
                    replica_labels: Vec::new(),
                    storage: None,
                },
            ),
            Reply::Chan(chan),
        ),
    ];
    for (args, want, reply) in cases {
        let (got, out) = exchange(args, reply).await;
        assert_eq!(got, want, "circuit {args:?}");
        assert!(
            out.status.success(),
            "circuit {args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn spawn_places_the_spec_and_prints_each_worker() {
    let workers = vec![
        worker("an-1", "h3", WorkerState::Running, Some(1234)),
        worker("an-2", "h1", WorkerState::Running, Some(877)),
    ];
    let args = [
        "spawn",
        "--name",
        "an",
        "--label",
        "gpu=yes",
        "--worker-label",
        "role=batch",
        "--replicas",
        "2",
        "--",
        "./analyze",
    ];
    let (got, out) = exchange(&args, Reply::Workers(workers.clone())).await;
    // Through the Unix socket the worker runs where the caller stands (here, this test's cwd).
    let here = std::env::current_dir().expect("cwd");
    let want = Placement {
        spec: SpawnSpec {
            command: "./analyze".into(),
            cwd: Some(here.display().to_string()),
            name: Some("an".into()),
            labels: [("role".to_string(), "batch".to_string())].into(),
            ..SpawnSpec::default()
        },
        node: None,
        selector: [("gpu".to_string(), "yes".to_string())].into(),
        replicas: 2,
    };
    assert_eq!(got, Request::Place(want));
    // Through a pipe: the names, for `circuit wait $(circuit spawn ...)`.
    assert_eq!(text(&out.stdout), "an-1\nan-2\n", "{}", text(&out.stderr));

    let (got, out) = exchange(
        &["spawn", "--json", "--node", "h3", "--", "true"],
        Reply::Workers(workers[..1].to_vec()),
    )
    .await;
    let Request::Place(placement) = got else {
        panic!("expected place, got {got:?}");
    };
    assert_eq!(
        (placement.node.as_deref(), placement.replicas),
        (Some("h3"), 1)
    );
    let doc: serde_json::Value =
        serde_json::from_str(text(&out.stdout)).expect("one JSON document");
    let lines = doc["workers"].as_array().expect("a list of workers");
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (&lines[0]["name"], &lines[0]["node"]),
        (&"an-1".into(), &"h3".into())
    );
}

#[tokio::test]
async fn ps_lists_the_cluster_with_a_node_column() {
    let workers = vec![
        worker("web", "h2", WorkerState::Running, Some(4242)),
        worker("gone", "h4", WorkerState::Lost, None),
    ];
    let (got, out) = exchange(&["ps"], Reply::Workers(workers)).await;
    assert_eq!(got, Request::ClusterList { all: false });
    let ps = text(&out.stdout);
    let mut lines = ps.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("NAME   NODE   STATE "), "{ps}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows[0][..3],
        ["gone", "h4", "lost"],
        "sorted by name:\n{ps}"
    );
    assert!(ps.contains("node h4 is dead"), "{ps}");
    assert_eq!(rows[1][..4], ["web", "h2", "running", "4242"], "{ps}");

    let (got, _) = exchange(&["ps", "-a", "--node", "h2"], Reply::Workers(vec![])).await;
    assert_eq!(got, on("h2", Request::List { all: true }));
}

#[tokio::test]
async fn nodes_are_a_table_sorted_by_name_or_a_json_array() {
    let nodes = vec![node("h2", false), node("h1", true)];
    let (got, out) = exchange(&["nodes"], Reply::Nodes(nodes.clone())).await;
    assert_eq!(got, Request::Nodes);
    let table = text(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "ADDR", "STATE", "LABELS", "WORKERS", "CHANNELS", "VERSION", "UPTIME"]
    );
    assert_eq!(
        rows[1][..7],
        ["h1*", "10.0.0.1:7711", "alive", "zone=a", "2", "1", "0.1.0"],
        "{table}"
    );
    assert_eq!(rows[2][0], "h2", "{table}");

    let (_, out) = exchange(&["nodes", "--json"], Reply::Nodes(nodes)).await;
    let json: Vec<NodeInfo> =
        circuit_testkit::json_list(&out.stdout, "nodes").expect("a list of nodes");
    let names: Vec<&str> = json.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["h1", "h2"]);
}

#[tokio::test]
async fn join_sends_the_addresses() {
    let (got, out) = exchange(&["join", "10.0.0.1:7711"], Reply::Done).await;
    assert_eq!(
        got,
        Request::Join {
            addrs: vec!["10.0.0.1:7711".into()],
            timeout_ms: None,
        }
    );
    assert_eq!(text(&out.stdout), "joined via 10.0.0.1:7711\n");
}

#[tokio::test]
async fn join_sends_its_timeout() {
    let (got, _) = exchange(
        &["join", "--timeout", "1m30s", "10.0.0.1:7711"],
        Reply::Done,
    )
    .await;
    assert_eq!(
        got,
        Request::Join {
            addrs: vec!["10.0.0.1:7711".into()],
            timeout_ms: Some(90_000),
        }
    );
}

#[tokio::test]
async fn events_reach_a_pipe_as_they_happen() {
    let fake = Fake::new();
    let mut child = fake.circuit(&["events"]);
    let mut call = fake.accept().await;
    assert_eq!(call.request, Request::Events);
    let event = |kind, ts_ms| MeshEvent {
        ts_ms,
        kind,
        node: "h4".into(),
        addr: "10.0.0.4:7711".into(),
        generation: 3,
    };
    call.item(Item::Event(event(EventKind::Dead, 1_795_255_200_123)))
        .await;
    // The stream is still open: the line must arrive now, not when circuit exits.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    tokio::time::timeout(LIMIT, stdout.read_line(&mut line))
        .await
        .expect("the first event is printed before the stream ends")
        .expect("read");
    assert_eq!(
        line,
        "2026-11-21T10:00:00.123Z  dead     h4 (10.0.0.4:7711)\n"
    );
    call.item(Item::Event(event(EventKind::Rejoin, 1_795_255_201_000)))
        .await;
    call.ok(Reply::Done).await;
    let mut rest = String::new();
    tokio::time::timeout(
        LIMIT,
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut rest),
    )
    .await
    .expect("circuit ends with the stream")
    .expect("read");
    assert_eq!(
        rest,
        "2026-11-21T10:00:01.000Z  rejoin   h4 (10.0.0.4:7711)\n"
    );
    assert!(finish(child).await.status.success());

    let child = fake.circuit(&["events", "--json"]);
    let mut call = fake.accept().await;
    call.item(Item::Event(event(EventKind::Join, 5))).await;
    call.ok(Reply::Done).await;
    let out = finish(child).await;
    let got: MeshEvent = serde_json::from_str(text(&out.stdout)).expect("one JSON line");
    assert_eq!(got, event(EventKind::Join, 5));
    assert_eq!(text(&out.stdout).lines().count(), 1);
}

#[tokio::test]
async fn a_wrong_reply_or_a_refusal_is_one_error_line() {
    let (_, out) = exchange(&["nodes"], Reply::Done).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: circuitd replied with done where a list of nodes was expected — are circuit \
         and circuitd the same version?\n"
    );

    let fake = Fake::new();
    let child = fake.circuit(&["spawn", "--node", "h9", "--", "true"]);
    fake.accept()
        .await
        .error(ErrorCode::NotFound, "no node named \"h9\"")
        .await;
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: no node named \"h9\" — see the nodes and their labels with `circuit nodes`\n"
    );
}
