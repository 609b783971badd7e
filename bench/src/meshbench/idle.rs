//! Idle gossip traffic: each host's `eth0` counters (`ip -s -j link show`, in its namespace)
//! before and after a quiet window, beside the namespace's UDP and TCP counters
//! (`/proc/PID/net/snmp` of its daemon) and the bytes its TCP sockets sent (`ss -ti`), which
//! tell SWIM's datagrams from the peer links' push-pull.

use std::time::Duration;

use anyhow::{bail, Context as _};
use circuit_testkit::NetnsCluster;
use tokio::process::Command;
use tokio::time::Instant;

use super::events::{Counts, Watchers};
use super::{now_ms, RunArgs};

/// Gossip traffic of an idle cluster.
#[derive(Debug, Clone)]
pub struct IdleResult {
    /// Daemons.
    pub n: usize,
    /// The window the rates are over.
    pub window: Duration,
    /// Per node: bytes sent per second (frames on `eth0`, Ethernet headers included).
    pub tx_bytes: Vec<f64>,
    /// Per node: frames sent per second.
    pub tx_packets: Vec<f64>,
    /// Per node: bytes received per second.
    pub rx_bytes: Vec<f64>,
    /// Per node: UDP datagrams sent per second (SWIM).
    pub udp_out: Vec<f64>,
    /// Per node: TCP segments sent per second (push-pull and other peer requests).
    pub tcp_out: Vec<f64>,
    /// Per node: TCP payload bytes sent per second, summed over the namespace's open
    /// connections (the peer links, which stay open).
    pub tcp_bytes: Vec<f64>,
    /// Membership events in the window, all hosts.
    pub events: Counts,
}

/// What one host's counters said at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    tx_bytes: u64,
    tx_packets: u64,
    rx_bytes: u64,
    udp_out: u64,
    tcp_out: u64,
    tcp_bytes: u64,
}

/// Lets the cluster settle, then counts its traffic over `args.idle`.
pub async fn run(
    cluster: &NetnsCluster,
    watch: &Watchers,
    args: &RunArgs,
) -> anyhow::Result<IdleResult> {
    let n = cluster.hosts().len();
    eprintln!(
        "idle {n} daemons: settling {:?}, then counting for {:?}",
        args.settle, args.idle
    );
    tokio::time::sleep(args.settle).await;
    let before = read_all(cluster).await?;
    let (from_ms, started) = (now_ms(), Instant::now());
    tokio::time::sleep(args.idle).await;
    let after = read_all(cluster).await?;
    let window = started.elapsed();
    let secs = window.as_secs_f64();
    let rate = |f: fn(&Counters) -> u64| -> Vec<f64> {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| f(a).saturating_sub(f(b)) as f64 / secs)
            .collect()
    };
    let result = IdleResult {
        n,
        window,
        tx_bytes: rate(|c| c.tx_bytes),
        tx_packets: rate(|c| c.tx_packets),
        rx_bytes: rate(|c| c.rx_bytes),
        udp_out: rate(|c| c.udp_out),
        tcp_out: rate(|c| c.tcp_out),
        tcp_bytes: rate(|c| c.tcp_bytes),
        events: Counts::of(&watch.between(from_ms, now_ms())),
    };
    eprintln!(
        "idle {n} daemons: {:.0} B/s sent per node on average",
        result.tx_bytes.iter().sum::<f64>() / n as f64
    );
    Ok(result)
}

async fn read_all(cluster: &NetnsCluster) -> anyhow::Result<Vec<Counters>> {
    let mut out = Vec::new();
    for i in 1..=cluster.hosts().len() {
        out.push(read(cluster, i).await?);
    }
    Ok(out)
}

async fn read(cluster: &NetnsCluster, i: usize) -> anyhow::Result<Counters> {
    let link = ["-s", "-j", "link", "show", "dev", "eth0"];
    let out = Command::from(cluster.exec_command(i, "ip", &link))
        .output()
        .await
        .context("cannot run ip")?;
    if !out.status.success() {
        bail!(
            "ip link show in h{i} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let links: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("ip -j printed no JSON")?;
    let stat = |dir: &str, what: &str| links[0]["stats64"][dir][what].as_u64();
    let pid = cluster
        .daemon_pid(i)
        .with_context(|| format!("h{i}'s daemon is not running"))?;
    let ss = Command::from(cluster.exec_command(i, "ss", &["-tinH"]))
        .output()
        .await
        .context("cannot run ss")?;
    if !ss.status.success() {
        bail!(
            "ss in h{i} failed: {}",
            String::from_utf8_lossy(&ss.stderr).trim()
        );
    }
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp"))
        .with_context(|| format!("cannot read h{i}'s /proc/net/snmp"))?;
    Ok(Counters {
        tx_bytes: stat("tx", "bytes").context("no tx bytes in ip's output")?,
        tx_packets: stat("tx", "packets").context("no tx packets in ip's output")?,
        rx_bytes: stat("rx", "bytes").context("no rx bytes in ip's output")?,
        udp_out: snmp_field(&snmp, "Udp", "OutDatagrams").context("no Udp OutDatagrams")?,
        tcp_out: snmp_field(&snmp, "Tcp", "OutSegs").context("no Tcp OutSegs")?,
        tcp_bytes: bytes_sent(&String::from_utf8_lossy(&ss.stdout)),
    })
}

/// A counter from `/proc/net/snmp`, where each protocol has a line of names and then a line
/// of values, both starting `Proto:`.
fn snmp_field(snmp: &str, proto: &str, field: &str) -> Option<u64> {
    let prefix = format!("{proto}:");
    let mut lines = snmp.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let at = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// The sum of every `bytes_sent:N` in `ss -ti`'s output (one per connection).
fn bytes_sent(ss: &str) -> u64 {
    ss.split_whitespace()
        .filter_map(|w| w.strip_prefix("bytes_sent:"))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_fields_are_found_by_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm OutSegs\nTcp: 1 42\n\
                    Udp: InDatagrams NoPorts OutDatagrams\nUdp: 5 0 7\n";
        assert_eq!(snmp_field(snmp, "Udp", "OutDatagrams"), Some(7));
        assert_eq!(snmp_field(snmp, "Tcp", "OutSegs"), Some(42));
        assert_eq!(snmp_field(snmp, "Udp", "Nope"), None);
        assert_eq!(snmp_field(snmp, "Icmp", "OutMsgs"), None);
    }

    #[test]
    fn bytes_sent_adds_up_connections() {
        let ss = "ESTAB 0 0 10.0.0.1:7711 10.0.0.2:40000\n\t cubic bytes_sent:100 \
                  bytes_acked:101 bytes_received:5\n\
                  ESTAB 0 0 10.0.0.1:40001 10.0.0.3:7711\n\t bytes_sent:23 segs_out:4\n";
        assert_eq!(bytes_sent(ss), 123);
    }
}
