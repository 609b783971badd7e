//! Test hosts as Linux network namespaces: [`NetnsCluster`] drives `scripts/netns-cluster.sh`
//! (a bridge, one namespace and one circuitd per host, partitions; optionally an OpenSSH
//! server per host) and tears it all down on drop.
//!
//! Clusters need root and iproute2 (and OpenSSH's server for [`UpOptions::sshd`]). Without
//! them [`NetnsCluster::up`] and [`NetnsCluster::up_with`] print a loud `SKIPPED` line and
//! return `None` — unless `CIRCUIT_REQUIRE_NETNS=1`, which turns the skip into a panic (CI sets
//! it so a skipped test cannot pass unnoticed).
//!
//! One cluster runs at a time on a machine: each holds an exclusive lock on
//! [`LOCK_PATH`] from `up` until its teardown, across test threads and processes.

use std::ffi::OsStr;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use circuit_sdk::proto::{NodeInfo, WorkerInfo};

use crate::bin;

/// The port every daemon of a cluster listens on (`--listen <ip>:7711`), as in the script.
pub const MESH_PORT: u16 = 7711;

/// File locked for the whole life of a cluster, so clusters never overlap.
pub const LOCK_PATH: &str = "/tmp/circuit-netns.lock";

/// Cluster IDs the script accepts: 1..=MAX_ID.
const MAX_ID: u32 = 16383;

/// Exit code of `netns-cluster.sh up` when the ID is taken (a leftover or someone else's).
const ID_IN_USE: i32 = 3;

/// How [`NetnsCluster::up_with`] builds a cluster. `Default` is what [`NetnsCluster::up`]
/// does: a daemon on every host, no sshd.
#[derive(Debug, Clone, Copy)]
pub struct UpOptions<'a> {
    /// Start a circuitd on every host (h2..hN join h1). `false` (`--no-daemons`) leaves the
    /// hosts empty, for tests that install the daemons themselves.
    pub daemons: bool,
    /// Run OpenSSH's sshd on every host at `<ip>:22` (`--sshd`), each in its own UTS namespace
    /// (`hostname` is `h<i>`) and mount namespace (a private, empty tmpfs on `/opt`). Root logs
    /// in with the cluster's key ([`NetnsCluster::ssh_identity`]) only, and the bridge gets an
    /// address so this (root) namespace reaches every host.
    pub sshd: bool,
    /// Flags appended to every daemon's command line.
    pub extra_daemon_args: &'a [&'a str],
}

impl Default for UpOptions<'_> {
    fn default() -> Self {
        Self {
            daemons: true,
            sshd: false,
            extra_daemon_args: &[],
        }
    }
}

/// One host of a [`NetnsCluster`]: a namespace with one circuitd.
#[derive(Debug, Clone)]
pub struct Host {
    /// 1-based number: host `i` is `h<i>` at `10.X.Y.i`.
    pub index: usize,
    /// Node name given to the daemon (`h<i>`).
    pub name: String,
    /// The host's address on the cluster's bridge.
    pub ip: Ipv4Addr,
    /// `ip:7711`, where the daemon listens and where the others join it.
    pub mesh_addr: String,
    /// The daemon's Unix socket. A socket path is a file, not bound to a network namespace, so
    /// the test process reaches it directly (`Client::connect_unix(&host.socket)`); only TCP
    /// and UDP traffic needs to run inside the namespace ([`NetnsCluster::exec`]).
    pub socket: PathBuf,
    /// The daemon's pid as last started; after [`NetnsCluster::kill`] it is the dead one's. 0
    /// when no daemon was started there ([`UpOptions::daemons`] false).
    pub pid: i32,
    /// The host's sshd's pid, with [`UpOptions::sshd`].
    pub sshd_pid: Option<i32>,
}

