//! `circuit install` / `circuit uninstall`: circuitd on hosts over SSH. Every input is checked
//! before any host is touched; then each host runs on a thread of its own (one failing does
//! not stop the others), with a progress line each, and a summary table at the end. The exit
//! code is 0 only when every host succeeded. How it all works: docs/INSTALL.md.
//!
//! # Layout
//! - `target`: `USER@HOST[:PORT]`.
//! - `ssh`: one session: connect, host key, authentication, scripts, uploads.
//! - `known_hosts`: checking and recording host keys.
//! - `elf`: the binary's architecture against the host's.
//! - `layout`: paths under the prefix, circuitd's config, the systemd unit, the mode.
//! - `remote`: the shell scripts run on hosts and their output.
//! - `plan`: what to upload and whether to restart.
//! - `rendezvous`: the hosts of one run learn each other's addresses.
//! - `host`: one host's install or uninstall, step by step.
//! - `mesh`: waiting until a node is alive in the mesh.
//! - `progress`: bars or plain lines.

mod elf;
mod host;
mod known_hosts;
mod layout;
mod mesh;
mod plan;
mod progress;
mod remote;
mod rendezvous;
mod ssh;
mod target;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use circuit_sdk::secure::read_key_file;

use super::Ctx;
use crate::error::CliError;
use crate::output::{self, Table};
use crate::parse;
use host::{Binary, Report, Setup};
use plan::Outcome;
use progress::Progress;
use target::SshTarget;

/// Arguments of `circuit install`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit keygen cluster.key\n  \
    circuit install --key-file cluster.key root@10.0.0.1 root@10.0.0.2 root@10.0.0.3\n  \
    circuit install --key-file cluster.key --join 10.0.0.1:7711 --label zone=b admin@10.0.1.5\n  \
    circuit --addr 10.0.0.1:7711 --key-file cluster.key nodes\n\n\
    Without --join, the hosts of one command join each other. Running the same command again\n\
    upgrades in place: a host whose binary, config and key are unchanged is left alone.")]
pub struct Args {
    /// Hosts to install on. The user defaults to yours (as for ssh), the port to 22
    #[arg(value_name = "USER@HOST[:PORT]", required = true, value_parser = target::parse)]
    hosts: Vec<SshTarget>,

    #[command(flatten)]
    ssh: SshArgs,

    /// Where to install on each host [default: /opt/circuit for root, else ~/.local/circuit
    /// of the SSH user]
    #[arg(long, value_name = "DIR")]
    prefix: Option<String>,

    /// The circuitd to install [default: circuitd next to this circuit, else from PATH]
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,

    /// The mesh port every daemon listens on (0.0.0.0:PORT)
    #[arg(long, default_value_t = 7711, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,

    /// Node names: {hostname} is the host's own name, {host} the HOST as typed
    #[arg(long, default_value = "{hostname}", value_name = "TEMPLATE")]
    name: String,

    /// The address each node advertises [default: the address SSH reached, and --port]; may
    /// use {ip} (that address), {host} and {hostname}
    #[arg(long, value_name = "HOST[:PORT]")]
    advertise: Option<String>,

    /// Join the mesh through this node (repeatable) [default: the other hosts of this command]
    #[arg(long, value_name = "ADDR", value_parser = parse::mesh_addr)]
    join: Vec<String>,

    /// A label of every node installed (k=v, repeatable), for `spawn --label k=v`
    #[arg(long = "label", value_name = "K=V", value_parser = parse::key_value)]
    labels: Vec<(String, String)>,

    /// Run the daemon detached (setsid, pidfile) even on hosts where systemd runs
    #[arg(long)]
    no_systemd: bool,

    /// Restart daemons even where nothing changed
    #[arg(long)]
    force: bool,

    /// How long each node may take to be alive in the mesh after it starts
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse::duration)]
    wait_timeout: humantime::Duration,
}

/// Arguments of `circuit uninstall`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit uninstall root@10.0.0.1 root@10.0.0.2 root@10.0.0.3\n  \
    circuit uninstall --prefix /srv/circuit admin@10.0.1.5\n\n\
    Stops the daemon (and its workers), removes its systemd unit and the whole prefix: the\n\
    binary, config, key, data dir and logs. A prefix circuit install did not make is refused.")]
