//! Cluster keys: 256-bit secrets from the OS CSPRNG, kept in 0600 files as 64 hex digits, one
//! per line (the first is used to send, all are accepted). Everything on the wire is keyed by
//! values derived from a key with HKDF-SHA256, never by the key itself.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hkdf::Hkdf;
use sha2::Sha256;

/// The environment variable naming the key file, for `circuitd` and `circuit` alike.
pub const KEY_FILE_ENV: &str = "CIRCUIT_KEY_FILE";

/// Bytes in a cluster key.
pub const KEY_LEN: usize = 32;

/// HKDF salt: changes only with an incompatible change of every derivation.
const SALT: &[u8] = b"circuit cluster key v1";

/// Why a key or key file cannot be used. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("key file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// The file can be read by other users.
    #[error("key file {path} can be read by other users (mode {mode:04o}); run: chmod 600 {path}")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not a key.
    #[error(
        "{at}: not a cluster key: expected 64 hex digits (a 256-bit key from `circuit keygen`)"
    )]
    Malformed {
        /// `file:line`, or a description of where the text came from.
        at: String,
    },
    /// No key at all.
    #[error("{0}: holds no key")]
    Empty(String),
    /// The same key twice.
    #[error("{0}: the key {1} is listed twice")]
    Duplicate(String, String),
    /// The OS random source failed.
    #[error("cannot read the OS random source: {0}")]
    Random(String),
}

/// A cluster key and the values derived from it.
#[derive(Clone)]
pub struct Key {
    secret: [u8; KEY_LEN],
    psk: [u8; 32],
    gossip: [u8; 32],
    gossip_id: [u8; 4],
    fingerprint: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.fingerprint)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for Key {}

impl Key {
    /// A key from 32 secret bytes.
    pub fn from_bytes(secret: [u8; KEY_LEN]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SALT), &secret);
        let derive = |info: &[u8], out: &mut [u8]| {
            hk.expand(info, out)
                .expect("HKDF-SHA256 gives up to 8160 bytes");
        };
        let mut psk = [0; 32];
        derive(b"noise psk", &mut psk);
        let mut gossip = [0; 32];
        derive(b"gossip aead", &mut gossip);
        let mut gossip_id = [0; 4];
        derive(b"gossip key id", &mut gossip_id);
        let mut fp = [0; 8];
        derive(b"fingerprint", &mut fp);
        Self {
            secret,
            psk,
            gossip,
            gossip_id,
            fingerprint: hex(&fp),
        }
    }

    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self, KeyError> {
        let mut secret = [0; KEY_LEN];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_bytes(secret))
    }

    /// Parses 64 hex digits; `at` says where they came from, for the error.
    pub fn from_hex(text: &str, at: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::Malformed { at: at.to_string() };
        let text = text.trim().as_bytes();
        if text.len() != 2 * KEY_LEN {
            return Err(bad());
        }
        let mut secret = [0; KEY_LEN];
        for (i, pair) in text.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or_else(bad);
            secret[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Self::from_bytes(secret))
    }

    /// The key as 64 hex digits: secret material, for key files and `key_set` only.
    pub fn to_hex(&self) -> String {
        hex(&self.secret)
    }

    /// A public name for the key (16 hex digits, derived one way): safe to log and show.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The Noise pre-shared key.
    pub(crate) fn psk(&self) -> &[u8; 32] {
        &self.psk
    }

    /// The gossip AEAD key.
    pub fn gossip_key(&self) -> &[u8; 32] {
        &self.gossip
    }

    /// A public 4-byte tag naming the gossip key in packet headers.
    pub fn gossip_id(&self) -> [u8; 4] {
        self.gossip_id
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses key file text: one key per line, `#` comments and blank lines ignored, at least one
/// key, no key twice. `name` names the source in errors.
pub fn parse_keys(text: &str, name: &str) -> Result<Vec<Key>, KeyError> {
    let mut keys: Vec<Key> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = Key::from_hex(line, &format!("{name}:{}", n + 1))?;
        if keys.contains(&key) {
            return Err(KeyError::Duplicate(name.to_string(), key.fingerprint));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyError::Empty(name.to_string()));
    }
    Ok(keys)
}

/// Reads a key file, refusing one that other users can read.
pub fn read_key_file(path: &Path) -> Result<Vec<Key>, KeyError> {
    let io = |reason| KeyError::Io {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    parse_keys(&text, &path.display().to_string())
}

/// Writes keys to `path` (0600), replacing it atomically: a temp file in the same directory,
/// synced, then renamed over it. Refuses to replace an existing file unless `replace`.
pub fn write_key_file(path: &Path, keys: &[Key], replace: bool) -> Result<(), KeyError> {
    let io = |reason| KeyError::Io {
        path: path.to_path_buf(),
        reason,
    };
    if !replace && std::fs::symlink_metadata(path).is_ok() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists already (a key is never overwritten; remove it first or pick another path)",
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("not a file path")))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut text =
        String::from("# circuit cluster keys: the first is used to send, all are accepted\n");
    for key in keys {
        text.push_str(&key.to_hex());
        text.push('\n');
    }
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// The keys a daemon (or client) holds, shared by every connection and the gossip task, and
/// replaceable while they run (rotation). Cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Shared>,
}