/// The client side of a cluster's sshds: the files `ssh` needs.
#[derive(Debug, Clone)]
struct SshFiles {
    /// The cluster's private key (ed25519, no passphrase), authorized for root on every host.
    identity: PathBuf,
    /// Every host's address with its host key, for strict host key checking.
    known_hosts: PathBuf,
}

/// A cluster of namespaces, one circuitd in each, removed on drop (even when a test panics).
pub struct NetnsCluster {
    /// Passed to every script call as `--id`.
    id: u32,
    hosts: Vec<Host>,
    /// With [`UpOptions::sshd`].
    ssh: Option<SshFiles>,
    /// Held for the cluster's life; fields drop after `Drop::drop` took the cluster down.
    _lock: File,
}

impl NetnsCluster {
    /// Starts `n` hosts (h2..hN join h1), each daemon with `extra_daemon_args` appended, and
    /// waits until every daemon answers. `None` (after a loud `SKIPPED` line on stderr) when
    /// this machine cannot run namespaces and `CIRCUIT_REQUIRE_NETNS` is not `1`.
    pub fn up(n: usize, extra_daemon_args: &[&str]) -> Option<Self> {
        Self::up_with(
            n,
            &UpOptions {
                extra_daemon_args,
                ..UpOptions::default()
            },
        )
    }

    /// Starts `n` hosts as `options` say and waits until every daemon answers and every sshd
    /// lets the cluster's key in. `None` (after a loud `SKIPPED` line on stderr) when this
    /// machine cannot run such a cluster and `CIRCUIT_REQUIRE_NETNS` is not `1`.
    pub fn up_with(n: usize, options: &UpOptions<'_>) -> Option<Self> {
        if let Err(reason) = available(options.sshd) {
            if std::env::var_os("CIRCUIT_REQUIRE_NETNS").is_some_and(|v| v == "1") {
                panic!("CIRCUIT_REQUIRE_NETNS=1 but network namespaces are unavailable: {reason}");
            }
            let needs = if options.sshd {
                "root, iproute2 and OpenSSH's server"
            } else {
                "root and iproute2"
            };
            eprintln!(
                "\n*** SKIPPED: network namespace tests need {needs} ({reason}); \
                 set CIRCUIT_REQUIRE_NETNS=1 to make this a failure ***\n"
            );
            return None;
        }
        let lock = lock();
        let bin_dir = bin("circuitd")
            .parent()
            .expect("binaries directory")
            .to_path_buf();
        bin("circuit"); // asserts that the CLI is built too
        for _ in 0..16 {
            let id = next_id();
            let mut cmd = script();
            cmd.args(["up", &n.to_string(), "--id", &id.to_string(), "--bin"])
                .arg(&bin_dir);
            if !options.daemons {
                cmd.arg("--no-daemons");
            }
            if options.sshd {
                cmd.arg("--sshd");
            }
            cmd.arg("--").args(options.extra_daemon_args);
            let out = cmd.output().expect("run netns-cluster.sh up");
            if out.status.code() == Some(ID_IN_USE) {
                continue;
            }
            // From here on a panic takes down whatever is up (`down` is idempotent).
            let mut cluster = Self {
                id,
                hosts: Vec::new(),
                ssh: None,
                _lock: lock,
            };
            assert!(
                out.status.success(),
                "netns-cluster.sh up {n} --id {id} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            cluster.read_hosts(&stdout);
            assert_eq!(
                cluster.hosts.len(),
                n,
                "netns-cluster.sh printed a host per line:\n{stdout}"
            );
            assert_eq!(
                cluster.ssh.is_some(),
                options.sshd,
                "netns-cluster.sh printed an ssh line if and only if asked for sshd:\n{stdout}"
            );
            return Some(cluster);
        }
        panic!("16 cluster IDs in a row were in use: `scripts/netns-cluster.sh down --all` removes leftovers");
    }

    /// The cluster's ID (`--id` of the script; namespaces are `c<ID>-h<i>`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Every host, h1 first.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i` (1-based).
    pub fn host(&self, i: usize) -> &Host {
        assert!(
            (1..=self.hosts.len()).contains(&i),
            "no host {i} in a cluster of {}",
            self.hosts.len()
        );
        &self.hosts[i - 1]
    }

    /// Host `i`'s network namespace.
    pub fn namespace(&self, i: usize) -> String {
        format!("c{}-h{}", self.id, self.host(i).index)
    }

    /// Host `i`'s address on the bridge.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.host(i).ip
    }

