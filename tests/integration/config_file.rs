//! `circuitd --config FILE` and `--pidfile FILE` on the real binary: the file's flags take
//! effect, the command line overrides them, the pidfile lives exactly as long as the daemon,
//! and a wrong file is refused (exit 2, file and line named) before anything is created.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use circuit_sdk::proto::NodeInfo;
use circuit_testkit::{alive, bin, stderr, wait_until};

/// A config file with relative paths (resolved against its directory), a name, labels and a
/// loopback mesh port.
const CONFIG: &str = r#"# circuitd, as `circuit install` would configure it
name = "from-file"
socket = "run/circuitd.sock"
data-dir = "data"
pidfile = "run/circuitd.pid"
listen = "127.0.0.1:0"
label = ["zone=a", "disk=ssd"]
max-workers = 50
"#;

/// A circuitd started by a test; SIGTERMed (then SIGKILLed) on drop.
struct Running {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Running {
    /// Starts `circuitd ARGS` from `/` (so only the config file's directory can make its
    /// relative paths right) and waits until it answers on `socket`.
    fn start(dir: &Path, args: &[&str], socket: PathBuf) -> Self {
        let log = dir.join("circuitd.log");
        let child = circuitd(args)
            .stderr(std::fs::File::create(&log).expect("daemon log"))
            .spawn()
            .expect("start circuitd");
        let mut running = Self {
            child: Some(child),
            socket,
            log,
        };
        wait_until(Duration::from_secs(10), "circuitd answers", || {
            let exited = running
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "circuitd exited: {exited:?}\n{}",
                running.log()
            );
            std::os::unix::net::UnixStream::connect(&running.socket).is_ok()
        });
        running
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `circuit --json ARGS` against this daemon, parsed.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(bin("circuit"))
            .arg("--json")
            .args(args)
            .env("CIRCUIT_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("run circuit");
        assert!(out.status.success(), "circuit {args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    /// This node's labels, as `circuit nodes` shows them.
    fn labels(&self) -> BTreeMap<String, String> {
        let nodes: Vec<NodeInfo> =
            serde_json::from_value(self.json(&["nodes"])["nodes"].take()).expect("nodes");
        let me = nodes
            .into_iter()
            .find(|n| n.is_self)
            .expect("self in nodes");
        me.labels
    }

    /// SIGTERMs the daemon and waits for it; returns whether it exited with success.
    fn terminate(&mut self) -> bool {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let mut status = None;
        wait_until(
            Duration::from_secs(30),
            "circuitd exits after SIGTERM",
            || {
                status = child.try_wait().expect("try_wait");
                status.is_some()
            },
        );
        status.is_some_and(|s| s.success())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(10));
            }
        }
    }
}

/// `circuitd ARGS` run from `/`, with nothing from the environment that configures it.
fn circuitd(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("circuitd"));
    cmd.args(args)
        .current_dir("/")
        .env_remove("CIRCUIT_SOCKET")
        .env_remove("CIRCUIT_KEY_FILE")
        .env_remove("CIRCUIT_DATA_DIR")
        .env_remove("CIRCUIT_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let file = dir.join("circuitd.toml");
    std::fs::write(&file, text).expect("write config");
    file
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn config_file_flags_take_effect_and_the_pidfile_lives_as_long_as_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), CONFIG);
    let config = file.to_str().expect("utf-8 path");
    let socket = dir.path().join("run/circuitd.sock");
    let pidfile = dir.path().join("run/circuitd.pid");
    // A stale pidfile, as a crashed daemon leaves it, is replaced.
    std::fs::create_dir_all(dir.path().join("run")).expect("run dir");
    std::fs::write(&pidfile, "999999\n").expect("stale pidfile");

    let mut daemon = Running::start(dir.path(), &["--config", config], socket.clone());
    let status = daemon.json(&["status"]);
    assert_eq!(status["name"], "from-file");
    assert_eq!(status["socket"], socket.to_str().expect("utf-8"));
    assert_eq!(
        status["data_dir"],
        dir.path().join("data").to_str().expect("utf-8")
    );
    let listen = status["listen"].as_str().expect("a listen address");
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
        "listen {listen}"
    );
    assert_eq!(daemon.labels(), labels(&[("zone", "a"), ("disk", "ssd")]));

    assert_eq!(
        std::fs::read_to_string(&pidfile).expect("pidfile"),
        format!("{}\n", daemon.pid())
    );
    let mode = std::fs::metadata(&pidfile)
        .expect("pidfile")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "pidfile mode {mode:o}");
    let pid = daemon.pid();
    assert!(
        daemon.terminate(),
        "circuitd failed on SIGTERM:\n{}",
        daemon.log()
    );
    assert!(!alive(pid));
    assert!(!pidfile.exists(), "the pidfile is left after SIGTERM");

    // The command line wins; its --label replaces the file's list instead of adding to it.
    let daemon = Running::start(
        dir.path(),
        &[
            "--config",
            config,
            "--name",
            "from-flag",
            "--label",
            "zone=b",
        ],
        socket,
    );
    let status = daemon.json(&["status"]);
    assert_eq!(status["name"], "from-flag");
    assert_eq!(daemon.labels(), labels(&[("zone", "b")]));
    assert_eq!(
        std::fs::read_to_string(&pidfile).expect("pidfile"),
        format!("{}\n", daemon.pid()),
        "the file's pidfile still applies"
    );
}

/// Runs circuitd on a config file that is wrong at `line:col`; asserts it exits 2 with one
/// line naming the place, and created nothing.
fn refused(text: &str, at: &str, message: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), text);
    let out: Output = circuitd(&["--config", file.to_str().expect("utf-8")])
        .output()
        .expect("run circuitd");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "circuitd: error: config file {}:{at}: {message}\n",
            file.display()
        )
    );
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["circuitd.toml"], "a refused start created files");
}

#[test]
fn wrong_config_files_exit_2_naming_the_line_and_start_nothing() {
    let unknown = CONFIG.replace("label =", "lable =");
    refused(
        &unknown,
        "7:1",
        "unknown key \"lable\" (did you mean \"label\"?)",
    );
    let bad_value = CONFIG.replace("max-workers = 50", "max-workers = 0");
    refused(
        &bad_value,
        "8:15",
        "invalid value '0' for '--max-workers <N>': 0 is not in 1..=1000000",
    );
}
