//! The difference between a manifest and the mesh, as a plan: pure functions from what is
//! declared and what runs to the changes that make them agree (`apply`) or remove what the
//! manifest made (`down`). Nothing here talks to circuitd.

use std::collections::{BTreeMap, BTreeSet};

use circuit_sdk::proto::{ChanInfo, Placement, SpawnSpec, WorkerInfo, WorkerState};
use serde::Serialize;

use super::mesh::Mesh;
use super::validate::{Manifest, Place, Worker, LABEL};

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Create what is missing.
    Create,
    /// Stop, remove and create again what differs.
    Replace,
    /// Remove.
    Remove,
    /// Nothing: it is as declared.
    Keep,
}

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A channel.
    Channel,
    /// A worker (one copy).
    Worker,
}

/// One line of the plan: one channel or one worker copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What happens to it.
    pub op: Op,
    /// Channel or worker.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The node it is on, or goes to when that is known.
    pub node: Option<String>,
    /// For people: `capacity 64, on n2`, `args changed`, `no longer declared`.
    pub detail: String,
    /// For a replace, the keys that differ (`args`, `env`, `node`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

impl Change {
    /// `+ channel docs (capacity 64, on n2)`, `~ worker store (args changed)`, ...
    pub fn line(&self) -> String {
        let sign = match self.op {
            Op::Create => '+',
            Op::Replace => '~',
            Op::Remove => '-',
            Op::Keep => '=',
        };
        let kind = match self.kind {
            Kind::Channel => "channel",
            Kind::Worker => "worker",
        };
        format!("{sign} {kind} {} ({})", self.name, self.detail)
    }
}

/// One request to circuitd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a channel, on `node` when given.
    CreateChannel {
        /// Its name.
        name: String,
        /// Its capacity.
        capacity: u64,
        /// The node that owns it.
        node: Option<String>,
        /// 1, or 3 or 5 for a replicated channel.
        replicas: u32,
        /// Replicas only on nodes with these labels.
        replica_labels: Vec<String>,
        /// `memory` or `disk`.
        storage: Option<String>,
    },
    /// Remove a channel from its owner; absent is fine.
    RemoveChannel {
        /// Its name.
        name: String,
        /// Its owner.
        node: String,
    },
    /// Stop and remove a worker on its node; absent is fine.
    RemoveWorker {
        /// Its name.
        name: String,
        /// Its node.
        node: String,
    },
    /// Spawn one or more copies.
    Place(Box<Placement>),
}

/// Changes that are made together, and the requests that make them, in order. A worker's
/// replaced and missing copies are one step, so that copies started together are spread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the step changes, for people.
    pub changes: Vec<Change>,
    /// The requests, in order.
    pub actions: Vec<Action>,
}

/// Everything `apply` (or `down`) would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The changes, in the order they are made.
    pub steps: Vec<Step>,
    /// What is already as declared.
    pub unchanged: Vec<Change>,
    /// Things worth knowing that do not stop the plan.
    pub warnings: Vec<String>,
}

/// How many changes of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Created.
    pub created: usize,
    /// Replaced.
    pub replaced: usize,
    /// Removed.
    pub removed: usize,
    /// Left as they were.
    pub unchanged: usize,
}

impl Counts {
    /// Adds `change` to the counts.
    pub fn add(&mut self, change: &Change) {
        match change.op {
            Op::Create => self.created += 1,
            Op::Replace => self.replaced += 1,
            Op::Remove => self.removed += 1,
            Op::Keep => self.unchanged += 1,
        }
    }

    /// True when nothing is (or was) changed.
    pub fn none(&self) -> bool {
        self.created + self.replaced + self.removed == 0
    }
}

impl Plan {
    /// Every change to make, in order.
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.steps.iter().flat_map(|s| &s.changes)
    }

    /// The counts of the whole plan.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        self.changes()
            .chain(&self.unchanged)
            .for_each(|c| counts.add(c));
        counts
    }
}

