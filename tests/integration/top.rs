//! `circuit top` (issue 17) in a real pseudo-terminal, its screen read through a vt100
//! parser: over a two-node loopback mesh with workers on both nodes (one a CPU hog) and a
//! channel with traffic, it shows both nodes with their memory, every worker and the channel's
//! rate; `c` puts the hog first; `q` exits 0 with the terminal put back (the alternate screen
//! left, line mode on again). A daemon that goes away mid-run is an error line, not an exit.
//! Without a terminal it refuses (exit 2); `--once` prints one snapshot.
//!
//! With `CIRCUIT_TOP_SCREEN=FILE`, the mesh test writes the sorted screen to FILE as text.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use circuit_testkit::{bin, converged, try_wait_until, wait_until, Daemon, MachineLock};
use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};
use serde_json::Value;

/// The terminal's size.
const ROWS: u16 = 50;
const COLS: u16 = 160;
/// How long the screen may take to show something.
const SHOW: Duration = Duration::from_secs(30);

/// A command running on a pseudo-terminal, and the screen it has drawn so far.
struct Pty {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    /// Feeds the parser until the terminal closes.
    reader: Option<JoinHandle<()>>,
    /// Holds the terminal open while the command runs; resizes it.
    master: Box<dyn MasterPty + Send>,
}

impl Pty {
    /// Runs `sh -c script` in a fresh terminal of [`ROWS`] × [`COLS`] (its controlling
    /// terminal, in a session of its own), aimed at the daemon on `socket`.
    fn run(socket: &Path, script: &str) -> Pty {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut cmd = CommandBuilder::new("sh");
        cmd.args(["-c", script]);
        cmd.env("CIRCUIT_SOCKET", socket);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("CIRCUIT_KEY_FILE");
        let child = pair
            .slave
            .spawn_command(cmd)
            .expect("start in the terminal");
        // Only the child holds the terminal's other end now, so the reader sees its end.
        drop(pair.slave);
        let mut output = pair.master.try_clone_reader().expect("terminal reader");
        let writer = pair.master.take_writer().expect("terminal writer");
        let rows = std::num::NonZeroU16::new(ROWS).expect("rows");
        let cols = std::num::NonZeroU16::new(COLS).expect("cols");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let feed = Arc::clone(&screen);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().expect("screen").process(&buf[..n]);
            }
        });
        Pty {
            child,
            writer,
            screen,
            reader: Some(reader),
            master: pair.master,
        }
    }

    /// The screen's lines, without trailing spaces.
    fn lines(&self) -> Vec<String> {
        let parser = self.screen.lock().expect("screen");
        let (_, cols) = parser.screen().size();
        parser
            .screen()
            .rows(0, cols.get())
            .map(|row| row.trim_end().to_string())
            .collect()
    }

    /// Polls the screen until `cond` holds; panics naming `what`, with the screen, if it does
    /// not within [`SHOW`]. Returns the screen that satisfied it.
    fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&[String]) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        let result = try_wait_until(SHOW, what, || {
            seen = self.lines();
            cond(&seen)
        });
        if let Err(e) = result {
            let exit = self.child.try_wait().ok().flatten();
            panic!("{e}; exited: {exit:?}; the screen:\n{}", seen.join("\n"));
        }
        seen
    }

    /// Makes the terminal `rows` × `cols` (the command gets SIGWINCH).
    fn resize(&mut self, rows: u16, cols: u16) {
        let mut parser = self.screen.lock().expect("screen");
        let nonzero = |n| std::num::NonZeroU16::new(n).expect("not zero");
        parser.screen_mut().set_size(nonzero(rows), nonzero(cols));
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resize the terminal");
    }

    /// Types `keys`.
    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).expect("type");
        self.writer.flush().expect("flush");
    }

    /// Waits for the command to exit; returns its exit code.
    fn exit_code(&mut self) -> u32 {
        let mut status = None;
        let result = try_wait_until(SHOW, "circuit top exits", || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        if let Err(e) = result {
            panic!("{e}; the screen:\n{}", self.lines().join("\n"));
        }
        // The terminal closed with it: the screen is complete once the reader is done.
        if let Some(reader) = self.reader.take() {
            reader.join().expect("reader thread");
        }
        status.expect("exited").exit_code()
    }

    /// True while the alternate screen is on.
    fn alternate_screen(&self) -> bool {
        self.screen
            .lock()
            .expect("screen")
            .screen()
            .alternate_screen()
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `sh -c` text that runs `circuit top ARGS`, then prints the terminal's settings (`stty -a`)
/// and exits with top's exit code.
fn top_script(args: &str) -> String {
    let circuit = bin("circuit");
    format!(
        "'{}' top {args}; code=$?; echo; echo \"top exited $code\"; stty -a; exit $code",
        circuit.display()
    )
}

/// The rows of the pane titled `title` (`Workers`): the lines after its column titles, up to
/// its bottom border, without the borders.
fn pane<'a>(screen: &'a [String], title: &str) -> Vec<&'a str> {
    let Some(top) = screen
        .iter()
        .position(|l| l.starts_with(&format!("┌ {title} ")))
    else {
        return Vec::new();
    };
    screen[top + 2..]
        .iter()
        .take_while(|l| !l.starts_with('└'))
        .map(|l| l.trim_start_matches('│').trim_end_matches('│').trim())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The row of `pane` whose cell `column` is `value`, split into cells (no cell has a space).
fn row<'a>(rows: &[&'a str], column: usize, value: &str) -> Option<Vec<&'a str>> {
    rows.iter()
        .map(|r| r.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(column) == Some(&value))
}

