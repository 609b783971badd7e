//! A worker's stdin (issue 17): `circuit spawn --stdin` gives the worker a pipe, and `circuit
//! stdin WORKER` forwards the caller's stdin to it — lines read back with `circuit logs`, EOF
//! closing the worker's stdin (or not, with `--keep-open`), megabytes and binary bytes passing
//! unchanged, one writer at a time, a worker that does not read holding up only its writer, a
//! restart ending the attached writer, a worker closing its stdin (EPIPE, the daemon lives on),
//! the refusals, a stream that breaks the protocol's rules, and the same across two nodes.

use std::io::Write;
use std::process::{Child, ChildStdin, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use circuit_sdk::proto::{
    ClientMessage, ErrorCode, Frame, FrameCodec, Item, Reply, Request, ServerMessage, SignalOp,
    StdinOpened, PROTOCOL_VERSION,
};
use circuit_testkit::{converged, wait_until, Daemon};
use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

/// How long anything here may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// Reads lines and answers each, then says when its input ended.
const ECHO: &str = "while read l; do echo \"got $l\"; done; echo eof";

/// A `circuit stdin` process whose stdin the test writes; killed and reaped if the test ends
/// first.
struct Writer {
    child: Option<Child>,
    /// Its stdin, while the test keeps it open.
    input: Option<ChildStdin>,
    /// Writes a whole input given at once, then closes it.
    feeder: Option<JoinHandle<()>>,
    what: String,
}

impl Writer {
    /// Starts `circuit args` with its stdin open for [`Writer::line`].
    fn open(d: &Daemon, args: &[&str]) -> Self {
        let mut cmd = d.cli_command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start circuit");
        Self {
            input: child.stdin.take(),
            child: Some(child),
            feeder: None,
            what: format!("circuit {args:?}"),
        }
    }

    /// Starts `circuit args` with `input` as its whole stdin, written by a thread (the process
    /// reads only as fast as the worker does).
    fn feed(d: &Daemon, args: &[&str], input: Vec<u8>) -> Self {
        let mut w = Self::open(d, args);
        let mut stdin = w.input.take().expect("piped stdin");
        w.feeder = Some(std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        }));
        w
    }

    /// Writes one line to the process's stdin.
    fn line(&mut self, text: &str) {
        let input = self.input.as_mut().expect("stdin still open");
        writeln!(input, "{text}").expect("write to circuit stdin");
        input.flush().expect("flush");
    }

    /// Ends the process's input.
    fn close(&mut self) {
        self.input = None;
    }

    /// True while the process has not exited.
    fn running(&mut self) -> bool {
        let child = self.child.as_mut().expect("not finished");
        child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the process to exit and returns its output; kills it and fails the test
    /// after [`LIMIT`].
    fn finish(mut self) -> Output {
        self.close();
        let child = self.child.take().expect("not finished");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = match rx.recv_timeout(LIMIT) {
            Ok(output) => output.expect("wait for circuit"),
            Err(_) => {
                kill(pid);
                let _ = waiter.join();
                panic!("{} did not exit within {LIMIT:?}", self.what);
            }
        };
        if let Some(feeder) = self.feeder.take() {
            feeder.join().expect("stdin feeder");
        }
        output
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Killed before its input closes: a closed input first would be an end of input,
        // which the process could pass on (closing the worker's stdin) before the kill lands.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.input = None;
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
    }
}

/// SIGKILLs a process that has not been reaped yet (so its pid is still its own).
fn kill(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `circuit stdin` with `input` and expects it to succeed.
fn send_ok(d: &Daemon, args: &[&str], input: &[u8]) {
    let out = Writer::feed(d, args, input.to_vec()).finish();
    assert!(
        out.status.success(),
        "circuit {args:?} failed ({}): {}",
        out.status,
        stderr_of(&out)
    );
    assert!(out.stdout.is_empty(), "prints nothing on success");
}

/// Runs `circuit stdin` with `input` and expects exit 1 with `wanted` in its error line.
fn send_fails(d: &Daemon, args: &[&str], input: &[u8], wanted: &str) -> String {
    let out = Writer::feed(d, args, input.to_vec()).finish();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "circuit {args:?}: {err}");
    assert!(
        err.contains(wanted),
        "circuit {args:?}: wanted {wanted:?} in {err:?}"
    );
    err
}

/// Spawns `sh -c script` named `name` with `--stdin` (and `extra` flags).
fn spawn_sh(d: &Daemon, name: &str, extra: &[&str], script: &str) {
    let mut args = vec!["spawn", "--stdin", "--name", name];
    args.extend(extra);
    args.extend(["--", "sh", "-c", script]);
    d.cli_ok(&args);
}

