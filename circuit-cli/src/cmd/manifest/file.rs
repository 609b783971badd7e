//! The manifest as written: the TOML tables, read with their spans. Each value is checked
//! where it is read (names, durations, sizes, signals, restart policies), so that a bad value
//! is reported at its own line; the checks across values are in `validate.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use circuit_sdk::proto::{RestartPolicy, MAX_CHAN_NAME};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::parse;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Marks the workers this manifest owns [default: the file's stem].
    pub name: Option<WorkerName>,
    /// `[channels.NAME]` tables.
    #[serde(default)]
    pub channels: BTreeMap<Spanned<ChanName>, Spanned<ChannelTable>>,
    /// `[workers.NAME]` tables.
    #[serde(default)]
    pub workers: BTreeMap<Spanned<WorkerName>, Spanned<WorkerTable>>,
}

/// `[channels.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChannelTable {
    /// Values held before a send waits; 0 is a rendezvous channel, as `circuit chan create`.
    #[serde(default)]
    pub capacity: u64,
    /// The node that owns it [default: the node the CLI talks to].
    pub node: Option<NodeName>,
    /// 1 (one owner), or 3 or 5: replicated through Raft on that many nodes.
    pub replicas: Option<Spanned<u32>>,
    /// Replicas only on nodes with all of these labels.
    pub replica_labels: Option<Spanned<BTreeMap<LabelKey, String>>>,
    /// Where a replicated channel keeps its log: `memory` (the default).
    pub storage: Option<Spanned<String>>,
}

/// `[workers.NAME]`: the keys mirror the flags of `circuit spawn`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkerTable {
    /// A path, or a name looked up in `PATH` on the node.
    pub command: Spanned<Text>,
    /// Arguments after the command.
    #[serde(default)]
    pub args: Vec<Text>,
    /// Copies named NAME-1..N (NAME alone when 1).
    pub replicas: Option<Spanned<u32>>,
    /// Run on this node.
    pub node: Option<Spanned<NodeName>>,
    /// Run on a node with all of these labels (exclusive with `node`).
    pub node_labels: Option<Spanned<BTreeMap<LabelKey, String>>>,
    /// A policy, or a table with the policy and its timing.
    pub restart: Option<Spanned<Restart>>,
    /// Channel bindings: `out = "docs"` gives the worker `CIRCUIT_CHAN_OUT=docs`.
    #[serde(default)]
    pub channels: BTreeMap<Spanned<Binding>, Spanned<ChanName>>,
    /// Environment variables; they win over `env-file`.
    #[serde(default)]
    pub env: BTreeMap<EnvKey, Text>,
    /// Files of `KEY=VALUE` lines, relative to the manifest's directory (a later one wins).
    pub env_file: Option<Spanned<Paths>>,
    /// Start from an empty environment plus `env` instead of the daemon's.
    #[serde(default)]
    pub env_replace: bool,
    /// Working directory [default: the daemon's].
    pub cwd: Option<Spanned<Text>>,
    /// The worker's own labels.
    #[serde(default)]
    pub labels: BTreeMap<Spanned<LabelKey>, String>,
    /// Signal that stops it.
    pub stop_signal: Option<SignalName>,
    /// Time between the stop signal and SIGKILL (`stop-timeout`, as the spawn flag, works too).
    #[serde(alias = "stop-timeout")]
    pub stop_grace: Option<Dur>,
    /// Rotate the log at this size (4096, "512K", "10M").
    pub log_max_size: Option<Size>,
    /// Rotated log files to keep.
    pub log_max_files: Option<u32>,
    /// Give the worker a pipe as stdin, for `circuit stdin` (`/dev/null` otherwise).
    #[serde(default)]
    pub stdin: bool,
}

/// `restart = "on-failure"` or `restart = { policy = "on-failure", max-restarts = 5, ... }`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restart {
    /// When to restart.
    pub policy: RestartPolicy,
    /// The timing, each key named as the `circuit spawn` flag; absent ones take its defaults.
    pub timing: RestartTiming,
}

/// The timing keys of a restart table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RestartTiming {
    /// First delay before a restart.
    pub backoff: Option<Dur>,
    /// Largest delay before a restart.
    pub backoff_max: Option<Dur>,
    /// A run at least this long resets the delay.
    pub stable_after: Option<Dur>,
    /// Give up after this many restarts within `restart-window`; 0 never gives up.
    pub max_restarts: Option<u32>,
    /// The window of `max-restarts`.
    pub restart_window: Option<Dur>,
}

/// A restart table as written: the policy and the timing side by side.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RestartTable {
    policy: Policy,
    backoff: Option<Dur>,
    backoff_max: Option<Dur>,
    stable_after: Option<Dur>,
    max_restarts: Option<u32>,
    restart_window: Option<Dur>,
}

