//! What a run is doing, on stderr (never stdout, so `-o json` stays clean): on a terminal a
//! live line per cluster (indicatif) with its stage, the action under way and how long it has
//! taken; otherwise (`--progress plain`, or stderr is not a terminal) timestamped lines, one
//! when a wait starts and one when each action ends. `--progress none` prints neither.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kpaas_mesh_plugin_api::Action;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// `--progress`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Live on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Timestamped lines.
    Plain,
    /// Nothing but the notes and the report.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shown {
    Live,
    Plain,
    Off,
}

struct State {
    shown: Shown,
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    stage: Mutex<String>,
}

static STATE: OnceLock<State> = OnceLock::new();

/// Chooses how progress is shown (once, at start; a library user that never calls it gets
/// plain notes and no progress).
pub fn init(mode: ProgressMode) {
    let shown = match mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() => Shown::Live,
        ProgressMode::Auto | ProgressMode::Plain => Shown::Plain,
        ProgressMode::None => Shown::Off,
    };
    let multi = MultiProgress::with_draw_target(match shown {
        Shown::Live => ProgressDrawTarget::stderr(),
        _ => ProgressDrawTarget::hidden(),
    });
    let _ = STATE.set(State {
        shown,
        multi,
        bars: Mutex::new(BTreeMap::new()),
        stage: Mutex::new(String::new()),
    });
}

fn state() -> Option<&'static State> {
    STATE.get()
}

/// The stage whose actions run next (stages run one after another).
pub fn set_stage(label: &str) {
    if let Some(s) = state() {
        *s.stage.lock().unwrap() = label.to_string();
    }
}

fn stage() -> String {
    state()
        .map(|s| s.stage.lock().unwrap().clone())
        .unwrap_or_default()
}

/// `HH:MM:SS` in UTC.
fn clock() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.strftime("%H:%M:%S").to_string()
}

/// A line for the person running the command (notes, decisions), printed above the live
/// lines when they are shown.
pub fn line(text: &str) {
    match state() {
        Some(s) if s.shown == Shown::Live => s.multi.suspend(|| eprintln!("{text}")),
        _ => eprintln!("{text}"),
    }
}

/// A short description of an action (what the live line and the plain lines name).
pub fn headline(a: &Action) -> String {
    let path = |ns: Option<&str>, name: &str| match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    };
    match a {
        Action::WriteFile { path, .. } => format!("write {path}"),
        Action::Apply { manifest, .. } => format!(
            "apply {} {}",
            manifest["kind"].as_str().unwrap_or("object"),
            path(
                manifest["metadata"]["namespace"].as_str(),
                manifest["metadata"]["name"].as_str().unwrap_or("")
            )
        ),
        Action::Delete {
            kind,
            namespace,
            name,
            ..
        } => format!("delete {kind} {}", path(namespace.as_deref(), name)),
        Action::HelmRelease(h) => format!(
            "helm release {}/{} ({} {})",
            h.namespace, h.release, h.chart.name, h.chart.version
        ),
        Action::HelmUninstall {
            namespace, release, ..
        } => format!("helm uninstall {namespace}/{release}"),
        Action::Wait {
            condition,
            timeout_secs,
            ..
        } => format!(
            "wait up to {timeout_secs}s for {}",
            crate::executor::describe_wait(condition)
        ),
        Action::Plugin { summary, .. } => format!("plugin action: {summary}"),
    }
}

/// One action under way on a cluster; [`Step::end`] reports how it ended.
pub struct Step {
    cluster: String,
    what: String,
    began: Instant,
}

/// An action begins on `cluster`.
pub fn begin(cluster: &str, action: &Action) -> Step {
    let what = headline(action);
    if let Some(s) = state() {
        match s.shown {
            Shown::Live => {
                let mut bars = s.bars.lock().unwrap();
                let bar = bars.entry(cluster.to_string()).or_insert_with(|| {
                    let b = s.multi.add(ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} [{elapsed}]")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(cluster.to_string());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                bar.reset_elapsed();
                bar.set_message(format!("{}: {what}", stage()));
            }
            Shown::Plain if matches!(action, Action::Wait { .. }) => {
                eprintln!("{} {cluster} {}: {what}", clock(), stage());
            }
            _ => {}
        }
    }
    Step {
        cluster: cluster.to_string(),
        what,
        began: Instant::now(),
    }
}

impl Step {
    /// The action ended: changed something, changed nothing, or failed (`Err`).
    pub fn end(self, result: Result<bool, &str>) {
        let Some(s) = state() else { return };
        if s.shown != Shown::Plain {
            return;
        }
        let took = self.began.elapsed().as_secs_f64();
        let how = match result {
            Ok(true) => "changed".to_string(),
            Ok(false) => "unchanged".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        eprintln!(
            "{} {} {}: {} — {how} ({took:.1}s)",
            clock(),
            self.cluster,
            stage(),
            self.what
        );
    }
}

/// The live lines of a finished set of actions go (the report follows).
pub fn clear() {
    if let Some(s) = state() {
        let mut bars = s.bars.lock().unwrap();
        for (_, b) in std::mem::take(&mut *bars) {
            b.finish_and_clear();
            s.multi.remove(&b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_plugin_api::WaitCondition;
    use serde_json::json;

    #[test]
    fn headlines_name_the_object_and_what_is_awaited() {
        let apply = Action::Apply {
            cluster: "c1".into(),
            manifest: json!({"kind": "Secret", "metadata": {"name": "s", "namespace": "n"}}),
            secret: true,
        };
        assert_eq!(headline(&apply), "apply Secret n/s");
        let wait = Action::Wait {
            cluster: "c1".into(),
            condition: WaitCondition::DeploymentsAvailable {
                namespace: "linkerd".into(),
                names: vec!["linkerd-identity".into()],
            },
            timeout_secs: 300,
        };
        assert_eq!(
            headline(&wait),
            "wait up to 300s for Deployments linkerd-identity in linkerd to be Available"
        );
        let del = Action::Delete {
            cluster: "c1".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "sample".into(),
        };
        assert_eq!(headline(&del), "delete Namespace sample");
        assert!(clock().len() == 8 && clock().as_bytes()[2] == b':');
    }
}