pub struct UninstallArgs {
    /// Hosts to uninstall from. The user defaults to yours (as for ssh), the port to 22
    #[arg(value_name = "USER@HOST[:PORT]", required = true, value_parser = target::parse)]
    hosts: Vec<SshTarget>,

    #[command(flatten)]
    ssh: SshArgs,

    /// The prefix given to install [default: /opt/circuit for root, else ~/.local/circuit of
    /// the SSH user]
    #[arg(long, value_name = "DIR")]
    prefix: Option<String>,
}

/// How to reach hosts over SSH, for both commands.
#[derive(Debug, clap::Args)]
struct SshArgs {
    /// The private key to log in with [default: the ssh-agent's keys, then ~/.ssh/id_ed25519,
    /// id_ecdsa, id_rsa]
    #[arg(short = 'i', long, value_name = "FILE")]
    identity: Option<PathBuf>,

    /// The known_hosts file host keys are checked against [default: ~/.ssh/known_hosts]
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,

    /// Trust a host that is not in known_hosts yet, and add it there. A host whose key changed
    /// is always refused
    #[arg(long)]
    accept_new_host_keys: bool,

    /// Give up on a host that does not answer for this long (connect, login, each step)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse::duration)]
    ssh_timeout: humantime::Duration,
}

/// Installs or upgrades circuitd on every host.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let setup = setup(ctx, &args)?;
    let labels: Vec<String> = args.hosts.iter().map(|h| h.typed.clone()).collect();
    let progress = Progress::new(&labels);
    let rendezvous = rendezvous::Rendezvous::new(args.hosts.len());
    let reports: Vec<Report> = std::thread::scope(|s| {
        let threads: Vec<_> = args
            .hosts
            .iter()
            .enumerate()
            .map(|(i, target)| {
                let line = progress.host(&target.typed);
                let (setup, rendezvous) = (&setup, &rendezvous);
                s.spawn(move || host::install(i, target, setup, rendezvous, &line))
            })
            .collect();
        threads.into_iter().map(join).collect()
    });
    progress.finish();
    summarize(ctx, &reports, false)
}

/// Removes circuitd from every host.
pub fn run_uninstall(ctx: &Ctx, args: UninstallArgs) -> anyhow::Result<ExitCode> {
    check_hosts(&args.hosts)?;
    if let Some(prefix) = &args.prefix {
        layout::validate_prefix(prefix).map_err(CliError::plain)?;
    }
    let ssh = ssh_options(&args.ssh, &args.hosts)?;
    let labels: Vec<String> = args.hosts.iter().map(|h| h.typed.clone()).collect();
    let progress = Progress::new(&labels);
    let reports: Vec<Report> = std::thread::scope(|s| {
        let threads: Vec<_> = args
            .hosts
            .iter()
            .map(|target| {
                let line = progress.host(&target.typed);
                let (ssh, prefix) = (&ssh, args.prefix.as_deref());
                s.spawn(move || host::uninstall(target, ssh, prefix, &line))
            })
            .collect();
        threads.into_iter().map(join).collect()
    });
    progress.finish();
    summarize(ctx, &reports, true)
}

/// A host thread's report; a thread that panicked (a bug) is reported, not propagated.
fn join(handle: std::thread::ScopedJoinHandle<'_, Report>) -> Report {
    handle.join().unwrap_or_else(|_| {
        let why = "the installer crashed on this host (a bug)";
        Report::failed("?".into(), Some(why.into()))
    })
}

