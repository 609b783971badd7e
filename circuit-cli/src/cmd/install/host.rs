//! One host's install and uninstall, start to end, on its own thread: connect, probe, decide,
//! upload, stop, replace, start, wait for the mesh. A failure anywhere ends this host only;
//! its report says where.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use circuit_sdk::secure::Key;
use serde::Serialize;

use super::elf::Arch;
use super::layout::{self, DaemonConfig, Layout, Mode};
use super::plan::{self, Outcome};
use super::progress::HostProgress;
use super::remote::{self, Facts, Staged};
use super::rendezvous::{Rendezvous, Slot};
use super::ssh::{Ssh, SshOptions};
use super::target::{host_port, SshTarget};

/// How long a daemon has to stop on SIGTERM (it stops its workers first) before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How long a started daemon has to write its pidfile.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The binary to install, checked and hashed once for every host.
#[derive(Debug)]
pub struct Binary {
    /// Its local path.
    pub path: std::path::PathBuf,
    /// The CPU family it is for.
    pub arch: Arch,
    /// SHA-256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub len: u64,
}

/// Everything every host's install shares.
#[derive(Debug)]
pub struct Setup {
    /// How to connect.
    pub ssh: SshOptions,
    /// What to install.
    pub binary: Binary,
    /// The key file's bytes, uploaded as they are (every key in it, comments too).
    pub key_file: Vec<u8>,
    /// Its SHA-256, hex.
    pub key_sha256: String,
    /// The key the installer checks the mesh with (the file's first).
    pub key: Key,
    /// `--prefix`; `None`: resolved on each host.
    pub prefix: Option<String>,
    /// `--port`.
    pub port: u16,
    /// `--name`.
    pub name: String,
    /// `--advertise`.
    pub advertise: Option<String>,
    /// `--join`; empty: the other hosts of the run.
    pub join: Vec<String>,
    /// `--label`, as `k=v`.
    pub labels: Vec<String>,
    /// `--no-systemd`.
    pub no_systemd: bool,
    /// `--force`.
    pub force: bool,
    /// `--wait-timeout`.
    pub wait_timeout: Duration,
}

/// What happened to one host, for the summary and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The host as typed.
    pub host: String,
    /// Its node name, once known.
    pub node: Option<String>,
    /// What happened.
    pub result: Outcome,
    /// circuitd's version now running (as the node reports it).
    pub version: Option<String>,
    /// SHA-256 of the binary now installed.
    pub sha256: Option<String>,
    /// The version installed before, if any.
    pub previous_version: Option<String>,
    /// SHA-256 of the binary installed before, if any.
    pub previous_sha256: Option<String>,
    /// The daemon's pid.
    pub pid: Option<u32>,
    /// How the daemon runs.
    pub mode: Option<Mode>,
    /// The prefix, resolved.
    pub prefix: Option<String>,
    /// The address the node advertises.
    pub advertise: Option<String>,
    /// Seconds this host took.
    pub seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
}

impl Report {
    fn new(target: &SshTarget) -> Self {
        Self::failed(target.typed.clone(), None)
    }

    /// A failed host's report, with nothing known about it yet.
    pub fn failed(host: String, error: Option<String>) -> Self {
        Self {
            host,
            node: None,
            result: Outcome::Failed,
            version: None,
            sha256: None,
            previous_version: None,
            previous_sha256: None,
            pid: None,
            mode: None,
            prefix: None,
            advertise: None,
            seconds: 0.0,
            error,
        }
    }
}

/// Installs or upgrades circuitd on one host.
pub fn install(
    index: usize,
    target: &SshTarget,
    setup: &Setup,
    rendezvous: &Rendezvous,
    progress: &HostProgress,
) -> Report {
    let started = Instant::now();
    let mut report = Report::new(target);
    let slot = Slot { rendezvous, index };
    if let Err(e) = install_steps(target, setup, &slot, progress, &mut report) {
        report.result = Outcome::Failed;
        report.error = Some(format!("{e:#}"));
    }
    drop(slot);
    report.seconds = started.elapsed().as_secs_f64();
    progress.done(&summary_line(&report));
    report
}

