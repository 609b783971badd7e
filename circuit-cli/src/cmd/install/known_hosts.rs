//! Host keys checked against an OpenSSH `known_hosts` file: which key types a host is known
//! by (asked for first in the handshake), whether the key it presents is known, changed or
//! new, the line to fix when it changed, and appending a new host (`--accept-new-host-keys`).
//!
//! Host names are matched by libssh2, one line at a time (plain names, comma lists,
//! `[host]:port`, hashed `|1|` names); keys are compared here. Wildcard patterns and
//! `@cert-authority` lines are not supported and never match; `@revoked` lines refuse their key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use ssh2::{HostKeyType, KnownHostFileKind, Session};

/// A `known_hosts` file, read once per install.
#[derive(Debug)]
pub struct KnownHostsFile {
    path: PathBuf,
    entries: Vec<Entry>,
    /// Serialises appends from the per-host threads.
    append: Mutex<()>,
}

/// One key line of the file.
#[derive(Debug, Clone)]
struct Entry {
    /// 1-based line number, for messages.
    line: usize,
    /// `@revoked` before the host names.
    revoked: bool,
    /// The line without its marker, for libssh2 to match host names with.
    text: String,
    /// `ssh-ed25519`, `ssh-rsa`, ...
    key_type: String,
    /// The key, base64 as written.
    key: String,
}

/// What the file says about the key a host presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host holds this key.
    Known,
    /// No line names this host.
    Unknown,
    /// Lines name this host with other keys: the first is `line`.
    Changed {
        /// 1-based line number of the first line naming the host.
        line: usize,
        /// That line's key type.
        key_type: String,
    },
    /// An `@revoked` line holds this key.
    Revoked {
        /// 1-based line number of the `@revoked` line.
        line: usize,
    },
}

impl KnownHostsFile {
    /// Reads `path`; a file that does not exist is empty (every host is unknown).
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self {
            path: path.to_path_buf(),
            entries: parse(&text),
            append: Mutex::new(()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key types this host is known by, in file order, for the handshake to ask for.
    pub fn key_types(&self, session: &Session, host: &str, port: u16) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for e in self.matching(session, host, port) {
            if !e.revoked && !types.contains(&e.key_type) {
                types.push(e.key_type.clone());
            }
        }
        types
    }

    /// Judges the key `host:port` presented (`key` is the raw key blob).
    pub fn check(&self, session: &Session, host: &str, port: u16, key: &[u8]) -> Verdict {
        let key = base64(key, true);
        let lines = self.matching(session, host, port);
        if let Some(e) = lines.iter().find(|e| e.revoked && e.key == key) {
            return Verdict::Revoked { line: e.line };
        }
        let known: Vec<&Entry> = lines.into_iter().filter(|e| !e.revoked).collect();
        if known.iter().any(|e| e.key == key) {
            return Verdict::Known;
        }
        match known.first() {
            Some(e) => Verdict::Changed {
                line: e.line,
                key_type: e.key_type.clone(),
            },
            None => Verdict::Unknown,
        }
    }

    /// Appends `host:port` with its key, as `ssh` does for a new host (creating the file and
    /// its directory if needed).
    pub fn append(
        &self,
        host: &str,
        port: u16,
        kind: HostKeyType,
        key: &[u8],
    ) -> Result<(), String> {
        let Some(key_type) = key_type_name(kind) else {
            return Err("the host key is of a type known_hosts cannot record".into());
        };
        let line = format!(
            "{} {key_type} {}\n",
            host_pattern(host, port),
            base64(key, true)
        );
        let _guard = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let fail =
            |e: std::io::Error| format!("cannot add the host to {}: {e}", self.path.display());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(fail)?;
        // A file that does not end in a newline would glue our line to its last one.
        let ends_clean =
            std::fs::read(&self.path).map_or(true, |t| t.is_empty() || t.ends_with(b"\n"));
        if !ends_clean {
            file.write_all(b"\n").map_err(fail)?;
        }
        file.write_all(line.as_bytes()).map_err(fail)
    }

    /// The lines whose host names match `host:port`, as `ssh` matches them: `host` on port
    /// 22, `[host]:port` on any other.
    fn matching(&self, session: &Session, host: &str, port: u16) -> Vec<&Entry> {
        let name = host_pattern(host, port);
        self.entries
            .iter()
            .filter(|e| names_match(session, &e.text, &name))
            .collect()
    }
}

/// How `known_hosts` names a host on a port.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == super::target::SSH_PORT {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// True when libssh2 finds `name` among the host names of `line`. A dummy key is checked: a
/// line naming the host answers "mismatch", one that does not, "not found".
fn names_match(session: &Session, line: &str, name: &str) -> bool {
    let Ok(mut hosts) = session.known_hosts() else {
        return false;
    };
    if hosts.read_str(line, KnownHostFileKind::OpenSSH).is_err() {
        return false;
    }
    !matches!(
        hosts.check(name, b"\0"),
        ssh2::CheckResult::NotFound | ssh2::CheckResult::Failure
    )
}

/// The key lines of a file: comments, blank lines, `@cert-authority` lines and lines too
/// short to hold a key are left out.
fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (revoked, rest) = match line.split_once(char::is_whitespace) {
            Some(("@revoked", rest)) => (true, rest.trim_start()),
            Some((marker, _)) if marker.starts_with('@') => continue,
            _ => (false, line),
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() < 3 {
            continue;
        }
        entries.push(Entry {
            line: i + 1,
            revoked,
            text: rest.to_string(),
            key_type: fields[1].to_string(),
            key: fields[2].to_string(),
        });
    }
    entries
}

