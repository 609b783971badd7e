//! The HTTP listener (issue 17): `circuitd --http ADDR` serves this node's metrics at
//! `/metrics`, read back with a real Prometheus text parser, and a read-only dashboard of the
//! whole mesh at `/`, opened in headless Chromium on a two-node mesh with traffic flowing: the
//! names of workers and channels of both nodes appear, and the charts grow. What it refuses:
//! unknown paths, writes, a public address without a key, a port already taken.

mod browser;
mod http;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use circuit_sdk::chan::{Json, RecvOptions};
use circuit_testkit::{bin, converged, wait_until, wait_until_async, Daemon};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

use browser::Browser;
use http::{get_ok, request};

/// A node of a loopback mesh with an HTTP listener; joins `join` when given.
fn node(name: &str, join: Option<&str>) -> Daemon {
    let mut builder = Daemon::builder()
        .name(name)
        .listen("127.0.0.1:0")
        .http("127.0.0.1:0");
    if let Some(addr) = join {
        builder = builder.join(addr);
    }
    builder.start().unwrap_or_else(|e| panic!("{e}"))
}

/// Two nodes, `a` and `b`, that see each other.
fn mesh() -> (Daemon, Daemon) {
    let a = node("a", None);
    let b = node("b", Some(&a.mesh_addr()));
    wait_until(Duration::from_secs(20), "a and b see each other", || {
        converged(&[&a, &b])
    });
    (a, b)
}

/// `/metrics` of `d`, parsed.
fn scrape(d: &Daemon) -> Scrape {
    let text = get_ok(&d.http_addr(), "/metrics");
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

/// The samples named `name` whose labels include every one of `labels`.
fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// The one value named `name` with `labels`: a gauge or a counter (asserted), or `None`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = find(scrape, name, labels);
    assert!(
        found.len() <= 1,
        "{name} {labels:?} more than once: {found:?}"
    );
    found.first().map(|s| match s.value {
        Value::Gauge(v) | Value::Counter(v) => v,
        ref other => panic!("{name} is neither a gauge nor a counter: {other:?}"),
    })
}

/// The counter `name` with `labels`; panics if it is missing or of another type.
fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels).first().map(|s| &s.value) {
        Some(Value::Counter(v)) => *v,
        other => panic!("{name} {labels:?}: expected a counter, got {other:?}"),
    }
}

/// The gauge `name` with `labels`; panics if it is missing or of another type.
fn gauge(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels).first().map(|s| &s.value) {
        Some(Value::Gauge(v)) => *v,
        other => panic!("{name} {labels:?}: expected a gauge, got {other:?}"),
    }
}

/// Probe round trips in the histogram `circuit_mesh_probe_rtt_seconds` (its `+Inf` bucket);
/// panics if it is not a histogram.
fn probes_timed(scrape: &Scrape) -> f64 {
    match find(scrape, "circuit_mesh_probe_rtt_seconds", &[])
        .first()
        .map(|x| &x.value)
    {
        Some(Value::Histogram(buckets)) => {
            let all = buckets.last().expect("a +Inf bucket");
            assert!(all.less_than.is_infinite(), "{buckets:?}");
            all.count
        }
        other => panic!("circuit_mesh_probe_rtt_seconds: expected a histogram, got {other:?}"),
    }
}