fn install_steps(
    target: &SshTarget,
    setup: &Setup,
    slot: &Slot,
    progress: &HostProgress,
    report: &mut Report,
) -> anyhow::Result<()> {
    progress.step("connecting");
    let ssh = Ssh::connect(target, &setup.ssh)?;
    progress.step("checking the host");
    let unit = layout::unit_name(setup.prefix.as_deref().unwrap_or(layout::ROOT_PREFIX));
    let facts = probe(&ssh, setup.prefix.as_deref(), &unit)?;
    check_host(&facts, setup)?;
    let layout = Layout::new(&facts.prefix);
    let mode = Mode::choose(facts.uid, facts.systemd, setup.no_systemd);
    (report.prefix, report.mode) = (Some(facts.prefix.clone()), Some(mode));
    report.previous_version.clone_from(&facts.version);
    report.previous_sha256 = facts.hash("binary").map(String::from);
    report.sha256 = Some(setup.binary.sha256.clone());
    report.pid = facts.pid;

    // Name and address, then the addresses of the other hosts.
    let (name, advertise) = identity(target, setup, &facts, ssh.peer.ip())?;
    report.advertise = Some(advertise.clone());
    slot.publish(&advertise);
    let join = if setup.join.is_empty() {
        progress.step("waiting for the other hosts' addresses");
        slot.others()
    } else {
        setup.join.clone()
    };

    // What should be there, and what to do about what is.
    let config = DaemonConfig {
        name: name.clone(),
        listen: host_port("0.0.0.0", setup.port),
        advertise: advertise.clone(),
        join: join.clone(),
        label: setup.labels.clone(),
        key_file: layout.key(),
        data_dir: layout.data(),
        socket: layout.socket(),
        pidfile: layout.pidfile(),
    }
    .render();
    let config_sha256 = sha256_hex(config.as_bytes());
    let unit_text = (mode == Mode::Systemd).then(|| layout::unit_text(&layout));
    let unit_sha256 = unit_text.as_deref().map(|u| sha256_hex(u.as_bytes()));
    let plan = plan::decide(
        &plan::Current {
            binary: facts.hash("binary"),
            config: facts.hash("config"),
            key: facts.hash("key"),
            unit: facts.hash("unit"),
            running: facts.pid.is_some(),
        },
        &plan::Wanted {
            binary: &setup.binary.sha256,
            config: &config_sha256,
            key: &setup.key_sha256,
            unit: unit_sha256.as_deref(),
        },
        setup.force,
    );

    if plan.restart {
        let binary = &setup.binary;
        let uploads = [
            (
                plan.uploads.binary,
                "circuitd",
                layout.binary(),
                Data::File(&binary.path, binary.len),
                binary.sha256.as_str(),
                "755",
            ),
            (
                plan.uploads.config,
                "the config",
                layout.config(),
                Data::Bytes(config.as_bytes()),
                config_sha256.as_str(),
                "644",
            ),
            (
                plan.uploads.key,
                "the cluster key",
                layout.key(),
                Data::Bytes(&setup.key_file),
                setup.key_sha256.as_str(),
                "600",
            ),
            (
                plan.uploads.unit,
                "the systemd unit",
                format!("{}/{unit}", layout::UNIT_DIR),
                Data::Bytes(unit_text.as_deref().unwrap_or_default().as_bytes()),
                unit_sha256.as_deref().unwrap_or_default(),
                "644",
            ),
        ];
        let uploads: Vec<Upload> = uploads
            .into_iter()
            .filter(|u| u.0)
            .map(|(_, what, path, data, sha256, mode)| Upload {
                staged: stage(what, &path, sha256, mode),
                data,
            })
            .collect();
        report.pid = restart(&ssh, &facts, &unit, mode, &plan, &uploads, progress)?;
    }

    progress.step("waiting for the mesh");
    let wait = super::mesh::Wait {
        addr: &advertise,
        key: &setup.key,
        name: &name,
        needs_peer: !join.is_empty(),
        timeout: setup.wait_timeout,
    };
    match super::mesh::wait(&wait) {
        Ok(me) => {
            report.node = Some(me.name);
            report.version = Some(me.version);
        }
        Err(why) => {
            report.node = Some(name);
            let tail = ssh
                .run(&remote::log_tail(&layout, &unit), Duration::ZERO)
                .map(|o| strip_ansi(&o.stdout))
                .unwrap_or_default();
            bail!("{why}\n  the end of its log:\n{}", indent(tail.trim_end()));
        }
    }
    report.result = plan.outcome;
    Ok(())
}

