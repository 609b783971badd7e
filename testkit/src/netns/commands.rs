//! Commands in a host of a [`NetnsCluster`]: any program in its namespace, aimed at its daemon
//! (`netns-cluster.sh exec`), the `circuit` CLI there and what it reports, the namespace's
//! processes and the daemon's log.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use circuit_sdk::proto::{NodeInfo, WorkerInfo};

use super::{script, NetnsCluster};

impl NetnsCluster {
    /// The program and arguments that run a command (appended to them) in host `i`'s namespace
    /// with `CIRCUIT_SOCKET` set to its daemon's socket; it execs in place, so a child started
    /// this way has the command's pid.
    pub fn launcher(&self, i: usize) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![self.script.clone().into()];
        for arg in [
            "exec",
            "--id",
            &self.id.to_string(),
            &self.host(i).index.to_string(),
            "--",
        ] {
            argv.push(arg.into());
        }
        argv
    }

    /// A command running `program args` in host `i`'s namespace with `CIRCUIT_SOCKET` set to
    /// its daemon's socket and stdin null, to run as the caller likes.
    pub fn exec_command<S: AsRef<OsStr>>(
        &self,
        i: usize,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Command {
        let launcher = self.launcher(i);
        let mut cmd = script::command(Path::new(&launcher[0]));
        cmd.args(&launcher[1..]).arg(program).args(args);
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

    /// The `circuit` binary the cluster's daemons came with.
    pub fn cli_path(&self) -> PathBuf {
        self.bin_dir.join("circuit")
    }

    /// Runs the `circuit` binary in host `i`'s namespace, aimed at host `i`'s daemon.
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        self.exec(i, self.cli_path(), args)
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
        self.exec_command(i, self.cli_path(), args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start circuit in a namespace")
    }

    /// The nodes as host `i`'s daemon sees them (`circuit nodes --json` run on host `i`), or
    /// the CLI's error when it fails (a killed daemon, a request that timed out).
    pub fn nodes(&self, i: usize) -> std::result::Result<Vec<NodeInfo>, String> {
        let out = self.cli(i, &["nodes", "--json"]);
        if !out.status.success() {
            return Err(format!(
                "circuit nodes on h{i} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        crate::json_list(&out.stdout, "nodes").map_err(|e| {
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
        crate::json_list(&out, "workers").unwrap_or_else(|e| {
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

    /// Host `i`'s daemon log file (stdout and stderr of every start).
    pub fn log_path(&self, i: usize) -> PathBuf {
        let socket = &self.host(i).socket;
        socket.parent().unwrap_or(socket).join("circuitd.log")
    }

    /// Host `i`'s daemon log so far, for failure messages.
    pub fn daemon_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }
}