/// Waits until `circuit logs name` says `text` (a whole line).
fn wait_for_line(d: &Daemon, name: &str, text: &str) {
    wait_until(LIMIT, &format!("{name} logs {text:?}"), || {
        d.cli_ok(&["logs", name]).lines().any(|l| l == text)
    });
}

/// `circuit wait name`: the worker's exit code.
fn wait_exit(d: &Daemon, name: &str) -> Option<i32> {
    d.cli(&["wait", name]).status.code()
}

#[test]
fn lines_reach_the_worker_and_the_end_of_input_closes_its_stdin() {
    let d = Daemon::start();
    spawn_sh(&d, "echo", &[], ECHO);
    send_ok(&d, &["stdin", "echo"], b"a\nb b\n");
    // The worker saw EOF: its loop ended and it exited 0.
    assert_eq!(wait_exit(&d, "echo"), Some(0));
    assert_eq!(d.cli_ok(&["logs", "echo"]), "got a\ngot b b\neof\n");
}

#[test]
fn keep_open_lets_a_later_writer_go_on() {
    let d = Daemon::start();
    spawn_sh(&d, "echo", &[], ECHO);
    send_ok(&d, &["stdin", "--keep-open", "echo"], b"first\n");
    wait_for_line(&d, "echo", "got first");
    let ps = d.cli_ok(&["ps", "--json"]);
    assert!(
        ps.contains("\"stdin\": true"),
        "ps --json shows the spec's stdin: {ps}"
    );
    send_ok(&d, &["stdin", "echo"], b"second\n");
    assert_eq!(wait_exit(&d, "echo"), Some(0));
    assert_eq!(d.cli_ok(&["logs", "echo"]), "got first\ngot second\neof\n");
}