/// The plan that makes the mesh run what `m` declares, or every reason it cannot be applied
/// (then nothing may be done): a channel whose capacity or owner differs, a worker of that
/// name that this manifest did not create, a node that is not there, or — unless `prune` —
/// the removal of every worker the manifest made (all renamed, or a file cut short).
pub fn apply(m: &Manifest, mesh: &Mesh, prune: bool) -> Result<Plan, Vec<String>> {
    let mut plan = Plan::default();
    let mut conflicts = Vec::new();
    for c in &m.channels {
        let found: Vec<&ChanInfo> = mesh.chans.iter().filter(|i| i.name == c.name).collect();
        let mut detail = format!("capacity {}", c.capacity);
        if let Some(node) = &c.node {
            detail.push_str(&format!(", on {node}"));
        }
        if c.replicas > 1 {
            detail.push_str(&format!(", {} replicas", c.replicas));
        }
        if found.is_empty() {
            if let Some(why) = c.node.as_deref().and_then(|n| mesh.node_down(n)) {
                conflicts.push(format!("cannot create channel \"{}\": {why}", c.name));
            }
            plan.steps.push(Step {
                changes: vec![change(
                    Op::Create,
                    Kind::Channel,
                    &c.name,
                    c.node.clone(),
                    detail,
                )],
                actions: vec![Action::CreateChannel {
                    name: c.name.clone(),
                    capacity: c.capacity,
                    node: c.node.clone(),
                    replicas: c.replicas,
                    replica_labels: c.replica_labels.clone(),
                    storage: c.storage.clone(),
                }],
            });
            continue;
        }
        let mut ok = true;
        for have in &found {
            let fix = format!(
                "a live channel cannot be changed, and creating it again would drop its values: \
                 remove it with `circuit down` or `circuit chan rm {}`, then apply again",
                c.name
            );
            if have.capacity != c.capacity {
                ok = false;
                conflicts.push(format!(
                    "channel \"{}\" exists with capacity {}, but the manifest says {} — {fix}",
                    c.name, have.capacity, c.capacity
                ));
            } else if (have.replicas.len().max(1)) as u32 != c.replicas {
                ok = false;
                conflicts.push(format!(
                    "channel \"{}\" exists with {} replica(s), but the manifest says {} — {fix}",
                    c.name,
                    have.replicas.len().max(1),
                    c.replicas
                ));
            } else if c.node.as_ref().is_some_and(|n| n != &have.owner) {
                ok = false;
                conflicts.push(format!(
                    "channel \"{}\" is owned by {}, but the manifest says node {} — {fix}",
                    c.name,
                    have.owner,
                    c.node.as_deref().unwrap_or_default()
                ));
            }
        }
        if ok {
            let node = Some(found[0].owner.clone());
            let detail = format!("capacity {}, on {}", c.capacity, found[0].owner);
            plan.unchanged
                .push(change(Op::Keep, Kind::Channel, &c.name, node, detail));
        }
    }
    let declared: BTreeSet<String> = m.workers.iter().flat_map(Worker::instances).collect();
    for w in &m.workers {
        match worker_step(m, w, mesh, &mut plan.unchanged) {
            Ok(Some(step)) => plan.steps.push(step),
            Ok(None) => {}
            Err(mut why) => conflicts.append(&mut why),
        }
        for chan in w.spec.chans.values() {
            let known = m.channels.iter().any(|c| &c.name == chan)
                || mesh.chans.iter().any(|c| &c.name == chan);
            if !known {
                plan.warnings.push(format!(
                    "worker {} is bound to channel \"{chan}\", which neither exists nor is \
                     declared in the manifest",
                    w.name
                ));
            }
        }
    }
    // Workers this manifest made that it no longer declares.
    let mut ours = 0;
    for have in &mesh.workers {
        if have.spec.labels.get(LABEL) == Some(&m.name) && have.state != WorkerState::Lost {
            ours += 1;
            if !declared.contains(&have.name) {
                plan.steps.push(remove_worker(have, "no longer declared"));
            }
        }
    }
    let removed = plan
        .changes()
        .filter(|c| c.kind == Kind::Worker && c.op == Op::Remove)
        .count();
    if !prune && ours > 0 && removed == ours {
        let all = if ours == 1 {
            "the only worker".to_string()
        } else {
            format!("all {ours} workers")
        };
        conflicts.push(format!(
            "this plan removes {all} of manifest \"{}\" and keeps none; pass --prune to do that",
            m.name
        ));
    }
    if conflicts.is_empty() {
        Ok(plan)
    } else {
        Err(conflicts)
    }
}