/// A figure of a cell: `98.7%` → 98.7; `-` → none.
fn figure(cell: &str) -> Option<f64> {
    cell.trim_end_matches('%').parse().ok()
}

fn node(name: &str, join: Option<&str>) -> Daemon {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    if let Some(addr) = join {
        args.extend(["--join", addr]);
    }
    Daemon::start_named(name, &args)
}

#[test]
fn top_shows_the_mesh_live_sorts_by_cpu_and_puts_the_terminal_back() {
    let a = node("top-a", None);
    let addr = a.mesh_addr();
    let b = node("top-b", Some(&addr));
    wait_until(Duration::from_secs(10), "the nodes see each other", || {
        converged(&[&a, &b])
    });
    let hog = bin("circuit-test-hog");
    let hog = hog.to_str().expect("utf-8 path");
    let circuit = bin("circuit");
    let circuit = circuit.to_str().expect("utf-8 path");
    // Idle workers on both nodes; a channel owned by b, fed from a and drained on b.
    a.cli_ok(&["spawn", "--name", "a-idle", "--", hog, "--mib", "8"]);
    a.cli_ok(&["spawn", "--node", "top-b", "--name", "b-idle", "--", hog]);
    a.cli_ok(&["chan", "create", "jobs", "--cap", "64", "--node", "top-b"]);
    let feed = format!("while :; do echo x; sleep 0.05; done | '{circuit}' send jobs");
    a.cli_ok(&["spawn", "--name", "feed", "--", "sh", "-c", &feed]);
    let drain = ["spawn", "--node", "top-b", "--name", "drain", "--", circuit];
    a.cli_ok(&[&drain[..], &["recv", "jobs"]].concat());
    // The hog keeps a core busy on b, only while no namespace cluster is up (best effort, as
    // in the usage test) and only for this test.
    let lock = MachineLock::acquire().ok();
    a.cli_ok(&[
        "spawn", "--node", "top-b", "--name", "hog", "--", hog, "--spin",
    ]);

    let mut top = Pty::run(&a.socket, &top_script(""));
    let workers = ["a-idle", "b-idle", "drain", "feed", "hog"];
    let screen = top.wait_for(
        "both nodes with their memory, every worker, the hog busy, the channel's traffic",
        |screen| {
            let nodes = pane(screen, "Nodes");
            let up = |name: &str| {
                // NAME STATE ADDR LOAD MEM WORKERS CHANNELS; MEM is used/total.
                row(&nodes, 0, name)
                    .is_some_and(|r| r[1] == "alive" && r.len() == 7 && r[4].contains('/'))
            };
            let on_b = row(&nodes, 0, "top-b").is_some_and(|r| r[5] == "3" && r[6] == "1");
            let rows = pane(screen, "Workers");
            let listed = workers
                .iter()
                .all(|w| row(&rows, 1, w).is_some_and(|r| r[2] == "running"));
            // NODE NAME STATE PID CPU ...
            let busy = row(&rows, 1, "hog")
                .is_some_and(|r| r[0] == "top-b" && figure(r[4]).is_some_and(|cpu| cpu > 20.0));
            // NAME OWNER LEN/CAP IN/S OUT/S WAIT-SEND WAIT-RECV STATE
            let chans = pane(screen, "Channels");
            let flowing = row(&chans, 0, "jobs").is_some_and(|r| {
                r[1] == "top-b" && r[2].ends_with("/64") && figure(r[3]).is_some_and(|x| x > 0.0)
            });
            up("top-a*") && up("top-b") && on_b && listed && busy && flowing
        },
    );
    assert!(
        screen[0].starts_with(
            "circuit top · 2 nodes (2 alive) · 5 workers (5 running) · 1 channel · via top-a"
        ),
        "{}",
        screen[0]
    );
    assert!(top.alternate_screen(), "drawn on the alternate screen");
    let first = |screen: &[String]| {
        pane(screen, "Workers")
            .first()
            .and_then(|r| r.split_whitespace().nth(1))
            .map(str::to_string)
    };
    assert_eq!(first(&screen).as_deref(), Some("a-idle"), "sorted by name");

    top.press("c");
    let sorted = top.wait_for("the hog first, by cpu", |screen| {
        screen
            .iter()
            .any(|l| l.starts_with("┌ Workers 5 · by cpu "))
            && first(screen).as_deref() == Some("hog")
    });
    if let Some(file) = std::env::var_os("CIRCUIT_TOP_SCREEN") {
        std::fs::write(&file, sorted.join("\n") + "\n").expect("write CIRCUIT_TOP_SCREEN");
    }
    a.cli_ok(&["stop", "--node", "top-b", "hog"]);
    drop(lock);

    // A smaller terminal: drawn again to its size, whole columns only (those that do not
    // fit are left out from the right).
    top.resize(30, 60);
    let titles = [
        "NODE", "NAME", "STATE", "PID", "CPU", "MEM", "RESTARTS", "UPTIME", "LAST", "EXIT", "…",
    ];
    top.wait_for("the screen drawn again 60 wide", |screen| {
        let header = screen.iter().find(|l| l.starts_with("│ NODE"));
        screen.len() == 30
            && screen.iter().all(|l| l.chars().count() <= 60)
            && screen
                .iter()
                .any(|l| l.starts_with("┌ Workers ") && l.chars().count() == 60)
            && header.is_some_and(|h| {
                h.trim_matches('│')
                    .split_whitespace()
                    .all(|title| titles.contains(&title))
            })
    });

    top.press("q");
    assert_eq!(top.exit_code(), 0, "{}", top.lines().join("\n"));
    assert!(!top.alternate_screen(), "the alternate screen is left");
    let after = top.lines().join("\n");
    assert!(after.contains("top exited 0"), "{after}");
    // Line mode is back: `stty -a` lists icanon and echo without a `-`.
    let flags: Vec<&str> = after.split_whitespace().collect();
    for flag in ["icanon", "echo", "isig"] {
        assert!(flags.contains(&flag), "{flag} is off after top:\n{after}");
    }
}

