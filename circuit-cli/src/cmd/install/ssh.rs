//! One SSH session to a host (libssh2 through the `ssh2` crate): TCP connect with a timeout,
//! the host key checked against `known_hosts`, public-key authentication, running scripts and
//! uploading files. Blocking: each host runs on a thread of its own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use ssh2::{MethodType, Session};

use super::known_hosts::{self, KnownHostsFile, Verdict};
use super::remote::quote;
use super::target::SshTarget;

/// How to reach and trust hosts, the same for every host of a run.
#[derive(Debug)]
pub struct SshOptions {
    /// `--identity`: the only key tried when given.
    pub identity: Option<PathBuf>,
    /// `--known-hosts` (default `~/.ssh/known_hosts`).
    pub known_hosts: KnownHostsFile,
    /// `--accept-new-host-keys`: trust and record a host seen for the first time.
    pub accept_new: bool,
    /// `--ssh-timeout`: connect, handshake and authentication, and any wait for the host.
    pub timeout: Duration,
    /// The user for targets that name none.
    pub default_user: String,
    /// The home directory, for the default identities.
    pub home: Option<PathBuf>,
}

/// The result of a script.
#[derive(Debug)]
pub struct Output {
    /// Its exit code.
    pub status: i32,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// A connected, authenticated session.
pub struct Ssh {
    session: Session,
    /// The address the TCP connection reached: one that demonstrably reaches the host.
    pub peer: SocketAddr,
    /// Blocking calls wait this long at most (scripts that wait longer say so).
    timeout: Duration,
}

impl Ssh {
    /// Connects, checks the host key and logs in.
    pub fn connect(target: &SshTarget, opts: &SshOptions) -> anyhow::Result<Self> {
        let addr = target.connect_addr();
        let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", target.host))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, opts.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(stream) = stream else {
            let why = match last {
                Some(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    format!(
                        "no answer within {}",
                        humantime::format_duration(opts.timeout)
                    )
                }
                Some(e) => e.to_string(),
                None => "it resolves to no address".into(),
            };
            bail!("cannot connect to {addr}: {why}");
        };
        let peer = stream
            .peer_addr()
            .context("the connection has no peer address")?;

        let mut session = Session::new().context("cannot start an SSH session")?;
        session.set_timeout(millis(opts.timeout));
        // Ask for the key types known_hosts has for this host first, as ssh does, so a host
        // with several keys presents one we can check.
        let kh = &opts.known_hosts;
        let methods: Vec<&str> = kh
            .key_types(&session, &target.host, target.port)
            .iter()
            .flat_map(|t| known_hosts::hostkey_methods(t).iter().copied())
            .collect();
        if !methods.is_empty() {
            let _ = session.method_pref(MethodType::HostKey, &methods.join(","));
        }
        session.set_tcp_stream(stream);
        session.handshake().map_err(|e| {
            anyhow!(
                "SSH handshake with {addr} failed: {}",
                ssh_message(&e, opts.timeout)
            )
        })?;
        check_host_key(&session, target, opts)?;
        let user = target.user_or(&opts.default_user);
        authenticate(&session, user, target, opts)?;
        Ok(Self {
            session,
            peer,
            timeout: opts.timeout,
        })
    }

