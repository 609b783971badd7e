//! What an install does to one host, decided from what is there and what should be, before
//! anything changes: which files to upload, whether to restart, and what to call the result.

use serde::Serialize;

/// What is installed on the host (hashes are SHA-256 hex).
#[derive(Debug, Clone, Default)]
pub struct Current<'a> {
    /// The installed binary's hash.
    pub binary: Option<&'a str>,
    /// The installed config's hash.
    pub config: Option<&'a str>,
    /// The installed key file's hash.
    pub key: Option<&'a str>,
    /// The installed unit's hash (whatever the mode).
    pub unit: Option<&'a str>,
    /// Our circuitd runs.
    pub running: bool,
}

/// What should be installed.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// The binary's hash.
    pub binary: &'a str,
    /// The config's hash.
    pub config: &'a str,
    /// The key file's hash.
    pub key: &'a str,
    /// The unit's hash in systemd mode; `None` in detached mode (no unit).
    pub unit: Option<&'a str>,
}

/// What happened to a host, as the summary says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing was installed before.
    Installed,
    /// Another binary was installed: replaced and restarted.
    Upgraded,
    /// Same binary, another config, key or unit: replaced and restarted.
    Reconfigured,
    /// Nothing changed but the daemon was not running: started.
    Started,
    /// Nothing changed, restarted because of `--force`.
    Restarted,
    /// Nothing changed and the daemon runs: left alone.
    Unchanged,
    /// `uninstall`: stopped and removed.
    Removed,
    /// `uninstall`: there was nothing to remove.
    Absent,
    /// The host failed (the report says why).
    Failed,
}

impl Outcome {
    /// The word in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Installed => "installed",
            Self::Upgraded => "upgraded",
            Self::Reconfigured => "reconfigured",
            Self::Started => "started",
            Self::Restarted => "restarted",
            Self::Unchanged => "unchanged",
            Self::Removed => "removed",
            Self::Absent => "absent",
            Self::Failed => "failed",
        }
    }
}

/// The files an install uploads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uploads {
    /// The binary.
    pub binary: bool,
    /// The config.
    pub config: bool,
    /// The key file.
    pub key: bool,
    /// The systemd unit.
    pub unit: bool,
}

/// The decision for one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// What the summary will say if it all works.
    pub outcome: Outcome,
    /// Files to upload (only those that differ).
    pub uploads: Uploads,
    /// Remove a unit left from a systemd install (now detached).
    pub remove_unit: bool,
    /// Stop the daemon (if it runs) and start it.
    pub restart: bool,
}

/// Decides: upload what differs; restart when anything changed, when the daemon is not
/// running, or when `force`.
pub fn decide(current: &Current, wanted: &Wanted, force: bool) -> Plan {
    let uploads = Uploads {
        binary: current.binary != Some(wanted.binary),
        config: current.config != Some(wanted.config),
        key: current.key != Some(wanted.key),
        unit: wanted.unit.is_some() && current.unit != wanted.unit,
    };
    let remove_unit = wanted.unit.is_none() && current.unit.is_some();
    let changed = uploads != Uploads::default() || remove_unit;
    let outcome = if current.binary.is_none() {
        Outcome::Installed
    } else if uploads.binary {
        Outcome::Upgraded
    } else if changed {
        Outcome::Reconfigured
    } else if !current.running {
        Outcome::Started
    } else if force {
        Outcome::Restarted
    } else {
        Outcome::Unchanged
    };
    Plan {
        outcome,
        uploads,
        remove_unit,
        restart: outcome != Outcome::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: Wanted<'static> = Wanted {
        binary: "b2",
        config: "c2",
        key: "k2",
        unit: None,
    };

    fn same(running: bool) -> Current<'static> {
        Current {
            binary: Some("b2"),
            config: Some("c2"),
            key: Some("k2"),
            unit: None,
            running,
        }
    }

    #[test]
    fn a_fresh_host_gets_everything() {
        let plan = decide(&Current::default(), &WANTED, false);
        assert_eq!(plan.outcome, Outcome::Installed);
        let all = Uploads {
            binary: true,
            config: true,
            key: true,
            unit: false,
        };
        assert_eq!(
            (plan.uploads, plan.restart, plan.remove_unit),
            (all, true, false)
        );
        let systemd = Wanted {
            unit: Some("u"),
            ..WANTED
        };
        assert!(decide(&Current::default(), &systemd, false).uploads.unit);
    }

    #[test]
    fn the_same_files_on_a_running_daemon_are_left_alone() {
        let plan = decide(&same(true), &WANTED, false);
        assert_eq!((plan.outcome, plan.restart), (Outcome::Unchanged, false));
        assert_eq!(plan.uploads, Uploads::default());
        assert_eq!(
            decide(&same(true), &WANTED, true).outcome,
            Outcome::Restarted
        );
        let stopped = decide(&same(false), &WANTED, false);
        assert_eq!((stopped.outcome, stopped.restart), (Outcome::Started, true));
    }

    #[test]
    fn a_new_binary_is_an_upgrade_and_new_settings_a_reconfiguration() {
        let old_binary = Current {
            binary: Some("b1"),
            ..same(true)
        };
        let plan = decide(&old_binary, &WANTED, false);
        assert_eq!((plan.outcome, plan.restart), (Outcome::Upgraded, true));
        assert_eq!(
            plan.uploads,
            Uploads {
                binary: true,
                ..Uploads::default()
            }
        );
        for current in [
            Current {
                config: Some("c1"),
                ..same(true)
            },
            Current {
                key: None,
                ..same(true)
            },
            Current {
                unit: Some("u"),
                ..same(true)
            },
        ] {
            let plan = decide(&current, &WANTED, false);
            assert_eq!(
                (plan.outcome, plan.restart),
                (Outcome::Reconfigured, true),
                "{current:?}"
            );
            assert!(!plan.uploads.binary);
        }
        // From systemd back to detached: the unit goes.
        assert!(
            decide(
                &Current {
                    unit: Some("u"),
                    ..same(true)
                },
                &WANTED,
                false
            )
            .remove_unit
        );
    }
}
