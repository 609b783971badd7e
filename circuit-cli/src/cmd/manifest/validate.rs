//! From a manifest's text to what it declares: parses the TOML (`file.rs`), checks what spans
//! several values, and builds each worker's spawn spec as `circuit spawn` would from flags.
//! Every error points at its place in the file: `pipeline.toml:14:1: ...`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use circuit_sdk::proto::{EnvMode, LogSpec, RestartSpec, SpawnSpec, StopSpec, MAX_REPLICAS};
use toml::Spanned;

use super::file::{self, File, WorkerTable};
use crate::env_file;

/// The label that marks the workers a manifest created; its value is the manifest's name.
pub const LABEL: &str = "circuit.manifest";

/// What a manifest declares, checked and ready to compare with the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The value of [`LABEL`] on its workers.
    pub name: String,
    /// Channels, in file order.
    pub channels: Vec<Channel>,
    /// Workers, in file order.
    pub workers: Vec<Worker>,
}

/// A declared channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Its name.
    pub name: String,
    /// Its capacity.
    pub capacity: u64,
    /// The node that must own it; `None`: whichever node the CLI talks to creates it.
    pub node: Option<String>,
    /// 1, or 3 or 5 for a replicated channel.
    pub replicas: u32,
    /// Replicas only on nodes with these labels (`k=v`).
    pub replica_labels: Vec<String>,
    /// `memory` or `disk`, for a replicated channel.
    pub storage: Option<String>,
}

/// Where a worker's copies may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Wherever circuitd likes (the least loaded node).
    Any,
    /// On this node.
    Node(String),
    /// On nodes with all of these labels.
    Labels(BTreeMap<String, String>),
}

impl Place {
    /// `on n1`, `node-labels role=compute`, `any node`.
    pub fn describe(&self) -> String {
        match self {
            Self::Any => "any node".into(),
            Self::Node(node) => format!("on {node}"),
            Self::Labels(labels) => format!("node-labels {}", pairs(labels)),
        }
    }
}

/// `k=v,k2=v2`.
pub fn pairs(map: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

/// A declared worker and its copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The name in `[workers.NAME]`.
    pub name: String,
    /// How many copies; named NAME-1..N when more than one.
    pub replicas: u32,
    /// Where they run.
    pub place: Place,
    /// What each runs, without a name ([`Worker::spec_of`] adds it).
    pub spec: SpawnSpec,
}

impl Worker {
    /// The names of its copies: NAME alone, or NAME-1..N (circuitd's replica names).
    pub fn instances(&self) -> Vec<String> {
        instance_names(&self.name, self.replicas)
    }

    /// The spec copy `instance` is spawned with, exactly as circuitd will report it.
    pub fn spec_of(&self, instance: &str) -> SpawnSpec {
        SpawnSpec {
            name: Some(instance.to_string()),
            ..self.spec.clone()
        }
    }
}

fn instance_names(name: &str, replicas: u32) -> Vec<String> {
    if replicas == 1 {
        return vec![name.to_string()];
    }
    (1..=replicas).map(|i| format!("{name}-{i}")).collect()
}

/// A manifest that cannot be used, and where in the file the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file as the user named it.
    pub file: String,
    /// Line and column, from 1, when the problem has a place.
    pub at: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Line and column (from 1, in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// What a manifest is checked against besides its own text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The path as the user gave it, for messages; its stem is the default name.
    pub file: &'a str,
    /// The file's contents.
    pub text: &'a str,
    /// The manifest's directory (absolute) when circuitd runs on this host: relative commands
    /// with a `/` and relative `cwd`s are resolved against it. `None`: passed as written.
    pub base: Option<&'a Path>,
    /// The manifest's directory as the CLI reaches it, local daemon or not: `env-file`s are
    /// read from there (by the CLI, which sends their variables).
    pub dir: &'a Path,
}

impl Source<'_> {
    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.to_string(),
            at: span.map(|s| line_col(self.text, s.start)),
            message: message.into(),
        }
    }
}

