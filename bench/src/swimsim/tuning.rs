//! The SWIM configuration a run uses: the daemon's `swim_config(n)`, unchanged unless an
//! experimental override is given (to see what another tuning would do; the header says so).

use std::fmt::Write as _;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use anyhow::bail;
use circuitd::membership::swim_config;
use clap::Args;

/// Experimental changes to `swim_config(n)`. None by default.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Tuning {
    /// Override: probe period, in milliseconds.
    #[arg(long)]
    pub probe_period_ms: Option<u64>,
    /// Override: wait for a direct ack before indirect probes, in milliseconds.
    #[arg(long)]
    pub probe_rtt_ms: Option<u64>,
    /// Override: members asked to probe indirectly when a direct probe times out.
    #[arg(long)]
    pub indirect_probes: Option<usize>,
    /// Override: multiply the suspect-to-down timeout by this.
    #[arg(long)]
    pub suspicion_scale: Option<f64>,
    /// Override: times each update is piggybacked.
    #[arg(long)]
    pub max_tx: Option<u8>,
    /// Override: periodic gossip interval, in milliseconds.
    #[arg(long)]
    pub gossip_every_ms: Option<u64>,
    /// Override: members each periodic gossip goes to.
    #[arg(long)]
    pub gossip_to: Option<usize>,
    /// Override: periodic announce interval, in milliseconds.
    #[arg(long)]
    pub announce_every_ms: Option<u64>,
    /// Override: members each periodic announce goes to.
    #[arg(long)]
    pub announce_to: Option<usize>,
    /// Proposed change, not in the daemon: every this many milliseconds each member
    /// push-pulls foca's member states (`iter_membership_state` → `apply_many`) with a random
    /// live member, as the daemon's TCP push-pull could carry besides node metadata.
    #[arg(long)]
    pub sync_every_ms: Option<u64>,
}

impl Tuning {
    /// The configuration for a cluster of `n`: `swim_config(n)` with the overrides applied.
    pub fn config(&self, n: usize) -> foca::Config {
        let mut c = swim_config(n);
        let ms = Duration::from_millis;
        if let Some(v) = self.probe_period_ms {
            c.probe_period = ms(v);
        }
        if let Some(v) = self.probe_rtt_ms {
            c.probe_rtt = ms(v);
        }
        if let Some(v) = self.indirect_probes.and_then(NonZeroUsize::new) {
            c.num_indirect_probes = v;
        }
        if let Some(v) = self.suspicion_scale {
            c.suspect_to_down_after = c.suspect_to_down_after.mul_f64(v);
        }
        if let Some(v) = self.max_tx.and_then(NonZeroU8::new) {
            c.max_transmissions = v;
        }
        if let Some(g) = c.periodic_gossip.as_mut() {
            if let Some(v) = self.gossip_every_ms {
                g.frequency = ms(v);
            }
            if let Some(v) = self.gossip_to.and_then(NonZeroUsize::new) {
                g.num_members = v;
            }
        }
        if let Some(a) = c.periodic_announce.as_mut() {
            if let Some(v) = self.announce_every_ms {
                a.frequency = ms(v);
            }
            if let Some(v) = self.announce_to.and_then(NonZeroUsize::new) {
                a.num_members = v;
            }
        }
        c
    }

    /// Refuses overrides foca would misbehave with.
    pub fn check(&self) -> anyhow::Result<()> {
        let c = self.config(2);
        if c.probe_rtt.is_zero() || c.probe_rtt >= c.probe_period {
            bail!("--probe-rtt-ms must be above 0 and below the probe period");
        }
        if self.suspicion_scale.is_some_and(|s| s.is_nan() || s <= 0.0) {
            bail!("--suspicion-scale must be above 0");
        }
        let zero = |v: Option<u64>| v == Some(0);
        if zero(self.gossip_every_ms) || zero(self.announce_every_ms) || zero(self.sync_every_ms) {
            bail!("--gossip-every-ms, --announce-every-ms and --sync-every-ms must be above 0");
        }
        if self.max_tx == Some(0)
            || [self.gossip_to, self.announce_to, self.indirect_probes].contains(&Some(0))
        {
            bail!("--max-tx, --gossip-to, --announce-to and --indirect-probes must be above 0");
        }
        Ok(())
    }

    /// The overrides in force, e.g. `max_tx=20, announce_every=2000ms`; `None` without any.
    pub fn describe(&self) -> Option<String> {
        let mut s = String::new();
        let mut add = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                let sep = if s.is_empty() { "" } else { ", " };
                let _ = write!(s, "{sep}{name}={v}");
            }
        };
        let ms = |v: Option<u64>| v.map(|v| format!("{v}ms"));
        add("probe_period", ms(self.probe_period_ms));
        add("probe_rtt", ms(self.probe_rtt_ms));
        add(
            "indirect_probes",
            self.indirect_probes.map(|v| v.to_string()),
        );
        add("suspicion×", self.suspicion_scale.map(|v| v.to_string()));
        add("max_tx", self.max_tx.map(|v| v.to_string()));
        add("gossip_every", ms(self.gossip_every_ms));
        add("gossip_to", self.gossip_to.map(|v| v.to_string()));
        add("announce_every", ms(self.announce_every_ms));
        add("announce_to", self.announce_to.map(|v| v.to_string()));
        add("foca_state_push_pull_every", ms(self.sync_every_ms));
        (!s.is_empty()).then_some(s)
    }
}
