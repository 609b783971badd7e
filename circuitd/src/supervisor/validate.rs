//! Checks on a spawn spec before anything is started, so that bad input gets a clear error
//! (a missing binary, a bad cwd, an unknown signal) and changes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use circuit_sdk::proto::{EnvMode, SpawnSpec};
use nix::sys::signal::Signal;

use super::error::SupervisorError;

/// A worker name: the SDK's rule ([`circuit_sdk::proto::validate_worker_name`]).
pub fn name(name: &str) -> Result<(), SupervisorError> {
    circuit_sdk::proto::validate_worker_name(name).map_err(SupervisorError::Invalid)
}

/// Parses `TERM`, `SIGTERM`, `term` or `15`.
pub fn signal(text: &str) -> Result<Signal, SupervisorError> {
    let unknown = || {
        SupervisorError::Invalid(format!(
            "unknown signal \"{text}\" (use a name like TERM, INT, HUP, KILL or a number)"
        ))
    };
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| unknown());
    }
    let upper = text.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>().map_err(|_| unknown())
}

/// Validates the parts of a spec that do not depend on the file system.
pub fn spec(spec: &SpawnSpec) -> Result<(), SupervisorError> {
    if spec.command.is_empty() {
        return Err(SupervisorError::Invalid("empty command".into()));
    }
    if let Some(n) = &spec.name {
        name(n)?;
    }
    signal(&spec.stop.signal)?;
    for key in spec.env.keys() {
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(SupervisorError::Invalid(format!(
                "invalid environment variable name \"{key}\""
            )));
        }
    }
    let nul = |s: &String| s.contains('\0');
    if nul(&spec.command) || spec.args.iter().any(nul) || spec.env.values().any(nul) {
        return Err(SupervisorError::Invalid(
            "command, arguments and environment values may not contain NUL bytes".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (binding, chan) in &spec.chans {
        if !seen.insert(binding.to_ascii_uppercase()) {
            return Err(SupervisorError::Invalid(format!(
                "channel bindings differ only by case (\"{binding}\"): each becomes \
                 CIRCUIT_CHAN_{}",
                binding.to_ascii_uppercase()
            )));
        }
        if binding.is_empty()
            || !binding
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SupervisorError::Invalid(format!(
                "invalid channel binding \"{binding}\": use A-Z a-z 0-9 _"
            )));
        }
        if let Err(why) = circuit_sdk::proto::validate_chan_name(chan) {
            return Err(SupervisorError::Invalid(format!(
                "channel binding \"{binding}\": {why}"
            )));
        }
    }
    if spec.restart.backoff_max_ms < spec.restart.backoff_initial_ms {
        return Err(SupervisorError::Invalid(
            "backoff maximum is smaller than the initial backoff".into(),
        ));
    }
    Ok(())
}

/// Checks that the working directory exists and the command can be found and executed,
/// the way the child will look for it. A command given as a relative path that cannot be run
/// is reported with the directory it was resolved against.
pub fn runnable(spec: &SpawnSpec) -> Result<(), SupervisorError> {
    let cwd = match &spec.cwd {
        Some(dir) => {
            let path = PathBuf::from(dir);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => path,
                Ok(_) => {
                    return Err(SupervisorError::SpawnFailed(format!(
                        "working directory {dir} is not a directory"
                    )))
                }
                Err(e) => {
                    return Err(SupervisorError::SpawnFailed(format!(
                        "working directory {dir}: {}",
                        plain_io(&e)
                    )))
                }
            }
        }
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    };
    if spec.command.contains('/') {
        let path = cwd.join(&spec.command);
        return executable(&path).map_err(|why| {
            // A relative path means nothing without the directory it was taken from, which
            // may not be the one the user had in mind (circuitd's, through `--addr`).
            let against = match (Path::new(&spec.command).is_relative(), &spec.cwd) {
                (false, _) => String::new(),
                (true, Some(_)) => format!(
                    " (resolved against the worker's directory {})",
                    cwd.display()
                ),
                (true, None) => format!(
                    " (resolved against {}, circuitd's directory: no working directory was given)",
                    cwd.display()
                ),
            };
            SupervisorError::SpawnFailed(format!("cannot run {}: {why}{against}", spec.command))
        });
    }
    let search = match (spec.env.get("PATH"), spec.env_mode) {
        (Some(p), _) => p.clone(),
        (None, EnvMode::Merge) => std::env::var("PATH").unwrap_or_default(),
        // With no PATH at all, exec searches the C library's default.
        (None, EnvMode::Replace) => "/bin:/usr/bin".into(),
    };
    for dir in search.split(':').filter(|d| !d.is_empty()) {
        if executable(&cwd.join(dir).join(&spec.command)).is_ok() {
            return Ok(());
        }
    }
    Err(SupervisorError::SpawnFailed(format!(
        "command \"{}\" not found in PATH",
        spec.command
    )))
}

fn executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| plain_io(&e))?;
    if meta.is_dir() {
        return Err("it is a directory".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("permission denied (not executable)".into());
    }
    Ok(())
}

/// An io::Error as a person reads it: "no such file or directory".
pub fn plain_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["w", "web-1", "a.b_c", &"x".repeat(64)] {
            assert!(name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "a/b",
            "..",
            "sp ace",
            &"x".repeat(65),
            "é",
        ] {
            assert!(name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals() {
        for (text, sig) in [
            ("TERM", Signal::SIGTERM),
            ("sigint", Signal::SIGINT),
            ("9", Signal::SIGKILL),
            ("hup", Signal::SIGHUP),
        ] {
            assert_eq!(signal(text).expect(text), sig);
        }
        for bad in ["", "NOPE", "SIG", "999", "-1"] {
            assert!(signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_commands_and_directories_are_named() {
        let mut s = SpawnSpec {
            command: "definitely-not-a-command-xyz".into(),
            ..SpawnSpec::default()
        };
        let err = runnable(&s).expect_err("missing command").to_string();
        assert!(err.contains("not found in PATH"), "{err}");
        s.command = "sh".into();
        assert!(runnable(&s).is_ok());
        s.command = "./definitely-not-here.sh".into();
        let err = runnable(&s)
            .expect_err("missing relative command")
            .to_string();
        let daemon_dir = std::env::current_dir().expect("cwd");
        assert_eq!(
            err,
            format!(
                "cannot run ./definitely-not-here.sh: no such file or directory (resolved \
                 against {}, circuitd's directory: no working directory was given)",
                daemon_dir.display()
            )
        );
        s.cwd = Some("/".into());
        let err = runnable(&s)
            .expect_err("missing relative command")
            .to_string();
        assert!(
            err.ends_with("(resolved against the worker's directory /)"),
            "{err}"
        );
        s.command = "/definitely-not-here.sh".into();
        let err = runnable(&s)
            .expect_err("missing absolute command")
            .to_string();
        assert_eq!(
            err,
            "cannot run /definitely-not-here.sh: no such file or directory"
        );
        s.command = "sh".into();
        s.cwd = Some("/definitely/not/here".into());
        let err = runnable(&s).expect_err("missing cwd").to_string();
        assert_eq!(
            err,
            "working directory /definitely/not/here: no such file or directory"
        );
    }
}
