//! The channel commands of the `circuit` binary end to end: `chan create/ls/stat/close/rm`,
//! `send` and `recv` against a real daemon — rendezvous, close and drain, backpressure, order,
//! and one clear error line for each mistake.

use std::io::Write;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use circuit_testkit::{wait_until, Daemon};
use serde_json::Value;

/// How long anything here may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// A `circuit` process running in the background; killed and reaped if the test ends first.
struct Bg {
    child: Option<Child>,
    /// Writes the process's stdin, then closes it.
    feeder: Option<JoinHandle<()>>,
    /// Reads the process's stdout as it comes, as the next stage of a pipeline would (`recv`
    /// lets a value go only once it has been read out of the pipe).
    reader: Option<JoinHandle<Vec<u8>>>,
    what: String,
}

impl Bg {
    /// Starts `circuit args`; with `input`, its stdin gets those bytes and then end-of-file.
    fn start(d: &Daemon, args: &[&str], input: Option<Vec<u8>>) -> Self {
        let mut cmd = d.cli_command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("start circuit");
        // A thread, since the process reads its input only as fast as the channel accepts it.
        let feeder = input.map(|bytes| {
            let mut stdin = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            })
        });
        let mut stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
            out
        });
        Self {
            child: Some(child),
            feeder,
            reader: Some(reader),
            what: format!("circuit {args:?}"),
        }
    }

    /// True while the process has not exited.
    fn running(&mut self) -> bool {
        let child = self.child.as_mut().expect("not finished");
        child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the process to exit (reading its output meanwhile) and returns its output;
    /// kills it and fails the test after `timeout`.
    fn finish(mut self, timeout: Duration) -> Output {
        let child = self.child.take().expect("not finished");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let mut output = match rx.recv_timeout(timeout) {
            Ok(output) => output.expect("wait for circuit"),
            Err(_) => {
                kill(pid);
                let _ = waiter.join();
                panic!("{} did not exit within {timeout:?}", self.what);
            }
        };
        if let Some(feeder) = self.feeder.take() {
            feeder.join().expect("stdin feeder");
        }
        if let Some(reader) = self.reader.take() {
            output.stdout = reader.join().expect("stdout reader");
        }
        output
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// SIGKILLs a process that has not been reaped yet (so its pid is still its own).
fn kill(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that a finished process exited 0; returns its stdout.
fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `circuit args`, asserts it fails with exit 1 and one `error:` line containing `want`,
/// and returns that line.
fn fails(d: &Daemon, args: &[&str], want: &str) -> String {
    let out = d.cli(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "circuit {args:?}: {err}");
    assert!(
        err.starts_with("error: ") && err.contains(want),
        "circuit {args:?}: expected {want:?} in:\n{err}"
    );
    assert_eq!(err.lines().count(), 1, "circuit {args:?}: one line: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("Daemon {"),
        "{err}"
    );
    assert_eq!(text(&out.stdout), "", "circuit {args:?} printed on stdout");
    err
}

/// `circuit chan stat --json name`.
fn stat(d: &Daemon, name: &str) -> Value {
    serde_json::from_str(&d.cli_ok(&["chan", "stat", "--json", name])).expect("chan stat --json")
}

/// Polls `chan stat` until `cond` holds.
fn wait_stat(d: &Daemon, name: &str, what: &str, cond: impl Fn(&Value) -> bool) {
    wait_until(LIMIT, &format!("channel {name}: {what}"), || {
        cond(&stat(d, name))
    });
}

/// Polls `produce` until it returns `want`; fails with the last output otherwise.
fn eventually_eq(want: &str, mut produce: impl FnMut() -> String) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let got = produce();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for\n{want}\nlast seen:\n{got}"
        );
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

#[test]
fn rendezvous_send_returns_only_after_a_receiver_took_the_value() {
    let d = Daemon::start();
    assert_eq!(
        d.cli_ok(&["chan", "create", "jobs", "--cap", "0"]),
        "jobs\n"
    );

    // A receiver waits first; `echo x | circuit send jobs` hands it the value.
    let recv = Bg::start(&d, &["recv", "jobs", "-n", "1"], None);
    wait_stat(&d, "jobs", "one receiver waits", |s| {
        s["waiting_receivers"] == 1
    });
    let send = Bg::start(&d, &["send", "jobs"], Some(b"x\n".to_vec()));
    assert_eq!(ok(&send.finish(LIMIT), "send"), "");
    assert_eq!(ok(&recv.finish(LIMIT), "recv -n 1"), "x\n");
    let s = stat(&d, "jobs");
    assert_eq!(
        (&s["sent"], &s["received"], &s["len"], &s["in_flight"]),
        (&1.into(), &1.into(), &0.into(), &0.into()),
        "{s}"
    );

    // The sender comes first: it must wait for as long as nobody takes the value.
    let mut send = Bg::start(&d, &["send", "jobs"], Some(b"x\n".to_vec()));
    wait_stat(&d, "jobs", "one send waits", |s| s["waiting_senders"] == 1);
    assert!(
        send.running(),
        "send exited while no receiver had taken its value"
    );
    assert_eq!(
        stat(&d, "jobs")["sent"],
        1,
        "nothing accepted without a receiver"
    );
    assert_eq!(d.cli_ok(&["recv", "jobs", "-n", "1"]), "x\n");
    assert_eq!(ok(&send.finish(LIMIT), "send"), "");

    // The same with the value as an argument.
    let mut send = Bg::start(&d, &["send", "jobs", "y"], None);
    wait_stat(&d, "jobs", "one send waits", |s| s["waiting_senders"] == 1);
    assert!(
        send.running(),
        "send jobs y exited before a receiver took y"
    );
    assert_eq!(d.cli_ok(&["recv", "-n", "1", "jobs"]), "y\n");
    ok(&send.finish(LIMIT), "send jobs y");
    let s = stat(&d, "jobs");
    assert_eq!((&s["sent"], &s["received"]), (&3.into(), &3.into()), "{s}");
}

#[test]
fn close_lets_receivers_drain_and_fails_senders() {
    let d = Daemon::start();
    d.cli_ok(&["chan", "create", "jobs", "--cap", "4"]);
    d.cli_ok(&["send", "jobs", "a"]);
    d.cli_ok(&["send", "jobs", "b"]);
    assert_eq!(d.cli_ok(&["chan", "close", "jobs"]), "jobs\n");
    assert_eq!(stat(&d, "jobs")["closed"], true);

    // What was buffered is still received, then the end of the channel is a normal end.
    assert_eq!(d.cli_ok(&["recv", "jobs"]), "a\nb\n");
    assert_eq!(d.cli_ok(&["recv", "jobs"]), "");
    assert_eq!(d.cli_ok(&["recv", "-n", "5", "jobs"]), "");
    let err = fails(&d, &["send", "jobs", "y"], "closed");
    assert_eq!(err, "error: channel \"jobs\" is closed\n");
    let out = d
        .cli_command(&["send", "jobs"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("stdin").write_all(b"z\n")?;
            child.wait_with_output()
        })
        .expect("run send");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is closed"),
        "{}",
        text(&out.stderr)
    );

    // A receiver and a sender blocked on a rendezvous channel are both ended by its close.
    d.cli_ok(&["chan", "create", "rv"]);
    let recv = Bg::start(&d, &["recv", "rv"], None);
    wait_stat(&d, "rv", "one receiver waits", |s| {
        s["waiting_receivers"] == 1
    });
    d.cli_ok(&["chan", "close", "rv"]);
    assert_eq!(ok(&recv.finish(LIMIT), "recv rv"), "");

    d.cli_ok(&["chan", "create", "rv2"]);
    let send = Bg::start(&d, &["send", "rv2", "z"], None);
    wait_stat(&d, "rv2", "one send waits", |s| s["waiting_senders"] == 1);
    d.cli_ok(&["chan", "close", "rv2"]);
    let out = send.finish(LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "error: channel \"rv2\" is closed\n");
}

#[test]
fn many_lines_arrive_once_and_in_order_through_a_small_buffer() {
    const N: usize = 10_000;
    let d = Daemon::start();
    d.cli_ok(&["chan", "create", "lines", "--cap", "16"]);
    let input: String = (1..=N).map(|i| format!("line-{i}\n")).collect();
    let mut send = Bg::start(&d, &["send", "lines"], Some(input.clone().into_bytes()));

    // No receiver yet: the buffer fills and send waits, holding only a bounded window of
    // lines (its --help says 4096) rather than reading all of stdin ahead.
    wait_stat(&d, "lines", "the buffer is full and sends wait", |s| {
        s["len"] == 16 && s["waiting_senders"].as_u64() > Some(0)
    });
    let s = stat(&d, "lines");
    assert_eq!(s["sent"], 16, "{s}");
    assert!(s["waiting_senders"].as_u64() <= Some(4096), "{s}");
    assert!(
        send.running(),
        "send exited before its values were accepted"
    );

    // recv first: it must be read while it runs, or its output would fill the pipe.
    let recv = Bg::start(&d, &["recv", "lines", "-n", &N.to_string()], None);
    let got = ok(&recv.finish(LIMIT), "recv -n");
    ok(&send.finish(LIMIT), "send");
    assert_eq!(got.lines().count(), N);
    assert!(got == input, "lines were lost, repeated or reordered");
    let s = stat(&d, "lines");
    assert_eq!(
        (&s["sent"], &s["received"], &s["len"], &s["in_flight"]),
        (&N.into(), &N.into(), &0.into(), &0.into()),
        "{s}"
    );
}

#[test]
fn ls_and_stat_describe_channels_in_text_and_json() {
    let d = Daemon::start();
    assert_eq!(
        d.cli_ok(&["chan", "create", "jobs", "--cap", "8"]),
        "jobs\n"
    );
    let created: Value =
        serde_json::from_str(&d.cli_ok(&["chan", "create", "--json", "results", "--cap", "2"]))
            .expect("create --json");
    assert_eq!(
        (
            &created["name"],
            &created["capacity"],
            &created["closed"],
            &created["owner"]
        ),
        (&"results".into(), &2.into(), &false.into(), &"test".into()),
        "{created}"
    );
    d.cli_ok(&["send", "jobs", "v1"]);
    d.cli_ok(&["chan", "close", "results"]);

    // The senders count drops once the daemon has seen `send` go.
    eventually_eq(
        "\
NAME      CAP   LEN   IN-FLIGHT   SENDERS   RECEIVERS   SENT   RECEIVED   STATE    OWNER   REPLICAS
jobs      8     1     0           0         0           1      0          open     test    1
results   2     0     0           0         0           0      0          closed   test    1
",
        || d.cli_ok(&["chan", "ls"]),
    );
    let list: Vec<Value> =
        circuit_testkit::json_list(d.cli_ok(&["chan", "ls", "--json"]), "channels").expect("ls");
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["jobs", "results"]);
    assert_eq!(
        (&list[0]["len"], &list[1]["closed"]),
        (&1.into(), &true.into())
    );

    let text = d.cli_ok(&["chan", "stat", "jobs"]);
    let (fixed, created) = text.split_once("created: ").expect("a created line");
    assert_eq!(
        fixed,
        "\
name: jobs
capacity: 8
len: 1
in flight: 0
waiting senders: 0
waiting receivers: 0
senders: 0
receivers: 0
sent: 1
received: 0
closed: no
owner: test
max payload: 16M
"
    );
    assert!(
        created.starts_with("20") && created.ends_with(" ago)\n"),
        "{created}"
    );
    let s = stat(&d, "jobs");
    assert_eq!(
        (&s["capacity"], &s["len"], &s["max_payload"]),
        (&8.into(), &1.into(), &(16u64 << 20).into()),
        "{s}"
    );
    assert!(s["created_at_ms"].as_u64() > Some(0), "{s}");

    // An existing channel is an error, unless --exist-ok and the capacity is the same.
    fails(
        &d,
        &["chan", "create", "jobs", "--cap", "8"],
        "already exists",
    );
    assert_eq!(
        d.cli_ok(&["chan", "create", "jobs", "--cap", "8", "--exist-ok"]),
        "jobs\n"
    );
    fails(
        &d,
        &["chan", "create", "jobs", "--exist-ok"],
        "already exists (capacity 8)",
    );
}

#[test]
fn rm_forgets_a_channel_and_status_counts_them() {
    let d = Daemon::start();
    d.cli_ok(&["chan", "create", "jobs"]);
    d.cli_ok(&["chan", "create", "results", "--cap", "4"]);
    d.cli_ok(&["send", "results", "kept?"]);
    assert!(d.cli_ok(&["status"]).contains("\nchannels: 2\n"));

    assert_eq!(d.cli_ok(&["chan", "rm", "results"]), "results\n");
    let err = fails(
        &d,
        &["chan", "stat", "results"],
        "no channel named \"results\"",
    );
    assert!(err.contains("circuit chan ls"), "{err}");
    assert!(!d.cli_ok(&["chan", "ls"]).contains("results"));
    assert!(d.cli_ok(&["status"]).contains("\nchannels: 1\n"));
    let status: Value =
        serde_json::from_str(&d.cli_ok(&["status", "--json"])).expect("status --json");
    assert_eq!(status["channels"], 1);

    // A new channel of that name starts empty.
    d.cli_ok(&["chan", "create", "results", "--cap", "4"]);
    assert_eq!(stat(&d, "results")["len"], 0);
}

#[test]
fn bad_names_and_unknown_channels_get_one_clear_line() {
    let d = Daemon::start();
    let long = "x".repeat(129);
    let cases: [(&str, &str); 4] = [
        ("a b", "channel name \"a b\" contains ' '"),
        ("", "channel name is empty"),
        (
            &long,
            "channel name is 129 characters long; the limit is 128",
        ),
        ("ä", "channel name \"ä\" contains 'ä'"),
    ];
    for (name, why) in cases {
        fails(&d, &["chan", "create", name], why);
        fails(&d, &["send", name, "v"], why);
        fails(&d, &["recv", name], why);
        fails(&d, &["chan", "stat", name], why);
    }
    assert_eq!(d.cli_ok(&["chan", "create", &"x".repeat(128)]).len(), 129);

    let unknown = "error: no channel named \"ghost\" — see `circuit chan ls`\n";
    for args in [
        &["send", "ghost", "v"][..],
        &["send", "ghost"],
        &["recv", "ghost"],
        &["recv", "-n", "1", "--timeout", "1", "ghost"],
        &["chan", "stat", "ghost"],
        &["chan", "close", "ghost"],
        &["chan", "rm", "ghost"],
    ] {
        assert_eq!(fails(&d, args, "ghost"), unknown, "circuit {args:?}");
    }

    // Closing twice is an error; the first close stands.
    d.cli_ok(&["chan", "create", "jobs"]);
    d.cli_ok(&["chan", "close", "jobs"]);
    fails(
        &d,
        &["chan", "close", "jobs"],
        "channel \"jobs\" is already closed",
    );
    assert_eq!(stat(&d, "jobs")["closed"], true);
}

#[test]
fn bad_capacities_are_refused_with_a_plain_sentence_and_create_nothing() {
    let d = Daemon::start();
    for (cap, why) in [
        ("-1", "a channel cannot be unbounded"),
        ("-5", "not \"-5\""),
        ("lots", "whole number of values from 0"),
        ("2.5", "not \"2.5\""),
        ("1073741825", "at most 1073741824 values"),
        ("99999999999999999999999", "not \"99999999999999999999999\""),
    ] {
        let out = d.cli(&["chan", "create", "q", "--cap", cap]);
        assert_eq!(out.status.code(), Some(2), "--cap {cap}: a usage error");
        let err = text(&out.stderr);
        assert!(err.contains(why), "--cap {cap}: {err}");
    }
    // The daemon refuses it too, whoever asks.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let refused = rt.block_on(async {
        let client = d.client().await;
        client.chan_create("q", u64::MAX).await
    });
    let err = refused.expect_err("u64::MAX is refused").to_string();
    assert!(err.contains("at most 1073741824 values"), "{err}");
    assert_eq!(
        d.cli_ok(&["chan", "ls"]).lines().count(),
        1,
        "only the header"
    );
    assert_eq!(
        d.cli_ok(&["chan", "create", "q", "--cap", "1073741824"]),
        "q\n"
    );
}

