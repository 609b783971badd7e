//! The test hosts: `scripts/netns-cluster.sh` driven from Rust. A [`Cluster`] is brought up
//! (waited for, or left forming while the harness watches), its daemons killed by pid and
//! started again, commands run in its namespaces, and it goes down when dropped.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::RunArgs;

/// Locked for the life of every cluster, here and in the integration tests
/// (`tests/harness/netns.rs`), so that two clusters never share the machine.
pub const LOCK_PATH: &str = "/tmp/circuit-netns.lock";
/// IDs the script accepts.
const MAX_ID: u32 = 16383;
/// Exit code of `up` when the ID is taken.
const ID_IN_USE: i32 = 3;
/// Longest a SIGKILLed daemon may take to be gone.
const DIE_WITHIN: Duration = Duration::from_secs(5);

/// Where the script, the binaries and the clusters' state are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `scripts/netns-cluster.sh`.
    pub script: PathBuf,
    /// The directory holding `circuitd` and `circuit`.
    pub bin: PathBuf,
    /// `$CIRCUIT_NETNS_STATE`, else `/tmp/circuit-netns`: where the script keeps each cluster.
    pub state_root: PathBuf,
}

impl Tools {
    /// From the flags, else this repository's script and the binaries next to this one.
    pub fn find(args: &RunArgs) -> anyhow::Result<Self> {
        let script = args.netns_script.clone().unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns-cluster.sh")
        });
        let bin = match &args.bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()
                .context("cannot find this binary's path")?
                .parent()
                .context("this binary has no directory")?
                .to_path_buf(),
        };
        for needed in [script.clone(), bin.join("circuitd"), bin.join("circuit")] {
            if !needed.exists() {
                bail!(
                    "{} is missing (build with `cargo build --release --workspace --bins`)",
                    needed.display()
                );
            }
        }
        let state_root = std::env::var_os("CIRCUIT_NETNS_STATE")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("/tmp/circuit-netns"), PathBuf::from);
        Ok(Self {
            script,
            bin,
            state_root,
        })
    }

    /// The `circuit` CLI.
    pub fn cli(&self) -> PathBuf {
        self.bin.join("circuit")
    }

    /// A cluster ID with no state, namespace or bridge, from this process's pid.
    pub fn free_id(&self) -> anyhow::Result<u32> {
        let netns = std::fs::read_dir("/run/netns")
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let start = std::process::id();
        for k in 0..MAX_ID {
            let id = 1 + start.wrapping_add(k) % MAX_ID;
            let prefix = format!("c{id}-h");
            if !self.state_root.join(id.to_string()).exists()
                && !Path::new(&format!("/sys/class/net/cb{id}")).exists()
                && !netns.iter().any(|n| n.starts_with(&prefix))
            {
                return Ok(id);
            }
        }
        bail!("every cluster ID is in use (`scripts/netns-cluster.sh down --all` clears leftovers)")
    }

    fn script(&self) -> Command {
        let mut cmd = Command::new(&self.script);
        cmd.env_remove("CIRCUIT_NETNS_ID").stdin(Stdio::null());
        cmd
    }
}

/// The machine-wide cluster lock ([`LOCK_PATH`]), held while one of our clusters is up.
#[derive(Debug)]
pub struct MachineLock {
    /// Locked; unlocked when closed.
    _file: File,
}

impl MachineLock {
    /// Waits until no other cluster (a test run's) is up, and holds the lock.
    pub async fn acquire() -> anyhow::Result<Self> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .with_context(|| format!("cannot open {LOCK_PATH}"))?;
        if file.try_lock().is_ok() {
            return Ok(Self { _file: file });
        }
        eprintln!("bench-mesh: waiting for {LOCK_PATH}: another cluster (a test run?) is up");
        let since = Instant::now();
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .context("the lock task failed")?
            .with_context(|| format!("cannot lock {LOCK_PATH}"))?;
        eprintln!(
            "bench-mesh: got the lock after {:.0} s",
            since.elapsed().as_secs_f64()
        );
        Ok(Self { _file: file })
    }
}

/// One cluster of `n` hosts, `h1..hN`, each a namespace with one circuitd. Dropping it runs
/// the script's `down`, which stops the daemons and kills whatever else runs in the
/// namespaces.
#[derive(Debug)]
pub struct Cluster {
    tools: Tools,
    id: u32,
    n: usize,
}

impl Cluster {
    /// Brings up `n` hosts with the script and waits until every daemon answers.
    pub async fn up(tools: &Tools, id: u32, n: usize) -> anyhow::Result<Self> {
        let (cluster, up) = Self::launch(tools, id, n)?;
        cluster.finish_up(up).await?;
        Ok(cluster)
    }