#[test]
fn top_keeps_going_while_its_daemon_is_away() {
    let mut d = Daemon::start_named("alone", &[]);
    let mut top = Pty::run(&d.socket, &top_script("--interval 200ms"));
    top.wait_for("the node", |screen| {
        row(&pane(screen, "Nodes"), 0, "alone*").is_some()
    });
    d.stop(Duration::from_secs(20)).expect("stop circuitd");
    // The status line, at the bottom, wraps onto up to three lines.
    let status = |screen: &[String]| screen[screen.len() - 3..].join("");
    let screen = top.wait_for("an error line", |screen| {
        screen[screen.len() - 3..]
            .iter()
            .any(|l| l.starts_with("error: cannot connect to circuitd"))
    });
    assert!(
        status(&screen).contains("retrying every 200ms"),
        "{}",
        screen.join("\n")
    );
    assert!(
        row(&pane(&screen, "Nodes"), 0, "alone*").is_some(),
        "the last figures stay"
    );
    d.launch();
    top.wait_for("figures again", |screen| {
        screen.last().is_some_and(|l| l.starts_with("updated "))
    });
    top.press("\x1b");
    assert_eq!(top.exit_code(), 0, "{}", top.lines().join("\n"));
}

#[test]
fn top_without_a_terminal_refuses_and_once_prints_a_snapshot() {
    let d = Daemon::start_named("solo", &[]);
    d.cli_ok(&["spawn", "--name", "idle", "--", "sleep", "1000"]);

    let out = d.cli(&["top"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("circuit top needs a terminal") && err.contains("circuit ps --json"),
        "{err}"
    );

    let text = d.cli_ok(&["top", "--once"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "1 node (1 alive) · 1 worker (1 running) · 0 channels",
        "{text}"
    );
    assert!(
        lines.contains(&"Nodes:") && lines.contains(&"Workers:"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("solo   ") && l.contains("idle")),
        "{text}"
    );

    let doc: Value = serde_json::from_str(&d.cli_ok(&["--json", "top"])).expect("json");
    assert_eq!(doc["nodes"][0]["name"], "solo");
    assert!(
        doc["nodes"][0]["mem_total_bytes"].as_u64() > Some(0),
        "{doc}"
    );
    assert_eq!(doc["workers"][0]["name"], "idle");
    assert_eq!(doc["channels"], Value::Array(Vec::new()));
    d.cli_ok(&["stop", "idle"]);
}