    /// `root@<ip>`: where `ssh` logs in to host `i` ([`UpOptions::sshd`]).
    pub fn ssh_target(&self, i: usize) -> String {
        format!("root@{}", self.ip(i))
    }

    /// The cluster's ssh private key, authorized for root on every host.
    pub fn ssh_identity(&self) -> &Path {
        &self.ssh_files().identity
    }

    /// A known_hosts file listing every host's address with its host key.
    pub fn ssh_known_hosts(&self) -> &Path {
        &self.ssh_files().known_hosts
    }

    /// The `ssh` options that log in to the cluster's hosts with its key, checking host keys
    /// strictly against its known_hosts and never prompting; a target and command follow.
    pub fn ssh_args(&self) -> Vec<std::ffi::OsString> {
        let files = self.ssh_files();
        let mut known_hosts = std::ffi::OsString::from("UserKnownHostsFile=");
        known_hosts.push(&files.known_hosts);
        let mut args: Vec<std::ffi::OsString> = vec!["-F".into(), "none".into(), "-i".into()];
        args.push(files.identity.clone().into());
        args.push("-o".into());
        args.push(known_hosts);
        for option in [
            "IdentitiesOnly=yes",
            "GlobalKnownHostsFile=/dev/null",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            "ConnectTimeout=5",
            "LogLevel=ERROR",
        ] {
            args.push("-o".into());
            args.push(option.into());
        }
        args
    }

