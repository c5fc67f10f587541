//! What a plugin says about itself, so the host can run it without knowing it in advance: the
//! stage it provides (an open name), where that stage goes in the pipeline (after / before
//! other stages), the operations it answers, extra steps it adds to `up`, and the schema of its
//! options (`--set STAGE.KEY=VALUE`). Travels as JSON inside [`crate::ffi::PluginInfo`], so
//! it can grow fields without changing the binary layout.

use crate::messages::Operation;
use serde::{Deserialize, Serialize};

/// A plugin's self-description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The stage this plugin provides, e.g. `cert`, `netfix`, or a vendor's own `dns`. Several
    /// plugins may provide the same stage only when the user picks one (`--netfix NAME`).
    pub stage: String,
    /// Steps that must run before this stage's `up` step: stage names (`netfix`) or extra
    /// steps (`multicluster/link`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Steps that must run after this stage's `up` step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    /// The operations the stage answers; the host never calls it with others.
    pub operations: Vec<Operation>,
    /// More steps this stage contributes to `up` (and, undone, to `down`), each placed by its
    /// own constraints; named `<stage>/<operation>` in constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_steps: Vec<ExtraStep>,
    /// The options the stage accepts; anything else is refused by the host before it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<OptionSpec>,
}

/// A second step of one stage inside `up` (e.g. multicluster's links, made after netfix has
/// said how each gateway is reached).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraStep {
    /// The operation the stage is called with in `up` for this step.
    pub operation: Operation,
    /// The operation that undoes it in `down`.
    pub undo: Operation,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
}

/// One option of a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionSpec {
    /// The key in `--set STAGE.KEY=VALUE` and in the stage's options object.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: OptionKind,
    /// The default, as the user would write it; `None` when unset means "not given".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// One line for `plugins describe`.
    pub help: String,
}

/// How the host reads an option's value from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptionKind {
    /// Any text, passed as a JSON string.
    String,
    /// `true` or `false`.
    Bool,
    /// A non-negative whole number.
    Integer,
    /// `KEY=VALUE[,KEY=VALUE…]`, repeatable; a JSON object of strings.
    Map,
    /// `A[,B…]`, repeatable; a JSON array of strings.
    List,
}

impl OptionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OptionKind::String => "string",
            OptionKind::Bool => "bool",
            OptionKind::Integer => "integer",
            OptionKind::Map => "map",
            OptionKind::List => "list",
        }
    }
}

impl Descriptor {
    /// A stage answering `operations`, with no constraints and no options.
    pub fn new(stage: impl Into<String>, operations: &[Operation]) -> Self {
        Descriptor {
            stage: stage.into(),
            after: Vec::new(),
            before: Vec::new(),
            operations: operations.to_vec(),
            extra_steps: Vec::new(),
            options: Vec::new(),
        }
    }

    /// Runs after `steps`.
    pub fn after(mut self, steps: &[&str]) -> Self {
        self.after.extend(steps.iter().map(|s| s.to_string()));
        self
    }

    /// Runs before `steps`.
    pub fn before(mut self, steps: &[&str]) -> Self {
        self.before.extend(steps.iter().map(|s| s.to_string()));
        self
    }

    /// Adds an extra `up` step (see [`ExtraStep`]).
    pub fn extra_step(mut self, step: ExtraStep) -> Self {
        self.extra_steps.push(step);
        self
    }

    /// Adds an option.
    pub fn option(
        mut self,
        name: &str,
        kind: OptionKind,
        default: Option<&str>,
        help: &str,
    ) -> Self {
        self.options.push(OptionSpec {
            name: name.into(),
            kind,
            default: default.map(String::from),
            help: help.into(),
        });
        self
    }

    /// Whether the stage answers `op`.
    pub fn supports(&self, op: Operation) -> bool {
        self.operations.contains(&op)
    }

    /// The option named `name`.
    pub fn find_option(&self, name: &str) -> Option<&OptionSpec> {
        self.options.iter().find(|o| o.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn descriptor_json_is_small_and_round_trips() {
        let d = Descriptor::new("dns", &[Operation::Up, Operation::Down])
            .after(&["multicluster"])
            .before(&["netfix"])
            .option("zone", OptionKind::String, Some("mesh.local"), "DNS zone");
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            json!({"stage": "dns", "after": ["multicluster"], "before": ["netfix"],
                "operations": ["up", "down"],
                "options": [{"name": "zone", "type": "string", "default": "mesh.local", "help": "DNS zone"}]})
        );
        assert_eq!(serde_json::from_value::<Descriptor>(v).unwrap(), d);
        assert!(d.supports(Operation::Up) && !d.supports(Operation::Link));
        assert_eq!(d.find_option("zone").unwrap().kind, OptionKind::String);
    }
}