#[test]
fn values_larger_than_the_channel_accepts_are_refused() {
    let d = Daemon::start_with(&["--max-payload", "8"]);
    d.cli_ok(&["chan", "create", "small", "--cap", "4"]);
    fails(
        &d,
        &["send", "small", "123456789"],
        "a value of 9 bytes is larger than channel \"small\" accepts (8 bytes)",
    );
    let out = d
        .cli_command(&["send", "small"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"12345678\n123456789\nnever\n")?;
            drop(stdin);
            child.wait_with_output()
        })
        .expect("run send");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "error: line 2: a value of 9 bytes is larger than channel \"small\" accepts (8 bytes)\n"
    );
    // Exactly the lines before the refused one went in.
    let s = stat(&d, "small");
    assert_eq!((&s["sent"], &s["len"]), (&1.into(), &1.into()), "{s}");
    assert_eq!(d.cli_ok(&["recv", "-n", "1", "small"]), "12345678\n");
}

#[test]
fn recv_timeout_gives_up_with_exit_124() {
    let d = Daemon::start();
    d.cli_ok(&["chan", "create", "jobs"]);
    let start = Instant::now();
    let out = d.cli(&["recv", "--timeout", "1", "jobs"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "error: no value arrived on channel \"jobs\" within 1s\n"
    );
    assert_eq!(text(&out.stdout), "");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // The receiver that gave up holds no claim on the channel.
    wait_stat(&d, "jobs", "no receiver is left", |s| {
        s["receivers"] == 0 && s["waiting_receivers"] == 0
    });

    // The limit is per value: what arrives is printed, then the wait for the next one ends.
    d.cli_ok(&["chan", "create", "buf", "--cap", "4"]);
    d.cli_ok(&["send", "buf", "a"]);
    let out = d.cli(&["recv", "-n", "2", "--timeout", "500ms", "buf"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a\n");
    assert_eq!(stat(&d, "buf")["received"], 1);
}

#[test]
fn recv_into_a_closed_pipe_exits_quietly_and_loses_nothing() {
    let d = Daemon::start();
    d.cli_ok(&["chan", "create", "jobs", "--cap", "8"]);
    let out = d
        .cli_command(&["send", "jobs"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("stdin").write_all(b"1\n2\n3\n")?;
            child.wait_with_output()
        })
        .expect("run send");
    ok(&out, "send");
    d.cli_ok(&["chan", "close", "jobs"]);

    for args in [&["recv", "jobs"][..], &["recv", "-n", "2", "jobs"]] {
        // Like `circuit recv jobs | head -0`: the reader is gone before the first write.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = d
            .cli_command(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run recv");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "circuit {args:?}");
        let s = stat(&d, "jobs");
        assert_eq!(
            (&s["len"], &s["in_flight"], &s["received"]),
            (&3.into(), &0.into(), &0.into()),
            "circuit {args:?} lost a value it could not print: {s}"
        );
    }
    assert_eq!(d.cli_ok(&["recv", "jobs"]), "1\n2\n3\n");
}

/// Sends `values` to `chan` through `circuit send`.
fn send_lines(d: &Daemon, chan: &str, values: &str) {
    let out = d
        .cli_command(&["send", chan])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(values.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run send");
    ok(&out, "send");
}

/// Issue 13, defect 1: `circuit recv q | head -1` took every value (they sat in the pipe
/// when head exited) and then waited for another. Only the value head read may leave.
#[test]
fn recv_into_head_takes_only_the_value_head_read() {
    let d = Daemon::start();
    d.cli_ok(&["chan", "create", "q", "--cap", "64"]);
    let values: String = (1..=20).map(|i| format!("{i}\n")).collect();
    send_lines(&d, "q", &values);
    for (head, want_out, want_len) in [(1, "1\n", 19), (3, "2\n3\n4\n", 16)] {
        let circuit = circuit_testkit::bin("circuit");
        let script = format!("'{}' recv q | head -{head}", circuit.display());
        let started = Instant::now();
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("CIRCUIT_SOCKET", &d.socket)
            .stderr(Stdio::piped())
            .output()
            .expect("run sh");
        let took = started.elapsed();
        assert_eq!(ok(&out, &script), want_out);
        assert!(took < Duration::from_secs(1), "{script} took {took:?}");
        // recv has exited; the daemon sees its connection end a moment later (the one value
        // it held unwritten, if any, goes back then).
        wait_until(Duration::from_secs(5), "recv's stream to end", || {
            stat(&d, "q")["receivers"] == 0
        });
        let s = stat(&d, "q");
        assert_eq!(
            (&s["len"], &s["in_flight"], &s["received"]),
            (&want_len.into(), &0.into(), &(20 - want_len).into()),
            "{script}: {s}"
        );
    }
    // A reader that never reads and then goes away: the value it did not take goes back.
    let circuit = circuit_testkit::bin("circuit");
    let script = format!(
        "'{}' recv q | (read -r _ </dev/null; exit 0)",
        circuit.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("CIRCUIT_SOCKET", &d.socket)
        .stderr(Stdio::piped())
        .output()
        .expect("run sh");
    ok(&out, &script);
    assert_eq!(stat(&d, "q")["len"], 16);
}

/// Issue 13, defect 1: a `recv` waiting on an empty channel notices at once that the reader
/// of its stdout went away, and exits 0 without taking the value that comes next.
#[test]
fn recv_exits_when_its_reader_goes_away_while_it_waits() {
    let d = Daemon::start();
    d.cli_ok(&["chan", "create", "q", "--cap", "8"]);
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut recv = d
        .cli_command(&["recv", "q"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run recv");
    wait_stat(&d, "q", "recv waits", |s| s["waiting_receivers"] == 1);
    drop(reader);
    let mut status = None;
    wait_until(LIMIT, "recv exits after its reader went away", || {
        status = recv.try_wait().expect("try_wait");
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    send_lines(&d, "q", "x\n");
    let s = stat(&d, "q");
    assert_eq!(
        (&s["len"], &s["in_flight"], &s["received"]),
        (&1.into(), &0.into(), &0.into()),
        "recv took a value after its reader was gone: {s}"
    );
}
