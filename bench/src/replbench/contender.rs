//! What the benchmark compares: a [`Contender`] is a kind of channel (circuit's, one owner or
//! three replicas in memory or on disk) or stream (JetStream R3, memory or file), and the
//! outcome of a trial for it ([`Tried`]), which may be that this build does not serve it.

use std::fmt;

use async_nats::jetstream::stream::StorageType;
use circuit_sdk::chan::{ChanOptions, Storage};

use crate::chanbench::System;

/// A kind of channel or stream. The tables list them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Contender {
    /// A circuit channel one daemon owns (`--replicas 1`).
    R1,
    /// A circuit channel held by three daemons through Raft, its log in memory.
    R3Memory,
    /// The same with its log on disk (`--storage disk`).
    R3Disk,
    /// A JetStream work-queue stream on three servers, memory storage.
    JsMemory,
    /// The same with file storage.
    JsFile,
}

impl Contender {
    /// Every contender, in table order.
    pub const ALL: [Self; 5] = [
        Self::R1,
        Self::R3Memory,
        Self::R3Disk,
        Self::JsMemory,
        Self::JsFile,
    ];

    /// Which roles drive it.
    pub fn system(self) -> System {
        match self {
            Self::R1 | Self::R3Memory | Self::R3Disk => System::Circuit,
            Self::JsMemory | Self::JsFile => System::JetStream,
        }
    }

    /// A circuit channel (as opposed to a JetStream stream).
    pub fn is_circuit(self) -> bool {
        self.system() == System::Circuit
    }

    /// How `chan create` is asked for it; `None` for JetStream.
    pub fn chan_options(self) -> Option<ChanOptions> {
        match self {
            Self::R1 => Some(ChanOptions::default()),
            Self::R3Memory => Some(ChanOptions::replicated(3).storage(Storage::Memory)),
            Self::R3Disk => Some(ChanOptions::replicated(3).storage(Storage::Disk)),
            Self::JsMemory | Self::JsFile => None,
        }
    }

    /// A JetStream stream's storage; `None` for circuit.
    pub fn js_storage(self) -> Option<StorageType> {
        match self {
            Self::JsMemory => Some(StorageType::Memory),
            Self::JsFile => Some(StorageType::File),
            _ => None,
        }
    }

    /// A short name for channel and stream names (`r3m`).
    pub fn slug(self) -> &'static str {
        match self {
            Self::R1 => "r1",
            Self::R3Memory => "r3m",
            Self::R3Disk => "r3d",
            Self::JsMemory => "jsm",
            Self::JsFile => "jsf",
        }
    }
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::R1 => "circuit R1",
            Self::R3Memory => "circuit R3 memory",
            Self::R3Disk => "circuit R3 disk",
            Self::JsMemory => "JetStream R3 memory",
            Self::JsFile => "JetStream R3 file",
        })
    }
}

/// The outcome of one trial of one contender.
#[derive(Debug, Clone)]
pub enum Tried<T> {
    /// It ran; what it measured.
    Ran(T),
    /// The channel could not be made because this build does not serve that kind yet (the
    /// daemon's own words).
    NotServed(String),
    /// It failed, and why.
    Failed(String),
}

impl<T> Tried<T> {
    /// What it measured, if it ran.
    pub fn ran(&self) -> Option<&T> {
        match self {
            Self::Ran(t) => Some(t),
            _ => None,
        }
    }
}

/// True when a create error says this build does not serve that kind of channel yet (as
/// circuitd refuses `--storage disk` for now).
pub fn is_not_served(error: &str) -> bool {
    error.contains("not served by this build")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contenders_map_to_their_systems_and_options() {
        assert_eq!(Contender::R1.chan_options(), Some(ChanOptions::default()));
        assert_eq!(
            Contender::R3Disk
                .chan_options()
                .map(|o| (o.replicas, o.storage)),
            Some((3, Some(Storage::Disk)))
        );
        assert!(Contender::JsFile.chan_options().is_none());
        assert_eq!(Contender::JsFile.js_storage(), Some(StorageType::File));
        assert!(!Contender::JsMemory.is_circuit());
        assert!(is_not_served(
            "invalid argument: --storage disk is not served by this build yet: …"
        ));
        assert!(!is_not_served("no such channel"));
    }
}
