//! The tables in the data dir: atomic replacement (write a temp file, fsync it, rename it over
//! the target, fsync the directory — a crash leaves the old file or the new one, never a torn
//! one) and versioned JSON reads.

use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` atomically and durably.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads a versioned JSON table: `None` if the file does not exist; an error naming the file if
/// it is not valid (`what` says what it should be) or has another format version.
pub(crate) fn read_table<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    version: u32,
    version_of: impl Fn(&T) -> u32,
) -> io::Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let table: T = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("{} is not a valid {what}: {e}", path.display())))?;
    let found = version_of(&table);
    if found != version {
        return Err(invalid(format!(
            "{} has format {found}, expected {version}",
            path.display()
        )));
    }
    Ok(Some(table))
}