#[test]
fn metrics_describe_this_node_in_prometheus_text() {
    let (a, b) = mesh();
    let hog = bin("circuit-test-hog");
    let hog = hog.to_str().expect("utf-8 path");
    // Placed by name: in a mesh a spawn goes to the least loaded node otherwise.
    a.cli_ok(&[
        "spawn", "--node", "a", "--name", "holder", "--", hog, "--mib", "16",
    ]);
    a.cli_ok(&[
        "spawn",
        "--node",
        "a",
        "--name",
        "brief",
        "--restart",
        "never",
        "--",
        "true",
    ]);
    a.cli_ok(&[
        "spawn",
        "--node",
        "b",
        "--name",
        "elsewhere",
        "--",
        "sleep",
        "1000",
    ]);

    // Channel q on a: 25 values in, 10 taken, one taken and given back.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = a.client().await;
        let q = client.chan_create("q", 100).await.expect("create q");
        let tx = q.sender::<u64>().await.expect("sender");
        for i in 0..25 {
            tx.send(i).await.expect("send");
        }
        let opts = RecvOptions {
            prefetch: 1,
            ..RecvOptions::default()
        };
        let mut rx = q
            .receiver_with::<u64, _>(Json, opts)
            .await
            .expect("receiver");
        for _ in 0..10 {
            rx.recv().await.expect("recv");
        }
        let held = rx.recv_delivery().await.expect("a delivery");
        drop(held); // unacknowledged: it goes back, to be delivered again
        rx.close().await;
    });

    let ready = |s: &Scrape| {
        value(
            s,
            "circuit_worker_resident_memory_bytes",
            &[("worker", "holder")],
        )
        .is_some_and(|rss| rss > 16.0 * 1024.0 * 1024.0)
            && value(s, "circuit_workers", &[("state", "exited")]) == Some(1.0)
            && value(s, "circuit_channel_depth", &[("channel", "q")]) == Some(15.0)
            && probes_timed(s) > 0.0
    };
    let mut s = scrape(&a);
    wait_until(
        Duration::from_secs(30),
        "the holder's memory is sampled, brief has exited, q settled and a probe came back",
        || {
            s = scrape(&a);
            ready(&s)
        },
    );

    // Every sample is this node's.
    assert!(s.samples.iter().all(|x| x.labels.get("node") == Some("a")));

    // Workers: by state, and each with its figures.
    assert_eq!(gauge(&s, "circuit_workers", &[("state", "running")]), 1.0);
    assert_eq!(gauge(&s, "circuit_workers", &[("state", "exited")]), 1.0);
    assert_eq!(gauge(&s, "circuit_workers", &[("state", "failed")]), 0.0);
    let rss = gauge(
        &s,
        "circuit_worker_resident_memory_bytes",
        &[("worker", "holder")],
    );
    assert!(rss > 16.0 * 1024.0 * 1024.0, "holder's RSS {rss}");
    assert!(
        counter(
            &s,
            "circuit_worker_cpu_seconds_total",
            &[("worker", "holder")]
        ) >= 0.0
    );
    assert_eq!(
        counter(&s, "circuit_worker_restarts_total", &[("worker", "brief")]),
        0.0
    );
    assert!(
        find(
            &s,
            "circuit_worker_restarts_total",
            &[("worker", "elsewhere")]
        )
        .is_empty(),
        "b's worker is b's to report"
    );

    // Channel q: what the test sent and took, exactly.
    let q = [("channel", "q")];
    assert_eq!(counter(&s, "circuit_channel_sent_total", &q), 25.0);
    assert_eq!(counter(&s, "circuit_channel_received_total", &q), 10.0);
    assert_eq!(counter(&s, "circuit_channel_redelivered_total", &q), 1.0);
    assert_eq!(gauge(&s, "circuit_channel_depth", &q), 15.0);
    assert_eq!(gauge(&s, "circuit_channel_capacity", &q), 100.0);
    assert_eq!(gauge(&s, "circuit_channel_in_flight", &q), 0.0);
    assert_eq!(gauge(&s, "circuit_channel_closed", &q), 0.0);

    // The mesh as a sees it, and the API's counts.
    assert_eq!(
        gauge(&s, "circuit_mesh_members", &[("state", "alive")]),
        2.0
    );
    assert_eq!(gauge(&s, "circuit_mesh_members", &[("state", "dead")]), 0.0);
    assert!(counter(&s, "circuit_mesh_gossip_sent_bytes_total", &[]) > 0.0);
    assert!(counter(&s, "circuit_mesh_gossip_received_bytes_total", &[]) > 0.0);
    assert_eq!(counter(&s, "circuit_mesh_suspicions_total", &[]), 0.0);
    assert!(probes_timed(&s) > 0.0);
    assert!(counter(&s, "circuit_api_requests_total", &[("op", "chan_create")]) >= 1.0);
    assert!(counter(&s, "circuit_api_requests_total", &[("op", "chan_send")]) >= 1.0);
    assert_eq!(
        gauge(
            &s,
            "circuit_daemon_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // b describes itself: its worker, no channel of a's.
    let sb = scrape(&b);
    assert!(sb.samples.iter().all(|x| x.labels.get("node") == Some("b")));
    assert_eq!(gauge(&sb, "circuit_workers", &[("state", "running")]), 1.0);
    assert!(find(&sb, "circuit_channel_sent_total", &q).is_empty());
}

#[test]
fn the_dashboard_shows_the_whole_mesh_live_in_a_browser() {
    let (a, b) = mesh();
    let circuit = bin("circuit");
    let circuit = circuit.to_str().expect("utf-8 path");
    // Traffic: a producer on a sends into q (owned by a); a consumer on b takes from it.
    a.cli_ok(&["chan", "create", "q", "--cap", "64"]);
    let produce = format!("while :; do echo tick; sleep 0.05; done | {circuit} send q");
    a.cli_ok(&[
        "spawn", "--node", "a", "--name", "producer", "--", "sh", "-c", &produce,
    ]);
    a.cli_ok(&[
        "spawn", "--node", "b", "--name", "consumer", "--", circuit, "recv", "q",
    ]);
    let http = a.http_addr();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let shot = runtime.block_on(async {
        let mut browser = Browser::start().await;
        let page = browser.client();
        page.goto(&format!("http://{http}/"))
            .await
            .expect("open the dashboard");

        // Both nodes, the workers of both, and the channel.
        let names = r#"
            const has = (sel) => document.querySelector(sel) !== null;
            return has('tr[data-node="a"]') && has('tr[data-node="b"]')
                && has('tr[data-worker="producer"][data-node="a"]')
                && has('tr[data-worker="consumer"][data-node="b"]')
                && has('tr[data-chan="q"]');
        "#;
        wait_until_async(
            Duration::from_secs(30),
            "the page lists nodes a and b, producer, consumer and q",
            || async {
                let found = page.execute(names, vec![]).await.expect("run a script");
                (found == json!(true)).then_some(())
            },
        )
        .await;
        let text = page
            .execute("return document.body.innerText;", vec![])
            .await
            .expect("the page's text");
        let text = text.as_str().expect("text");
        for name in ["producer", "consumer", "q", "running", "alive"] {
            assert!(text.contains(name), "{name} missing from the page:\n{text}");
        }

        // The rate chart of q grows with each poll, and shows values going in.
        let chart = r#"
            const row = document.querySelector('tr[data-chan="q"]');
            const chart = row && row.querySelector('svg.rate');
            if (!chart) return null;
            const line = chart.querySelector('path.in');
            return {
                points: Number(chart.getAttribute('data-points')),
                path: line ? line.getAttribute('d') : '',
                rate_in: Number(row.querySelector('.key.in').textContent.replace(/,/g, '')),
            };
        "#;
        let read = || async {
            let v = page.execute(chart, vec![]).await.expect("read the chart");
            (!v.is_null()).then_some(v)
        };
        let first = wait_until_async(
            Duration::from_secs(30),
            "q's rate chart has a point and values go in",
            || async {
                let v = read().await?;
                (v["points"].as_u64()? >= 1 && v["rate_in"].as_f64()? > 0.0).then_some(v)
            },
        )
        .await;
        let later = wait_until_async(
            Duration::from_secs(30),
            "q's rate chart gets another point",
            || async {
                let v = read().await?;
                (v["points"].as_u64()? > first["points"].as_u64()?).then_some(v)
            },
        )
        .await;
        assert_ne!(
            first["path"], later["path"],
            "the line moved: {first} {later}"
        );
        // A few more, so that the screenshot shows lines rather than dots.
        wait_until_async(
            Duration::from_secs(60),
            "q's rate chart has 6 points",
            || async { (read().await?["points"].as_u64()? >= 6).then_some(()) },
        )
        .await;

        // A worker's memory chart fills too.
        let mem = r#"
            const row = document.querySelector('tr[data-worker="consumer"]');
            const chart = row && row.querySelector('svg.mem');
            return chart ? Number(chart.getAttribute('data-points')) : 0;
        "#;
        wait_until_async(
            Duration::from_secs(30),
            "consumer's memory chart has two points",
            || async {
                let n = page.execute(mem, vec![]).await.expect("read the chart");
                (n.as_u64()? >= 2).then_some(())
            },
        )
        .await;

        let png = page.screenshot().await.expect("a screenshot");
        browser.close().await;
        png
    });
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n") && shot.len() > 10_000);
    let path = std::env::var_os("CIRCUIT_DASHBOARD_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"));
    std::fs::write(&path, &shot).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    eprintln!("dashboard screenshot: {}", path.display());
    drop(b);
}

