//! The pipeline: the order of the stages, taken from the plugins' descriptors; which
//! (stage, operation) steps a command runs in that order; and the conversation with one stage
//! plugin (call, answer its fact queries, call again) that yields a plan.
//!
//! Every stage's `up` step is a node of a graph, and so is every extra `up` step a stage
//! declares (multicluster's links: `multicluster/link`); the descriptors' `after` / `before`
//! are its edges. `up` runs the nodes in topological order; among nodes that are ready at the
//! same time the K-PaaS guide's order decides for the built-ins (cert → control-plane →
//! multicluster → netfix → multicluster/link → smi → sample), then the name. `down` walks the
//! same nodes backwards with each step's undo. A cycle, or a constraint naming a step no plugin
//! provides (other than a built-in stage whose plugin is not installed, reported on its own),
//! is refused with one line.

use crate::facts::FactSource;
use crate::loader::Plugin;
use kpaas_mesh_kit::stages;
use kpaas_mesh_plugin_api::ffi::StageBox;
use kpaas_mesh_plugin_api::{Descriptor, Fact, Operation, Plan, StageRequest, StageResponse};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A stage may ask for facts this many times per call before the host gives up on it.
pub const MAX_FACT_ROUNDS: usize = 16;

/// One step of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub stage: String,
    pub operation: Operation,
}

/// One node of the `up` order: a stage's own step, or one of its extra steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `stage` or `stage/operation`, as constraints name it.
    pub id: String,
    pub stage: String,
    /// The operation of this node in `up`, and the one that undoes it in `down`.
    pub up: Operation,
    pub undo: Operation,
    /// True for a stage's own step (the one `status` and `check` use).
    pub main: bool,
}

/// The guide's rank of a built-in step; others come after, by name.
fn guide_rank(id: &str) -> usize {
    const GUIDE: [&str; 7] = [
        stages::CERT,
        stages::CONTROL_PLANE,
        stages::MULTICLUSTER,
        stages::NETFIX,
        stages::MULTICLUSTER_LINK,
        stages::SMI,
        stages::SAMPLE,
    ];
    GUIDE.iter().position(|g| *g == id).unwrap_or(GUIDE.len())
}

fn is_built_in(id: &str) -> bool {
    guide_rank(id) < 7
}

pub fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Up => "up",
        Operation::Down => "down",
        Operation::Status => "status",
        Operation::Check => "check",
        Operation::Link => "link",
        Operation::Unlink => "unlink",
    }
}

/// The `up` order of the stages `descriptors` describe (one descriptor per stage).
pub fn up_order(descriptors: &[&Descriptor]) -> Result<Vec<Node>, String> {
    let mut nodes: Vec<Node> = Vec::new();
    // edges: (before, after) = `before` must run first
    let mut constraints: Vec<(String, String, String)> = Vec::new(); // (first, then, declared by)
    for d in descriptors {
        nodes.push(Node {
            id: d.stage.clone(),
            stage: d.stage.clone(),
            up: Operation::Up,
            undo: Operation::Down,
            main: true,
        });
        for a in &d.after {
            constraints.push((a.clone(), d.stage.clone(), d.stage.clone()));
        }
        for b in &d.before {
            constraints.push((d.stage.clone(), b.clone(), d.stage.clone()));
        }
        for x in &d.extra_steps {
            let id = format!("{}/{}", d.stage, op_name(x.operation));
            // an extra step always follows its stage's own step
            constraints.push((d.stage.clone(), id.clone(), d.stage.clone()));
            for a in &x.after {
                constraints.push((a.clone(), id.clone(), d.stage.clone()));
            }
            for b in &x.before {
                constraints.push((id.clone(), b.clone(), d.stage.clone()));
            }
            nodes.push(Node {
                id,
                stage: d.stage.clone(),
                up: x.operation,
                undo: x.undo,
                main: false,
            });
        }
    }
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    if ids.len() != nodes.len() {
        return Err("two plugins declare the same step".into());
    }
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut indegree: BTreeMap<&str, usize> = ids.iter().map(|i| (*i, 0)).collect();
    for (first, then, by) in &constraints {
        for end in [first, then] {
            if !ids.contains(end.as_str()) {
                if is_built_in(end) {
                    // a built-in stage without its plugin: reported as not installed
                    continue;
                }
                return Err(format!(
                    "stage {by}: its descriptor orders it against '{end}', which no installed plugin provides"
                ));
            }
        }
        if !ids.contains(first.as_str()) || !ids.contains(then.as_str()) {
            continue;
        }
        if edges.entry(first).or_default().insert(then) {
            *indegree.get_mut(then.as_str()).expect("known id") += 1;
        }
    }
    let key = |id: &str| (guide_rank(id), id.to_string());
    let mut ready: BTreeSet<(usize, String)> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(id, _)| key(id))
        .collect();
    let mut order: Vec<Node> = Vec::new();
    while let Some(next) = ready.pop_first() {
        let id = next.1;
        if let Some(succ) = edges.get(id.as_str()) {
            for s in succ {
                let d = indegree.get_mut(s).expect("known id");
                *d -= 1;
                if *d == 0 {
                    ready.insert(key(s));
                }
            }
        }
        order.push(nodes.iter().find(|n| n.id == id).expect("known id").clone());
    }
    if order.len() != nodes.len() {
        let stuck: Vec<&str> = indegree
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(id, _)| *id)
            .collect();
        return Err(format!(
            "the plugins' ordering constraints form a cycle among: {}",
            stuck.join(", ")
        ));
    }
    Ok(order)
}

