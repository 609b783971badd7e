//! What an install puts on a host: the paths under the prefix, circuitd's config file, the
//! systemd unit, and which of systemd or a detached daemon runs it. Pure text, unit-tested.

use serde::Serialize;

/// The prefix when the SSH user is root.
pub const ROOT_PREFIX: &str = "/opt/circuit";

/// The prefix for any other user, under their home directory.
pub const USER_PREFIX: &str = ".local/circuit";

/// Where systemd units go.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// The file that marks a prefix as made by `circuit install`; `uninstall` removes only such.
pub const MARKER: &str = ".circuit-install";

/// Above this size the detached daemon's log is moved to `circuitd.log.1` when it (re)starts.
pub const LOG_ROTATE_BYTES: u64 = 10 << 20;

/// Every path of an install, under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The absolute prefix, without a trailing slash.
    pub prefix: String,
}

impl Layout {
    /// The layout under `prefix` (already validated).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// The daemon binary.
    pub fn binary(&self) -> String {
        self.path("bin/circuitd")
    }

    /// circuitd's config file.
    pub fn config(&self) -> String {
        self.path("etc/circuitd.toml")
    }

    /// The cluster key (0600).
    pub fn key(&self) -> String {
        self.path("etc/cluster.key")
    }

    /// The data dir: job table, channel table, worker logs.
    pub fn data(&self) -> String {
        self.path("data")
    }

    /// The Unix socket (in a 0700 directory).
    pub fn socket(&self) -> String {
        self.path("run/circuitd.sock")
    }

    /// The pidfile circuitd writes (`--pidfile`).
    pub fn pidfile(&self) -> String {
        self.path("run/circuitd.pid")
    }

    /// The detached daemon's stderr.
    pub fn log(&self) -> String {
        self.path("log/circuitd.log")
    }
}

/// Checks a prefix: absolute, normalised, at least two levels deep (never `/` or `/opt`), and
/// only characters that need no quoting in a unit file or a shell.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("the prefix \"{prefix}\" {why}"));
    if !prefix.starts_with('/') {
        return bad("is not an absolute path");
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/._-+@".contains(*c)))
    {
        return bad(&format!(
            "contains {c:?}: use letters, digits and . _ - + @ only"
        ));
    }
    let parts: Vec<&str> = prefix[1..].split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return bad("is not normalised (an empty, . or .. component, or a trailing slash)");
    }
    if parts.len() < 2 {
        return bad(
            "is a top-level directory: uninstall removes the prefix, so give it a directory of \
             its own (like /opt/circuit)",
        );
    }
    Ok(())
}

/// The systemd unit of a prefix: `circuitd.service` for the default one, else a name derived
/// from the prefix (`/srv/c1` → `circuitd-srv-c1.service`), so several prefixes do not collide.
pub fn unit_name(prefix: &str) -> String {
    if prefix == ROOT_PREFIX {
        return "circuitd.service".into();
    }
    let escaped: String = prefix
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("circuitd-{escaped}.service")
}

/// How the daemon is run on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A systemd unit (`Restart=on-failure`), enabled at boot.
    Systemd,
    /// Started with `setsid` by the installer; not restarted if it dies, not started at boot.
    Detached,
}

impl Mode {
    /// systemd when the SSH user is root and systemd runs the host (`/run/systemd/system` is
    /// a directory), unless `--no-systemd`.
    pub fn choose(uid: u32, has_systemd: bool, no_systemd: bool) -> Self {
        if uid == 0 && has_systemd && !no_systemd {
            Self::Systemd
        } else {
            Self::Detached
        }
    }
}

/// The unit file for an install.
pub fn unit_text(layout: &Layout) -> String {
    format!(
        "# Written by `circuit install`; the next install overwrites it, `circuit uninstall` removes it.\n\
         [Unit]\n\
         Description=circuit daemon ({prefix})\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={binary} --config {config}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         # SIGTERM to circuitd alone: it stops its workers itself, then exits.\n\
         KillMode=mixed\n\
         TimeoutStopSec=60\n\
         LimitNOFILE=65536\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        prefix = layout.prefix,
        binary = layout.binary(),
        config = layout.config(),
    )
}

/// circuitd's config file: its keys are circuitd's long flag names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DaemonConfig {
    /// Node name.
    pub name: String,
    /// `0.0.0.0:PORT`.
    pub listen: String,
    /// The address other nodes and the installer reach this node at.
    pub advertise: String,
    /// Nodes to join through.
    pub join: Vec<String>,
    /// `k=v` labels.
    pub label: Vec<String>,
    /// The uploaded cluster key.
    pub key_file: String,
    /// Under the prefix.
    pub data_dir: String,
    /// Under the prefix.
    pub socket: String,
    /// Under the prefix; how the installer finds the daemon's pid.
    pub pidfile: String,
}

impl DaemonConfig {
    /// The file's text: a header comment, then the keys in a fixed order (so an unchanged
    /// install writes the same bytes and is seen as unchanged).
    pub fn render(&self) -> String {
        let body = toml::to_string(self).expect("a config of strings serialises");
        format!(
            "# circuitd configuration, written by `circuit install`: the next install \
             overwrites it.\n{body}"
        )
    }
}

