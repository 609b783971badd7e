//! Test hosts as Linux network namespaces: [`NetnsCluster`] drives `scripts/netns-cluster.sh`
//! (a bridge, one namespace and one circuitd per host, partitions; optionally an OpenSSH
//! server per host) and tears it all down on drop.
//!
//! Clusters need root and iproute2 (and OpenSSH's server for [`UpOptions::sshd`]). Tests call
//! [`NetnsCluster::up`] / [`NetnsCluster::up_with`], which print a loud `SKIPPED` line and
//! return `None` on a machine without them — unless `CIRCUIT_REQUIRE_NETNS=1`, which turns the
//! skip into a panic (CI sets it so a skipped test cannot pass unnoticed). Benchmarks call
//! [`NetnsCluster::try_up`] or [`NetnsCluster::launch`], which return errors.
//!
//! One cluster runs at a time on a machine: each holds the [`MachineLock`] from `up` until its
//! teardown, across test threads and processes.
//!
//! # Layout
//! - `lock`: [`MachineLock`]. `script`: the script's commands, IDs and host lines.
//! - `forming`: [`Forming`], a cluster whose `up` still runs.
//! - `commands`: commands in a host's namespace (the CLI, `exec`), what they report.
//! - `ssh`: logging in to the hosts.

mod commands;
mod forming;
mod lock;
mod script;
mod ssh;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use forming::Forming;
pub use lock::{MachineLock, LOCK_PATH};
pub use script::free_id;

use crate::bin::binary_in;
use crate::error::{Error, Result};
use crate::liveness::{alive, in_namespace};
use crate::wait::try_wait_until_every;
use ssh::SshFiles;

/// The port every daemon of a cluster listens on (`--listen <ip>:7711`), as in the script.
pub const MESH_PORT: u16 = 7711;
/// IDs tried in a row when the caller names none and the script finds them taken.
const ID_ATTEMPTS: usize = 16;
/// Longest a SIGKILLed daemon may take to be gone.
const DIE_WITHIN: Duration = Duration::from_secs(5);

/// How a cluster is brought up. `Default` is what [`NetnsCluster::up`] does: a daemon on every
/// host, no sshd, a free ID, this workspace's binaries and script.
#[derive(Debug, Clone)]
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
    /// The cluster ID (namespaces `c<ID>-h<i>`); `None`: one from this process's pid, the next
    /// one if the script finds it taken.
    pub id: Option<u32>,
    /// Where `circuitd` and `circuit` are; `None`: [`bin_dir`](crate::bin_dir).
    pub bin_dir: Option<PathBuf>,
    /// `scripts/netns-cluster.sh`; `None`: this repository's.
    pub script: Option<PathBuf>,
    /// The machine lock to hold, for a caller that brings up clusters one after another and
    /// keeps the machine meanwhile; `None`: the cluster takes it and lets it go on drop.
    pub lock: Option<Arc<MachineLock>>,
}

