//! The cluster key and what it protects on TCP: key files and keyrings ([`keys`]), and the
//! Noise handshake and encrypted records every TCP connection uses when a key is held
//! ([`noise`]). Gossip packets are sealed by the daemon with the keys' gossip derivation.

pub mod keys;
pub mod noise;

pub use keys::{
    parse_keys, read_key_file, write_key_file, Key, KeyError, Keyring, KEY_FILE_ENV, KEY_LEN,
};
pub use noise::{Accepted, HandshakeError, Mode, SecureRead, SecureWrite, Session, Status};