    /// `ssh root@<host i> CMD` through the real OpenSSH client (see [`ssh_args`](Self::ssh_args)),
    /// stdin null, to run as the caller likes. CMD is run by root's shell on the host.
    pub fn ssh_command(&self, i: usize, cmd: &str) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.args(self.ssh_args())
            .arg(self.ssh_target(i))
            .arg("--")
            .arg(cmd)
            .stdin(Stdio::null());
        ssh
    }

    /// Runs `cmd` on host `i` over ssh (see [`ssh_command`](Self::ssh_command)).
    pub fn ssh(&self, i: usize, cmd: &str) -> Output {
        self.ssh_command(i, cmd).output().expect("run ssh")
    }

    fn ssh_files(&self) -> &SshFiles {
        self.ssh
            .as_ref()
            .expect("this cluster has no sshd: start it with UpOptions { sshd: true, .. }")
    }

    /// Reads `up`'s (or `list`'s) output: host lines, then sshd lines and the ssh line.
    fn read_hosts(&mut self, stdout: &str) {
        let mut sshd_pids = Vec::new();
        for line in stdout.lines() {
            match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["ssh", identity, known_hosts] => {
                    self.ssh = Some(SshFiles {
                        identity: identity.into(),
                        known_hosts: known_hosts.into(),
                    });
                }
                ["sshd", name, _target, pid] => {
                    sshd_pids.push((name.to_string(), pid.parse().ok()))
                }
                _ => self.hosts.push(parse_host(line)),
            }
        }
        for (name, pid) in sshd_pids {
            let host = self.hosts.iter_mut().find(|h| h.name == name);
            host.unwrap_or_else(|| panic!("an sshd line for {name}, which has no host line"))
                .sshd_pid = pid;
        }
    }

    /// SIGKILLs host `i`'s daemon and waits until it is gone.
    pub fn kill(&mut self, i: usize) {
        self.run_ok(&["kill", &i.to_string()]);
    }

    /// Starts host `i`'s daemon again (same flags and data dir) and waits until it answers.
    pub fn start(&mut self, i: usize) {
        let out = self.run_ok(&["start", &i.to_string()]);
        let mut host = parse_host(out.trim_end());
        assert_eq!(host.index, i, "netns-cluster.sh start printed another host");
        host.sshd_pid = self.hosts[i - 1].sshd_pid;
        self.hosts[i - 1] = host;
    }

    /// Cuts traffic between hosts `a` and hosts `b`, both ways, by silently losing packets (a
    /// TCP connect hangs). Traffic within each group, and with hosts in neither, still flows.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        self.run_ok(&["partition", &join(a), &join(b)]);
    }

    /// Like [`partition`](Self::partition) but senders fail at once (EINVAL) instead of
    /// timing out: for tests that only need the link gone and want to be quick.
    pub fn partition_reject(&self, a: &[usize], b: &[usize]) {
        self.run_ok(&["partition", "--reject", &join(a), &join(b)]);
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.run_ok(&["heal"]);
    }

    /// A command running `program args` in host `i`'s namespace with `CIRCUIT_SOCKET` set to
    /// its daemon's socket and stdin null, to run as the caller likes.
    pub fn exec_command<S: AsRef<OsStr>>(
        &self,
        i: usize,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Command {
        let mut cmd = script();
        cmd.args([
            "exec",
            "--id",
            &self.id.to_string(),
            &self.host(i).index.to_string(),
            "--",
        ])
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
        cmd
    }

    /// Runs `program args` in host `i`'s namespace (see [`exec_command`](Self::exec_command)).
    pub fn exec<S: AsRef<OsStr>>(
        &self,
        i: usize,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Output {
        self.exec_command(i, program, args)
            .output()
            .expect("run netns-cluster.sh exec")
    }

    /// Runs the built `circuit` binary in host `i`'s namespace, aimed at host `i`'s daemon.
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        self.exec(i, bin("circuit"), args)
    }

    /// Runs the CLI like [`cli`](Self::cli) and asserts success; returns stdout.
    pub fn cli_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.cli(i, args);
        assert!(
            out.status.success(),
            "circuit {args:?} on h{i} failed ({}):\nstdout: {}\nstderr: {}\nh{i}'s daemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log(i)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Starts the CLI in host `i`'s namespace without waiting (`logs -f`, `recv -f`): stdout
    /// piped, stderr inherited. The child's pid is the CLI's own, so `kill()` stops it; anything
    /// still running in the namespace is killed at teardown anyway.
    pub fn spawn_cli(&self, i: usize, args: &[&str]) -> Child {
        self.exec_command(i, bin("circuit"), args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start circuit in a namespace")
    }

    /// The nodes as host `i`'s daemon sees them (`circuit nodes --json` run on host `i`), or
    /// the CLI's error when it fails (a killed daemon, a request that timed out).
    pub fn nodes(&self, i: usize) -> Result<Vec<NodeInfo>, String> {
        let out = self.cli(i, &["nodes", "--json"]);
        if !out.status.success() {
            return Err(format!(
                "circuit nodes on h{i} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "circuit nodes --json on h{i} printed no node list ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The workers `circuit ps --json ARGS` lists on host `i` (every node's, or one node's with
    /// `--node`); asserts that the CLI succeeds.
    pub fn ps(&self, i: usize, args: &[&str]) -> Vec<WorkerInfo> {
        let mut all = vec!["ps", "--json"];
        all.extend_from_slice(args);
        let out = self.cli_ok(i, &all);
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("circuit {all:?} on h{i} printed no worker list ({e}): {out}")
        })
    }

    /// The pids of every process in host `i`'s namespace (`ip netns pids`).
    pub fn pids(&self, i: usize) -> Vec<u32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.namespace(i)])
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns pids");
        assert!(
            out.status.success(),
            "ip netns pids {} failed: {}",
            self.namespace(i),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|pid| pid.parse().expect("a pid"))
            .collect()
    }

    /// Host `i`'s daemon log so far (stdout and stderr of every start), for failure messages.
    pub fn daemon_log(&self, i: usize) -> String {
        let log = self
            .host(i)
            .socket
            .parent()
            .map(|dir| dir.join("circuitd.log"));
        log.and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Runs the script's subcommand on this cluster and asserts success; returns stdout.
    fn run_ok(&self, args: &[&str]) -> String {
        let (cmd, rest) = args.split_first().expect("a subcommand");
        let out = script()
            .arg(cmd)
            .args(["--id", &self.id.to_string()])
            .args(rest)
            .output()
            .expect("run netns-cluster.sh");
        assert!(
            out.status.success(),
            "netns-cluster.sh {args:?} --id {} failed ({}):\n{}{}",
            self.id,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        // Never panic here: this also runs while a failed test unwinds.
        match script()
            .args(["down", "--id", &self.id.to_string()])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "netns-cluster.sh down --id {} failed ({}): {}",
                self.id,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("cannot run netns-cluster.sh down --id {}: {e}", self.id),
        }
    }
}

/// The script, with stdin null and no inherited cluster choice.
fn script() -> Command {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns-cluster.sh");
    let mut cmd = Command::new(path);
    cmd.env_remove("CIRCUIT_NETNS_ID").stdin(Stdio::null());
    cmd
}

/// Whether this machine can run clusters (root, iproute2, namespaces, veths, bridges; with
/// `sshd`, OpenSSH's server and client too): asked of the script's `check` once per process.
fn available(sshd: bool) -> Result<(), String> {
    static AVAILABLE: [OnceLock<Result<(), String>>; 2] = [OnceLock::new(), OnceLock::new()];
    AVAILABLE[usize::from(sshd)]
        .get_or_init(|| {
            if !nix::unistd::geteuid().is_root() {
                return Err("not running as root".into());
            }
            let mut check = script();
            check.arg("check");
            if sshd {
                check.arg("--sshd");
            }
            match check.output() {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
                Err(e) => Err(format!("cannot run netns-cluster.sh: {e}")),
            }
        })
        .clone()
}

/// Blocks until this process holds the machine-wide cluster lock.
fn lock() -> File {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .unwrap_or_else(|e| panic!("cannot open {LOCK_PATH}: {e}"));
    file.lock()
        .unwrap_or_else(|e| panic!("cannot lock {LOCK_PATH}: {e}"));
    file
}

/// A cluster ID from this process's pid and a counter, in 1..=MAX_ID.
fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    1 + std::process::id().wrapping_mul(64).wrapping_add(n) % MAX_ID
}

/// Parses a host line of the script: `h<i> <ip> <socket> <pid>` (pid `-`: no daemon, 0).
fn parse_host(line: &str) -> Host {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [name, ip, socket, pid] = fields[..] else {
        panic!("netns-cluster.sh printed {line:?}, not `h<i> <ip> <socket> <pid>`");
    };
    let index = name
        .strip_prefix('h')
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("bad host name in {line:?}"));
    let ip: Ipv4Addr = ip
        .parse()
        .unwrap_or_else(|_| panic!("bad address in {line:?}"));
    Host {
        index,
        name: name.to_string(),
        ip,
        mesh_addr: format!("{ip}:{MESH_PORT}"),
        socket: PathBuf::from(socket),
        pid: match pid {
            "-" => 0,
            pid => pid
                .parse()
                .unwrap_or_else(|_| panic!("bad pid in {line:?}")),
        },
        sshd_pid: None,
    }
}

/// `[1, 2]` → `"1,2"`.
fn join(hosts: &[usize]) -> String {
    assert!(
        !hosts.is_empty(),
        "a partition group needs at least one host"
    );
    hosts
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