impl Default for UpOptions<'_> {
    fn default() -> Self {
        Self {
            daemons: true,
            sshd: false,
            extra_daemon_args: &[],
            id: None,
            bin_dir: None,
            script: None,
            lock: None,
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

/// A cluster of namespaces, one circuitd in each, removed on drop (even when a test panics).
#[derive(Debug)]
pub struct NetnsCluster {
    /// Passed to every script call as `--id`.
    id: u32,
    script: PathBuf,
    bin_dir: PathBuf,
    hosts: Vec<Host>,
    /// With [`UpOptions::sshd`].
    ssh: Option<SshFiles>,
    /// False when `up` found the ID taken: the namespaces are someone else's.
    down_on_drop: bool,
    /// Held for the cluster's life; fields drop after `Drop::drop` took the cluster down.
    _lock: Arc<MachineLock>,
}

impl NetnsCluster {
    /// Starts `n` hosts (h2..hN join h1), each daemon with `extra_daemon_args` appended, and
    /// waits until every daemon answers. `None` (after a loud `SKIPPED` line on stderr) when
    /// this machine cannot run namespaces and `CIRCUIT_REQUIRE_NETNS` is not `1`. Panics if
    /// the cluster does not come up.
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
    /// machine cannot run such a cluster and `CIRCUIT_REQUIRE_NETNS` is not `1`. Panics if the
    /// cluster does not come up.
    pub fn up_with(n: usize, options: &UpOptions<'_>) -> Option<Self> {
        let script = options
            .script
            .clone()
            .unwrap_or_else(script::default_script);
        if let Err(reason) = script::available(&script, options.sshd) {
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
        Some(Self::try_up(n, options).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts `n` hosts as `options` say and waits until every daemon answers (and every sshd
    /// lets the cluster's key in).
    pub fn try_up(n: usize, options: &UpOptions<'_>) -> Result<Self> {
        let lock = match &options.lock {
            Some(lock) => lock.clone(),
            None => Arc::new(MachineLock::acquire()?),
        };
        let options = UpOptions {
            lock: Some(lock),
            ..options.clone()
        };
        for _ in 0..ID_ATTEMPTS {
            match Self::launch(n, &options)?.finish() {
                Err(Error::IdInUse(_)) if options.id.is_none() => continue,
                done => return done,
            }
        }
        Err(Error::State(format!(
            "{ID_ATTEMPTS} cluster IDs in a row were in use: \
             `scripts/netns-cluster.sh down --all` removes leftovers"
        )))
    }

    /// Starts `netns-cluster.sh up` for `n` hosts and returns at once, the cluster forming (h1
    /// first, then h2..hN together, each joining h1); [`Forming::finish`] waits for it.
    pub fn launch(n: usize, options: &UpOptions<'_>) -> Result<Forming> {
        let script = options
            .script
            .clone()
            .unwrap_or_else(script::default_script);
        let bin_dir = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => crate::bin::bin_dir()?,
        };
        for needed in ["circuitd", "circuit"] {
            binary_in(Some(&bin_dir), needed)?;
        }
        if !script.is_file() {
            return Err(Error::State(format!(
                "no netns-cluster.sh at {}",
                script.display()
            )));
        }
        let lock = match &options.lock {
            Some(lock) => lock.clone(),
            None => Arc::new(MachineLock::acquire()?),
        };
        let id = options.id.unwrap_or_else(script::next_id);
        let mut cmd = script::command(&script);
        cmd.args(["up", &n.to_string(), "--id", &id.to_string(), "--bin"])
            .arg(&bin_dir);
        if !options.daemons {
            cmd.arg("--no-daemons");
        }
        if options.sshd {
            cmd.arg("--sshd");
        }
        cmd.arg("--").args(options.extra_daemon_args);
        let up = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("run netns-cluster.sh up", e))?;
        // From here on, dropping the cluster takes down whatever is up (`down` is idempotent).
        let cluster = Self {
            id,
            script,
            bin_dir,
            hosts: Vec::new(),
            ssh: None,
            down_on_drop: true,
            _lock: lock,
        };
        Ok(Forming::new(cluster, up, n, options.sshd))
    }

    /// The cluster's ID (`--id` of the script; namespaces are `c<ID>-h<i>`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Where the script keeps this cluster's state (each host's socket, log, pid and data).
    pub fn state_dir(&self) -> PathBuf {
        script::state_root().join(self.id.to_string())
    }

    /// Where `circuitd` and `circuit` come from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
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

    /// Host `i`'s daemon pid, if that process is alive and in host `i`'s namespace (a
    /// recycled pid is never taken for it).
    pub fn daemon_pid(&self, i: usize) -> Option<i32> {
        let pid = self.host(i).pid;
        (pid > 0 && alive(pid) && in_namespace(pid, &self.namespace(i))).then_some(pid)
    }

    /// Reads `up`'s output: host lines, then sshd lines and the ssh line.
    fn read_hosts(&mut self, stdout: &str) -> Result<()> {
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
                _ => self.hosts.push(script::parse_host(line)?),
            }
        }
        for (name, pid) in sshd_pids {
            let Some(host) = self.hosts.iter_mut().find(|h| h.name == name) else {
                return Err(Error::State(format!(
                    "netns-cluster.sh printed an sshd line for {name}, which has no host line"
                )));
            };
            host.sshd_pid = pid;
        }
        Ok(())
    }

    /// SIGKILLs host `i`'s daemon by pid and waits until it is gone.
    pub fn try_kill(&self, i: usize) -> Result<()> {
        let pid = self
            .daemon_pid(i)
            .ok_or_else(|| Error::State(format!("h{i}'s daemon is not running")))?;
        kill(Pid::from_raw(pid), Signal::SIGKILL)
            .map_err(|e| Error::io(format!("SIGKILL h{i}'s daemon (pid {pid})"), e.into()))?;
        try_wait_until_every(
            DIE_WITHIN,
            Duration::from_millis(1),
            &format!("h{i}'s daemon (pid {pid}) is gone after SIGKILL"),
            || !alive(pid),
        )
    }

    /// [`try_kill`](Self::try_kill) for tests: panics if it fails.
    pub fn kill(&mut self, i: usize) {
        if let Err(e) = self.try_kill(i) {
            panic!("{e}");
        }
    }

    /// Starts host `i`'s daemon again (same flags and data dir) and waits until it answers.
    pub fn try_start(&mut self, i: usize) -> Result<()> {
        let out = script::run_ok(&self.script, self.id, &["start", &i.to_string()])?;
        let mut host = script::parse_host(out.trim_end())?;
        if host.index != i {
            return Err(Error::State(format!(
                "netns-cluster.sh start {i} printed another host: {out}"
            )));
        }
        host.sshd_pid = self.host(i).sshd_pid;
        self.hosts[i - 1] = host;
        Ok(())
    }

    /// [`try_start`](Self::try_start) for tests: panics if it fails.
    pub fn start(&mut self, i: usize) {
        if let Err(e) = self.try_start(i) {
            panic!("{e}");
        }
    }

    /// Cuts traffic between hosts `a` and hosts `b`, both ways, by silently losing packets (a
    /// TCP connect hangs). Traffic within each group, and with hosts in neither, still flows.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let (a, b) = (script::host_list(a), script::host_list(b));
        self.run_ok(&["partition", &a, &b]);
    }

    /// Like [`partition`](Self::partition) but senders fail at once (EINVAL) instead of
    /// timing out: for tests that only need the link gone and want to be quick.
    pub fn partition_reject(&self, a: &[usize], b: &[usize]) {
        let (a, b) = (script::host_list(a), script::host_list(b));
        self.run_ok(&["partition", "--reject", &a, &b]);
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.run_ok(&["heal"]);
    }

    /// Copies every host's daemon log into `dir/label/` (as `h<i>.log`), for a run worth a
    /// look after the cluster is gone; returns that directory.
    pub fn keep_logs(&self, dir: &Path, label: &str) -> Result<PathBuf> {
        let into = dir.join(label);
        std::fs::create_dir_all(&into)
            .map_err(|e| Error::io(format!("create {}", into.display()), e))?;
        for host in &self.hosts {
            let to = into.join(format!("{}.log", host.name));
            std::fs::copy(self.log_path(host.index), &to).map_err(|e| {
                Error::io(format!("copy {}'s log to {}", host.name, to.display()), e)
            })?;
        }
        Ok(into)
    }

    /// Runs the script's subcommand on this cluster and asserts success; returns stdout.
    fn run_ok(&self, args: &[&str]) -> String {
        script::run_ok(&self.script, self.id, args).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        if !self.down_on_drop {
            return;
        }
        // Never panic here: this also runs while a failed test unwinds.
        if let Err(e) = script::run_ok(&self.script, self.id, &["down"]) {
            eprintln!("{e}");
        }
    }
}