    /// Runs `script` with `sh -c`, waiting up to `wait` beyond the session timeout.
    pub fn run(&self, script: &str, wait: Duration) -> anyhow::Result<Output> {
        let limit = self.timeout + wait;
        self.session.set_timeout(millis(limit));
        let failed = |e: ssh2::Error| anyhow!("{}", ssh_message(&e, limit));
        let mut channel = self.session.channel_session().map_err(failed)?;
        channel
            .exec(&format!("sh -c {}", quote(script)))
            .map_err(failed)?;
        let mut stdout = Vec::new();
        channel
            .read_to_end(&mut stdout)
            .map_err(|e| io_message(e, limit))?;
        let mut stderr = Vec::new();
        channel
            .stderr()
            .read_to_end(&mut stderr)
            .map_err(|e| io_message(e, limit))?;
        channel.wait_close().map_err(failed)?;
        Ok(Output {
            status: channel.exit_status().map_err(failed)?,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Runs `script` and returns its stdout; a non-zero exit is an error with its stderr.
    pub fn run_ok(&self, script: &str, wait: Duration) -> anyhow::Result<String> {
        let out = self.run(script, wait)?;
        if out.status != 0 {
            let why = out.stderr.trim();
            if why.is_empty() {
                bail!("a remote command failed (exit code {})", out.status);
            }
            bail!("{why}");
        }
        Ok(out.stdout)
    }

    /// Writes `data` to `path` on the host (mode 0600 until changed), calling `progress`
    /// with each chunk's size.
    pub fn upload(
        &self,
        data: &mut dyn Read,
        path: &str,
        progress: &mut dyn FnMut(u64),
    ) -> anyhow::Result<()> {
        // A chunk should never take long; a stalled link fails after this.
        let limit = self.timeout.max(Duration::from_secs(60));
        self.session.set_timeout(millis(limit));
        let failed =
            |e: ssh2::Error| anyhow!("upload to {path} failed: {}", ssh_message(&e, limit));
        let mut channel = self.session.channel_session().map_err(failed)?;
        let command = format!("umask 077 && cat > {}", quote(path));
        channel
            .exec(&format!("sh -c {}", quote(&command)))
            .map_err(failed)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = data
                .read(&mut buf)
                .context("cannot read the file to upload")?;
            if n == 0 {
                break;
            }
            channel
                .write_all(&buf[..n])
                .map_err(|e| anyhow!("upload to {path} failed: {}", io_message(e, limit)))?;
            progress(n as u64);
        }
        channel.send_eof().map_err(failed)?;
        let mut stderr = String::new();
        let _ = channel.stderr().read_to_string(&mut stderr);
        channel.wait_close().map_err(failed)?;
        match channel.exit_status().map_err(failed)? {
            0 => Ok(()),
            code => bail!("cannot write {path} (exit code {code}): {}", stderr.trim()),
        }
    }
}

/// Checks the key the host presented against known_hosts: known passes, changed and revoked
/// never do, unknown only with `--accept-new-host-keys` (and is then recorded).
fn check_host_key(session: &Session, target: &SshTarget, opts: &SshOptions) -> anyhow::Result<()> {
    let (key, kind) = session
        .host_key()
        .ok_or_else(|| anyhow!("the host presented no host key"))?;
    let kh = &opts.known_hosts;
    let file = kh.path().display();
    let key_type = known_hosts::key_type_name(kind).unwrap_or("unknown");
    let fingerprint = known_hosts::fingerprint(key);
    let pattern = known_hosts::host_pattern(&target.host, target.port);
    match kh.check(session, &target.host, target.port, key) {
        Verdict::Known => Ok(()),
        Verdict::Changed {
            line,
            key_type: known_type,
        } => bail!(
            "HOST KEY MISMATCH for {pattern}: it presents {key_type} {fingerprint}, but {file} \
             line {line} has another {known_type} key for it. Someone may be intercepting the \
             connection; if the host was reinstalled, remove that line (ssh-keygen -R '{pattern}' \
             -f {file}) and run again with --accept-new-host-keys"
        ),
        Verdict::Revoked { line } => bail!(
            "the host key of {pattern} ({key_type} {fingerprint}) is revoked in {file} line {line}"
        ),
        Verdict::Unknown if opts.accept_new => kh
            .append(&target.host, target.port, kind, key)
            .map_err(|e| anyhow!(e)),
        Verdict::Unknown => bail!(
            "{pattern} is not in {file} (it presents {key_type} {fingerprint}) — check the \
             fingerprint and run again with --accept-new-host-keys to trust it, or add it with \
             ssh-keyscan"
        ),
    }
}

/// Public-key authentication: `--identity` alone when given; else every key of the ssh-agent,
/// then `~/.ssh/id_ed25519`, `id_ecdsa` and `id_rsa`.
fn authenticate(
    session: &Session,
    user: &str,
    target: &SshTarget,
    opts: &SshOptions,
) -> anyhow::Result<()> {
    let who = format!("{user}@{}", target.host);
    if let Some(identity) = &opts.identity {
        return session
            .userauth_pubkey_file(user, None, identity, None)
            .map_err(|e| {
                anyhow!(
                    "{who} refused the key {} ({}) — is its public key in {user}'s \
                     ~/.ssh/authorized_keys there? (a key with a passphrase must be loaded into \
                     ssh-agent instead)",
                    identity.display(),
                    e.message()
                )
            });
    }
    let mut tried = Vec::new();
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        if let Ok(n) = try_agent(session, user) {
            if session.authenticated() {
                return Ok(());
            }
            tried.push(format!("{n} key(s) of ssh-agent"));
        }
    }
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        let Some(path) = opts.home.as_ref().map(|h| h.join(".ssh").join(name)) else {
            break;
        };
        if !path.is_file() {
            continue;
        }
        if session
            .userauth_pubkey_file(user, None, &path, None)
            .is_ok()
        {
            return Ok(());
        }
        tried.push(path.display().to_string());
    }
    if tried.is_empty() {
        bail!("no SSH key to log in to {who} with: no ssh-agent, no ~/.ssh/id_ed25519, id_ecdsa or id_rsa — pass --identity FILE");
    }
    bail!(
        "{who} refused every key tried ({}) — pass --identity FILE, or add your public key to \
         {user}'s ~/.ssh/authorized_keys there",
        tried.join(", ")
    )
}

/// Tries each key of the ssh-agent; returns how many it had.
fn try_agent(session: &Session, user: &str) -> Result<usize, ssh2::Error> {
    let mut agent = session.agent()?;
    agent.connect()?;
    agent.list_identities()?;
    let identities = agent.identities()?;
    for identity in &identities {
        if agent.userauth(user, identity).is_ok() {
            break;
        }
    }
    let _ = agent.disconnect();
    Ok(identities.len())
}

/// Checks `--identity` before anything connects: a file that cannot be read is bad input.
pub fn check_identity(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .with_context(|| format!("cannot read the identity {}", path.display()))
}

/// libssh2's error as a sentence; a timeout says how long it waited.
fn ssh_message(e: &ssh2::Error, limit: Duration) -> String {
    if matches!(e.code(), ssh2::ErrorCode::Session(-9)) {
        return format!("no answer within {}", humantime::format_duration(limit));
    }
    e.message().to_string()
}

/// An I/O error of a channel as a sentence.
fn io_message(e: std::io::Error, limit: Duration) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::TimedOut || e.to_string().contains("Timed out") {
        return anyhow!("no answer within {}", humantime::format_duration(limit));
    }
    anyhow!("{e}")
}

/// A duration as libssh2's millisecond timeout (0 would mean none).
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}
