//! The shell scripts an install runs on a host (POSIX `sh`, each run as `sh -c SCRIPT` over
//! one SSH channel) and what their output means. Parameters are set as quoted variables at
//! the top; nothing else is interpolated. Scripts print `key=value` lines on stdout and say
//! why they failed on stderr.

use std::collections::BTreeMap;
use std::time::Duration;

use super::layout::{Layout, LOG_ROTATE_BYTES, MARKER, UNIT_DIR};

/// Quotes `s` for a POSIX shell: `'...'`, with `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Shell functions every script may use; `P` is the prefix and `UNIT` the unit name.
const FUNCTIONS: &str = r#"
fail() { echo "$*" >&2; exit 1; }
nap() { sleep 0.1 2>/dev/null || sleep 1; }
# alive PID: the process exists and is not a zombie.
alive() {
  s=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
  [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
# ours PID: it runs a binary from the prefix's bin/ (a replaced one shows as "(deleted)").
ours() {
  e=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  r=$(cd "$P" 2>/dev/null && pwd -P) || r=$P
  case "$e" in "$P/bin/"*|"$r/bin/"*) return 0 ;; *) return 1 ;; esac
}
# daemon_pid: prints the pid of our running circuitd (from its pidfile), if there is one.
daemon_pid() {
  pid=$(cat "$P/run/circuitd.pid" 2>/dev/null) || return 1
  case "$pid" in '' | *[!0-9]*) return 1 ;; esac
  alive "$pid" && ours "$pid" && echo "$pid"
}
# has_unit: our systemd unit is installed and systemd runs (root only).
has_unit() { [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ] && [ -f "$UD/$UNIT" ]; }
"#;

/// A script: `set -u`, the variables, the functions, then `body`.
fn script(vars: &[(&str, &str)], body: &str) -> String {
    let mut s = String::from("set -u\n");
    for (name, value) in vars {
        s.push_str(&format!("{name}={}\n", quote(value)));
    }
    s.push_str(&format!("UD={}\n", quote(UNIT_DIR)));
    s.push_str(FUNCTIONS);
    s.push_str(body);
    s
}

/// Asks a host what it is and what is installed at the prefix (`""`: the default prefix,
/// resolved there: `/opt/circuit` for root, else `$HOME/.local/circuit`).
pub fn probe(prefix: &str, unit: &str) -> String {
    let body = format!(
        r#"
if [ -z "$P" ]; then
  if [ "$(id -u)" = 0 ]; then P={root}; else P="${{HOME:-}}/{user}"; fi
fi
echo "os=$(uname -s)"
echo "arch=$(uname -m)"
echo "hostname=$(uname -n)"
echo "uid=$(id -u)"
echo "prefix=$P"
[ -d /run/systemd/system ] && echo systemd=yes
command -v setsid >/dev/null 2>&1 && echo setsid=yes
if command -v sha256sum >/dev/null 2>&1; then
  echo sha256sum=yes
  for f in binary:bin/circuitd config:etc/circuitd.toml key:etc/cluster.key; do
    [ -f "$P/${{f#*:}}" ] && echo "hash.${{f%%:*}}=$(sha256sum < "$P/${{f#*:}}" | cut -d' ' -f1)"
  done
  has_unit && echo "hash.unit=$(sha256sum < "$UD/$UNIT" | cut -d' ' -f1)"
fi
if [ -e "$P" ]; then
  echo exists=yes
  [ -d "$P" ] || echo notdir=yes
  [ -z "$(ls -A "$P" 2>/dev/null)" ] && echo empty=yes
fi
[ -f "$P/{marker}" ] && echo marker=yes
[ -x "$P/bin/circuitd" ] && echo "version=$("$P/bin/circuitd" --version 2>/dev/null | head -n 1)"
pid=$(daemon_pid) && echo "pid=$pid"
exit 0
"#,
        root = super::layout::ROOT_PREFIX,
        user = super::layout::USER_PREFIX,
        marker = MARKER,
    );
    script(&[("P", prefix), ("UNIT", unit)], &body)
}

/// What [`probe`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `uname -s`.
    pub os: String,
    /// `uname -m`.
    pub arch: String,
    /// `uname -n`: the host's own name.
    pub hostname: String,
    /// The SSH user's uid.
    pub uid: u32,
    /// The prefix, resolved.
    pub prefix: String,
    /// systemd runs the host.
    pub systemd: bool,
    /// `setsid` is installed.
    pub setsid: bool,
    /// `sha256sum` is installed.
    pub sha256sum: bool,
    /// Something is at the prefix.
    pub exists: bool,
    /// ... and it is not a directory.
    pub not_dir: bool,
    /// ... and it is an empty directory.
    pub empty: bool,
    /// Our marker is there.
    pub marker: bool,
    /// SHA-256 of what is installed, by file: `binary`, `config`, `key`, `unit`.
    pub hashes: BTreeMap<String, String>,
    /// `circuitd --version` of the installed binary.
    pub version: Option<String>,
    /// The pid of our circuitd, running.
    pub pid: Option<u32>,
}

impl Facts {
    /// Parses [`probe`]'s output.
    pub fn parse(out: &str) -> Result<Self, String> {
        let kv: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
        let yes = |k: &str| kv.get(k) == Some(&"yes");
        let get = |k: &str| kv.get(k).map(|v| v.trim().to_string());
        let uid = get("uid")
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| format!("the host's answer to the probe makes no sense: {out:?}"))?;
        Ok(Self {
            os: get("os").unwrap_or_default(),
            arch: get("arch").unwrap_or_default(),
            hostname: get("hostname").unwrap_or_default(),
            uid,
            prefix: get("prefix").unwrap_or_default(),
            systemd: yes("systemd"),
            setsid: yes("setsid"),
            sha256sum: yes("sha256sum"),
            exists: yes("exists"),
            not_dir: yes("notdir"),
            empty: yes("empty"),
            marker: yes("marker"),
            hashes: kv
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("hash.")?.to_string(), v.to_string())))
                .collect(),
            version: get("version")
                .filter(|v| !v.is_empty())
                .map(|v| v.rsplit(' ').next().unwrap_or_default().to_string()),
            pid: get("pid").and_then(|p| p.parse().ok()),
        })
    }

    /// The hash of an installed file, if it is there.
    pub fn hash(&self, file: &str) -> Option<&str> {
        self.hashes.get(file).map(String::as_str)
    }
}

