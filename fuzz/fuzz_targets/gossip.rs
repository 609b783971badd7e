//! Fuzz target `gossip`: arbitrary bytes as a UDP gossip packet. `fuzz_gossip_packet` opens it
//! with a fixed test key and feeds whatever authenticates to the SWIM decoder; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    circuitd::membership::fuzz_gossip_packet(data);
});