/// What a file to upload holds.
enum Data<'a> {
    /// A local file and its size.
    File(&'a std::path::Path, u64),
    /// Bytes made here.
    Bytes(&'a [u8]),
}

/// A file to upload.
struct Upload<'a> {
    staged: Staged,
    data: Data<'a>,
}

/// The node's name and advertised address, from the templates and what the host said.
fn identity(
    target: &SshTarget,
    setup: &Setup,
    facts: &Facts,
    peer: std::net::IpAddr,
) -> anyhow::Result<(String, String)> {
    let ip = match peer {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    };
    let vars = [
        ("host", target.host.as_str()),
        ("hostname", facts.hostname.as_str()),
        ("ip", ip.as_str()),
    ];
    let name = layout::expand(&setup.name, &vars[..2]).map_err(|e| anyhow!("--name: {e}"))?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the node name would be {name:?}: give --name a template that makes a name without spaces");
    }
    let advertise = match &setup.advertise {
        Some(t) => {
            let a = layout::expand(t, &vars).map_err(|e| anyhow!("--advertise: {e}"))?;
            crate::parse::mesh_addr(&with_port(&a, setup.port))
                .map_err(|e| anyhow!("--advertise: {e}"))?
        }
        None => host_port(&peer.to_string(), setup.port),
    };
    Ok((name, advertise))
}

