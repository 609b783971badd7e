//! `circuit apply`, `circuit down` and `circuit status FILE` against real daemons: the shipped
//! examples/pipeline/pipeline.toml on a three-node mesh end to end (result, placement, a second
//! apply that changes nothing, an edited copy planned and applied, teardown), and bad
//! manifests that are refused with their place in the file and change nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use circuit_sdk::proto::{ChanInfo, WorkerInfo};
use circuit_testkit::{bin, converged, stderr, wait_until, Daemon};

/// The manifest as shipped.
fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipeline/pipeline.toml")
}

/// The label `apply` puts on its workers.
const LABEL: &str = "circuit.manifest";

/// How long a step may take.
const LIMIT: Duration = Duration::from_secs(30);

/// The demo's mesh: n1 role=ingest, n2 and n3 role=compute, each finding `pipeline` in PATH.
fn mesh() -> [Daemon; 3] {
    let dir = bin("pipeline")
        .parent()
        .expect("target dir")
        .display()
        .to_string();
    let path = format!("{dir}:{}", std::env::var("PATH").unwrap_or_default());
    let start = |name: &str, role: &str, join: Option<&str>| {
        let label = format!("role={role}");
        let mut daemon = Daemon::builder()
            .name(name)
            .listen("127.0.0.1:0")
            .flags(["--label", &label])
            .env("PATH", &path);
        if let Some(addr) = join {
            daemon = daemon.join(addr);
        }
        daemon.start().unwrap_or_else(|e| panic!("{e}"))
    };
    let n1 = start("n1", "ingest", None);
    let addr = n1.mesh_addr();
    let n2 = start("n2", "compute", Some(&addr));
    let n3 = start("n3", "compute", Some(&addr));
    wait_until(LIMIT, "n1, n2 and n3 see each other", || {
        converged(&[&n1, &n2, &n3])
    });
    [n1, n2, n3]
}

/// `circuit args`, which must succeed; its stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    d.cli_ok(args)
}