#[test]
fn the_http_listener_only_reads_and_says_what_it_does_not_serve() {
    let d = Daemon::builder()
        .http("127.0.0.1:0")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = d.http_addr();

    let page = request(&addr, "GET", "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.body.contains("<script src=\"/app.js\""),
        "{}",
        page.body
    );
    assert!(get_ok(&addr, "/app.js").contains("/api/state"));

    let state: serde_json::Value =
        serde_json::from_str(&get_ok(&addr, "/api/state")).expect("JSON");
    assert_eq!(state["node"], "test");
    assert_eq!(state["nodes"][0]["name"], "test");

    let metrics = request(&addr, "GET", "/metrics?x=1");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );

    let head = request(&addr, "HEAD", "/metrics");
    assert_eq!((head.status, head.body.as_str()), (200, ""), "{head:?}");

    let missing = request(&addr, "GET", "/nothing/here");
    assert_eq!(missing.status, 404, "{missing:?}");
    assert!(
        missing.body.contains("no page at /nothing/here"),
        "{missing:?}"
    );

    let mut refused = BTreeMap::new();
    for (method, path) in [("POST", "/metrics"), ("PUT", "/api/state"), ("DELETE", "/")] {
        let answer = request(&addr, method, path);
        assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{answer:?}");
        refused.insert(format!("{method} {path}"), answer.status);
    }
    assert!(refused.values().all(|s| *s == 405), "{refused:?}");

    // Nothing was changed: still no worker, no channel.
    let state: serde_json::Value =
        serde_json::from_str(&get_ok(&addr, "/api/state")).expect("JSON");
    assert_eq!(state["workers"], json!([]));
    assert_eq!(state["chans"], json!([]));
}