/// Checks every input and reads the binary and the key: anything wrong fails here, before any
/// host is touched.
fn setup(ctx: &Ctx, args: &Args) -> anyhow::Result<Setup> {
    check_hosts(&args.hosts)?;
    let key_path = ctx.key_file().ok_or_else(|| {
        CliError::hinted(
            "install needs the cluster key (--key-file or CIRCUIT_KEY_FILE): the daemons listen \
             on the network, which circuitd refuses without one",
            "make one with `circuit keygen cluster.key`",
        )
    })?;
    let key = read_key_file(key_path)
        .map_err(|e| CliError::hinted(e, "make one with `circuit keygen cluster.key`"))?
        .swap_remove(0);
    let key_file =
        std::fs::read(key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    if let Some(prefix) = &args.prefix {
        layout::validate_prefix(prefix).map_err(CliError::plain)?;
    }
    check_template("--name", &args.name, &["host", "hostname"])?;
    if let Some(advertise) = &args.advertise {
        check_template("--advertise", advertise, &["ip", "host", "hostname"])?;
        if args.hosts.len() > 1 && layout::placeholders(advertise).is_empty() {
            return Err(CliError::hinted(
                format!("--advertise {advertise} would give every host the same address"),
                "use {ip}, {host} or {hostname} in it (like {host}:7711), or install one host at a time",
            ));
        }
    }
    let binary = binary(args.binary.as_deref())?;
    Ok(Setup {
        ssh: ssh_options(&args.ssh, &args.hosts)?,
        binary,
        key_sha256: host::sha256_hex(&key_file),
        key_file,
        key,
        prefix: args.prefix.clone(),
        port: args.port,
        name: args.name.clone(),
        advertise: args.advertise.clone(),
        join: args.join.clone(),
        labels: args
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        no_systemd: args.no_systemd,
        force: args.force,
        wait_timeout: args.wait_timeout.into(),
    })
}

/// Refuses a host given twice (two threads would race on it).
fn check_hosts(hosts: &[SshTarget]) -> anyhow::Result<()> {
    for (i, h) in hosts.iter().enumerate() {
        if hosts[..i]
            .iter()
            .any(|o| o.host == h.host && o.port == h.port && o.user == h.user)
        {
            return Err(CliError::plain(format!("{} is given twice", h.typed)));
        }
    }
    Ok(())
}

/// Refuses a template with a `{name}` it does not know.
fn check_template(flag: &str, template: &str, known: &[&str]) -> anyhow::Result<()> {
    let vars: Vec<(&str, &str)> = known.iter().map(|k| (*k, "x")).collect();
    layout::expand(template, &vars)
        .map(drop)
        .map_err(|e| CliError::plain(format!("{flag}: {e}")))
}

/// The SSH settings, with `--identity` and known_hosts read now.
fn ssh_options(args: &SshArgs, hosts: &[SshTarget]) -> anyhow::Result<ssh::SshOptions> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    if let Some(identity) = &args.identity {
        ssh::check_identity(identity)?;
    }
    let known_hosts = match (&args.known_hosts, &home) {
        (Some(file), _) => file.clone(),
        (None, Some(home)) => home.join(".ssh/known_hosts"),
        (None, None) => {
            return Err(CliError::plain(
                "HOME is not set, so there is no default known_hosts: pass --known-hosts FILE",
            ))
        }
    };
    let default_user = match target::local_user() {
        Some(user) => user,
        None if hosts.iter().all(|h| h.user.is_some()) => String::new(),
        None => {
            return Err(CliError::plain(
                "USER is not set: name the user of every host (USER@HOST)",
            ))
        }
    };
    Ok(ssh::SshOptions {
        identity: args.identity.clone(),
        known_hosts: known_hosts::KnownHostsFile::read(&known_hosts).map_err(CliError::plain)?,
        accept_new: args.accept_new_host_keys,
        timeout: args.ssh_timeout.into(),
        default_user,
        home,
    })
}

/// Finds, checks and hashes the binary to install.
fn binary(given: Option<&Path>) -> anyhow::Result<Binary> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => default_binary().ok_or_else(|| {
            CliError::hinted(
                "no circuitd next to this circuit, nor in PATH",
                "pass --binary PATH (cargo build --release makes target/release/circuitd)",
            )
        })?,
    };
    let arch = elf::arch_of(&path).map_err(CliError::plain)?;
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
        len += n as u64;
    }
    Ok(Binary {
        path,
        arch,
        sha256: host::hex(&sha2::Digest::finalize(hasher)),
        len,
    })
}

/// `circuitd` beside the running `circuit`, else the first in PATH.
fn default_binary() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("circuitd")));
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("circuitd"));
    beside.into_iter().chain(in_path).find(|p| p.is_file())
}

