//! Logging in to a cluster's hosts with the real OpenSSH client (clusters brought up with
//! [`UpOptions::sshd`](super::UpOptions::sshd)): the cluster's key, its known_hosts, strict host
//! key checking, never a prompt.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::NetnsCluster;

/// The client side of a cluster's sshds: the files `ssh` needs.
#[derive(Debug, Clone)]
pub struct SshFiles {
    /// The cluster's private key (ed25519, no passphrase), authorized for root on every host.
    pub identity: PathBuf,
    /// Every host's address with its host key, for strict host key checking.
    pub known_hosts: PathBuf,
}

impl NetnsCluster {
    /// `root@<ip>`: where `ssh` logs in to host `i` ([`UpOptions::sshd`](super::UpOptions::sshd)).
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
    pub fn ssh_args(&self) -> Vec<OsString> {
        let files = self.ssh_files();
        let mut known_hosts = OsString::from("UserKnownHostsFile=");
        known_hosts.push(&files.known_hosts);
        let mut args: Vec<OsString> = vec!["-F".into(), "none".into(), "-i".into()];
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
}