struct Shared {
    keys: RwLock<Arc<[Key]>>,
    file: Option<PathBuf>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys().iter()).finish()
    }
}

impl Keyring {
    /// A keyring of `keys` (at least one) not tied to a file.
    pub fn new(keys: Vec<Key>) -> Result<Self, KeyError> {
        Self::build(keys, None)
    }

    /// A keyring read from `path`; [`Keyring::set`] writes back to it.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let keys = read_key_file(path)?;
        Self::build(keys, Some(path.to_path_buf()))
    }

    /// The keyring named by `CIRCUIT_KEY_FILE`, if it is set (and not empty).
    pub fn from_env() -> Result<Option<Self>, KeyError> {
        match std::env::var_os(KEY_FILE_ENV) {
            Some(p) if !p.is_empty() => Self::from_file(Path::new(&p)).map(Some),
            _ => Ok(None),
        }
    }

    fn build(keys: Vec<Key>, file: Option<PathBuf>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty("the key list".into()));
        }
        Ok(Self {
            inner: Arc::new(Shared {
                keys: RwLock::new(keys.into()),
                file,
                changed: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// Every key held, the sending key first.
    pub fn keys(&self) -> Arc<[Key]> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The key used to send.
    pub fn primary(&self) -> Key {
        self.keys()[0].clone()
    }

    /// True when a key with this fingerprint is held.
    pub fn holds(&self, fingerprint: &str) -> bool {
        self.keys().iter().any(|k| k.fingerprint() == fingerprint)
    }

    /// Fingerprints, the sending key first.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys()
            .iter()
            .map(|k| k.fingerprint().to_string())
            .collect()
    }

    /// The file the keys came from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.inner.file.as_deref()
    }

    /// Replaces the keys: written to the key file first (when there is one), so a restart
    /// keeps them, then used at once. Connections made with a key no longer held are told
    /// through [`Keyring::subscribe`].
    pub fn set(&self, keys: Vec<Key>) -> Result<(), KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty("the new key list".into()));
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].contains(key) {
                return Err(KeyError::Duplicate(
                    "the new key list".into(),
                    key.fingerprint().to_string(),
                ));
            }
        }
        if let Some(path) = &self.inner.file {
            write_key_file(path, &keys, true)?;
        }
        self.swap(keys);
        Ok(())
    }

    /// Reads the key file again (after an operator edited it); false when nothing changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let Some(path) = &self.inner.file else {
            return Ok(false);
        };
        let keys = read_key_file(path)?;
        if keys[..] == self.keys()[..] {
            return Ok(false);
        }
        self.swap(keys);
        Ok(true)
    }

    fn swap(&self, keys: Vec<Key>) {
        *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = keys.into();
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// Notified each time the keys change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_hex_and_files() {
        let a = Key::generate().expect("random");
        let b = Key::generate().expect("random");
        assert_ne!(a, b);
        assert_eq!(Key::from_hex(&a.to_hex(), "t").expect("hex"), a);
        assert_eq!(a.fingerprint().len(), 16);
        assert!(!format!("{a:?}").contains(&a.to_hex()));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        write_key_file(&path, &[a.clone(), b.clone()], false).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_key_file(&path).expect("read"), vec![a.clone(), b]);
        assert!(
            write_key_file(&path, &[a], false).is_err(),
            "never overwrites a key"
        );
    }

    #[test]
    fn bad_key_files_are_refused_without_echoing_them() {
        let good = "0".repeat(64);
        for (text, want) in [
            ("", "holds no key"),
            ("# only a comment\n\n", "holds no key"),
            ("abc\n", "f:1: not a cluster key"),
            (&format!("{}\n", "g".repeat(64)), "f:1: not a cluster key"),
            (&format!("#\n{good}\n{good}\n"), "listed twice"),
            (&format!("{good}0\n"), "f:1: not a cluster key"),
        ] {
            let err = parse_keys(text, "f").expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains(&"g".repeat(64)), "{err}");
        }
        assert_eq!(
            parse_keys(&format!(" {good} \n"), "f").expect("ok").len(),
            1
        );
    }

    #[test]
    fn a_key_file_other_users_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        write_key_file(&path, &[Key::generate().expect("random")], false).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_key_file(&path).expect_err("exposed").to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_keyring_writes_its_file_and_notifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let (a, b) = (Key::generate().expect("r"), Key::generate().expect("r"));
        write_key_file(&path, std::slice::from_ref(&a), false).expect("write");
        let ring = Keyring::from_file(&path).expect("ring");
        let changed = ring.subscribe();
        ring.set(vec![b.clone(), a.clone()]).expect("set");
        assert!(changed.has_changed().expect("open"));
        assert_eq!(ring.primary(), b);
        assert_eq!(read_key_file(&path).expect("read"), vec![b.clone(), a]);
        assert!(ring.set(vec![b.clone(), b]).is_err());
        assert!(!ring.reload().expect("reload"), "unchanged");
    }
}