/// Creates the prefix's directories and the marker.
pub fn prepare(layout: &Layout, unit: &str) -> String {
    let body = format!(
        r##"
umask 022
mkdir -p "$P/bin" "$P/etc" "$P/data" "$P/run" "$P/log" || fail "cannot create the directories under $P"
chmod 700 "$P/etc" "$P/data" "$P/run" "$P/log" || exit 1
printf '%s\n' "# made by circuit install: circuit uninstall removes this directory" "unit=$UNIT" \
  > "$P/{MARKER}" || fail "cannot write $P/{MARKER}"
"##
    );
    script(&[("P", &layout.prefix), ("UNIT", unit)], &body)
}

/// An uploaded file: where it was written, where it goes, what it must hash to, its mode.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Its name in messages (`circuitd`, `the config`).
    pub what: String,
    /// The temp path it was uploaded to.
    pub temp: String,
    /// Its final path.
    pub path: String,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Its mode, octal (`755`).
    pub mode: &'static str,
}

/// Checks the uploaded temp files against their hashes and sets their modes.
pub fn verify(files: &[Staged]) -> String {
    let mut body = String::new();
    for f in files {
        body.push_str(&format!(
            "[ \"$(sha256sum < {temp} | cut -d' ' -f1)\" = {hash} ] || fail {msg}\n\
             chmod {mode} {temp} || exit 1\n",
            temp = quote(&f.temp),
            hash = quote(&f.sha256),
            msg = quote(&format!(
                "the uploaded {} does not match its SHA-256: the upload was damaged",
                f.what
            )),
            mode = f.mode,
        ));
    }
    script(&[], &body)
}

/// Renames the uploaded temp files over the installed ones (a running binary is never
/// written in place).
pub fn place(files: &[Staged]) -> String {
    let mut body = String::new();
    for f in files {
        body.push_str(&format!(
            "mv -f {} {} || fail {}\n",
            quote(&f.temp),
            quote(&f.path),
            quote(&format!("cannot move {} into place", f.what))
        ));
    }
    script(&[], &body)
}

/// Stops the daemon: `systemctl stop` if our unit is there (and removes the unit when
/// `remove_unit`), then SIGTERM to the pid in the pidfile if it is still our circuitd, SIGKILL
/// after `grace`. Prints `stopped=PID` / `killed=PID`.
pub fn stop(layout: &Layout, unit: &str, remove_unit: bool, grace: Duration) -> String {
    let body = format!("{}exit 0\n", stop_body(remove_unit, grace));
    script(&[("P", &layout.prefix), ("UNIT", unit)], &body)
}

