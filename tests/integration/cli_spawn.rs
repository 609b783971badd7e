//! `circuit spawn`'s directory and environment, end to end: through the Unix socket a worker
//! runs in the caller's directory (`--cwd` overrides), through `--addr` in circuitd's (and a
//! relative command that is not there says so), and `--env-file` sets variables or, with a bad
//! line, spawns nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use circuit_testkit::{bin, stderr, Daemon};

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `circuit args` run from `dir`.
fn cli_in(daemon: &Daemon, dir: &Path, args: &[&str]) -> Output {
    daemon
        .cli_command(args)
        .current_dir(dir)
        .output()
        .expect("run circuit")
}

/// `circuit args` run from `dir`, which must succeed; its stdout.
fn ok_in(daemon: &Daemon, dir: &Path, args: &[&str]) -> String {
    let out = cli_in(daemon, dir, args);
    assert!(
        out.status.success(),
        "circuit {args:?} failed: {}",
        stderr(&out)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Waits for worker `name` to end and returns its stdout log.
fn output_of(daemon: &Daemon, name: &str) -> String {
    let out = daemon.cli(&["wait", name]);
    assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    daemon.cli_ok(&["logs", name])
}

/// A temp dir by the path the kernel reports as a process's cwd.
fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = std::fs::canonicalize(dir.path()).expect("canonicalize");
    (dir, real)
}

#[test]
fn spawn_relative_command_runs_in_the_callers_directory() {
    let daemon = Daemon::start();
    let (_keep, here) = temp_dir();
    script(&here.join("x.sh"), "echo \"x.sh in $(pwd)\"");
    std::fs::write(here.join("app.sh"), "echo app.sh of the caller\n").expect("write");
    std::fs::create_dir(here.join("sub")).expect("mkdir");
    script(&here.join("sub/x.sh"), "echo \"sub/x.sh in $(pwd)\"");

    // `./x.sh` and `sh app.sh`, from the caller's directory: the caller's files.
    ok_in(&daemon, &here, &["spawn", "--name", "rel", "--", "./x.sh"]);
    assert_eq!(
        output_of(&daemon, "rel"),
        format!("x.sh in {}\n", here.display())
    );
    ok_in(
        &daemon,
        &here,
        &["spawn", "--name", "arg", "--", "sh", "app.sh"],
    );
    assert_eq!(output_of(&daemon, "arg"), "app.sh of the caller\n");

    // --cwd still overrides: relative to the caller, or absolute.
    let sub = here.join("sub");
    ok_in(
        &daemon,
        &here,
        &["spawn", "--name", "sub", "--cwd", "sub", "--", "./x.sh"],
    );
    assert_eq!(
        output_of(&daemon, "sub"),
        format!("sub/x.sh in {}\n", sub.display())
    );
    let (_other, elsewhere) = temp_dir();
    let abs = sub.to_str().expect("utf-8");
    ok_in(
        &daemon,
        &elsewhere,
        &["spawn", "--name", "abs", "--cwd", abs, "--", "./x.sh"],
    );
    assert_eq!(
        output_of(&daemon, "abs"),
        format!("sub/x.sh in {}\n", sub.display())
    );

    // The caller's directory is the worker's spec: `ps` shows it.
    let info: serde_json::Value =
        circuit_testkit::json_list(daemon.cli_ok(&["--json", "ps", "-a"]), "workers")
            .expect("ps json");
    let rel = info
        .as_array()
        .expect("a list")
        .iter()
        .find(|w| w["name"] == "rel")
        .expect("rel");
    assert_eq!(rel["spec"]["cwd"].as_str(), here.to_str());
}

#[test]
fn spawn_over_addr_names_circuitds_directory_when_a_relative_command_is_missing() {
    let daemon = Daemon::start_with(&["--listen", "127.0.0.1:0"]);
    let addr = daemon.mesh_addr();
    let daemon_dir = std::fs::read_link(format!("/proc/{}/cwd", daemon.pid())).expect("cwd");
    let (_keep, here) = temp_dir();
    script(&here.join("only-here.sh"), "echo hi");
    let out = std::process::Command::new(bin("circuit"))
        .args([
            "--addr",
            &addr,
            "spawn",
            "--name",
            "far",
            "--",
            "./only-here.sh",
        ])
        .current_dir(&here)
        .env_remove("CIRCUIT_SOCKET")
        .env_remove("CIRCUIT_KEY_FILE")
        .output()
        .expect("run circuit");
    assert!(
        !out.status.success(),
        "spawned over --addr from the caller's dir"
    );
    let err = stderr(&out);
    let want = format!(
        "cannot run ./only-here.sh: no such file or directory (resolved against {}, circuitd's \
         directory: no working directory was given)",
        daemon_dir.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("pass --cwd"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let ps = daemon.cli_ok(&["ps", "-a", "--json"]);
    assert!(!ps.contains("far"), "{ps}");
}

#[test]
fn spawn_env_file_sets_variables_and_a_bad_line_spawns_nothing() {
    let daemon = Daemon::start();
    let (_keep, here) = temp_dir();
    std::fs::write(
        here.join("app.env"),
        "# settings of the app\n\nexport GREETING=\"hello there\"\nLEVEL=info\nWHO=file\n",
    )
    .expect("write");
    std::fs::write(here.join("more.env"), "LEVEL=debug\n").expect("write");
    ok_in(
        &daemon,
        &here,
        &[
            "spawn",
            "--name",
            "envy",
            "--env-file",
            "app.env",
            "--env-file",
            "more.env",
            "--env",
            "WHO=flag",
            "--",
            "sh",
            "-c",
            "echo \"$GREETING/$LEVEL/$WHO\"",
        ],
    );
    assert_eq!(output_of(&daemon, "envy"), "hello there/debug/flag\n");

    std::fs::write(here.join("bad.env"), "A=1\n# fine\nnot an assignment\n").expect("write");
    let out = cli_in(
        &daemon,
        &here,
        &[
            "spawn",
            "--name",
            "bad",
            "--env-file",
            "bad.env",
            "--",
            "true",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: bad.env:3: expected KEY=VALUE, got \"not an assignment\"\n"
    );
    let ps = daemon.cli_ok(&["ps", "-a"]);
    assert!(!ps.contains("bad"), "{ps}");
}