#[test]
fn one_writer_at_a_time() {
    let d = Daemon::start();
    spawn_sh(&d, "echo", &[], ECHO);
    let mut first = Writer::open(&d, &["stdin", "echo"]);
    first.line("one");
    // Answered: the first writer holds the worker's stdin.
    wait_for_line(&d, "echo", "got one");
    send_fails(
        &d,
        &["stdin", "echo"],
        b"two\n",
        "worker \"echo\"'s stdin is attached elsewhere",
    );
    let out = d.cli(&["--json", "stdin", "echo"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stderr).expect("--json error");
    assert_eq!(doc["error"]["code"], "invalid_state", "{doc}");
    // The first goes on, untouched by the refusals, and its end closes the stdin.
    first.line("three");
    let out = first.finish();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(wait_exit(&d, "echo"), Some(0));
    assert_eq!(d.cli_ok(&["logs", "echo"]), "got one\ngot three\neof\n");
}

#[test]
fn refusals_name_the_worker_and_why() {
    let d = Daemon::start();
    send_fails(&d, &["stdin", "ghost"], b"x\n", "no worker named \"ghost\"");
    d.cli_ok(&["spawn", "--name", "plain", "--", "sleep", "1000"]);
    let err = send_fails(
        &d,
        &["stdin", "plain"],
        b"x\n",
        "worker \"plain\" was not spawned with --stdin",
    );
    assert!(err.contains("circuit spawn --stdin"), "a hint: {err}");
    d.cli_ok(&["spawn", "--stdin", "--name", "done", "--", "true"]);
    assert_eq!(wait_exit(&d, "done"), Some(0));
    send_fails(
        &d,
        &["stdin", "done"],
        b"x\n",
        "worker \"done\" is not running (exited)",
    );
    // Usage errors exit 2.
    assert_eq!(d.cli(&["stdin"]).status.code(), Some(2));
    assert_eq!(d.cli(&["stdin", "a", "b"]).status.code(), Some(2));
    d.cli_ok(&["stop", "plain"]);
}

#[test]
fn megabytes_of_lines_pass_byte_exact() {
    let d = Daemon::start();
    d.cli_ok(&["spawn", "--stdin", "--name", "cat", "--", "cat"]);
    let text: String = (0..120_000)
        .map(|i| format!("line {i} of the input, {}\n", i * 7919))
        .collect();
    assert!(text.len() > 4_000_000, "{} bytes", text.len());
    send_ok(&d, &["stdin", "cat"], text.as_bytes());
    assert_eq!(wait_exit(&d, "cat"), Some(0));
    let logs = d.cli_ok(&["logs", "cat"]);
    assert!(logs == text, "{} bytes back of {}", logs.len(), text.len());
}

#[test]
fn binary_bytes_pass_unchanged() {
    let d = Daemon::start();
    // Every byte value, many times over, as `od` prints them back: 16 per line, in hex.
    d.cli_ok(&[
        "spawn", "--stdin", "--name", "od", "--", "od", "-An", "-v", "-tx1",
    ]);
    let input: Vec<u8> = (0..4096).flat_map(|_| 0..=255u8).collect();
    send_ok(&d, &["stdin", "od"], &input);
    assert_eq!(wait_exit(&d, "od"), Some(0));
    let back: Vec<u8> = d
        .cli_ok(&["logs", "od"])
        .split_whitespace()
        .map(|hex| u8::from_str_radix(hex, 16).expect("a hex byte"))
        .collect();
    assert_eq!(back.len(), input.len());
    assert!(back == input, "the bytes differ");
}

#[test]
fn a_worker_that_does_not_read_holds_up_only_its_writer() {
    let d = Daemon::start();
    d.cli_ok(&["spawn", "--stdin", "--name", "deaf", "--", "sleep", "1000"]);
    // Far more than the pipe and the daemon's window hold.
    let mut deaf = Writer::feed(&d, &["stdin", "deaf"], vec![b'x'; 16 << 20]);
    // Meanwhile the daemon serves everything else, other stdin streams included.
    spawn_sh(&d, "echo", &[], ECHO);
    send_ok(&d, &["stdin", "echo"], b"meanwhile\n");
    assert_eq!(wait_exit(&d, "echo"), Some(0));
    assert!(d.cli_ok(&["ps"]).contains("deaf"));
    assert!(
        deaf.running(),
        "the writer to a worker that does not read waits"
    );
    // Stopping the worker ends the writer, saying so.
    d.cli_ok(&["stop", "deaf"]);
    let out = deaf.finish();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Seen as the stop's signal or as the exit it caused.
    assert!(
        err.contains("worker \"deaf\"") && err.contains("while its stdin was attached"),
        "{err}"
    );
}

#[test]
fn a_writer_that_goes_away_leaves_the_stdin_open_for_the_next() {
    let d = Daemon::start();
    spawn_sh(&d, "echo", &[], ECHO);
    let mut gone = Writer::open(&d, &["stdin", "echo"]);
    gone.line("before");
    wait_for_line(&d, "echo", "got before");
    // Killed, as by Ctrl-C: no end of input, so the worker's stdin stays open.
    drop(gone);
    let mut next = None;
    wait_until(LIMIT, "a new writer attaches", || {
        let out = Writer::feed(&d, &["stdin", "echo"], b"after\n".to_vec()).finish();
        let attached = out.status.success();
        next = Some(out);
        attached || !stderr_of(next.as_ref().expect("set")).contains("attached elsewhere")
    });
    let out = next.expect("set");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(wait_exit(&d, "echo"), Some(0));
    assert_eq!(d.cli_ok(&["logs", "echo"]), "got before\ngot after\neof\n");
}

#[test]
fn a_restart_ends_the_attached_writer_and_the_new_run_has_a_new_stdin() {
    let d = Daemon::start();
    spawn_sh(&d, "echo", &[], ECHO);
    let mut old = Writer::open(&d, &["stdin", "echo"]);
    old.line("old run");
    wait_for_line(&d, "echo", "got old run");
    d.cli_ok(&["restart", "echo"]);
    let out = old.finish();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("worker \"echo\" restarted, with a new stdin: attach again"),
        "{err}"
    );
    send_ok(&d, &["stdin", "echo"], b"new run\n");
    wait_for_line(&d, "echo", "got new run");
    assert_eq!(wait_exit(&d, "echo"), Some(0));
}

#[test]
fn a_worker_that_closes_its_stdin_ends_the_writer_and_circuitd_lives_on() {
    let mut d = Daemon::start();
    spawn_sh(&d, "closer", &[], "exec 0<&-; echo closed; exec sleep 1000");
    wait_for_line(&d, "closer", "closed");
    // More than a pipe holds, so a write meets the closed end (EPIPE, SIGPIPE ignored).
    send_fails(
        &d,
        &["stdin", "closer"],
        &vec![b'x'; 1 << 20],
        "worker \"closer\" closed its stdin",
    );
    d.check_alive().expect("circuitd survives a closed pipe");
    assert!(d.cli_ok(&["ps"]).contains("closer"));
    // Closed for this run: a later writer is told so.
    send_fails(&d, &["stdin", "closer"], b"x\n", "stdin is closed");
    d.cli_ok(&["stop", "closer"]);
}