/// Parses and checks a manifest. Nothing outside the text, the path and the `env-file`s it
/// names is looked at.
pub fn parse(src: Source) -> Result<Manifest, ManifestError> {
    let file: File = toml::from_str(src.text).map_err(|e| src.error(e.span(), e.message()))?;
    let name = match file.name {
        Some(name) => name.0,
        None => default_name(&src)?,
    };
    let mut channels: Vec<_> = file.channels.into_iter().collect();
    channels.sort_by_key(|(key, _)| key.span().start);
    let channels = channels
        .into_iter()
        .map(|(key, table)| channel(&src, key.into_inner().0, table.into_inner()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tables: Vec<_> = file.workers.into_iter().collect();
    tables.sort_by_key(|(key, _)| key.span().start);
    let mut workers = Vec::with_capacity(tables.len());
    // Each copy's name, and the worker that declares it: two workers must not share one.
    let mut owners: HashMap<String, (String, u32)> = HashMap::new();
    for (key, table) in tables {
        let worker = worker(&src, &name, &key, table.into_inner())?;
        for instance in worker.instances() {
            if let Err(why) = file::worker_name(&instance) {
                return Err(src.error(Some(key.span()), format!("replica name: {why}")));
            }
            if let Some((other, replicas)) = owners.get(&instance) {
                let message = collision(
                    &instance,
                    (other, *replicas),
                    (&worker.name, worker.replicas),
                );
                return Err(src.error(Some(key.span()), message));
            }
            owners.insert(instance, (worker.name.clone(), worker.replicas));
        }
        workers.push(worker);
    }
    Ok(Manifest {
        name,
        channels,
        workers,
    })
}

/// The file's stem, when it is a valid name.
fn default_name(src: &Source) -> Result<String, ManifestError> {
    let stem = Path::new(src.file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match file::worker_name(&stem) {
        Ok(()) => Ok(stem),
        Err(why) => Err(src.error(
            Some(0..0),
            format!(
                "the manifest is named after its file by default, but {why}; set name = \"...\""
            ),
        )),
    }
}

/// Why two workers cannot both be declared: `name` is a copy of both.
fn collision(name: &str, first: (&str, u32), second: (&str, u32)) -> String {
    let which = |(worker, replicas): (&str, u32)| {
        if replicas == 1 {
            format!("worker \"{worker}\"")
        } else {
            format!("a replica of worker \"{worker}\" (replicas = {replicas})")
        }
    };
    format!(
        "\"{name}\" is the name of {} and of {}: rename one",
        which(first),
        which(second)
    )
}

/// Checks one `[workers.NAME]` table and builds its spec.
/// A `[channels.NAME]` table, checked: replicas 1, 3 or 5, placed by the daemon (not with
/// `node`), storage `memory` or `disk`.
fn channel(src: &Source, name: String, t: file::ChannelTable) -> Result<Channel, ManifestError> {
    let replicas = match &t.replicas {
        None => 1,
        Some(r) if matches!(r.get_ref(), 1 | 3 | 5) => *r.get_ref(),
        Some(r) => {
            return Err(src.error(
                Some(r.span()),
                "replicas must be 1, or 3 or 5 (an odd count, so that a majority survives the \
                 loss of 1 or 2 nodes)",
            ))
        }
    };
    if replicas > 1 && t.node.is_some() {
        let span = t.replicas.as_ref().map(Spanned::span);
        return Err(src.error(
            span,
            "node and replicas are exclusive: the replicas of a channel are placed by circuitd \
             (use replica-labels to choose where)",
        ));
    }
    if replicas == 1 {
        if let Some(labels) = &t.replica_labels {
            return Err(src.error(
                Some(labels.span()),
                "replica-labels is for replicated channels (replicas = 3 or 5)",
            ));
        }
    }
    let storage = match t.storage {
        None => None,
        Some(s) if matches!(s.get_ref().as_str(), "memory" | "disk") => Some(s.into_inner()),
        Some(s) => {
            return Err(src.error(
                Some(s.span()),
                format!("storage must be memory or disk, not \"{}\"", s.get_ref()),
            ))
        }
    };
    let replica_labels = t
        .replica_labels
        .map(|l| {
            l.into_inner()
                .into_iter()
                .map(|(k, v)| format!("{}={v}", k.0))
                .collect()
        })
        .unwrap_or_default();
    Ok(Channel {
        name,
        capacity: t.capacity,
        node: t.node.map(|n| n.0),
        replicas,
        replica_labels,
        storage,
    })
}

fn worker(
    src: &Source,
    manifest: &str,
    key: &Spanned<file::WorkerName>,
    t: WorkerTable,
) -> Result<Worker, ManifestError> {
    let replicas = match &t.replicas {
        Some(r) if *r.get_ref() == 0 => {
            return Err(src.error(Some(r.span()), "replicas must be at least 1"))
        }
        Some(r) if *r.get_ref() > MAX_REPLICAS => {
            return Err(src.error(
                Some(r.span()),
                format!("replicas must be at most {MAX_REPLICAS}"),
            ))
        }
        Some(r) => *r.get_ref(),
        None => 1,
    };
    let place = match (t.node, t.node_labels) {
        (Some(_), Some(labels)) => {
            return Err(src.error(
                Some(labels.span()),
                "node and node-labels are exclusive: place by node or by node labels",
            ))
        }
        (Some(node), None) => Place::Node(node.into_inner().0),
        (None, Some(labels)) if labels.get_ref().is_empty() => Place::Any,
        (None, Some(labels)) => Place::Labels(
            labels
                .into_inner()
                .into_iter()
                .map(|(k, v)| (k.0, v))
                .collect(),
        ),
        (None, None) => Place::Any,
    };
    if t.command.get_ref().0.trim().is_empty() {
        return Err(src.error(Some(t.command.span()), "command is empty"));
    }
    let mut seen = HashMap::new();
    for binding in t.channels.keys() {
        let upper = binding.get_ref().0.to_ascii_uppercase();
        if let Some(other) = seen.insert(upper.clone(), binding.get_ref().0.clone()) {
            return Err(src.error(
                Some(binding.span()),
                format!(
                    "channel bindings \"{other}\" and \"{}\" differ only by case: both become \
                     CIRCUIT_CHAN_{upper}",
                    binding.get_ref().0
                ),
            ));
        }
    }
    let mut labels = BTreeMap::new();
    for (k, v) in t.labels {
        if k.get_ref().0 == LABEL {
            return Err(src.error(
                Some(k.span()),
                format!("the label {LABEL} is set by circuit apply (to the manifest's name)"),
            ));
        }
        labels.insert(k.into_inner().0, v);
    }
    labels.insert(LABEL.to_string(), manifest.to_string());
    let restart = restart_spec(src, t.restart)?;
    let mut env = env_files(src, t.env_file)?;
    env.extend(t.env.into_iter().map(|(k, v)| (k.0, v.0)));
    let stop_default = StopSpec::default();
    let spec = SpawnSpec {
        command: resolve_command(t.command.into_inner().0, src.base),
        args: t.args.into_iter().map(|a| a.0).collect(),
        env,
        env_mode: if t.env_replace {
            EnvMode::Replace
        } else {
            EnvMode::Merge
        },
        cwd: t.cwd.map(|dir| resolve_dir(dir.into_inner().0, src.base)),
        name: None,
        labels,
        chans: t
            .channels
            .into_iter()
            .map(|(k, v)| (k.into_inner().0, v.into_inner().0))
            .collect(),
        restart,
        stop: StopSpec {
            signal: t.stop_signal.map_or(stop_default.signal, |s| s.0),
            grace_ms: t
                .stop_grace
                .map_or(stop_default.grace_ms, file::Dur::millis),
        },
        log: LogSpec {
            max_bytes: t.log_max_size.map(|s| s.0),
            max_files: t.log_max_files,
        },
        stdin: t.stdin,
    };
    Ok(Worker {
        name: key.get_ref().0.clone(),
        replicas,
        place,
        spec,
    })
}

/// The variables of a worker's `env-file`s, read from the manifest's directory, a later file
/// winning. A file that cannot be read or has a bad line is reported at the `env-file` key.
fn env_files(
    src: &Source,
    files: Option<Spanned<file::Paths>>,
) -> Result<BTreeMap<String, String>, ManifestError> {
    let mut env = BTreeMap::new();
    let Some(files) = files else {
        return Ok(env);
    };
    let span = files.span();
    for name in files.into_inner().0 {
        let path = src.dir.join(&name);
        let vars = env_file::read(&path, &path.display().to_string())
            .map_err(|e| src.error(Some(span.clone()), format!("env-file {e}")))?;
        env.extend(vars);
    }
    Ok(env)
}

/// The restart spec: the policy and timing given, `circuit spawn`'s defaults for the rest.
fn restart_spec(
    src: &Source,
    restart: Option<Spanned<file::Restart>>,
) -> Result<RestartSpec, ManifestError> {
    let d = RestartSpec::default();
    let Some(restart) = restart else {
        return Ok(d);
    };
    let span = restart.span();
    let file::Restart { policy, timing: t } = restart.into_inner();
    let ms = |v: Option<file::Dur>, default: u64| v.map_or(default, file::Dur::millis);
    let spec = RestartSpec {
        policy,
        backoff_initial_ms: ms(t.backoff, d.backoff_initial_ms),
        backoff_max_ms: ms(t.backoff_max, d.backoff_max_ms),
        stable_after_ms: ms(t.stable_after, d.stable_after_ms),
        max_restarts: t.max_restarts.unwrap_or(d.max_restarts),
        window_ms: ms(t.restart_window, d.window_ms),
    };
    if spec.backoff_max_ms < spec.backoff_initial_ms {
        return Err(src.error(
            Some(span),
            "backoff-max is smaller than backoff (the first delay)",
        ));
    }
    Ok(spec)
}

/// A relative command with a `/` (`./bin/x`) made absolute against `base`; a bare name is
/// looked up in `PATH` on the node and stays as it is.
fn resolve_command(command: String, base: Option<&Path>) -> String {
    match base {
        Some(base) if command.contains('/') && Path::new(&command).is_relative() => {
            clean(&base.join(&command))
        }
        _ => command,
    }
}

/// A relative directory made absolute against `base`.
fn resolve_dir(dir: String, base: Option<&Path>) -> String {
    match base {
        Some(base) if Path::new(&dir).is_relative() => clean(&base.join(&dir)),
        _ => dir,
    }
}

/// The path without its `.` components (`/m/./bin/x` → `/m/bin/x`); `..` is kept, since a
/// symbolic link may make it mean something else than the parent.
fn clean(path: &Path) -> String {
    path.components().collect::<PathBuf>().display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use circuit_sdk::proto::RestartPolicy;

    /// The manifest shipped in examples/pipeline.
    const PIPELINE: &str = include_str!("../../../../examples/pipeline/pipeline.toml");

    fn parse_text(text: &str) -> Result<Manifest, ManifestError> {
        parse(Source {
            file: "pipeline.toml",
            text,
            base: None,
            dir: Path::new("."),
        })
    }

    /// The `file:line:col: message` of a bad manifest.
    fn error_of(text: &str) -> String {
        parse_text(text).expect_err("a bad manifest").to_string()
    }

    #[test]
    fn a_replicated_channel_keeps_its_replicas_labels_and_storage() {
        let m = parse_text(
            "[channels.q]\ncapacity = 64\nreplicas = 3\nstorage = \"memory\"\n\
             replica-labels = { zone = \"a\" }\n",
        )
        .expect("a replicated channel");
        let q = &m.channels[0];
        assert_eq!(
            (q.replicas, q.replica_labels.clone(), q.storage.as_deref()),
            (3, vec!["zone=a".to_string()], Some("memory"))
        );
    }

    #[test]
    fn the_shipped_pipeline_parses() {
        let m = parse_text(PIPELINE).expect("pipeline.toml");
        assert_eq!(m.name, "pipeline");
        let chans: Vec<_> = m
            .channels
            .iter()
            .map(|c| (c.name.as_str(), c.capacity, c.node.as_deref()))
            .collect();
        assert_eq!(
            chans,
            [
                ("docs", 64, Some("n2")),
                ("counts", 64, Some("n3")),
                ("result", 1, Some("n1"))
            ]
        );
        let names: Vec<_> = m.workers.iter().flat_map(Worker::instances).collect();
        assert_eq!(
            names,
            ["fetch", "analyze-1", "analyze-2", "analyze-3", "store"]
        );
        let analyze = &m.workers[1];
        assert_eq!(
            analyze.place,
            Place::Labels([("role".into(), "compute".into())].into())
        );
        let spec = analyze.spec_of("analyze-2");
        assert_eq!(spec.name.as_deref(), Some("analyze-2"));
        assert_eq!(spec.labels.get(LABEL).map(String::as_str), Some("pipeline"));
        assert_eq!(spec.chans.get("in").map(String::as_str), Some("docs"));
        assert_eq!(spec.restart.policy, RestartPolicy::OnFailure);
        assert_eq!(m.workers[0].place, Place::Node("n1".into()));
        assert_eq!(
            m.workers[0]
                .spec
                .env
                .get("RUST_BACKTRACE")
                .map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn absent_keys_take_the_defaults_of_circuit_spawn() {
        let m = parse_text("[workers.w]\ncommand = \"sleep\"\nargs = [\"1\"]\n").expect("parse");
        let want = SpawnSpec {
            command: "sleep".into(),
            args: vec!["1".into()],
            name: Some("w".into()),
            labels: [(LABEL.into(), "pipeline".into())].into(),
            ..SpawnSpec::default()
        };
        assert_eq!(m.workers[0].spec_of("w"), want);
        assert_eq!(m.workers[0].place, Place::Any);
        assert_eq!(m.workers[0].instances(), ["w"]);
    }

    #[test]
    fn every_worker_key_fills_the_spec() {
        let m = parse_text(
            r#"
name = "p2"
[workers.w]
command = "./bin/w"
cwd = "data"
env-replace = true
labels = { team = "search" }
restart = { policy = "always", backoff = "500ms", backoff-max = "5s", stable-after = "1m",
            max-restarts = 0, restart-window = "10m" }
stop-signal = "INT"
stop-timeout = "2s"
log-max-size = "1M"
log-max-files = 2
stdin = true
"#,
        )
        .expect("parse");
        let s = &m.workers[0].spec;
        assert_eq!(m.name, "p2");
        assert_eq!(
            (s.command.as_str(), s.cwd.as_deref()),
            ("./bin/w", Some("data"))
        );
        assert_eq!(s.env_mode, EnvMode::Replace);
        assert_eq!(s.labels.get("team").map(String::as_str), Some("search"));
        let r = &s.restart;
        assert_eq!(
            (
                r.policy,
                r.backoff_initial_ms,
                r.backoff_max_ms,
                r.stable_after_ms
            ),
            (RestartPolicy::Always, 500, 5_000, 60_000)
        );
        assert_eq!((r.max_restarts, r.window_ms), (0, 600_000));
        assert_eq!((s.stop.signal.as_str(), s.stop.grace_ms), ("INT", 2_000));
        assert_eq!((s.log.max_bytes, s.log.max_files), (Some(1 << 20), Some(2)));
        assert!(s.stdin);
    }

    #[test]
    fn relative_paths_are_resolved_against_the_manifest_when_local() {
        let text =
            "[workers.w]\ncommand = \"./bin/w\"\ncwd = \"data\"\n[workers.v]\ncommand = \"sh\"\n";
        let m = parse(Source {
            file: "m.toml",
            text,
            base: Some(Path::new("/srv/app")),
            dir: Path::new("/srv/app"),
        })
        .expect("parse");
        let s = &m.workers[0].spec;
        assert_eq!(
            (s.command.as_str(), s.cwd.as_deref()),
            ("/srv/app/bin/w", Some("/srv/app/data"))
        );
        assert_eq!(
            m.workers[1].spec.command, "sh",
            "a bare name is looked up in PATH"
        );
    }

    #[test]
    fn env_files_are_read_from_the_manifest_directory_and_env_wins() {
        let dir = std::env::temp_dir().join(format!("circuit-manifest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf")).expect("temp dir");
        std::fs::write(dir.join("conf/base.env"), "# base\nA=base\nB=base\n").expect("write");
        std::fs::write(dir.join("app.env"), "export B=app\nC=app\n").expect("write");
        std::fs::write(dir.join("bad.env"), "A=1\n\noops\n").expect("write");
        let parse_in = |text: &str| {
            parse(Source {
                file: "m.toml",
                text,
                base: None,
                dir: &dir,
            })
        };
        let m = parse_in(
            "[workers.w]\ncommand = \"x\"\nenv-file = [\"conf/base.env\", \"app.env\"]\n\
             env = { C = \"env\" }\n[workers.v]\ncommand = \"x\"\nenv-file = \"app.env\"\n",
        )
        .expect("parse");
        let env = |i: usize| {
            let env = &m.workers[i].spec.env;
            env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(env(0), ["A=base", "B=app", "C=env"]);
        assert_eq!(env(1), ["B=app", "C=app"]);
        let err = parse_in("[workers.w]\ncommand = \"x\"\nenv-file = \"bad.env\"\n")
            .expect_err("a bad line")
            .to_string();
        assert_eq!(
            err,
            format!(
                "m.toml:3:12: env-file {}:3: expected KEY=VALUE, got \"oops\"",
                dir.join("bad.env").display()
            )
        );
        let err =
            parse_in("[workers.w]\ncommand = \"x\"\nenv-file = [\"app.env\", \"gone.env\"]\n")
                .expect_err("a missing file")
                .to_string();
        assert!(
            err.starts_with(&format!(
                "m.toml:3:12: env-file {}: cannot read",
                dir.join("gone.env").display()
            )),
            "{err}"
        );
        let err = parse_in("[workers.w]\ncommand = \"x\"\nenv-file = 3\n")
            .expect_err("not a path")
            .to_string();
        assert!(err.starts_with("m.toml:3:12: invalid type"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn syntax_and_type_errors_point_at_the_line() {
        assert_eq!(
            error_of("[workers.w\ncommand = \"a\"\n"),
            "pipeline.toml:1:11: unclosed table, expected `]`"
        );
        let unknown = error_of("[workers.w]\ncommand = \"a\"\nbogus = 1\n");
        assert!(
            unknown.starts_with("pipeline.toml:3:1: unknown field `bogus`"),
            "{unknown}"
        );
        assert_eq!(
            error_of("[workers.w]\ncommand = 5\n"),
            "pipeline.toml:2:11: invalid type: integer `5`, expected a string"
        );
        let chan = error_of("[channels.docs]\ncapacity = 1\nnode = \"n1\"\ncolour = 2\n");
        assert!(
            chan.starts_with("pipeline.toml:4:1: unknown field `colour`"),
            "{chan}"
        );
        assert!(error_of("[workers.w]\nargs = []\n").contains("missing field `command`"));
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let cases = [
            (
                "[workers.w]\ncommand = \"a\"\nnode = \"n1\"\nnode-labels = { role = \"x\" }\n",
                "pipeline.toml:4:15: node and node-labels are exclusive",
            ),
            ("[workers.w]\ncommand = \"a\"\nreplicas = 0\n", "pipeline.toml:3:12: replicas must be at least 1"),
            ("[channels.q]\nreplicas = 2\n", "pipeline.toml:2:12: replicas must be 1, or 3 or 5"),
            (
                "[channels.q]\nnode = \"n1\"\nreplicas = 3\n",
                "pipeline.toml:3:12: node and replicas are exclusive",
            ),
            ("[channels.q]\nreplicas = 3\nstorage = \"tape\"\n", "pipeline.toml:3:11: storage must be memory or disk"),
            (
                "[channels.q]\nreplica-labels = { zone = \"a\" }\n",
                "pipeline.toml:2:18: replica-labels is for replicated channels",
            ),
            ("[workers.w]\ncommand = \"a\"\nreplicas = 1001\n", "pipeline.toml:3:12: replicas must be at most 1000"),
            ("[workers.\"bad name\"]\ncommand = \"a\"\n", "pipeline.toml:1:10: invalid worker name \"bad name\""),
            ("[workers.w]\ncommand = \"\"\n", "pipeline.toml:2:11: command is empty"),
            (
                "[workers.w]\ncommand = \"a\"\nchannels = { in = \"no good\" }\n",
                "pipeline.toml:3:19: channel name \"no good\" contains ' '",
            ),
            (
                "[workers.w]\ncommand = \"a\"\nchannels = { in-x = \"docs\" }\n",
                "pipeline.toml:3:14: invalid channel binding \"in-x\"",
            ),
            ("[workers.w]\ncommand = \"a\"\nrestart = \"sometimes\"\n", "pipeline.toml:3:11: unknown restart policy \"sometimes\""),
            (
                "[workers.w]\ncommand = \"a\"\nrestart = { policy = \"always\", backoff = \"soon\" }\n",
                "pipeline.toml:3:42: invalid duration \"soon\"",
            ),
            (
                "[workers.w]\ncommand = \"a\"\nrestart = { policy = \"always\", backoff = \"2s\", backoff-max = \"1s\" }\n",
                "pipeline.toml:3:11: backoff-max is smaller than backoff",
            ),
            ("[workers.w]\ncommand = \"a\"\nstop-signal = \"NOPE\"\n", "pipeline.toml:3:15: unknown signal \"NOPE\""),
            ("[workers.w]\ncommand = \"a\"\nstop-grace = 5\n", "pipeline.toml:3:14: invalid type: integer `5`, expected a duration"),
            (
                "[workers.w]\ncommand = \"a\"\nlabels = { \"circuit.manifest\" = \"x\" }\n",
                "pipeline.toml:3:12: the label circuit.manifest is set by circuit apply",
            ),
            ("[channels.\"a b\"]\n", "pipeline.toml:1:11: channel name \"a b\" contains ' '"),
            ("name = \"-x\"\n", "pipeline.toml:1:8: invalid worker name \"-x\""),
        ];
        for (text, want) in cases {
            let got = error_of(text);
            assert!(got.starts_with(want), "{text:?}:\n got {got}\nwant {want}…");
        }
    }

    #[test]
    fn a_worker_named_like_a_replica_of_another_collides() {
        let text = "[workers.a]\ncommand = \"x\"\nreplicas = 3\n\n[workers.a-2]\ncommand = \"y\"\n";
        assert_eq!(
            error_of(text),
            "pipeline.toml:5:10: \"a-2\" is the name of a replica of worker \"a\" (replicas = 3) \
             and of worker \"a-2\": rename one"
        );
        let long = format!(
            "[workers.{}]\ncommand = \"x\"\nreplicas = 2\n",
            "x".repeat(63)
        );
        assert!(
            error_of(&long).starts_with("pipeline.toml:1:10: replica name: invalid worker name")
        );
    }

    #[test]
    fn the_default_name_is_the_file_stem() {
        let src = |file| Source {
            file,
            text: "",
            base: None,
            dir: Path::new("."),
        };
        assert_eq!(parse(src("dir/web.toml")).expect("parse").name, "web");
        let err = parse(src("dir/my app.toml"))
            .expect_err("bad stem")
            .to_string();
        assert!(
            err.starts_with("dir/my app.toml:1:1: the manifest is named after its file"),
            "{err}"
        );
    }

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
    }
}