/// The name a key type has in `known_hosts` files.
pub fn key_type_name(kind: HostKeyType) -> Option<&'static str> {
    Some(match kind {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => return None,
    })
}

/// The host key algorithms to ask for a key of a `known_hosts` type (RSA keys sign with
/// SHA-2 these days).
pub fn hostkey_methods(key_type: &str) -> &'static [&'static str] {
    match key_type {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        _ => &[],
    }
}

/// A key's fingerprint as `ssh-keygen -l` shows it: `SHA256:` and unpadded base64.
pub fn fingerprint(key: &[u8]) -> String {
    format!("SHA256:{}", base64(&Sha256::digest(key), false))
}

/// Standard base64, with or without `=` padding.
fn base64(bytes: &[u8], pad: bool) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
        if pad {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &[u8] = b"\0\0\0\x0bssh-ed25519\0\0\0\x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const KEY_B: &[u8] = b"\0\0\0\x0bssh-ed25519\0\0\0\x20bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn file(text: &str) -> KnownHostsFile {
        KnownHostsFile {
            path: PathBuf::from("/k"),
            entries: parse(text),
            append: Mutex::new(()),
        }
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b"", true), "");
        assert_eq!(base64(b"f", true), "Zg==");
        assert_eq!(base64(b"fo", true), "Zm8=");
        assert_eq!(base64(b"foo", true), "Zm9v");
        assert_eq!(base64(b"foobar", false), "Zm9vYmFy");
        assert_eq!(base64(b"fooba", false), "Zm9vYmE");
        // ssh-keygen -l of the empty string's SHA-256.
        assert_eq!(
            fingerprint(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn keys_are_known_changed_new_or_revoked() {
        let session = Session::new().expect("session");
        let (a, b) = (base64(KEY_A, true), base64(KEY_B, true));
        let text = format!(
            "# comment\n\n10.0.0.1,h1 ssh-ed25519 {a}\n[10.0.0.2]:2222 ssh-ed25519 {b}\n\
             @cert-authority * ssh-ed25519 {b}\n10.0.0.3 ssh-rsa {b}\n10.0.0.3 ssh-ed25519 {a}\n\
             @revoked 10.0.0.4 ssh-ed25519 {b}\n10.0.0.4 ssh-ed25519 {b}\n"
        );
        let kh = file(&text);
        assert_eq!(kh.check(&session, "10.0.0.1", 22, KEY_A), Verdict::Known);
        assert_eq!(kh.check(&session, "h1", 22, KEY_A), Verdict::Known);
        assert_eq!(
            kh.check(&session, "h1", 22, KEY_B),
            Verdict::Changed {
                line: 3,
                key_type: "ssh-ed25519".into()
            }
        );
        // Another port is another host, as for ssh.
        assert_eq!(
            kh.check(&session, "10.0.0.1", 2222, KEY_A),
            Verdict::Unknown
        );
        assert_eq!(kh.check(&session, "10.0.0.2", 2222, KEY_B), Verdict::Known);
        assert_eq!(kh.check(&session, "10.0.0.2", 22, KEY_B), Verdict::Unknown);
        // Any line with the key will do.
        assert_eq!(kh.check(&session, "10.0.0.3", 22, KEY_A), Verdict::Known);
        assert_eq!(
            kh.key_types(&session, "10.0.0.3", 22),
            ["ssh-rsa", "ssh-ed25519"]
        );
        assert_eq!(
            kh.check(&session, "10.0.0.4", 22, KEY_B),
            Verdict::Revoked { line: 8 }
        );
        assert_eq!(kh.check(&session, "10.0.0.9", 22, KEY_A), Verdict::Unknown);
    }

    #[test]
    fn hashed_names_match() {
        // `ssh-keygen -H` of a line for 10.0.0.1.
        let session = Session::new().expect("session");
        let line = format!(
            "|1|qIKrFCuI3RqQKuqH3FgXiuROQYw=|/Njmwod8QXfGvQtfSThVS8mlPj8= ssh-ed25519 {}\n",
            base64(KEY_A, true)
        );
        let kh = file(&line);
        assert_eq!(kh.check(&session, "10.0.0.1", 22, KEY_A), Verdict::Known);
        assert!(matches!(
            kh.check(&session, "10.0.0.1", 22, KEY_B),
            Verdict::Changed { line: 1, .. }
        ));
        assert_eq!(kh.check(&session, "10.0.0.2", 22, KEY_A), Verdict::Unknown);
    }

    #[test]
    fn appended_hosts_are_known_afterwards() {
        let dir = std::env::temp_dir().join(format!("circuit-kh-{}", std::process::id()));
        let path = dir.join("sub/known_hosts");
        let session = Session::new().expect("session");
        let kh = KnownHostsFile::read(&path).expect("a missing file is empty");
        assert_eq!(
            kh.check(&session, "10.0.0.1", 2222, KEY_A),
            Verdict::Unknown
        );
        kh.append("10.0.0.1", 2222, HostKeyType::Ed25519, KEY_A)
            .expect("append");
        kh.append("10.0.0.2", 22, HostKeyType::Ed25519, KEY_B)
            .expect("append");
        let kh = KnownHostsFile::read(&path).expect("read");
        assert_eq!(kh.check(&session, "10.0.0.1", 2222, KEY_A), Verdict::Known);
        assert_eq!(kh.check(&session, "10.0.0.2", 22, KEY_B), Verdict::Known);
        let text = std::fs::read_to_string(&path).expect("text");
        assert!(
            text.starts_with("[10.0.0.1]:2222 ssh-ed25519 AAAA"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