#[test]
fn a_worker_on_another_node_gets_the_input_through_this_one() {
    let a = Daemon::start_named("a", &["--listen", "127.0.0.1:0"]);
    let addr = a.mesh_addr();
    let b = Daemon::start_named("b", &["--listen", "127.0.0.1:0", "--join", &addr]);
    wait_until(LIMIT, "a and b see each other", || converged(&[&a, &b]));
    spawn_sh(&a, "far", &["--node", "b"], ECHO);
    assert!(b.cli_ok(&["ps", "--node", "b"]).contains("far"));
    // Through a's socket: a finds the worker on b and relays the stream.
    send_ok(&a, &["stdin", "--keep-open", "far"], b"via a\n");
    wait_for_line(&a, "far", "got via a");
    // Named with --node, and ended: the worker on b sees EOF.
    send_ok(&a, &["stdin", "--node", "b", "far"], b"named\n");
    assert_eq!(wait_exit(&a, "far"), Some(0));
    assert_eq!(a.cli_ok(&["logs", "far"]), "got via a\ngot named\neof\n");
    send_fails(
        &a,
        &["stdin", "nowhere"],
        b"x\n",
        "no worker named \"nowhere\"",
    );
    send_fails(
        &a,
        &["stdin", "--node", "h9", "far"],
        b"x\n",
        "no node named \"h9\"",
    );
}

/// A raw connection to the daemon's socket, greeted.
async fn greeted(d: &Daemon) -> Framed<UnixStream, FrameCodec> {
    let stream = UnixStream::connect(&d.socket).await.expect("connect");
    let mut conn = Framed::new(stream, FrameCodec::default());
    send(
        &mut conn,
        &ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            client: "stdin-test".into(),
        },
    )
    .await;
    assert!(matches!(
        next(&mut conn).await,
        Frame::Control(body) if body.starts_with(b"{\"type\":\"hello\"")
    ));
    conn
}

async fn send(conn: &mut Framed<UnixStream, FrameCodec>, msg: &ClientMessage) {
    let body = serde_json::to_vec(msg).expect("serialize");
    conn.send(Frame::Control(body.into())).await.expect("send");
}

async fn next(conn: &mut Framed<UnixStream, FrameCodec>) -> Frame {
    tokio::time::timeout(LIMIT, conn.next())
        .await
        .expect("a frame in time")
        .expect("the connection is open")
        .expect("a valid frame")
}

/// The next frame, as a control message.
async fn message(conn: &mut Framed<UnixStream, FrameCodec>) -> ServerMessage {
    match next(conn).await {
        Frame::Control(body) => serde_json::from_slice(&body).expect("valid json"),
        other => panic!("expected a control message, got {other:?}"),
    }
}

/// Opens a stdin stream with id `id` on `name` and returns what it was opened with.
async fn open(conn: &mut Framed<UnixStream, FrameCodec>, id: u64, name: &str) -> StdinOpened {
    let request = Request::WorkerStdin {
        name: name.into(),
        node: None,
        keep_open: false,
    };
    send(conn, &ClientMessage::Request { id, request }).await;
    match message(conn).await {
        ServerMessage::Item {
            id: got,
            item: Item::StdinOpened(opened),
        } if got == id => opened,
        other => panic!("expected stdin_opened, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_that_breaks_the_rules_ends_alone_and_the_stdin_stays_open() {
    let d = Daemon::start();
    spawn_sh(&d, "echo", &[], ECHO);
    let mut conn = greeted(&d).await;
    let opened = open(&mut conn, 1, "echo").await;
    assert_eq!(
        (opened.worker.as_str(), opened.node.as_str()),
        ("echo", "test")
    );
    assert!(opened.window > 0 && opened.max_chunk > 0, "{opened:?}");
    // The first chunk must be 1.
    let data = |id, seq, payload: &'static [u8]| Frame::Data {
        id,
        seq,
        payload: Bytes::from_static(payload),
    };
    conn.send(data(1, 2, b"skipped\n")).await.expect("send");
    match message(&mut conn).await {
        ServerMessage::Error { id, code, message } => {
            assert_eq!((id, code), (Some(1), ErrorCode::BadRequest), "{message}");
            assert_eq!(message, "stdin chunk 2 out of order (expected 1)");
        }
        other => panic!("expected bad_request, got {other:?}"),
    }
    // The refusal wrote nothing and left the stdin open: the next stream writes and ends it.
    open(&mut conn, 2, "echo").await;
    conn.send(data(2, 1, b"hi\n")).await.expect("send");
    let eof = Frame::Signal {
        id: 2,
        op: SignalOp::Eof,
        a: 1,
        b: 0,
    };
    conn.send(eof).await.expect("send");
    let accepted = Frame::Signal {
        id: 2,
        op: SignalOp::Accepted,
        a: 1,
        b: 1,
    };
    assert_eq!(next(&mut conn).await, accepted);
    match message(&mut conn).await {
        ServerMessage::Ok { id: 2, reply } => assert_eq!(reply, Reply::Done),
        other => panic!("expected ok done, got {other:?}"),
    }
    assert_eq!(wait_exit(&d, "echo"), Some(0));
    assert_eq!(d.cli_ok(&["logs", "echo"]), "got hi\neof\n");
}