/// The steps of `command` over `order`, restricted to the `selected` stages and to the
/// operations each stage's descriptor says it answers.
pub fn steps(
    command: Operation,
    order: &[Node],
    selected: &[String],
    descriptor: impl Fn(&str) -> Option<Descriptor>,
) -> Vec<Step> {
    let mut out = Vec::new();
    let picked = |n: &Node| selected.contains(&n.stage);
    let supports = |stage: &str, op: Operation| descriptor(stage).is_some_and(|d| d.supports(op));
    // a stage's own step stands for `op` unless one of its extra steps is that operation
    let extra_has = |stage: &str, pick: &dyn Fn(&Node) -> bool| {
        order.iter().any(|n| !n.main && n.stage == stage && pick(n))
    };
    let push = |out: &mut Vec<Step>, n: &Node, op: Operation| {
        out.push(Step {
            stage: n.stage.clone(),
            operation: op,
        })
    };
    match command {
        Operation::Up => {
            for n in order.iter().filter(|n| picked(n)) {
                if supports(&n.stage, n.up) {
                    push(&mut out, n, n.up);
                }
            }
        }
        Operation::Down => {
            for n in order.iter().rev().filter(|n| picked(n)) {
                if supports(&n.stage, n.undo) {
                    push(&mut out, n, n.undo);
                }
            }
        }
        Operation::Link => {
            for n in order.iter().filter(|n| picked(n)) {
                let here = if n.main {
                    !extra_has(&n.stage, &|x| x.up == Operation::Link)
                } else {
                    n.up == Operation::Link
                };
                if here && supports(&n.stage, Operation::Link) {
                    push(&mut out, n, Operation::Link);
                }
            }
        }
        Operation::Unlink => {
            for n in order.iter().rev().filter(|n| picked(n)) {
                let here = if n.main {
                    !extra_has(&n.stage, &|x| x.undo == Operation::Unlink)
                } else {
                    n.undo == Operation::Unlink
                };
                if here && supports(&n.stage, Operation::Unlink) {
                    push(&mut out, n, Operation::Unlink);
                }
            }
        }
        Operation::Status | Operation::Check => {
            for n in order.iter().filter(|n| n.main && picked(n)) {
                if supports(&n.stage, command) {
                    push(&mut out, n, command);
                }
            }
        }
    }
    out
}

