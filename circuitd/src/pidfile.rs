//! The pidfile (`--pidfile`): this process's pid, written once the daemon holds its data dir
//! lock, removed when it stops.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A written pidfile; dropping it removes the file if it still holds this process's pid.
#[derive(Debug)]
pub(crate) struct Pidfile {
    path: PathBuf,
    pid: u32,
}

impl Pidfile {
    /// Writes this process's pid (decimal and a newline, mode 0644) to `path`, creating its
    /// directory if needed. A temp file is renamed over `path`, so a reader sees the old file or
    /// the whole new one, and a stale pidfile from a crashed daemon is simply replaced.
    pub(crate) fn write(path: &Path) -> io::Result<Self> {
        let pid = std::process::id();
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        }
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{pid}.tmp"));
        let tmp = path.with_file_name(tmp_name);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            // The umask may have taken bits the pidfile's readers need.
            file.set_permissions(Permissions::from_mode(0o644))?;
            file.write_all(format!("{pid}\n").as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(Self {
            path: path.to_path_buf(),
            pid,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Only our own: another daemon may have written its pid there since.
        let ours = fs::read_to_string(&self.path).is_ok_and(|s| s.trim() == self.pid.to_string());
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_pid_replaces_a_stale_file_and_removes_only_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/circuitd.pid");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "999999\n").unwrap();
        let pidfile = Pidfile::write(&path).expect("write");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let left: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["circuitd.pid"], "no temp file is left");
        drop(pidfile);
        assert!(!path.exists(), "dropping removes it");

        let pidfile = Pidfile::write(&path).expect("write again");
        fs::write(&path, "12345\n").unwrap();
        drop(pidfile);
        assert_eq!(fs::read_to_string(&path).unwrap(), "12345\n", "not ours");
    }
}
