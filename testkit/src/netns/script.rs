//! `scripts/netns-cluster.sh` as the kit calls it: the command, a subcommand run to success,
//! whether this machine can run clusters, cluster IDs, and the host lines the script prints.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::{Host, MESH_PORT};
use crate::error::{Error, Result};

/// Cluster IDs the script accepts: 1..=MAX_ID.
const MAX_ID: u32 = 16383;
/// Exit code of `netns-cluster.sh up` when the ID is taken (a leftover or someone else's).
pub const ID_IN_USE: i32 = 3;

/// This repository's script.
pub fn default_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns-cluster.sh")
}

/// Where the script keeps each cluster's state: `$CIRCUIT_NETNS_STATE`, else
/// `/tmp/circuit-netns`, as the script itself decides.
pub fn state_root() -> PathBuf {
    std::env::var_os("CIRCUIT_NETNS_STATE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/tmp/circuit-netns"), PathBuf::from)
}

/// The script, with stdin null and no inherited cluster choice.
pub fn command(script: &Path) -> Command {
    let mut cmd = Command::new(script);
    cmd.env_remove("CIRCUIT_NETNS_ID").stdin(Stdio::null());
    cmd
}

/// Runs `script SUBCOMMAND --id ID REST...` and returns its stdout; an error with its stderr
/// if it fails.
pub fn run_ok(script: &Path, id: u32, args: &[&str]) -> Result<String> {
    let (sub, rest) = args.split_first().expect("a subcommand");
    let described = format!("netns-cluster.sh {} --id {id}", args.join(" "));
    let out = command(script)
        .arg(sub)
        .args(["--id", &id.to_string()])
        .args(rest)
        .output()
        .map_err(|e| Error::io(format!("run {described}"), e))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: described,
            status: out.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_string(),
        });
    }
    String::from_utf8(out.stdout)
        .map_err(|_| Error::State(format!("{described} printed non-UTF-8")))
}

/// Whether this machine can run clusters (root, iproute2, namespaces, veths, bridges; with
/// `sshd`, OpenSSH's server and client too): asked of the script's `check` once per process.
pub fn available(script: &Path, sshd: bool) -> std::result::Result<(), String> {
    static AVAILABLE: [OnceLock<std::result::Result<(), String>>; 2] =
        [OnceLock::new(), OnceLock::new()];
    AVAILABLE[usize::from(sshd)]
        .get_or_init(|| {
            if !nix::unistd::geteuid().is_root() {
                return Err("not running as root".into());
            }
            let mut check = command(script);
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

/// A cluster ID from this process's pid and a counter, in 1..=MAX_ID.
pub fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    1 + std::process::id().wrapping_mul(64).wrapping_add(n) % MAX_ID
}

/// A cluster ID, from this process's pid, that nothing on this machine uses yet: no state
/// directory, no namespace `c<ID>-h*`, no bridge `cb<ID>`. For a caller that brings up
/// clusters one after another under one ID.
pub fn free_id() -> Option<u32> {
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let root = state_root();
    (0..MAX_ID)
        .map(|k| 1 + std::process::id().wrapping_add(k) % MAX_ID)
        .find(|id| {
            let prefix = format!("c{id}-h");
            !root.join(id.to_string()).exists()
                && !Path::new(&format!("/sys/class/net/cb{id}")).exists()
                && !netns.iter().any(|n| n.starts_with(&prefix))
        })
}

/// Parses a host line of the script: `h<i> <ip> <socket> <pid>` (pid `-`: no daemon, 0).
pub fn parse_host(line: &str) -> Result<Host> {
    let bad = |what: &str| Error::State(format!("netns-cluster.sh printed {line:?}: {what}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [name, ip, socket, pid] = fields[..] else {
        return Err(bad("not `h<i> <ip> <socket> <pid>`"));
    };
    let index = name
        .strip_prefix('h')
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| bad("a bad host name"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad("a bad address"))?;
    let pid = match pid {
        "-" => 0,
        pid => pid.parse().map_err(|_| bad("a bad pid"))?,
    };
    Ok(Host {
        index,
        name: name.to_string(),
        ip,
        mesh_addr: format!("{ip}:{MESH_PORT}"),
        socket: PathBuf::from(socket),
        pid,
        sshd_pid: None,
    })
}

/// `[1, 2]` → `"1,2"`.
pub fn host_list(hosts: &[usize]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lines_parse_and_bad_ones_are_named() {
        let host = parse_host("h2 10.128.7.2 /tmp/s/h2/circuitd.sock 4242").expect("a host");
        assert_eq!((host.index, host.name.as_str(), host.pid), (2, "h2", 4242));
        assert_eq!(host.mesh_addr, format!("10.128.7.2:{MESH_PORT}"));
        assert_eq!(parse_host("h3 10.128.7.3 /s -").expect("no daemon").pid, 0);
        let err = parse_host("x1 10.0.0.1 /s 1").expect_err("bad name");
        assert!(err.to_string().contains("bad host name"), "{err}");
        assert!(parse_host("h1 10.0.0.1").is_err());
        assert_eq!(host_list(&[1, 2]), "1,2");
    }
}