/// Asks `plugin` for its plan, answering fact queries from `facts` until it has one.
/// The plugin runs on a blocking thread: its calls are synchronous and may take a moment
/// (key generation), and it must never run inside the async runtime.
/// How long one call into a plugin may take before the host stops waiting for it: planning
/// is pure computation over facts the host already read, so a call that takes longer hangs.
/// `KPAAS_MESH_PLUGIN_DEADLINE` (seconds) overrides it.
pub const PLUGIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// [`PLUGIN_DEADLINE`], or `KPAAS_MESH_PLUGIN_DEADLINE` seconds.
pub fn plugin_deadline() -> std::time::Duration {
    std::env::var("KPAAS_MESH_PLUGIN_DEADLINE")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(PLUGIN_DEADLINE)
}

/// Runs `call` on a blocking thread and gives up after `deadline` with one line naming the
/// plugin (the thread is left behind; the binary exits without waiting for it).
pub async fn within_deadline<T: Send + 'static>(
    name: &str,
    what: &str,
    deadline: std::time::Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(deadline, tokio::task::spawn_blocking(call)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("plugin {name} did not return: {e}")),
        Err(_) => Err(format!(
            "plugin {name} did not answer {what} within {}s; stopped waiting for it (a hung plugin: see its vendor; KPAAS_MESH_PLUGIN_DEADLINE sets the deadline)",
            deadline.as_secs()
        )),
    }
}

pub async fn plan_stage(
    plugin: &Plugin,
    stage: &Arc<StageBox>,
    request: StageRequest,
    facts: &impl FactSource,
) -> Result<Plan, String> {
    plan_stage_within(plugin, stage, request, facts, plugin_deadline()).await
}

