//! The pipeline: which (stage, operation) steps a command runs, in which order, and the
//! conversation with one stage plugin (call, answer its fact queries, call again) that
//! yields a plan.
//!
//! `up` is the guide's order, with the links made after netfix has said how every gateway
//! is reached: cert → control-plane → multicluster → netfix → multicluster/link → smi →
//! sample. `down` walks the same steps backwards.

use crate::facts::FactSource;
use crate::loader::Plugin;
use kpaas_mesh_plugin_api::ffi::StageBox;
use kpaas_mesh_plugin_api::{Fact, Operation, Plan, Stage, StageRequest, StageResponse};
use std::sync::Arc;

/// A stage may ask for facts this many times per call before the host gives up on it.
pub const MAX_FACT_ROUNDS: usize = 16;

/// One step of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub stage: Stage,
    pub operation: Operation,
}

const fn step(stage: Stage, operation: Operation) -> Step {
    Step { stage, operation }
}

/// The steps of `command`, restricted to `stages` (already in pipeline order).
pub fn steps(command: Operation, stages: &[Stage]) -> Vec<Step> {
    use Operation::*;
    use Stage::*;
    let all: Vec<Step> = match command {
        Up => vec![
            step(Cert, Up),
            step(ControlPlane, Up),
            step(Multicluster, Up),
            step(Netfix, Up),
            step(Multicluster, Link),
            step(Smi, Up),
            step(Sample, Up),
        ],
        Down => vec![
            step(Sample, Down),
            step(Smi, Down),
            step(Multicluster, Unlink),
            step(Netfix, Down),
            step(Multicluster, Down),
            step(ControlPlane, Down),
            step(Cert, Down),
        ],
        Link => vec![step(Netfix, Link), step(Multicluster, Link)],
        Unlink => vec![step(Multicluster, Unlink)],
        Status | Check => Stage::ALL.iter().map(|s| step(*s, command)).collect(),
    };
    all.into_iter()
        .filter(|s| stages.contains(&s.stage))
        .collect()
}

/// Asks `plugin` for its plan, answering fact queries from `facts` until it has one.
/// The plugin runs on a blocking thread: its calls are synchronous and may take a moment
/// (key generation), and it must never run inside the async runtime.
pub async fn plan_stage(
    plugin: &Plugin,
    stage: &Arc<StageBox>,
    mut request: StageRequest,
    facts: &impl FactSource,
) -> Result<Plan, String> {
    let name = plugin.info.name.clone();
    for _round in 0..=MAX_FACT_ROUNDS {
        let json = serde_json::to_string(&request)
            .map_err(|e| format!("cannot encode the request for {name}: {e}"))?;
        let obj = Arc::clone(stage);
        let reply =
            tokio::task::spawn_blocking(move || obj.call(json.as_str().into()).into_result())
                .await
                .map_err(|e| format!("plugin {name} did not return: {e}"))?
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

    #[test]
    fn up_runs_in_guide_order_and_links_after_netfix() {
        let s = steps(Operation::Up, &Stage::ALL);
        let names: Vec<String> = s
            .iter()
            .map(|s| format!("{}/{:?}", s.stage, s.operation))
            .collect();
        assert_eq!(
            names,
            [
                "cert/Up",
                "control-plane/Up",
                "multicluster/Up",
                "netfix/Up",
                "multicluster/Link",
                "smi/Up",
                "sample/Up"
            ]
        );
    }

    #[test]
    fn down_is_up_reversed() {
        let up = steps(Operation::Up, &Stage::ALL);
        let down = steps(Operation::Down, &Stage::ALL);
        let up_stages: Vec<Stage> = up.iter().rev().map(|s| s.stage).collect();
        let down_stages: Vec<Stage> = down.iter().map(|s| s.stage).collect();
        assert_eq!(up_stages, down_stages);
    }

    #[test]
    fn selection_filters_steps() {
        let s = steps(Operation::Up, &[Stage::Cert, Stage::Smi]);
        assert_eq!(
            s,
            vec![
                step(Stage::Cert, Operation::Up),
                step(Stage::Smi, Operation::Up)
            ]
        );
        assert!(steps(Operation::Unlink, &[Stage::Cert]).is_empty());
        assert_eq!(steps(Operation::Check, &Stage::ALL).len(), 6);
    }
}
