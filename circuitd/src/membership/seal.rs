//! Sealed gossip packets: every SWIM packet authenticated and encrypted with XChaCha20-Poly1305
//! under a key derived from the cluster key (HKDF, see `circuit_sdk::secure::keys`), with
//! replay protection that fits SWIM's unreliable, unordered datagrams.
//!
//! ```text
//! 0       1   version (0xC1)
//! 1..5    4   key id: which cluster key sealed it (public, derived)
//! 5..13   8   sender: random per daemon start
//! 13..21  8   counter: per sender, +1 per packet
//! 21..29  8   sender's wall clock, ms since the epoch
//! 29..    n   ciphertext, then the 16-byte tag; the header is the associated data
//! ```
//!
//! The nonce is sender ‖ counter ‖ 0⁸: never reused under one key while senders differ
//! (64 random bits per start). A receiver accepts a packet once: it must be fresh (its clock
//! within [`MAX_SKEW_MS`] of the receiver's) and its counter not seen before from that sender
//! (a sliding window of the last [`WINDOW`] counters, as IPsec and DTLS do). A sender is
//! forgotten only once everything it ever sent is too old to pass the freshness check, so a
//! recorded packet is refused whenever it is replayed.

use std::collections::HashMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use circuit_sdk::secure::Key;

/// The first byte of a sealed packet.
pub const VERSION: u8 = 0xC1;
/// Header bytes before the ciphertext.
pub const HEADER: usize = 29;
/// Bytes sealing adds to a packet.
pub const OVERHEAD: usize = HEADER + 16;
/// How far apart two daemons' clocks may be before their gossip is refused as stale.
pub const MAX_SKEW_MS: u64 = 60_000;
/// Counters remembered below the highest one seen from a sender.
pub const WINDOW: u64 = 128;
/// Most senders remembered; past it, the one heard from least recently is forgotten early.
const MAX_SENDERS: usize = 65_536;

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short, or not a sealed packet (a daemon without a key, or garbage).
    #[error(
        "authentication failed: wrong or missing cluster key (an unsealed or malformed packet)"
    )]
    Malformed,
    /// Sealed with a key this daemon does not hold.
    #[error("authentication failed: wrong or missing cluster key (sealed with a key this node does not hold)")]
    UnknownKey,
    /// The tag does not verify: tampered, or forged.
    #[error("authentication failed: wrong or missing cluster key (the packet does not verify)")]
    BadTag,
    /// Its clock is too far from ours: old (recorded), or a clock out of sync.
    #[error("stale packet (clocks more than 60 s apart, or a replay)")]
    Stale,
    /// Seen before.
    #[error("replayed packet")]
    Replayed,
}

impl OpenError {
    /// True when the sender does not hold our key (worth telling the operator about).
    pub fn is_auth(self) -> bool {
        matches!(self, Self::UnknownKey | Self::BadTag | Self::Malformed)
    }
}

/// Seals this daemon's packets.
pub struct Sealer {
    sender: u64,
    counter: u64,
}

impl Default for Sealer {
    fn default() -> Self {
        Self::new()
    }
}

impl Sealer {
    /// A sealer with a fresh random sender id.
    pub fn new() -> Self {
        let mut id = [0u8; 8];
        // The OS random source; should it fail, the clock still makes ids differ per start.
        if getrandom::fill(&mut id).is_err() {
            id = (crate::clock::now_ms() ^ u64::from(std::process::id()) << 40).to_be_bytes();
        }
        Self {
            sender: u64::from_be_bytes(id),
            counter: 0,
        }
    }

    /// Seals `plain` with `key` at wall-clock time `now_ms`.
    pub fn seal(&mut self, key: &Key, plain: &[u8], now_ms: u64) -> Vec<u8> {
        self.counter += 1;
        let mut header = [0u8; HEADER];
        header[0] = VERSION;
        header[1..5].copy_from_slice(&key.gossip_id());
        header[5..13].copy_from_slice(&self.sender.to_be_bytes());
        header[13..21].copy_from_slice(&self.counter.to_be_bytes());
        header[21..29].copy_from_slice(&now_ms.to_be_bytes());
        let sealed = cipher(key)
            .encrypt(
                &nonce(&header),
                Payload {
                    msg: plain,
                    aad: &header,
                },
            )
            .expect("XChaCha20-Poly1305 seals any packet that fits in memory");
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&sealed);
        out
    }
}

fn cipher(key: &Key) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.gossip_key().into())
}

fn nonce(header: &[u8; HEADER]) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(&header[5..21]);
    n.into()
}

/// What is remembered of one sender.
struct Window {
    /// The highest counter accepted.
    top: u64,
    /// Bit i set: counter `top - i` was accepted.
    seen: u128,
    /// The sender's clock on the packet with the highest counter.
    top_ms: u64,
}

/// Opens packets, refusing replays.
#[derive(Default)]
pub struct Opener {
    senders: HashMap<u64, Window>,
    opened: u64,
}

impl Opener {
    /// A receiver that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Senders remembered (for tests: memory stays bounded).
    pub fn senders(&self) -> usize {
        self.senders.len()
    }

