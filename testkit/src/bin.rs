//! Where the workspace's built binaries are, for the process that asks: an integration test
//! (`target/<profile>/deps/integration-<hash>`) or a benchmark (`target/<profile>/bench-x`) —
//! and the `circuit` CLI run with nothing from the environment that aims it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::{Error, Result};

/// The directory of this process's build profile (`target/debug`, `target/release`), where
/// `circuitd` and `circuit` are built.
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("find this binary's path", e))?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| Error::State(format!("{} has no directory", exe.display())))?;
    // Test binaries live one level down, in `deps/`.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    Ok(dir.to_path_buf())
}

/// The built binary `name` in `dir` (or, with `None`, in [`bin_dir`]); [`Error::MissingBinary`]
/// if it is not there.
pub fn binary_in(dir: Option<&Path>, name: &str) -> Result<PathBuf> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => bin_dir()?,
    };
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary(path))
    }
}

/// Path of a binary built from this workspace (`circuitd`, `circuit`); panics if it is not
/// built.
pub fn bin(name: &str) -> PathBuf {
    binary_in(None, name).unwrap_or_else(|e| panic!("{e}"))
}

/// A command's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the `circuit` CLI with `args` and nothing from the environment that aims it.
pub fn cli_raw(args: &[&str]) -> Output {
    Command::new(bin("circuit"))
        .args(args)
        .env_remove("CIRCUIT_SOCKET")
        .env_remove("CIRCUIT_KEY_FILE")
        .output()
        .expect("run circuit")
}

/// Writes a fresh cluster key to `dir/name` with `circuit keygen`; returns its path.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = cli_raw(&["keygen", path.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "keygen: {out:?}");
    path
}

/// The list a `--json` verb prints under `key` (`circuit ps --json` prints
/// `{"workers": [...]}`), parsed as `T`.
pub fn json_list<T: serde::de::DeserializeOwned>(
    text: impl AsRef<[u8]>,
    key: &str,
) -> serde_json::Result<T> {
    let mut doc: serde_json::Value = serde_json::from_slice(text.as_ref())?;
    let list = doc.get_mut(key).map(serde_json::Value::take);
    serde_json::from_value(list.unwrap_or(serde_json::Value::Null))
}