/// Runs circuitd on a fresh temp dir with `args`; it must fail to start. Its stderr, and
/// whether it left its socket behind.
fn refused_start(args: &[&str]) -> (String, bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let out = std::process::Command::new(bin("circuitd"))
        .arg("--socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(args)
        .env_remove("CIRCUIT_KEY_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run circuitd");
    assert_eq!(out.status.code(), Some(1), "circuitd {args:?}: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (err, socket.exists())
}

#[test]
fn http_on_a_public_address_needs_a_cluster_key() {
    let (err, socket_left) = refused_start(&["--http", "0.0.0.0:0"]);
    assert!(
        err.contains("refusing to serve HTTP on 0.0.0.0:0 without a cluster key")
            && err.contains("loopback"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!socket_left);

    // With a key it starts, and serves on every interface (asked here over loopback).
    let keys = tempfile::tempdir().expect("tempdir");
    let key = circuit_testkit::keygen(keys.path(), "cluster.key");
    let d = Daemon::builder()
        .key_file(&key)
        .http("0.0.0.0:0")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = d.http_addr();
    let port = addr.rsplit_once(':').expect("host:port").1;
    assert!(addr.starts_with("0.0.0.0:"), "{addr}");
    assert!(get_ok(&format!("127.0.0.1:{port}"), "/metrics").contains("circuit_workers"));
}

#[test]
fn a_taken_http_port_stops_the_start_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (err, socket_left) = refused_start(&["--http", &addr]);
    assert!(
        err.contains(&format!(
            "cannot serve HTTP on {addr}: the address is already in use"
        )),
        "{err}"
    );
    assert!(!socket_left, "a refused start leaves no socket");
    // Still ours: circuitd did not take it over.
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream.write_all(b"x").expect("write");
    let (_peer, _) = taken.accept().expect("accept");
}