/// The body of [`stop`], shared with [`uninstall`].
fn stop_body(remove_unit: bool, grace: Duration) -> String {
    format!(
        r#"
if has_unit; then
  systemctl stop "$UNIT" || fail "systemctl stop $UNIT failed"
  if [ {remove} = yes ]; then
    systemctl disable "$UNIT" >/dev/null 2>&1
    rm -f "$UD/$UNIT" && systemctl daemon-reload
  fi
fi
if pid=$(daemon_pid); then
  kill -TERM "$pid" 2>/dev/null
  end=$(( $(date +%s) + {grace} ))
  while alive "$pid"; do
    if [ "$(date +%s)" -ge "$end" ]; then
      kill -KILL "$pid" 2>/dev/null
      echo "killed=$pid"
      end=$(( $(date +%s) + 10 ))
      while alive "$pid" && [ "$(date +%s)" -lt "$end" ]; do nap; done
      alive "$pid" && fail "circuitd (pid $pid) survived SIGKILL"
      break
    fi
    nap
  done
  echo "stopped=$pid"
fi
"#,
        remove = if remove_unit { "yes" } else { "no" },
        grace = grace.as_secs().max(1),
    )
}

/// Waits up to `deadline` seconds for the daemon to write its pidfile: prints `pid=PID`.
const WAIT_PIDFILE: &str = r#"
end=$(( $(date +%s) + DEADLINE ))
while :; do
  if pid=$(daemon_pid); then echo "pid=$pid"; exit 0; fi
  started_and_died && fail_with_log "circuitd exited as it started"
  [ "$(date +%s)" -ge "$end" ] && fail_with_log "circuitd wrote no pidfile within DEADLINE s"
  nap
done
"#;

/// Starts the daemon detached from the SSH session (`setsid`, stdin `/dev/null`, stdout and
/// stderr appended to the log, which is first moved to `circuitd.log.1` if it is over
/// [`LOG_ROTATE_BYTES`]) and waits for its pidfile.
pub fn start_detached(layout: &Layout, deadline: Duration) -> String {
    let body = format!(
        r#"
command -v setsid >/dev/null 2>&1 || fail "setsid is not installed on this host (util-linux)"
if [ -f "$L" ] && [ "$(wc -c < "$L")" -gt {rotate} ]; then mv -f "$L" "$L.1"; fi
cd / || exit 1
setsid "$P/bin/circuitd" --config "$P/etc/circuitd.toml" < /dev/null >> "$L" 2>&1 &
child=$!
started_and_died() {{ ! alive "$child"; }}
fail_with_log() {{ echo "$1; the end of $L:" >&2; tail -n 20 "$L" >&2; exit 1; }}
{wait}"#,
        rotate = LOG_ROTATE_BYTES,
        wait = WAIT_PIDFILE.replace("DEADLINE", &deadline.as_secs().max(1).to_string()),
    );
    script(&[("P", &layout.prefix), ("L", &layout.log())], &body)
}

/// Reloads systemd, enables the unit and (re)starts it, then waits for the pidfile.
pub fn start_systemd(layout: &Layout, unit: &str, deadline: Duration) -> String {
    let body = format!(
        r#"
systemctl daemon-reload || fail "systemctl daemon-reload failed"
systemctl enable "$UNIT" >/dev/null 2>&1 || fail "systemctl enable $UNIT failed"
systemctl restart "$UNIT" || fail "systemctl restart $UNIT failed"
started_and_died() {{ systemctl is-failed --quiet "$UNIT"; }}
fail_with_log() {{ echo "$1; journalctl -u $UNIT says:" >&2; journalctl -u "$UNIT" -n 20 --no-pager >&2; exit 1; }}
{wait}"#,
        wait = WAIT_PIDFILE.replace("DEADLINE", &deadline.as_secs().max(1).to_string()),
    );
    script(&[("P", &layout.prefix), ("UNIT", unit)], &body)
}

/// Prints the last lines the daemon logged (its log file, or the journal under systemd).
pub fn log_tail(layout: &Layout, unit: &str) -> String {
    let body = r#"
if has_unit; then journalctl -u "$UNIT" -n 20 --no-pager 2>&1; else tail -n 20 "$L" 2>&1; fi
exit 0
"#;
    script(
        &[("P", &layout.prefix), ("UNIT", unit), ("L", &layout.log())],
        body,
    )
}