/// Uploads to temp names and verifies them (the old daemon still runs), stops the old daemon,
/// moves the files into place, starts the new one; returns its pid.
fn restart(
    ssh: &Ssh,
    facts: &Facts,
    unit: &str,
    mode: Mode,
    plan: &plan::Plan,
    uploads: &[Upload],
    progress: &HostProgress,
) -> anyhow::Result<Option<u32>> {
    let layout = &Layout::new(&facts.prefix);
    progress.step("preparing the directories");
    ssh.run_ok(&remote::prepare(layout, unit), Duration::ZERO)?;
    for u in uploads {
        match u.data {
            Data::File(path, len) => {
                let mut file = std::fs::File::open(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                progress.upload(&u.staged.what, len);
                ssh.upload(&mut file, &u.staged.temp, &mut |n| progress.advance(n))?;
            }
            Data::Bytes(mut bytes) => {
                progress.step(&format!("uploading {}", u.staged.what));
                ssh.upload(&mut bytes, &u.staged.temp, &mut |_| {})?;
            }
        }
    }
    let staged: Vec<Staged> = uploads.iter().map(|u| u.staged.clone()).collect();
    progress.step("verifying the uploads");
    ssh.run_ok(&remote::verify(&staged), Duration::ZERO)?;
    if facts.pid.is_some() || facts.hash("unit").is_some() {
        progress.step("stopping the old daemon");
    }
    let stop = remote::stop(layout, unit, plan.remove_unit, STOP_GRACE);
    ssh.run_ok(&stop, STOP_GRACE + Duration::from_secs(15))?;
    ssh.run_ok(&remote::place(&staged), Duration::ZERO)?;
    progress.step("starting");
    let script = match mode {
        Mode::Systemd => remote::start_systemd(layout, unit, START_DEADLINE),
        Mode::Detached => remote::start_detached(layout, START_DEADLINE),
    };
    let out = ssh.run_ok(&script, START_DEADLINE + Duration::from_secs(5))?;
    Ok(remote::values(&out).get("pid").and_then(|p| p.parse().ok()))
}

/// Stops circuitd on one host and removes what `install` put there.
pub fn uninstall(
    target: &SshTarget,
    ssh: &SshOptions,
    prefix: Option<&str>,
    progress: &HostProgress,
) -> Report {
    let started = Instant::now();
    let mut report = Report::new(target);
    let result = (|| -> anyhow::Result<Outcome> {
        progress.step("connecting");
        let ssh = Ssh::connect(target, ssh)?;
        progress.step("checking the host");
        let unit = layout::unit_name(prefix.unwrap_or(layout::ROOT_PREFIX));
        let facts = probe(&ssh, prefix, &unit)?;
        layout::validate_prefix(&facts.prefix).map_err(|e| anyhow!("{e}"))?;
        report.prefix = Some(facts.prefix.clone());
        report.previous_version.clone_from(&facts.version);
        report.previous_sha256 = facts.hash("binary").map(String::from);
        progress.step("stopping and removing");
        let script = remote::uninstall(&Layout::new(&facts.prefix), &unit, STOP_GRACE);
        let out = ssh.run_ok(&script, STOP_GRACE + Duration::from_secs(30))?;
        Ok(if remote::values(&out).contains_key("removed") {
            Outcome::Removed
        } else {
            Outcome::Absent
        })
    })();
    match result {
        Ok(outcome) => report.result = outcome,
        Err(e) => report.error = Some(format!("{e:#}")),
    }
    report.seconds = started.elapsed().as_secs_f64();
    progress.done(&summary_line(&report));
    report
}

/// Runs the probe and parses it.
fn probe(ssh: &Ssh, prefix: Option<&str>, unit: &str) -> anyhow::Result<Facts> {
    let out = ssh.run_ok(&remote::probe(prefix.unwrap_or(""), unit), Duration::ZERO)?;
    Facts::parse(&out).map_err(|e| anyhow!(e))
}

/// Refuses a host circuitd cannot run on, or a prefix that is not ours.
fn check_host(facts: &Facts, setup: &Setup) -> anyhow::Result<()> {
    if facts.os != "Linux" {
        bail!(
            "the host runs {}, and circuitd runs on Linux only",
            facts.os
        );
    }
    let want = setup.binary.arch;
    match Arch::from_uname(&facts.arch) {
        Some(arch) if arch == want => {}
        _ => bail!(
            "{} is built for {want}, but the host is {} (uname -m) — build circuitd for it and \
             pass --binary",
            setup.binary.path.display(),
            facts.arch
        ),
    }
    layout::validate_prefix(&facts.prefix).map_err(|e| anyhow!("{e}"))?;
    if facts.not_dir {
        bail!("{} exists and is not a directory", facts.prefix);
    }
    if facts.exists && !facts.marker && !facts.empty {
        bail!(
            "{} exists and was not made by circuit install (no {}): pick another --prefix or \
             empty it",
            facts.prefix,
            layout::MARKER
        );
    }
    if !facts.sha256sum {
        bail!("sha256sum is not installed on the host (coreutils): uploads cannot be verified");
    }
    Ok(())
}

/// A file to upload to a temp name next to its final path.
fn stage(what: &str, path: &str, sha256: &str, mode: &'static str) -> Staged {
    let (dir, name) = path.rsplit_once('/').unwrap_or((".", path));
    Staged {
        what: what.to_string(),
        temp: format!("{dir}/.{name}.new"),
        path: path.to_string(),
        sha256: sha256.to_string(),
        mode,
    }
}

/// `addr` with `:port` added when it has none.
fn with_port(addr: &str, port: u16) -> String {
    let has_port = if let Some(rest) = addr.strip_prefix('[') {
        rest.contains("]:")
    } else {
        addr.matches(':').count() == 1
    };
    if has_port {
        addr.to_string()
    } else {
        host_port(addr.trim_start_matches('[').trim_end_matches(']'), port)
    }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The progress line a host ends with.
fn summary_line(r: &Report) -> String {
    match &r.error {
        Some(e) => format!("failed: {}", e.lines().next().unwrap_or_default()),
        None => format!("{} in {:.1}s", r.result.as_str(), r.seconds),
    }
}

/// `text` without terminal colour sequences (circuitd colours its log).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, then a final byte in @..~.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `text` with every line indented, under an error's first line.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_added_only_when_missing() {
        assert_eq!(with_port("10.0.0.1", 7711), "10.0.0.1:7711");
        assert_eq!(with_port("10.0.0.1:7000", 7711), "10.0.0.1:7000");
        assert_eq!(with_port("h1.example", 7711), "h1.example:7711");
        assert_eq!(with_port("[fe80::1]", 7711), "[fe80::1]:7711");
        assert_eq!(with_port("[fe80::1]:1", 7711), "[fe80::1]:1");
        assert_eq!(with_port("fe80::1", 7711), "[fe80::1]:7711");
    }

    #[test]
    fn colours_are_stripped_from_logs() {
        let line = "\x1b[2m2026-11-21T10:21:16Z\x1b[0m \x1b[32m INFO\x1b[0m ready";
        assert_eq!(strip_ansi(line), "2026-11-21T10:21:16Z  INFO ready");
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn uploads_go_to_a_hidden_temp_name_beside_the_file() {
        let f = stage("circuitd", "/opt/circuit/bin/circuitd", "ab", "755");
        assert_eq!(f.temp, "/opt/circuit/bin/.circuitd.new");
    }
}