    /// Opens `packet` with whichever of `keys` sealed it, at wall-clock time `now_ms`.
    pub fn open(&mut self, keys: &[Key], packet: &[u8], now_ms: u64) -> Result<Vec<u8>, OpenError> {
        if packet.len() < OVERHEAD || packet[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let header: &[u8; HEADER] = packet[..HEADER].try_into().expect("length checked");
        let key = keys
            .iter()
            .find(|k| k.gossip_id()[..] == header[1..5])
            .ok_or(OpenError::UnknownKey)?;
        let plain = cipher(key)
            .decrypt(
                &nonce(header),
                Payload {
                    msg: &packet[HEADER..],
                    aad: header,
                },
            )
            .map_err(|_| OpenError::BadTag)?;
        // Authentic: now decide whether it is fresh.
        let sender = u64::from_be_bytes(header[5..13].try_into().expect("8 bytes"));
        let counter = u64::from_be_bytes(header[13..21].try_into().expect("8 bytes"));
        let sent_ms = u64::from_be_bytes(header[21..29].try_into().expect("8 bytes"));
        if sent_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(OpenError::Stale);
        }
        self.accept(sender, counter, sent_ms)?;
        self.opened += 1;
        if self.opened.is_multiple_of(1024) || self.senders.len() > MAX_SENDERS {
            self.forget_old(now_ms);
        }
        Ok(plain)
    }

    /// Records (sender, counter), refusing it when already seen or below the window.
    fn accept(&mut self, sender: u64, counter: u64, sent_ms: u64) -> Result<(), OpenError> {
        let Some(w) = self.senders.get_mut(&sender) else {
            self.senders.insert(
                sender,
                Window {
                    top: counter,
                    seen: 1,
                    top_ms: sent_ms,
                },
            );
            return Ok(());
        };
        if counter > w.top {
            let shift = counter - w.top;
            w.seen = if shift >= 128 { 0 } else { w.seen << shift };
            w.seen |= 1;
            w.top = counter;
            w.top_ms = w.top_ms.max(sent_ms);
            return Ok(());
        }
        let behind = w.top - counter;
        if behind >= WINDOW || w.seen & (1u128 << behind) != 0 {
            return Err(OpenError::Replayed);
        }
        w.seen |= 1u128 << behind;
        Ok(())
    }

    /// Forgets senders whose every packet is now too old to be accepted again; past
    /// [`MAX_SENDERS`], the stalest go too.
    fn forget_old(&mut self, now_ms: u64) {
        self.senders
            .retain(|_, w| now_ms.saturating_sub(w.top_ms) <= MAX_SKEW_MS);
        if self.senders.len() > MAX_SENDERS {
            let mut ages: Vec<u64> = self.senders.values().map(|w| w.top_ms).collect();
            ages.sort_unstable();
            let cut = ages[self.senders.len() - MAX_SENDERS];
            self.senders.retain(|_, w| w.top_ms > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::generate().expect("random")
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn a_packet_opens_once_with_the_key_that_sealed_it() {
        let (a, b) = (key(), key());
        let mut sealer = Sealer::new();
        let packet = sealer.seal(&a, b"ping", NOW);
        assert_eq!(packet.len(), 4 + OVERHEAD);
        let mut opener = Opener::new();
        // Rotation: a receiver holding both keys opens it.
        assert_eq!(
            opener
                .open(&[b.clone(), a.clone()], &packet, NOW)
                .as_deref(),
            Ok(&b"ping"[..])
        );
        assert_eq!(
            opener.open(std::slice::from_ref(&a), &packet, NOW),
            Err(OpenError::Replayed)
        );
        assert_eq!(
            Opener::new().open(&[b], &packet, NOW),
            Err(OpenError::UnknownKey)
        );
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let a = key();
        let packet = Sealer::new().seal(&a, b"ping", NOW);
        for i in [1, 6, 14, 22, HEADER, packet.len() - 1] {
            let mut bad = packet.clone();
            bad[i] ^= 0x40;
            let got = Opener::new().open(std::slice::from_ref(&a), &bad, NOW);
            assert!(
                got.clone().is_err_and(OpenError::is_auth),
                "byte {i}: {got:?}"
            );
        }
        for junk in [&b""[..], b"\xC1", &[0u8; 100], &packet[..packet.len() - 1]] {
            assert!(Opener::new()
                .open(std::slice::from_ref(&a), junk, NOW)
                .is_err());
        }
    }

    #[test]
    fn stale_packets_are_refused_and_old_senders_forgotten_safely() {
        let a = key();
        let keys = std::slice::from_ref(&a);
        let mut sealer = Sealer::new();
        let old = sealer.seal(&a, b"x", NOW);
        let mut opener = Opener::new();
        assert!(opener.open(keys, &old, NOW).is_ok());
        // Much later: the sender is forgotten, and its recorded packet is stale, not new.
        let later = NOW + MAX_SKEW_MS + 1;
        opener.forget_old(later);
        assert_eq!(opener.senders(), 0);
        assert_eq!(opener.open(keys, &old, later), Err(OpenError::Stale));
        let ahead = sealer.seal(&a, b"x", NOW + 2 * MAX_SKEW_MS);
        assert_eq!(opener.open(keys, &ahead, NOW), Err(OpenError::Stale));
    }

    #[test]
    fn the_window_takes_reordered_packets_once() {
        let a = key();
        let keys = std::slice::from_ref(&a);
        let mut sealer = Sealer::new();
        let packets: Vec<_> = (0..300).map(|_| sealer.seal(&a, b"p", NOW)).collect();
        let mut opener = Opener::new();
        // Out of order within the window: all accepted once.
        for i in (0..100).rev() {
            assert!(opener.open(keys, &packets[i], NOW).is_ok(), "{i}");
        }
        for packet in &packets[..100] {
            assert_eq!(opener.open(keys, packet, NOW), Err(OpenError::Replayed));
        }
        assert!(opener.open(keys, &packets[299], NOW).is_ok());
        // Now 0..=170 are below the window: refused even though 150 was never seen.
        assert_eq!(
            opener.open(keys, &packets[150], NOW),
            Err(OpenError::Replayed)
        );
        assert!(opener.open(keys, &packets[250], NOW).is_ok());
        assert_eq!(
            opener.open(keys, &packets[250], NOW),
            Err(OpenError::Replayed)
        );
    }
}