/// Stops the daemon, removes the unit and the prefix. Prints `absent=yes` when there was
/// nothing, `removed=yes` when done; refuses a prefix without our marker.
pub fn uninstall(layout: &Layout, unit: &str, grace: Duration) -> String {
    let stop_body = stop_body(true, grace);
    let body = format!(
        r#"
if [ ! -e "$P" ] && [ ! -L "$P" ]; then
  has_unit && fail "$P is gone but $UD/$UNIT is still there: remove it by hand"
  echo absent=yes
  exit 0
fi
[ -d "$P" ] && [ -f "$P/{MARKER}" ] || fail "$P was not made by circuit install (no $P/{MARKER}): not removed"
{stop_body}
rm -rf -- "$P" || fail "cannot remove $P"
echo removed=yes
"#,
    );
    script(&[("P", &layout.prefix), ("UNIT", unit)], &body)
}

/// The `key=value` lines of a script's output.
pub fn values(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn quoting_survives_a_shell() {
        for s in ["plain", "it's", "a b", "$(x) `y` \\ \"z\"", ""] {
            let out = Command::new("sh")
                .args(["-c", &format!("printf %s {}", quote(s))])
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }

    #[test]
    fn probe_output_parses() {
        let out = "os=Linux\narch=x86_64\nhostname=h1\nuid=0\nprefix=/opt/circuit\nsystemd=yes\n\
                   setsid=yes\nsha256sum=yes\nhash.binary=ab\nhash.key=cd\nexists=yes\nmarker=yes\n\
                   version=circuitd 0.1.0\npid=42\n";
        let f = Facts::parse(out).expect("parse");
        assert_eq!(
            (f.os.as_str(), f.arch.as_str(), f.hostname.as_str()),
            ("Linux", "x86_64", "h1")
        );
        assert_eq!((f.uid, f.prefix.as_str()), (0, "/opt/circuit"));
        assert!(f.systemd && f.setsid && f.sha256sum && f.exists && f.marker && !f.empty);
        assert_eq!(
            (f.hash("binary"), f.hash("key"), f.hash("config")),
            (Some("ab"), Some("cd"), None)
        );
        assert_eq!((f.version.as_deref(), f.pid), (Some("0.1.0"), Some(42)));
        assert!(Facts::parse("garbage").is_err());
    }

    /// The scripts run against a temp dir with this machine's `sh`: the probe of nothing, a
    /// prepared prefix, and the refusal to remove a directory that is not ours.
    #[test]
    fn scripts_run_in_a_real_shell() {
        let dir = std::env::temp_dir().join(format!("circuit-remote-{}", std::process::id()));
        let prefix = dir.join("circuit").to_string_lossy().into_owned();
        let layout = Layout::new(&prefix);
        let sh = |script: &str| {
            let out = Command::new("sh")
                .args(["-c", script])
                .output()
                .expect("sh");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, out, err) = sh(&probe(&prefix, "circuitd-x.service"));
        assert!(ok, "{err}");
        let facts = Facts::parse(&out).expect("facts");
        assert!(
            !facts.exists && !facts.marker && facts.pid.is_none(),
            "{out}"
        );
        assert_eq!(facts.prefix, prefix);

        let (ok, _, err) = sh(&prepare(&layout, "circuitd-x.service"));
        assert!(ok, "{err}");
        let (_, out, _) = sh(&probe(&prefix, "circuitd-x.service"));
        let facts = Facts::parse(&out).expect("facts");
        assert!(facts.exists && facts.marker && !facts.empty, "{out}");

        let other = dir.join("other");
        std::fs::create_dir_all(&other).expect("mkdir");
        let (ok, _, err) = sh(&uninstall(
            &Layout::new(&other.to_string_lossy()),
            "u",
            Duration::from_secs(1),
        ));
        assert!(!ok && err.contains("not made by circuit install"), "{err}");
        assert!(other.exists());

        let (ok, out, err) = sh(&uninstall(
            &layout,
            "circuitd-x.service",
            Duration::from_secs(1),
        ));
        assert!(ok && out.contains("removed=yes"), "{out}{err}");
        assert!(!std::path::Path::new(&prefix).exists());
        let (ok, out, _) = sh(&uninstall(
            &layout,
            "circuitd-x.service",
            Duration::from_secs(1),
        ));
        assert!(ok && out.contains("absent=yes"), "{out}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