impl<'de> Deserialize<'de> for Restart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RestartVisitor;
        impl<'de> Visitor<'de> for RestartVisitor {
            type Value = Restart;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a restart policy (never, on-failure, always) or a table like \
                     { policy = \"on-failure\", max-restarts = 5, backoff = \"500ms\" }",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Restart, E> {
                Ok(Restart {
                    policy: s.parse().map_err(E::custom)?,
                    timing: RestartTiming::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Restart, A::Error> {
                let table = RestartTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Restart {
                    policy: table.policy.0,
                    timing: RestartTiming {
                        backoff: table.backoff,
                        backoff_max: table.backoff_max,
                        stable_after: table.stable_after,
                        max_restarts: table.max_restarts,
                        restart_window: table.restart_window,
                    },
                })
            }
        }
        d.deserialize_any(RestartVisitor)
    }
}

/// One path or an array of them: `env-file = "app.env"`, `env-file = ["base.env", "app.env"]`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Paths(pub Vec<String>);

impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PathsVisitor;
        impl<'de> Visitor<'de> for PathsVisitor {
            type Value = Paths;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path, or an array of paths")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Paths, E> {
                path(s).map_err(E::custom)?;
                Ok(Paths(vec![s.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Paths, A::Error> {
                let mut paths = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    path(&p).map_err(de::Error::custom)?;
                    paths.push(p);
                }
                Ok(Paths(paths))
            }
        }
        d.deserialize_any(PathsVisitor)
    }
}

fn path(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a path cannot be empty".into());
    }
    text(s)
}

/// A restart policy by name.
struct Policy(RestartPolicy);

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Policy).map_err(de::Error::custom)
    }
}

/// A duration: `"500ms"`, `"10s"`, `"1m30s"` (a bare number in a string is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    /// Whole milliseconds, as the protocol carries them.
    pub fn millis(self) -> u64 {
        parse::millis(self.0)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DurVisitor;
        impl Visitor<'_> for DurVisitor {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration in a string, like \"500ms\", \"10s\" or \"1m30s\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse::duration(s)
                    .map(|d| Dur(d.into()))
                    .map_err(|why| E::custom(format!("invalid duration \"{s}\": {why}")))
            }
        }
        d.deserialize_any(DurVisitor)
    }
}

/// A byte size: a number of bytes, or a string with a unit (`"512K"`, `"10M"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: a number of bytes, or a string like \"512K\" or \"10M\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse::bytes(s).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

/// A string checked when it is read; `check` says what is wrong with a bad one.
macro_rules! checked_string {
    ($(#[$doc:meta])* $ty:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $ty(pub String);

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $check(&s).map_err(de::Error::custom)?;
                Ok(Self(s))
            }
        }
    };
}

checked_string!(
    /// A worker name (and a manifest name): circuitd's rule.
    WorkerName,
    worker_name
);
checked_string!(
    /// A channel name: circuitd's rule.
    ChanName,
    chan_name
);
checked_string!(
    /// A node name: not empty, no whitespace.
    NodeName,
    node_name
);
checked_string!(
    /// A channel binding, which becomes `CIRCUIT_CHAN_<BINDING>`.
    Binding,
    binding
);
checked_string!(
    /// An environment variable's name.
    EnvKey,
    env_key
);
checked_string!(
    /// A label key.
    LabelKey,
    label_key
);
checked_string!(
    /// A stop signal: a name (`TERM`, `SIGINT`, `hup`) or a number.
    SignalName,
    signal
);
checked_string!(
    /// Text passed to a process (command, argument, value): no NUL bytes.
    Text,
    text
);

/// circuitd's rule for worker names (the SDK's, which the daemon applies too).
pub fn worker_name(name: &str) -> Result<(), String> {
    circuit_sdk::proto::validate_worker_name(name)
}

fn chan_name(name: &str) -> Result<(), String> {
    circuit_sdk::proto::validate_chan_name(name).map_err(|why| {
        if name.chars().count() > MAX_CHAN_NAME || name.is_empty() {
            format!("invalid channel name \"{name}\": {why}")
        } else {
            why
        }
    })
}

fn node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '\0') {
        return Err(format!("invalid node name \"{name}\""));
    }
    Ok(())
}

fn binding(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid channel binding \"{name}\": use A-Z a-z 0-9 _ (it becomes \
             CIRCUIT_CHAN_{})",
            name.to_ascii_uppercase()
        ));
    }
    Ok(())
}

fn env_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains(['=', '\0']) {
        return Err(format!("invalid environment variable name \"{key}\""));
    }
    Ok(())
}

fn label_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == '\0') {
        return Err(format!(
            "invalid label key \"{key}\": it is empty or contains whitespace"
        ));
    }
    Ok(())
}

fn text(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err("a NUL byte cannot be passed to a process".into());
    }
    Ok(())
}

/// The signals circuitd knows by name (Linux), without `SIG`.
const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// `TERM`, `SIGTERM`, `term` or a number from 1 to 31, as circuitd reads a stop signal.
fn signal(s: &str) -> Result<(), String> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=31).contains(&n) {
            return Ok(());
        }
    }
    let upper = s.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&bare) || bare == "IOT" || bare == "POLL" {
        return Ok(());
    }
    Err(format!(
        "unknown signal \"{s}\" (use a name like TERM, INT, HUP, KILL or a number)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_circuitd() {
        for good in ["w", "web-1", "a.b_c", &"x".repeat(64)] {
            assert!(worker_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".hidden", "a/b", "sp ace", &"x".repeat(65), "é"] {
            assert!(worker_name(bad).is_err(), "{bad}");
        }
        assert!(chan_name("pipeline/docs").is_ok());
        assert!(chan_name("a b").is_err() && chan_name("").is_err());
        assert!(binding("in_2").is_ok() && binding("in-2").is_err());
    }

    #[test]
    fn signals_by_name_or_number() {
        for good in ["TERM", "sigint", "hup", "9", "SIGUSR1"] {
            assert!(signal(good).is_ok(), "{good}");
        }
        for bad in ["", "NOPE", "SIG", "0", "99", "-1"] {
            assert!(signal(bad).is_err(), "{bad}");
        }
    }
}