/// Prints the summary (a table, or JSON with `--json`) and the errors; the exit code says
/// whether every host succeeded.
fn summarize(ctx: &Ctx, reports: &[Report], uninstall: bool) -> anyhow::Result<ExitCode> {
    if ctx.json {
        output::json_list("hosts", reports)?;
    } else {
        table(reports, uninstall).print()?;
    }
    let failed: Vec<&Report> = reports.iter().filter(|r| r.error.is_some()).collect();
    for r in &failed {
        crate::error::print(&anyhow!(
            "{}: {}",
            r.host,
            r.error.as_deref().unwrap_or_default()
        ));
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    crate::error::print(&anyhow!(
        "{} of {} hosts failed",
        failed.len(),
        reports.len()
    ));
    Ok(ExitCode::FAILURE)
}

/// HOST NODE RESULT VERSION TIME (install) or HOST RESULT PREFIX TIME (uninstall).
fn table(reports: &[Report], uninstall: bool) -> Table {
    let mut table = if uninstall {
        Table::new(&["host", "result", "prefix", "time"])
    } else {
        Table::new(&["host", "node", "result", "version", "time"])
    };
    for r in reports {
        let time = format!("{:.1}s", r.seconds);
        let result = r.result.as_str().to_string();
        if uninstall {
            let prefix = r.prefix.clone().unwrap_or_else(|| "-".into());
            table.row(vec![r.host.clone(), result, prefix, time]);
            continue;
        }
        let now = version(r.version.as_deref(), r.sha256.as_deref());
        let version = match r.result {
            Outcome::Failed => "-".to_string(),
            Outcome::Upgraded => format!(
                "{} → {now}",
                version(r.previous_version.as_deref(), r.previous_sha256.as_deref())
            ),
            _ => now,
        };
        let node = r.node.clone().unwrap_or_else(|| "-".into());
        table.row(vec![r.host.clone(), node, result, version, time]);
    }
    table
}

/// `0.1.0 (3fa2c1d0)`: the version and the start of the binary's hash (builds of one version
/// differ).
fn version(version: Option<&str>, sha256: Option<&str>) -> String {
    let short = sha256.map(|h| &h[..h.len().min(8)]);
    match (version, short) {
        (Some(v), Some(h)) => format!("{v} ({h})"),
        (Some(v), None) => v.to_string(),
        (None, Some(h)) => format!("({h})"),
        (None, None) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, result: Outcome) -> Report {
        Report {
            host: host.into(),
            node: Some(host.trim_start_matches("root@").into()),
            result,
            version: Some("0.1.0".into()),
            sha256: Some("9f8e7d6c5b4a".into()),
            previous_version: Some("0.1.0".into()),
            previous_sha256: Some("ab12cd34ef56".into()),
            pid: Some(42),
            mode: Some(layout::Mode::Detached),
            prefix: Some("/opt/circuit".into()),
            advertise: Some("10.0.0.1:7711".into()),
            seconds: 3.25,
            error: None,
        }
    }

    #[test]
    fn the_summary_shows_what_changed() {
        let mut failed = report("root@h3", Outcome::Failed);
        (failed.node, failed.error) = (None, Some("cannot connect".into()));
        let reports = [
            report("root@h1", Outcome::Installed),
            report("root@h2", Outcome::Upgraded),
            failed,
        ];
        let want = "\
HOST      NODE   RESULT      VERSION                               TIME
root@h1   h1     installed   0.1.0 (9f8e7d6c)                      3.2s
root@h2   h2     upgraded    0.1.0 (ab12cd34) → 0.1.0 (9f8e7d6c)   3.2s
root@h3   -      failed      -                                     3.2s
";
        assert_eq!(table(&reports, false).render(), want);
        let want = "\
HOST      RESULT    PREFIX         TIME
root@h1   removed   /opt/circuit   3.2s
";
        assert_eq!(
            table(&[report("root@h1", Outcome::Removed)], true).render(),
            want
        );
    }

    #[test]
    fn a_host_given_twice_is_refused() {
        let hosts: Vec<SshTarget> = ["root@h1", "h2", "root@h1:22"]
            .iter()
            .map(|h| target::parse(h).unwrap())
            .collect();
        let err = check_hosts(&hosts).unwrap_err();
        assert_eq!(crate::error::render(&err), "root@h1:22 is given twice");
        assert!(check_hosts(&hosts[..2]).is_ok());
    }

    #[test]
    fn templates_name_known_variables_only() {
        assert!(check_template("--name", "{hostname}-x", &["host", "hostname"]).is_ok());
        let err = check_template("--name", "{ip}", &["host", "hostname"]).unwrap_err();
        assert!(crate::error::render(&err).starts_with("--name: "));
    }
}