/// [`plan_stage`] with a deadline for each call into the plugin.
pub async fn plan_stage_within(
    plugin: &Plugin,
    stage: &Arc<StageBox>,
    mut request: StageRequest,
    facts: &impl FactSource,
    deadline: std::time::Duration,
) -> Result<Plan, String> {
    let name = plugin.info.name.clone();
    for _round in 0..=MAX_FACT_ROUNDS {
        let json = serde_json::to_string(&request)
            .map_err(|e| format!("cannot encode the request for {name}: {e}"))?;
        let obj = Arc::clone(stage);
        let what = format!(
            "{} of stage {}",
            op_name(request.operation),
            plugin.info.stage
        );
        let reply = within_deadline(&name, &what, deadline, move || {
            obj.call(json.as_str().into()).into_result()
        })
        .await?
        .map_err(|e| format!("{name}: {e}"))?;
        let response: StageResponse = serde_json::from_str(&reply)
            .map_err(|e| format!("plugin {name} sent an unreadable response: {e}"))?;
        match response {
            StageResponse::Plan(plan) => return Ok(plan),
            StageResponse::NeedFacts { queries } => {
                if queries.is_empty() {
                    return Err(format!("plugin {name} asked for facts but named none"));
                }
                for query in queries {
                    if request.fact(&query).is_some() {
                        return Err(format!(
                            "plugin {name} asked again for a fact it already has: {query:?}"
                        ));
                    }
                    let answer = facts.answer(&query).await;
                    tracing::debug!(plugin = %name, ?query, "answered fact");
                    request.facts.push(Fact { query, answer });
                }
            }
        }
    }
    Err(format!(
        "plugin {name} kept asking for facts ({MAX_FACT_ROUNDS} rounds); giving up"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_kit::stages::{LIFECYCLE, multicluster_descriptor, netfix_descriptor};

    /// The built-in stages' descriptors, as their plugins declare them.
    fn built_ins() -> Vec<Descriptor> {
        vec![
            Descriptor::new(stages::SAMPLE, &LIFECYCLE).after(&[stages::SMI]),
            Descriptor::new(stages::SMI, &LIFECYCLE).after(&[stages::MULTICLUSTER_LINK]),
            netfix_descriptor(),
            multicluster_descriptor(),
            Descriptor::new(stages::CONTROL_PLANE, &LIFECYCLE).after(&[stages::CERT]),
            Descriptor::new(stages::CERT, &LIFECYCLE),
        ]
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| format!("{}/{}", s.stage, op_name(s.operation)))
            .collect()
    }

    fn run(command: Operation, ds: &[Descriptor], selected: &[&str]) -> Vec<String> {
        let refs: Vec<&Descriptor> = ds.iter().collect();
        let order = up_order(&refs).unwrap();
        let sel: Vec<String> = selected.iter().map(|s| s.to_string()).collect();
        names(&steps(command, &order, &sel, |s| {
            ds.iter().find(|d| d.stage == s).cloned()
        }))
    }

    const ALL: [&str; 6] = stages::BUILT_IN;

    #[test]
    fn up_runs_in_guide_order_and_links_after_netfix() {
        assert_eq!(
            run(Operation::Up, &built_ins(), &ALL),
            [
                "cert/up",
                "control-plane/up",
                "multicluster/up",
                "netfix/up",
                "multicluster/link",
                "smi/up",
                "sample/up"
            ]
        );
    }

    #[test]
    fn down_is_up_reversed_with_undo_steps() {
        assert_eq!(
            run(Operation::Down, &built_ins(), &ALL),
            [
                "sample/down",
                "smi/down",
                "multicluster/unlink",
                "netfix/down",
                "multicluster/down",
                "control-plane/down",
                "cert/down"
            ]
        );
    }

    #[test]
    fn link_unlink_status_and_check() {
        let b = built_ins();
        assert_eq!(
            run(Operation::Link, &b, &ALL),
            ["netfix/link", "multicluster/link"]
        );
        assert_eq!(run(Operation::Unlink, &b, &ALL), ["multicluster/unlink"]);
        assert_eq!(run(Operation::Check, &b, &ALL).len(), 6);
        assert_eq!(
            run(Operation::Status, &b, &ALL)[3],
            "netfix/status".to_string()
        );
    }

    #[test]
    fn selection_filters_steps() {
        let b = built_ins();
        assert_eq!(
            run(Operation::Up, &b, &["smi", "cert"]),
            ["cert/up", "smi/up"]
        );
        assert!(run(Operation::Unlink, &b, &["cert"]).is_empty());
    }

    #[test]
    fn a_vendor_stage_goes_where_its_constraints_put_it() {
        let mut b = built_ins();
        b.push(
            Descriptor::new("dns", &[Operation::Up, Operation::Down])
                .after(&[stages::MULTICLUSTER])
                .before(&[stages::NETFIX]),
        );
        let mut all: Vec<&str> = ALL.to_vec();
        all.push("dns");
        let up = run(Operation::Up, &b, &all);
        assert_eq!(
            up[..5],
            [
                "cert/up",
                "control-plane/up",
                "multicluster/up",
                "dns/up",
                "netfix/up"
            ]
        );
        let down = run(Operation::Down, &b, &all);
        assert_eq!(down[3..5], ["netfix/down", "dns/down"]);
        // it answers no check: never called with one
        assert!(
            !run(Operation::Check, &b, &all)
                .iter()
                .any(|s| s.starts_with("dns"))
        );
    }

    #[test]
    fn missing_built_ins_keep_the_guide_order() {
        let b: Vec<Descriptor> = built_ins()
            .into_iter()
            .filter(|d| d.stage != stages::SMI && d.stage != stages::NETFIX)
            .collect();
        assert_eq!(
            run(Operation::Up, &b, &ALL),
            [
                "cert/up",
                "control-plane/up",
                "multicluster/up",
                "multicluster/link",
                "sample/up"
            ]
        );
    }

    #[test]
    fn cycles_and_unknown_references_are_one_line_errors() {
        let mut b = built_ins();
        b.push(
            Descriptor::new("x", &[Operation::Up])
                .after(&["sample"])
                .before(&["cert"]),
        );
        let refs: Vec<&Descriptor> = b.iter().collect();
        let e = up_order(&refs).unwrap_err();
        assert!(
            e.starts_with("the plugins' ordering constraints form a cycle among: "),
            "{e}"
        );
        assert!(
            e.contains("cert") && e.contains('x') && !e.contains('\n'),
            "{e}"
        );

        let b = [Descriptor::new("x", &[Operation::Up]).after(&["dns"])];
        let refs: Vec<&Descriptor> = b.iter().collect();
        assert_eq!(
            up_order(&refs).unwrap_err(),
            "stage x: its descriptor orders it against 'dns', which no installed plugin provides"
        );
    }
}