/// The step that brings worker `w`'s copies to what is declared, if any is not; the copies
/// that are go to `unchanged`.
fn worker_step(
    m: &Manifest,
    w: &Worker,
    mesh: &Mesh,
    unchanged: &mut Vec<Change>,
) -> Result<Option<Step>, Vec<String>> {
    let mut conflicts = Vec::new();
    let mut step = Step {
        changes: Vec::new(),
        actions: Vec::new(),
    };
    // Copies to start where none runs; copies to replace (the old removed, the new started,
    // one copy at a time, so the others serve meanwhile); second copies to remove.
    let mut spawn: Vec<String> = Vec::new();
    let mut replace: Vec<(String, Vec<Action>)> = Vec::new();
    let mut removals = Vec::new();
    let place = w.place.describe();
    for name in w.instances() {
        let want = w.spec_of(&name);
        let found: Vec<&WorkerInfo> = mesh.workers_named(&name).collect();
        let foreign: Vec<String> = found
            .iter()
            .filter(|have| have.spec.labels.get(LABEL) != Some(&m.name))
            .map(|have| foreign(have, &m.name))
            .collect();
        if !foreign.is_empty() {
            conflicts.extend(foreign);
            continue;
        }
        let good = found
            .iter()
            .position(|have| have.spec == want && mesh.satisfies(have, &w.place));
        match (good, found.first()) {
            (Some(i), _) => {
                let have = found[i];
                let detail = format!("{}, on {}", have.state, have.node);
                unchanged.push(change(
                    Op::Keep,
                    Kind::Worker,
                    &name,
                    Some(have.node.clone()),
                    detail,
                ));
                for (j, other) in found.iter().enumerate() {
                    if j == i {
                        continue;
                    }
                    let why = format!("a second copy; {name} on {} is kept", have.node);
                    step.changes.push(removed(other, why));
                    removals.push(remove_action(other));
                }
            }
            (None, None) => {
                if let Some(why) = mesh.unplaceable(&w.place) {
                    conflicts.push(format!("cannot start worker {name}: {why}"));
                }
                let node = match &w.place {
                    Place::Node(node) => Some(node.clone()),
                    _ => None,
                };
                step.changes
                    .push(change(Op::Create, Kind::Worker, &name, node, place.clone()));
                spawn.push(name);
            }
            (None, Some(first)) => {
                let mut changed = if mesh.satisfies(first, &w.place) {
                    Vec::new()
                } else {
                    vec![match w.place {
                        Place::Labels(_) => "node-labels".to_string(),
                        _ => "node".to_string(),
                    }]
                };
                changed.extend(
                    differences(&want, &first.spec)
                        .into_iter()
                        .map(String::from),
                );
                if let Some(why) = mesh.unplaceable(&w.place) {
                    conflicts.push(format!("cannot start worker {name} again: {why}"));
                }
                let detail = format!("{} changed", changed.join(", "));
                step.changes.push(Change {
                    op: Op::Replace,
                    kind: Kind::Worker,
                    name: name.clone(),
                    node: Some(first.node.clone()),
                    detail,
                    changed,
                });
                for have in &found[1..] {
                    step.changes
                        .push(removed(have, format!("a second copy of {name}")));
                }
                let olds = found.iter().map(|have| remove_action(have)).collect();
                replace.push((name, olds));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    if step.changes.is_empty() {
        return Ok(None);
    }
    step.actions = removals;
    for (name, olds) in replace {
        step.actions.extend(olds);
        step.actions
            .extend(placements(w, std::slice::from_ref(&name)));
    }
    step.actions.extend(placements(w, &spawn));
    Ok(Some(step))
}

/// The `Place` requests that start copies `names` of `w`: one for all of them when every copy
/// is missing (circuitd spreads them and names them NAME-1..N), else one per copy, so that the
/// copies that run stay as they are.
fn placements(w: &Worker, names: &[String]) -> Vec<Action> {
    let placement = |spec: SpawnSpec, replicas: u32| {
        let (node, selector) = match &w.place {
            Place::Any => (None, BTreeMap::new()),
            Place::Node(node) => (Some(node.clone()), BTreeMap::new()),
            Place::Labels(labels) => (None, labels.clone()),
        };
        Action::Place(Box::new(Placement {
            spec,
            node,
            selector,
            replicas,
        }))
    };
    if w.replicas > 1 && names == w.instances() {
        return vec![placement(w.spec_of(&w.name), w.replicas)];
    }
    names
        .iter()
        .map(|name| placement(w.spec_of(name), 1))
        .collect()
}

/// The keys of a worker table whose values differ between `want` and `have`.
pub fn differences(want: &SpawnSpec, have: &SpawnSpec) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |differs: bool, key| {
        if differs {
            keys.push(key);
        }
    };
    check(want.command != have.command, "command");
    check(want.args != have.args, "args");
    check(want.env != have.env, "env");
    check(want.env_mode != have.env_mode, "env-replace");
    check(want.cwd != have.cwd, "cwd");
    check(want.labels != have.labels, "labels");
    check(want.chans != have.chans, "channels");
    check(want.restart != have.restart, "restart");
    check(want.stop.signal != have.stop.signal, "stop-signal");
    check(want.stop.grace_ms != have.stop.grace_ms, "stop-grace");
    check(want.log.max_bytes != have.log.max_bytes, "log-max-size");
    check(want.log.max_files != have.log.max_files, "log-max-files");
    check(want.stdin != have.stdin, "stdin");
    check(want.name != have.name, "name");
    keys
}

/// The plan that removes what `m` made: every worker with its label (whatever it is named
/// now), then every declared channel that exists. Absent things are not an error.
pub fn down(m: &Manifest, mesh: &Mesh) -> Plan {
    let mut plan = Plan::default();
    for have in &mesh.workers {
        let ours = have.spec.labels.get(LABEL) == Some(&m.name);
        if ours && have.state != WorkerState::Lost {
            plan.steps
                .push(remove_worker(have, &format!("on {}", have.node)));
        }
    }
    for c in &m.channels {
        for have in mesh.chans.iter().filter(|i| i.name == c.name) {
            let detail = format!("capacity {}, on {}", have.capacity, have.owner);
            plan.steps.push(Step {
                changes: vec![change(
                    Op::Remove,
                    Kind::Channel,
                    &c.name,
                    Some(have.owner.clone()),
                    detail,
                )],
                actions: vec![Action::RemoveChannel {
                    name: c.name.clone(),
                    node: have.owner.clone(),
                }],
            });
        }
    }
    plan
}

fn change(op: Op, kind: Kind, name: &str, node: Option<String>, detail: String) -> Change {
    Change {
        op,
        kind,
        name: name.to_string(),
        node,
        detail,
        changed: Vec::new(),
    }
}

fn removed(w: &WorkerInfo, why: impl Into<String>) -> Change {
    change(
        Op::Remove,
        Kind::Worker,
        &w.name,
        Some(w.node.clone()),
        why.into(),
    )
}

fn remove_action(w: &WorkerInfo) -> Action {
    Action::RemoveWorker {
        name: w.name.clone(),
        node: w.node.clone(),
    }
}

fn remove_worker(w: &WorkerInfo, why: &str) -> Step {
    Step {
        changes: vec![removed(w, why)],
        actions: vec![remove_action(w)],
    }
}

/// Why a worker of a declared name is not this manifest's to change.
fn foreign(w: &WorkerInfo, manifest: &str) -> String {
    match w.spec.labels.get(LABEL) {
        Some(other) => format!(
            "worker {} on {} belongs to manifest \"{other}\" ({LABEL}={other}) — rename the \
             worker in this manifest, or remove it with `circuit down` of that manifest",
            w.name, w.node
        ),
        None => format!(
            "worker {} on {} was not created by this manifest (it has no label \
             {LABEL}={manifest}) — rename the worker in the manifest, or remove the old one \
             with `circuit rm --node {} {}`",
            w.name, w.node, w.node, w.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::manifest::mesh::fixtures::{chan, empty_mesh, running};
    use crate::cmd::manifest::validate::{parse, Source};
    use circuit_sdk::proto::EnvMode;
    use circuit_sdk::proto::NodeState;

    const PIPELINE: &str = include_str!("../../../../examples/pipeline/pipeline.toml");

    fn manifest(text: &str) -> Manifest {
        parse(Source {
            file: "pipeline.toml",
            text,
            base: None,
            dir: std::path::Path::new("."),
        })
        .expect("a good manifest")
    }

    /// The mesh after the whole pipeline was applied (and has finished).
    fn applied_mesh(m: &Manifest) -> Mesh {
        let mut mesh = empty_mesh();
        for c in &m.channels {
            mesh.chans
                .push(chan(&c.name, c.capacity, c.node.as_deref().expect("node")));
        }
        for w in &m.workers {
            for (i, name) in w.instances().into_iter().enumerate() {
                let node = match &w.place {
                    Place::Node(n) => n.clone(),
                    _ => ["n2", "n3"][i % 2].to_string(),
                };
                let mut info = running(w.spec_of(&name), &node);
                info.state = WorkerState::Exited;
                mesh.workers.push(info);
            }
        }
        mesh
    }

    fn lines(plan: &Plan) -> Vec<String> {
        plan.changes().map(Change::line).collect()
    }

    #[test]
    fn an_empty_mesh_gets_everything_channels_first() {
        let m = manifest(PIPELINE);
        let plan = apply(&m, &empty_mesh(), false).expect("plan");
        assert_eq!(
            lines(&plan),
            [
                "+ channel docs (capacity 64, on n2)",
                "+ channel counts (capacity 64, on n3)",
                "+ channel result (capacity 1, on n1)",
                "+ worker fetch (on n1)",
                "+ worker analyze-1 (node-labels role=compute)",
                "+ worker analyze-2 (node-labels role=compute)",
                "+ worker analyze-3 (node-labels role=compute)",
                "+ worker store (on n3)",
            ]
        );
        // The three analyzers start in one request, so that circuitd spreads them.
        let analyze = &plan.steps[4];
        assert_eq!(analyze.actions.len(), 1);
        let Action::Place(p) = &analyze.actions[0] else {
            panic!("expected a placement, got {:?}", analyze.actions[0]);
        };
        assert_eq!((p.spec.name.as_deref(), p.replicas), (Some("analyze"), 3));
        assert_eq!(p.selector, [("role".into(), "compute".into())].into());
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        let counts = plan.counts();
        assert_eq!((counts.created, counts.unchanged), (8, 0));
    }

    #[test]
    fn applying_what_runs_changes_nothing_even_once_it_has_exited() {
        let m = manifest(PIPELINE);
        let plan = apply(&m, &applied_mesh(&m), false).expect("plan");
        assert!(plan.steps.is_empty(), "{:?}", lines(&plan));
        let counts = plan.counts();
        assert!(counts.none());
        assert_eq!(counts.unchanged, 8);
    }

    #[test]
    fn edits_become_replacements_creations_and_removals() {
        let m = manifest(PIPELINE);
        let mesh = applied_mesh(&m);
        let edited = PIPELINE
            .replace(
                "args = [\"store\", \"--docs\", \"2000\"]",
                "args = [\"store\", \"--docs\", \"10\"]",
            )
            .replace("replicas = 3", "replicas = 2")
            + "\n[channels.extra]\ncapacity = 2\n";
        let plan = apply(&manifest(&edited), &mesh, false).expect("plan");
        assert_eq!(
            lines(&plan),
            [
                "+ channel extra (capacity 2)",
                "~ worker store (args changed)",
                "- worker analyze-3 (no longer declared)",
            ]
        );
        let store = &plan.steps[1];
        assert!(
            matches!(&store.actions[0], Action::RemoveWorker { name, node } if name == "store" && node == "n3")
        );
        assert!(
            matches!(&store.actions[1], Action::Place(p) if p.node.as_deref() == Some("n3") && p.replicas == 1)
        );
        let counts = plan.counts();
        assert_eq!(
            (
                counts.created,
                counts.replaced,
                counts.removed,
                counts.unchanged
            ),
            (1, 1, 1, 6)
        );
    }

    #[test]
    fn a_changed_replica_set_is_replaced_one_copy_at_a_time_and_scaling_keeps_survivors() {
        let m = manifest(PIPELINE);
        let mesh = applied_mesh(&m);
        let edited = PIPELINE.replace("\"--pause-ms\", \"3\"", "\"--pause-ms\", \"4\"");
        let plan = apply(&manifest(&edited), &mesh, false).expect("plan");
        let order: Vec<String> = plan.steps[0]
            .actions
            .iter()
            .map(|a| match a {
                Action::RemoveWorker { name, .. } => format!("-{name}"),
                Action::Place(p) => {
                    format!("+{}x{}", p.spec.name.as_deref().unwrap_or("?"), p.replicas)
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            order,
            [
                "-analyze-1",
                "+analyze-1x1",
                "-analyze-2",
                "+analyze-2x1",
                "-analyze-3",
                "+analyze-3x1"
            ]
        );
        // 3 -> 5: the three keep running; 4 and 5 are added by name.
        let more = apply(
            &manifest(&PIPELINE.replace("replicas = 3", "replicas = 5")),
            &mesh,
            false,
        )
        .expect("plan");
        assert_eq!(
            lines(&more),
            [
                "+ worker analyze-4 (node-labels role=compute)",
                "+ worker analyze-5 (node-labels role=compute)"
            ]
        );
        assert_eq!(more.counts().unchanged, 8);
    }

    #[test]
    fn a_plan_that_removes_every_worker_of_the_manifest_needs_prune() {
        let m = manifest(PIPELINE);
        let mesh = applied_mesh(&m);
        let refusal =
            "this plan removes all 5 workers of manifest \"pipeline\" and keeps none; pass \
             --prune to do that";
        // A file cut short after its channels, and one whose workers were all renamed.
        let cut = &PIPELINE[..PIPELINE.find("[workers.").expect("workers")];
        let renamed = PIPELINE.replace("[workers.", "[workers.new-");
        for text in [cut, &renamed] {
            let conflicts = apply(&manifest(text), &mesh, false).expect_err("refused");
            assert_eq!(conflicts, [refusal]);
            let plan = apply(&manifest(text), &mesh, true).expect("with --prune");
            assert_eq!(plan.counts().removed, 5);
        }
        // Removing some of them is an ordinary plan.
        let fewer = PIPELINE.replace("replicas = 3", "replicas = 2");
        assert!(apply(&manifest(&fewer), &mesh, false).is_ok());
        // One worker: "the only worker".
        let one = manifest("[workers.w]\ncommand = \"x\"\n");
        let mut mesh = empty_mesh();
        mesh.workers
            .push(running(one.workers[0].spec_of("w"), "n1"));
        let renamed = manifest("[workers.v]\ncommand = \"x\"\n");
        assert_eq!(
            apply(&renamed, &mesh, false).expect_err("refused"),
            [
                "this plan removes the only worker of manifest \"pipeline\" and keeps none; pass \
              --prune to do that"
            ]
        );
        // Nothing of the manifest runs yet: nothing to protect.
        assert!(apply(&renamed, &empty_mesh(), false).is_ok());
    }

    #[test]
    fn a_missing_replica_is_started_alone() {
        let m = manifest(PIPELINE);
        let mut mesh = applied_mesh(&m);
        mesh.workers.retain(|w| w.name != "analyze-2");
        let plan = apply(&m, &mesh, false).expect("plan");
        assert_eq!(
            lines(&plan),
            ["+ worker analyze-2 (node-labels role=compute)"]
        );
        let Action::Place(p) = &plan.steps[0].actions[0] else {
            panic!("expected a placement");
        };
        assert_eq!((p.spec.name.as_deref(), p.replicas), (Some("analyze-2"), 1));
    }

    #[test]
    fn a_worker_on_the_wrong_node_is_moved() {
        let m = manifest(PIPELINE);
        let mut mesh = applied_mesh(&m);
        let store = mesh
            .workers
            .iter_mut()
            .find(|w| w.name == "store")
            .expect("store");
        store.node = "n2".into();
        let plan = apply(&m, &mesh, false).expect("plan");
        assert_eq!(lines(&plan), ["~ worker store (node changed)"]);
        // An analyzer on a node without role=compute too.
        let mut mesh = applied_mesh(&m);
        mesh.workers
            .iter_mut()
            .find(|w| w.name == "analyze-1")
            .expect("a1")
            .node = "n1".into();
        let plan = apply(&m, &mesh, false).expect("plan");
        assert_eq!(lines(&plan), ["~ worker analyze-1 (node-labels changed)"]);
    }

    #[test]
    fn a_changed_channel_or_a_foreign_worker_stops_the_whole_plan() {
        let m = manifest(PIPELINE);
        let mut mesh = applied_mesh(&m);
        mesh.chans[0].capacity = 16;
        mesh.chans[2].owner = "n2".into();
        mesh.workers.retain(|w| w.name != "fetch");
        let mut stranger = running(
            SpawnSpec {
                name: Some("store".into()),
                command: "sh".into(),
                ..SpawnSpec::default()
            },
            "n3",
        );
        mesh.workers.retain(|w| w.name != "store");
        mesh.workers.push(stranger.clone());
        let conflicts = apply(&m, &mesh, false).expect_err("conflicts");
        assert_eq!(conflicts.len(), 3, "{conflicts:#?}");
        assert!(conflicts[0]
            .starts_with("channel \"docs\" exists with capacity 16, but the manifest says 64 — "));
        assert!(
            conflicts[0].contains("`circuit chan rm docs`"),
            "{}",
            conflicts[0]
        );
        assert!(conflicts[1]
            .starts_with("channel \"result\" is owned by n2, but the manifest says node n1"));
        assert!(conflicts[2].starts_with("worker store on n3 was not created by this manifest"));
        // One of another manifest is not ours either.
        stranger.spec.labels.insert(LABEL.into(), "other".into());
        mesh.workers.retain(|w| w.name != "store");
        mesh.workers.push(stranger);
        mesh.chans = applied_mesh(&m).chans;
        let conflicts = apply(&m, &mesh, false).expect_err("conflicts");
        assert_eq!(conflicts.len(), 1);
        assert!(
            conflicts[0].contains("belongs to manifest \"other\""),
            "{}",
            conflicts[0]
        );
    }

    #[test]
    fn nodes_that_are_not_there_are_found_before_anything_is_done() {
        let m = manifest(PIPELINE);
        let mut mesh = empty_mesh();
        mesh.nodes.retain(|n| n.name != "n3");
        mesh.nodes[1].state = NodeState::Dead;
        let conflicts = apply(&m, &mesh, false).expect_err("conflicts");
        assert_eq!(
            conflicts,
            [
                "cannot create channel \"docs\": node \"n2\" is dead",
                "cannot create channel \"counts\": no node named \"n3\" in the mesh — see `circuit nodes`",
                "cannot start worker analyze-1: no live node has the labels role=compute — see `circuit nodes`",
                "cannot start worker analyze-2: no live node has the labels role=compute — see `circuit nodes`",
                "cannot start worker analyze-3: no live node has the labels role=compute — see `circuit nodes`",
                "cannot start worker store: no node named \"n3\" in the mesh — see `circuit nodes`",
            ]
        );
    }

    #[test]
    fn a_binding_to_an_unknown_channel_is_a_warning() {
        let m = manifest("[workers.w]\ncommand = \"x\"\nchannels = { in = \"elsewhere\" }\n");
        let plan = apply(&m, &empty_mesh(), false).expect("plan");
        assert_eq!(plan.warnings.len(), 1);
        assert!(
            plan.warnings[0].contains("\"elsewhere\""),
            "{:?}",
            plan.warnings
        );
        let mut mesh = empty_mesh();
        mesh.chans.push(chan("elsewhere", 0, "n2"));
        assert!(apply(&m, &mesh, false).expect("plan").warnings.is_empty());
    }

    #[test]
    fn differences_name_the_manifest_keys() {
        let a = SpawnSpec::default();
        let mut b = a.clone();
        b.args = vec!["x".into()];
        b.env_mode = EnvMode::Replace;
        b.stop.grace_ms = 1;
        assert_eq!(differences(&a, &b), ["args", "env-replace", "stop-grace"]);
    }

    #[test]
    fn down_removes_the_labelled_workers_then_the_declared_channels() {
        let m = manifest(PIPELINE);
        let mut mesh = applied_mesh(&m);
        // A worker of another name that still carries the label (from an older version of the
        // manifest) goes too; one without it stays.
        let mut old = running(m.workers[0].spec_of("fetch-old"), "n1");
        old.state = WorkerState::Failed;
        mesh.workers.push(old);
        mesh.workers.push(running(
            SpawnSpec {
                name: Some("bystander".into()),
                command: "sh".into(),
                ..SpawnSpec::default()
            },
            "n1",
        ));
        mesh.chans.push(chan("unrelated", 0, "n1"));
        let plan = down(&m, &mesh);
        let got = lines(&plan);
        assert_eq!(got.len(), 9, "{got:#?}");
        assert_eq!(got[0], "- worker fetch (on n1)");
        assert!(got.contains(&"- worker fetch-old (on n1)".to_string()));
        assert_eq!(
            &got[6..],
            [
                "- channel docs (capacity 64, on n2)",
                "- channel counts (capacity 64, on n3)",
                "- channel result (capacity 1, on n1)",
            ]
        );
        assert!(
            down(&m, &empty_mesh()).steps.is_empty(),
            "down twice does nothing"
        );
    }
}