/// `circuit args`, which must fail; its whole output.
fn fails(d: &Daemon, args: &[&str]) -> Output {
    let out = d.cli(args);
    assert!(
        !out.status.success(),
        "circuit {args:?} succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Every worker of the mesh, exited ones too, by name.
fn workers(d: &Daemon) -> Vec<WorkerInfo> {
    let mut list: Vec<WorkerInfo> =
        circuit_testkit::json_list(ok(d, &["--json", "ps", "-a"]), "workers").expect("ps json");
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// Every channel of the mesh, by name, without the counters that move.
fn channels(d: &Daemon) -> Vec<(String, u64, String, u64)> {
    let list: Vec<ChanInfo> =
        circuit_testkit::json_list(ok(d, &["--json", "chan", "ls"]), "channels")
            .expect("chan ls json");
    let mut list: Vec<_> = list
        .into_iter()
        .map(|c| (c.name, c.capacity, c.owner, c.created_at_ms))
        .collect();
    list.sort();
    list
}

/// What identifies a run of a worker: a replaced or restarted one differs.
fn runs(list: &[WorkerInfo]) -> Vec<(String, String, Option<u64>, u32)> {
    list.iter()
        .map(|w| (w.name.clone(), w.node.clone(), w.started_at_ms, w.restarts))
        .collect()
}

fn digest(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("a JSON line");
    let summary = v.get("summary").unwrap_or(&v);
    summary["digest"].as_str().expect("a digest").to_string()
}

#[test]
fn the_pipeline_manifest_runs_once_and_is_torn_down() {
    let [n1, _n2, _n3] = mesh();
    let file = shipped();
    let file = file.to_str().expect("utf-8 path");

    // Before: everything is missing.
    let out = fails(&n1, &["status", file]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pipeline: 8 of 8 missing, 0 failed, 0 lost"),
        "{text}"
    );

    // 1. Apply: channels first, then the workers where the manifest places them.
    let applied = ok(&n1, &["apply", file]);
    let lines: Vec<&str> = applied.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "+ channel docs (capacity 64, on n2)",
            "+ channel counts (capacity 64, on n3)",
            "+ channel result (capacity 1, on n1)",
            "+ worker fetch (on n1)",
        ],
        "{applied}"
    );
    assert_eq!(lines.len(), 9, "{applied}");
    assert_eq!(
        lines[8], "apply: 8 created, 0 replaced, 0 removed, 0 unchanged",
        "{applied}"
    );
    let result = ok(&n1, &["recv", "-n", "1", "--timeout", "30", "result"]);
    let local = std::process::Command::new(bin("pipeline"))
        .args(["local", "--docs", "2000", "--seed", "7"])
        .output()
        .expect("pipeline local");
    assert!(local.status.success(), "{}", stderr(&local));
    assert_eq!(
        digest(&result),
        digest(&String::from_utf8_lossy(&local.stdout))
    );
    assert!(result.contains(r#""docs":2000"#), "{result}");

    wait_until(LIMIT, "every worker has finished", || {
        workers(&n1)
            .iter()
            .all(|w| w.state.is_terminal() && w.last_exit.is_some_and(|e| e.success()))
    });
    let before = workers(&n1);
    let on = |name: &str| {
        before
            .iter()
            .find(|w| w.name == name)
            .map(|w| w.node.as_str())
    };
    assert_eq!((on("fetch"), on("store")), (Some("n1"), Some("n3")));
    let analyzers: BTreeSet<_> = ["analyze-1", "analyze-2", "analyze-3"]
        .into_iter()
        .map(|n| on(n).expect("an analyzer"))
        .collect();
    assert_eq!(
        analyzers,
        BTreeSet::from(["n2", "n3"]),
        "spread over role=compute"
    );
    assert!(before
        .iter()
        .all(|w| w.spec.labels.get(LABEL).map(String::as_str) == Some("pipeline")));
    let chans = channels(&n1);
    let owners: Vec<(&str, u64, &str)> = chans
        .iter()
        .map(|(name, cap, owner, _)| (name.as_str(), *cap, owner.as_str()))
        .collect();
    assert_eq!(
        owners,
        [
            ("counts", 64, "n3"),
            ("docs", 64, "n2"),
            ("result", 1, "n1")
        ]
    );
    let status = ok(&n1, &["status", file]);
    assert!(
        status.ends_with("pipeline: all 8 declared exist, none failed\n"),
        "{status}"
    );

    // 2. Again: nothing changes, not even for the workers that have finished.
    assert_eq!(
        ok(&n1, &["apply", file]),
        "apply: no changes (8 unchanged)\n"
    );
    assert_eq!(runs(&workers(&n1)), runs(&before));
    assert_eq!(channels(&n1), chans);

    // 3. An edited copy: store's arguments, two analyzers instead of three, one more channel.
    let dir = tempfile::tempdir().expect("tempdir");
    let edited = std::fs::read_to_string(shipped())
        .expect("read the manifest")
        .replace(
            r#"args = ["store", "--docs", "2000"]"#,
            r#"args = ["store", "--docs", "1000"]"#,
        )
        .replace("replicas = 3 ", "replicas = 2 ")
        + "\n[channels.extra]\ncapacity = 2\n";
    let copy = dir.path().join("pipeline.toml");
    std::fs::write(&copy, edited).expect("write the copy");
    let copy = copy.to_str().expect("utf-8 path");
    let plan = "\
+ channel extra (capacity 2)
~ worker store (args changed)
- worker analyze-3 (no longer declared)
";
    assert_eq!(
        ok(&n1, &["apply", "--dry-run", copy]),
        format!(
            "{plan}apply --dry-run: would create 1, replace 1, remove 1; 6 unchanged; nothing \
             was changed\n"
        )
    );
    assert_eq!(
        runs(&workers(&n1)),
        runs(&before),
        "a dry run changes nothing"
    );
    assert_eq!(channels(&n1), chans);
    assert_eq!(
        fails(&n1, &["status", copy]).status.code(),
        Some(1),
        "extra is missing"
    );

    assert_eq!(
        ok(&n1, &["apply", copy]),
        format!("{plan}apply: 1 created, 1 replaced, 1 removed, 6 unchanged\n")
    );
    let after = workers(&n1);
    let kept = |list: &[WorkerInfo]| {
        runs(list)
            .into_iter()
            .filter(|(name, ..)| name != "store" && name != "analyze-3")
            .collect::<Vec<_>>()
    };
    assert_eq!(kept(&after), kept(&before));
    assert!(after.iter().all(|w| w.name != "analyze-3"));
    let store = after.iter().find(|w| w.name == "store").expect("store");
    assert_eq!(store.spec.args, ["store", "--docs", "1000"]);
    assert_eq!(store.node, "n3");
    let old_store = before.iter().find(|w| w.name == "store").expect("store");
    assert_ne!(store.started_at_ms, old_store.started_at_ms);
    let mut want = chans.clone();
    let extra = channels(&n1)
        .into_iter()
        .find(|c| c.0 == "extra")
        .expect("extra");
    assert_eq!((extra.1, extra.2.as_str()), (2, "n1"));
    want.push(extra);
    want.sort();
    assert_eq!(channels(&n1), want);
    ok(&n1, &["status", copy]);

    // 4. Down, twice: the labelled workers, then the declared channels; then nothing.
    let down = ok(&n1, &["down", copy]);
    assert!(down.ends_with("down: 8 removed\n"), "{down}");
    assert!(
        down.find("- worker").expect("workers") < down.find("- channel").expect("channels"),
        "{down}"
    );
    assert_eq!(ok(&n1, &["down", copy]), "down: nothing to remove\n");
    assert_eq!(workers(&n1), []);
    assert_eq!(channels(&n1), []);
    let out = fails(&n1, &["status", file]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("8 of 8 missing"),
        "{out:?}"
    );
}

#[test]
fn bad_manifests_are_refused_where_they_are_wrong_and_change_nothing() {
    let n1 = Daemon::start_named("n1", &[]);
    ok(&n1, &["chan", "create", "jobs", "--cap", "4"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    let shown = file.to_str().expect("utf-8 path");
    let worker = "[workers.w]\ncommand = \"sleep\"\nargs = [\"60\"]\n";
    let cases = [
        (format!("{worker}[workers.v\n"), "4:11: unclosed table"),
        (
            format!("{worker}colour = \"red\"\n"),
            "4:1: unknown field `colour`",
        ),
        (
            format!("{worker}node = \"n1\"\nnode-labels = {{ role = \"x\" }}\n"),
            "5:15: node and node-labels are exclusive",
        ),
        (
            format!("{worker}replicas = 0\n"),
            "4:12: replicas must be at least 1",
        ),
        (
            format!("{worker}[workers.\"no good\"]\ncommand = \"sleep\"\n"),
            "4:10: invalid worker name \"no good\"",
        ),
        (
            format!("{worker}channels = {{ in = \"bad name\" }}\n"),
            "4:19: channel name \"bad name\"",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&file, &text).expect("write");
        for command in ["apply", "down"] {
            let err = stderr(&fails(&n1, &[command, shown]));
            let want = format!("error: {shown}:{want}");
            assert!(err.starts_with(&want), "{text}\n{command}: {err}");
        }
    }
    // A channel that exists with another capacity stops the whole plan, worker included.
    std::fs::write(&file, format!("[channels.jobs]\ncapacity = 8\n\n{worker}")).expect("write");
    let err = stderr(&fails(&n1, &["apply", shown]));
    assert!(
        err.contains("channel \"jobs\" exists with capacity 4, but the manifest says 8")
            && err.contains("`circuit chan rm jobs`")
            && err.ends_with("apply: nothing was changed\n"),
        "{err}"
    );
    assert_eq!(workers(&n1), []);
    let chans = channels(&n1);
    assert_eq!(chans.len(), 1);
    assert_eq!((chans[0].0.as_str(), chans[0].1), ("jobs", 4));
}

#[test]
fn a_manifest_env_file_sets_variables_and_a_changed_file_replaces_the_worker() {
    let n1 = Daemon::start_named("n1", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("conf")).expect("mkdir");
    let env_file = dir.path().join("conf/app.env");
    std::fs::write(&env_file, "# the app\nLEVEL=info\nexport WHO=file\n").expect("write");
    let file = dir.path().join("envy.toml");
    std::fs::write(
        &file,
        "[workers.envy]\ncommand = \"sh\"\nargs = [\"-c\", \"echo $LEVEL/$WHO\"]\n\
         env-file = \"conf/app.env\"\nenv = { WHO = \"manifest\" }\n",
    )
    .expect("write");
    let shown = file.to_str().expect("utf-8 path");
    let output = |want: &str| {
        wait_until(LIMIT, "envy has printed", || {
            ok(&n1, &["logs", "envy"]).lines().any(|l| !l.is_empty())
        });
        assert_eq!(ok(&n1, &["logs", "envy"]), want);
    };

    assert_eq!(
        ok(&n1, &["apply", shown]),
        "+ worker envy (any node: on n1)\napply: 1 created, 0 replaced, 0 removed, 0 unchanged\n"
    );
    output("info/manifest\n");
    assert_eq!(
        ok(&n1, &["apply", shown]),
        "apply: no changes (1 unchanged)\n"
    );

    // The file's variables are part of the spec: a changed file replaces the worker.
    std::fs::write(&env_file, "LEVEL=debug\n").expect("write");
    assert_eq!(
        ok(&n1, &["apply", shown]),
        "~ worker envy (env changed)\napply: 0 created, 1 replaced, 0 removed, 0 unchanged\n"
    );
    output("debug/manifest\n");

    // A bad line is refused at the manifest's env-file key, naming the file and line.
    std::fs::write(&env_file, "LEVEL=debug\noops\n").expect("write");
    let before = runs(&workers(&n1));
    let err = stderr(&fails(&n1, &["apply", shown]));
    assert_eq!(
        err,
        format!(
            "error: {shown}:4:12: env-file {}:2: expected KEY=VALUE, got \"oops\"\n",
            env_file.display()
        )
    );
    assert_eq!(runs(&workers(&n1)), before);
}

/// A manifest of two long-running workers, `names`, applied to `d` from `file`.
fn two_sleepers(d: &Daemon, file: &Path, names: [&str; 2]) -> String {
    let text: String = names
        .iter()
        .map(|n| format!("[workers.{n}]\ncommand = \"sleep\"\nargs = [\"1000\"]\n\n"))
        .collect();
    std::fs::write(file, format!("name = \"sleepers\"\n\n{text}")).expect("write");
    ok(d, &["apply", file.to_str().expect("utf-8 path")])
}

#[test]
fn an_empty_manifest_is_refused_and_removes_nothing() {
    let n1 = Daemon::start_named("n1", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sleepers.toml");
    let shown = file.to_str().expect("utf-8 path");
    two_sleepers(&n1, &file, ["a", "b"]);
    let before = runs(&workers(&n1));
    assert_eq!(before.len(), 2);

    // An empty file, and one cut short after its name: both would remove a and b.
    for text in ["", "name = \"sleepers\"\n"] {
        std::fs::write(&file, text).expect("write");
        for args in [&["apply", shown][..], &["apply", "--dry-run", shown]] {
            let out = fails(&n1, args);
            assert_eq!(
                stderr(&out),
                format!(
                    "error: {shown}: the manifest declares no channel and no worker, so applying \
                     it could only remove; nothing was changed — to remove what manifest \
                     \"sleepers\" made, use `circuit down {shown}`\n"
                ),
                "{text:?} {args:?}"
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        }
        assert_eq!(runs(&workers(&n1)), before, "{text:?}");
    }
}

#[test]
fn a_plan_removing_every_worker_of_a_manifest_needs_prune() {
    let n1 = Daemon::start_named("n1", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sleepers.toml");
    let shown = file.to_str().expect("utf-8 path");
    two_sleepers(&n1, &file, ["a", "b"]);
    let before = runs(&workers(&n1));

    // Every worker renamed: the plan removes both old ones.
    std::fs::write(
        &file,
        "name = \"sleepers\"\n[workers.c]\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         [workers.d]\ncommand = \"sleep\"\nargs = [\"1000\"]\n",
    )
    .expect("write");
    let refusal = "error: this plan removes all 2 workers of manifest \"sleepers\" and keeps \
                   none; pass --prune to do that\napply: nothing was changed\n";
    for args in [&["apply", shown][..], &["apply", "--dry-run", shown]] {
        let out = fails(&n1, args);
        assert_eq!(stderr(&out), refusal, "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{args:?}");
    }
    assert_eq!(runs(&workers(&n1)), before);

    let plan = "+ worker c (any node)\n+ worker d (any node)\n- worker a (no longer declared)\n\
                - worker b (no longer declared)\n";
    assert_eq!(
        ok(&n1, &["apply", "--dry-run", "--prune", shown]),
        format!(
            "{plan}apply --dry-run: would create 2, replace 0, remove 2; 0 unchanged; nothing \
             was changed\n"
        )
    );
    assert_eq!(runs(&workers(&n1)), before);
    let applied = ok(&n1, &["apply", "--prune", shown]);
    assert!(
        applied.ends_with("apply: 2 created, 0 replaced, 2 removed, 0 unchanged\n"),
        "{applied}"
    );
    let names: Vec<String> = workers(&n1).into_iter().map(|w| w.name).collect();
    assert_eq!(names, ["c", "d"]);
}