/// Expands `{host}` (the host as typed, without user and port) and `{hostname}` (the host's
/// own name) in `--name`, and `{ip}` in `--advertise`. An unknown `{...}` is an error.
pub fn expand(template: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("\"{template}\" has a \"{{\" without \"}}\""))?;
        let var = &after[..close];
        let value = vars
            .iter()
            .find(|(name, _)| *name == var)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let known: Vec<String> = vars.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                format!(
                    "\"{template}\" uses {{{var}}}: only {} are known",
                    known.join(", ")
                )
            })?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variable names a template uses.
pub fn placeholders(template: &str) -> Vec<&str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(v, _)| v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_live_under_the_prefix() {
        let l = Layout::new("/opt/circuit");
        assert_eq!(l.binary(), "/opt/circuit/bin/circuitd");
        assert_eq!(l.config(), "/opt/circuit/etc/circuitd.toml");
        assert_eq!(l.key(), "/opt/circuit/etc/cluster.key");
        assert_eq!(l.data(), "/opt/circuit/data");
        assert_eq!(l.socket(), "/opt/circuit/run/circuitd.sock");
        assert_eq!(l.pidfile(), "/opt/circuit/run/circuitd.pid");
        assert_eq!(l.log(), "/opt/circuit/log/circuitd.log");
    }

    #[test]
    fn prefixes_must_be_absolute_normal_and_deep_enough() {
        for good in ["/opt/circuit", "/home/me/.local/circuit", "/srv/c-1/x_y"] {
            assert_eq!(validate_prefix(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("opt/circuit", "absolute"),
            ("/", "normalised"),
            ("/opt", "top-level"),
            ("/opt/circuit/", "normalised"),
            ("/opt//circuit", "normalised"),
            ("/opt/../etc", "normalised"),
            ("/opt/my circuit", "' '"),
            ("/opt/c$x", "'$'"),
        ] {
            let err = validate_prefix(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn systemd_only_for_root_on_systemd_hosts() {
        assert_eq!(Mode::choose(0, true, false), Mode::Systemd);
        assert_eq!(Mode::choose(0, true, true), Mode::Detached);
        assert_eq!(Mode::choose(0, false, false), Mode::Detached);
        assert_eq!(Mode::choose(1000, true, false), Mode::Detached);
    }

    #[test]
    fn units_are_named_by_prefix_and_run_the_config() {
        assert_eq!(unit_name("/opt/circuit"), "circuitd.service");
        assert_eq!(unit_name("/srv/c1"), "circuitd-srv-c1.service");
        assert_eq!(
            unit_name("/opt/circuit-b"),
            "circuitd-opt-circuit-b.service"
        );
        let text = unit_text(&Layout::new("/opt/circuit"));
        let want = "\
[Service]
ExecStart=/opt/circuit/bin/circuitd --config /opt/circuit/etc/circuitd.toml
Restart=on-failure
";
        assert!(text.contains(want), "{text}");
        assert!(text.contains("KillMode=mixed\n") && text.contains("WantedBy=multi-user.target\n"));
    }

    #[test]
    fn the_config_names_every_path_and_peer() {
        let l = Layout::new("/opt/circuit");
        let config = DaemonConfig {
            name: "h1".into(),
            listen: "0.0.0.0:7711".into(),
            advertise: "10.0.0.1:7711".into(),
            join: vec!["10.0.0.2:7711".into(), "10.0.0.3:7711".into()],
            label: vec!["zone=a".into()],
            key_file: l.key(),
            data_dir: l.data(),
            socket: l.socket(),
            pidfile: l.pidfile(),
        };
        let text = config.render();
        let body = text.split_once('\n').unwrap().1;
        assert_eq!(
            body,
            "name = \"h1\"\n\
             listen = \"0.0.0.0:7711\"\n\
             advertise = \"10.0.0.1:7711\"\n\
             join = [\"10.0.0.2:7711\", \"10.0.0.3:7711\"]\n\
             label = [\"zone=a\"]\n\
             key-file = \"/opt/circuit/etc/cluster.key\"\n\
             data-dir = \"/opt/circuit/data\"\n\
             socket = \"/opt/circuit/run/circuitd.sock\"\n\
             pidfile = \"/opt/circuit/run/circuitd.pid\"\n"
        );
        let parsed: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(parsed["join"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn templates_expand_known_names_only() {
        let vars = [("host", "10.0.0.1"), ("hostname", "h1")];
        assert_eq!(expand("{hostname}", &vars).as_deref(), Ok("h1"));
        assert_eq!(expand("node-{host}", &vars).as_deref(), Ok("node-10.0.0.1"));
        assert_eq!(expand("plain", &vars).as_deref(), Ok("plain"));
        assert!(expand("{ip}", &vars)
            .unwrap_err()
            .contains("{host}, {hostname}"));
        assert!(expand("{host", &vars).is_err());
        assert_eq!(placeholders("{ip}:{port}x"), ["ip", "port"]);
    }
}
