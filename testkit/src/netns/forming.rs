//! [`Forming`]: a cluster whose `netns-cluster.sh up` is still running, for a caller that
//! watches the mesh form (a join benchmark polls every daemon's view meanwhile).

use std::path::PathBuf;
use std::process::Child;

use super::script::ID_IN_USE;
use super::NetnsCluster;
use crate::error::{Error, Result};

/// A cluster being brought up: h1 first, then h2..hN together, each joining h1. Its daemons'
/// sockets are known from the start; [`Forming::finish`] waits for the script. Dropped
/// unfinished, it stops the script and takes down whatever it made.
#[derive(Debug)]
pub struct Forming {
    /// `None` once finished.
    cluster: Option<NetnsCluster>,
    /// The running `up`; `None` once waited for.
    up: Option<Child>,
    /// What `up` was asked for, to check what it printed.
    n: usize,
    sshd: bool,
}

impl Forming {
    pub(super) fn new(cluster: NetnsCluster, up: Child, n: usize, sshd: bool) -> Self {
        Self {
            cluster: Some(cluster),
            up: Some(up),
            n,
            sshd,
        }
    }

    fn cluster(&self) -> &NetnsCluster {
        self.cluster.as_ref().expect("not finished")
    }

    /// The cluster's ID.
    pub fn id(&self) -> u32 {
        self.cluster().id()
    }

    /// Host `i`'s daemon socket, where it will answer once started.
    pub fn socket(&self, i: usize) -> PathBuf {
        self.cluster()
            .state_dir()
            .join(format!("h{i}/circuitd.sock"))
    }

    /// Waits until `up` has finished: every daemon answers (and every sshd lets the key in).
    /// [`Error::IdInUse`] if the cluster's ID was taken (nothing of it is then taken down).
    pub fn finish(mut self) -> Result<NetnsCluster> {
        let up = self.up.take().expect("not finished");
        let mut cluster = self.cluster.take().expect("not finished");
        let described = format!("netns-cluster.sh up {} --id {}", self.n, cluster.id());
        let out = up
            .wait_with_output()
            .map_err(|e| Error::io(format!("wait for {described}"), e))?;
        if out.status.code() == Some(ID_IN_USE) {
            // Someone else's cluster: not ours to take down.
            cluster.down_on_drop = false;
            return Err(Error::IdInUse(cluster.id()));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(Error::Command {
                command: described,
                status: out.status,
                output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))
                    .trim()
                    .to_string(),
            });
        }
        cluster.read_hosts(&stdout)?;
        if cluster.hosts().len() != self.n || cluster.ssh.is_some() != self.sshd {
            return Err(Error::State(format!(
                "{described} printed {} host lines and {} ssh line, for {} hosts {} sshd:\n{stdout}",
                cluster.hosts().len(),
                usize::from(cluster.ssh.is_some()),
                self.n,
                if self.sshd { "with" } else { "without" }
            )));
        }
        Ok(cluster)
    }
}

impl Drop for Forming {
    fn drop(&mut self) {
        // Never panic here. The script first, so that `down` (the cluster's drop) finds
        // everything it made.
        if let Some(mut up) = self.up.take() {
            let _ = up.kill();
            let _ = up.wait();
        }
    }
}