    /// Starts the script's `up` and returns at once, the cluster forming: h1 first, then
    /// h2..hN together, each joining h1. [`Cluster::finish_up`] waits for the script.
    pub fn launch(tools: &Tools, id: u32, n: usize) -> anyhow::Result<(Self, Child)> {
        let up = tools
            .script()
            .args(["up", &n.to_string(), "--id", &id.to_string(), "--bin"])
            .arg(&tools.bin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run netns-cluster.sh up")?;
        let cluster = Self {
            tools: tools.clone(),
            id,
            n,
        };
        Ok((cluster, up))
    }

    /// Waits for the `up` that [`Cluster::launch`] started; an error if it failed.
    pub async fn finish_up(&self, up: Child) -> anyhow::Result<()> {
        let out = up
            .wait_with_output()
            .await
            .context("cannot wait for netns-cluster.sh up")?;
        if out.status.code() == Some(ID_IN_USE) {
            bail!(
                "cluster ID {} is in use (pass another --id, or take it down)",
                self.id
            );
        }
        if !out.status.success() {
            bail!(
                "netns-cluster.sh up {} --id {} failed ({}): {}",
                self.n,
                self.id,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Hosts in the cluster.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The script's `--id`.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// What the binaries are.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// Host `i`'s node name.
    pub fn name(&self, i: usize) -> String {
        format!("h{i}")
    }

    /// Host `i`'s network namespace.
    pub fn netns(&self, i: usize) -> String {
        format!("c{}-h{i}", self.id)
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.tools
            .state_root
            .join(self.id.to_string())
            .join(format!("h{i}"))
    }

    /// Host `i`'s daemon socket.
    pub fn socket(&self, i: usize) -> PathBuf {
        self.dir(i).join("circuitd.sock")
    }

    /// Host `i`'s daemon log (every start of it).
    pub fn log(&self, i: usize) -> PathBuf {
        self.dir(i).join("circuitd.log")
    }

    /// Copies every host's daemon log into `dir/label/`, for a trial worth a look; returns
    /// that directory.
    pub fn keep_logs(&self, dir: &Path, label: &str) -> anyhow::Result<PathBuf> {
        let into = dir.join(label);
        std::fs::create_dir_all(&into)
            .with_context(|| format!("cannot create {}", into.display()))?;
        for i in 1..=self.n {
            let to = into.join(format!("h{i}.log"));
            std::fs::copy(self.log(i), &to)
                .with_context(|| format!("cannot copy h{i}'s log to {}", to.display()))?;
        }
        Ok(into)
    }

    /// Host `i`'s daemon pid as the script recorded it, if that process is alive and in host
    /// `i`'s namespace (a recycled pid is never taken for it).
    pub fn daemon_pid(&self, i: usize) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir(i).join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (alive(pid) && same_netns(pid, &self.netns(i))).then_some(pid)
    }

    /// SIGKILLs host `i`'s daemon and waits until it is gone.
    pub async fn kill(&self, i: usize) -> anyhow::Result<()> {
        let pid = self
            .daemon_pid(i)
            .with_context(|| format!("h{i}'s daemon is not running"))?;
        kill(Pid::from_raw(pid), Signal::SIGKILL)
            .with_context(|| format!("cannot SIGKILL h{i}'s daemon (pid {pid})"))?;
        let deadline = Instant::now() + DIE_WITHIN;
        while alive(pid) {
            if Instant::now() >= deadline {
                bail!("h{i}'s daemon (pid {pid}) survived SIGKILL for {DIE_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Starts host `i`'s daemon again (same flags and data) and waits until it answers.
    pub async fn start(&self, i: usize) -> anyhow::Result<()> {
        let out = self
            .tools
            .script()
            .args(["start", &i.to_string(), "--id", &self.id.to_string()])
            .output()
            .await
            .context("cannot run netns-cluster.sh start")?;
        if !out.status.success() {
            bail!(
                "netns-cluster.sh start {i} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// `program args` in host `i`'s namespace with `CIRCUIT_SOCKET` set to its daemon (the
    /// script's `exec`, which execs in place: the child's pid is the program's).
    pub fn exec<I, S>(&self, i: usize, program: impl AsRef<Path>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.tools.script();
        cmd.args(["exec", "--id", &self.id.to_string(), &i.to_string(), "--"])
            .arg(program.as_ref())
            .args(args);
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Blocking, but short, and it must finish before the lock is released.
        match std::process::Command::new(&self.tools.script)
            .args(["down", "--id", &self.id.to_string()])
            .env_remove("CIRCUIT_NETNS_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "bench-mesh: netns-cluster.sh down --id {} failed ({}): {}",
                self.id,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!(
                "bench-mesh: cannot run netns-cluster.sh down --id {}: {e}",
                self.id
            ),
        }
    }
}

/// True if `pid` is a live process that is not a zombie. Daemons the script started are not
/// our children, and on some machines nobody reaps them, so a zombie counts as gone.
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// True if `pid` lives in the named network namespace.
fn same_netns(pid: i32, netns: &str) -> bool {
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net"));
    let named = std::fs::metadata(format!("/run/netns/{netns}"));
    match (theirs, named) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }
}
