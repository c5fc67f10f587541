//! Everything the tool prints: dry-run plans (YAML or JSON, secrets redacted), checks in
//! `linkerd check` style (√ ‼ ×), tables, and the per cluster × stage report of a run.

use crate::cli::OutputFormat;
use crate::executor::Outcome;
use kpaas_mesh_plugin_api::{Action, CheckResult, CheckStatus, Descriptor, Plan, Table};
use serde::Serialize;
use serde_json::{Value, json};

pub const REDACTED: &str = "<redacted>";

/// A copy of `action` safe to print: secret files, Secret data and secret helm values are
/// replaced by [`REDACTED`].
pub fn redact(action: &Action) -> Action {
    let mut a = action.clone();
    match &mut a {
        Action::WriteFile {
            contents, secret, ..
        } if *secret => *contents = REDACTED.into(),
        Action::Apply {
            manifest, secret, ..
        } => {
            let is_secret = *secret || manifest["kind"] == "Secret";
            if is_secret {
                for field in ["data", "stringData"] {
                    if let Some(map) = manifest.get_mut(field).and_then(Value::as_object_mut) {
                        for v in map.values_mut() {
                            *v = Value::String(REDACTED.into());
                        }
                    }
                }
            }
        }
        Action::Plugin { op, secret, .. } if *secret => *op = Value::String(REDACTED.into()),
        Action::HelmRelease(h) => {
            for path in h.secret_values.clone() {
                let mut cur = &mut h.values;
                let parts: Vec<&str> = path.split('.').collect();
                for (i, part) in parts.iter().enumerate() {
                    let Some(next) = cur.get_mut(*part) else {
                        break;
                    };
                    if i == parts.len() - 1 {
                        *next = Value::String(REDACTED.into());
                        break;
                    }
                    cur = next;
                }
            }
        }
        _ => {}
    }
    a
}

/// One step's plan, as dry-run prints it.
#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub stage: String,
    pub operation: String,
    pub plugin: String,
    pub notes: Vec<String>,
    pub actions: Vec<Action>,
    /// The actions as planned, secrets included (never printed; `render --secrets include`
    /// writes them to files of their own).
    #[serde(skip)]
    pub raw: Vec<Action>,
}

impl PlannedStep {
    pub fn new(stage: String, operation: String, plugin: String, plan: &Plan) -> Self {
        PlannedStep {
            stage,
            operation,
            plugin,
            notes: plan.notes.clone(),
            actions: plan.actions.iter().map(redact).collect(),
            raw: plan.actions.clone(),
        }
    }
}

/// The dry-run output: YAML documents with a comment per action, or one JSON document.
pub fn dry_run(steps: &[PlannedStep], missing: &[String], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            let doc = json!({"dryRun": true, "steps": steps, "missingPlugins": missing});
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
        }
        OutputFormat::Yaml => {
            let mut out = String::new();
            for s in steps {
                out.push_str(&format!(
                    "# ── stage {} ({}) by plugin {} ──\n",
                    s.stage, s.operation, s.plugin
                ));
                for n in &s.notes {
                    out.push_str(&format!("# note: {n}\n"));
                }
                if s.actions.is_empty() {
                    out.push_str("# nothing to do\n");
                }
                for a in &s.actions {
                    out.push_str("---\n");
                    out.push_str(&action_yaml(a));
                }
            }
            for m in missing {
                out.push_str(&format!("# NOT PLANNED: {m}\n"));
            }
            out
        }
    }
}

fn yaml(v: &impl Serialize) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

fn action_yaml(a: &Action) -> String {
    match a {
        Action::WriteFile {
            path,
            contents,
            mode,
            ..
        } => {
            let mut s = format!("# write file {path} (mode {mode:04o})\n");
            s.push_str(&yaml(
                &json!({"file": path, "mode": format!("{mode:04o}"), "contents": contents}),
            ));
            s
        }
        Action::Apply {
            cluster, manifest, ..
        } => format!("# {cluster}: server-side apply\n{}", yaml(manifest)),
        Action::Delete {
            cluster,
            api_version,
            kind,
            namespace,
            name,
        } => format!(
            "# {cluster}: delete {api_version} {kind} {}{name}\n",
            namespace
                .as_ref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default()
        ),
        Action::HelmRelease(h) => {
            let src = match (&h.chart.path, &h.chart.repo) {
                (Some(p), _) => p.clone(),
                (None, Some(r)) => {
                    format!("{} --repo {r} --version {}", h.chart.name, h.chart.version)
                }
                (None, None) => format!("{} --version {}", h.chart.name, h.chart.version),
            };
            format!(
                "# {}: helm upgrade --install {} {src} -n {}{} (values below)\n{}",
                h.cluster,
                h.release,
                h.namespace,
                if h.create_namespace {
                    " --create-namespace"
                } else {
                    ""
                },
                yaml(&h.values)
            )
        }
        Action::HelmUninstall {
            cluster,
            namespace,
            release,
        } => format!("# {cluster}: helm uninstall {release} -n {namespace}\n"),
        Action::Wait {
            cluster,
            condition,
            timeout_secs,
        } => format!(
            "# {cluster}: wait up to {timeout_secs}s for {}\n",
            crate::executor::describe_wait(condition)
        ),
        Action::Plugin {
            cluster,
            summary,
            op,
            ..
        } => format!(
            "# {}plugin action: {summary}\n{}",
            cluster
                .as_ref()
                .map(|c| format!("{c}: "))
                .unwrap_or_default(),
            yaml(op)
        ),
    }
}

fn mark(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Ok => "√",
        CheckStatus::Skipped => "~",
        CheckStatus::Warn => "‼",
        CheckStatus::Fail => "×",
    }
}

/// Checks grouped under their headings, like `linkerd check`, with the verdict line.
pub fn checks(results: &[CheckResult]) -> String {
    let mut out = String::new();
    let mut group: Option<&str> = None;
    for r in results {
        if group != Some(r.group.as_str()) {
            if group.is_some() {
                out.push('\n');
            }
            out.push_str(&format!(
                "{}\n{}\n",
                r.group,
                "-".repeat(r.group.chars().count())
            ));
            group = Some(&r.group);
        }
        out.push_str(&format!("{} {}\n", mark(r.status), r.name));
        for item in &r.items {
            out.push_str(&format!("        * {item}\n"));
        }
        if !r.detail.is_empty() {
            out.push_str(&format!("    {}\n", r.detail));
        }
        if !r.hint.is_empty() {
            out.push_str(&format!("    see {} for hints\n", r.hint));
        }
    }
    let verdict = if results.iter().any(|r| r.status == CheckStatus::Fail) {
        "×"
    } else if results.iter().any(|r| r.status == CheckStatus::Warn) {
        "‼"
    } else {
        "√"
    };
    out.push_str(&format!("\nStatus check results are {verdict}\n"));
    out
}

/// A plain aligned table.
pub fn table(t: &Table) -> String {
    let mut widths: Vec<usize> = t.columns.iter().map(|c| c.chars().count()).collect();
    for row in &t.rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = String::new();
    if !t.title.is_empty() {
        out.push_str(&format!("{}\n", t.title));
    }
    out.push_str(&line(&t.columns));
    for row in &t.rows {
        out.push_str(&line(row));
    }
    out
}

/// Rows as objects keyed by column, for `-o json`.
/// `doc` as a YAML or pretty JSON document.
pub fn document(doc: &Value, format: OutputFormat) -> Result<String, String> {
    match format {
        OutputFormat::Json => serde_json::to_string_pretty(doc)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        OutputFormat::Yaml => serde_yaml_ng::to_string(doc).map_err(|e| e.to_string()),
    }
}

/// `plugins describe`: what a plugin provides, where it runs and the options it accepts.
pub fn descriptor(name: &str, description: &str, d: &Descriptor) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let ops: Vec<String> = d
        .operations
        .iter()
        .map(|o| crate::pipeline::op_name(*o).to_string())
        .collect();
    let mut out = format!(
        "plugin:     {name}\nstage:      {}\nabout:      {description}\noperations: {}\nafter:      {}\nbefore:     {}\n",
        d.stage,
        ops.join(", "),
        list(&d.after),
        list(&d.before)
    );
    for x in &d.extra_steps {
        out.push_str(&format!(
            "extra step: {}/{} (undone by {}) after {} before {}\n",
            d.stage,
            crate::pipeline::op_name(x.operation),
            crate::pipeline::op_name(x.undo),
            list(&x.after),
            list(&x.before)
        ));
    }
    if d.options.is_empty() {
        out.push_str("options:    none\n");
        return out;
    }
    let t = Table {
        title: String::new(),
        columns: ["OPTION", "TYPE", "DEFAULT", "HELP"]
            .map(String::from)
            .to_vec(),
        rows: d
            .options
            .iter()
            .map(|o| {
                vec![
                    format!("{}.{}", d.stage, o.name),
                    o.kind.as_str().to_string(),
                    o.default.clone().unwrap_or_else(|| "-".into()),
                    o.help.clone(),
                ]
            })
            .collect(),
    };
    out.push_str("options (--set STAGE.KEY=VALUE):\n");
    out.push_str(&table(&t));
    out
}

pub fn table_json(t: &Table) -> Value {
    let rows: Vec<Value> = t
        .rows
        .iter()
        .map(|r| {
            Value::Object(
                t.columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.to_lowercase().replace(' ', "_"), Value::String(v.clone())))
                    .collect(),
            )
        })
        .collect();
    json!({"title": t.title, "rows": rows})
}

/// The per cluster × stage summary of a run.
pub fn report(rows: &[(String, Vec<Outcome>)]) -> String {
    let mut t = Table {
        title: String::new(),
        columns: ["STAGE", "WHERE", "CHANGED", "UNCHANGED"]
            .map(String::from)
            .to_vec(),
        rows: vec![],
    };
    for (stage, outcomes) in rows {
        let mut places: Vec<Option<String>> = outcomes.iter().map(|o| o.cluster.clone()).collect();
        places.sort();
        places.dedup();
        if places.is_empty() {
            t.rows
                .push(vec![stage.clone(), "-".into(), "0".into(), "0".into()]);
        }
        for place in places {
            let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.cluster == place).collect();
            let changed = of.iter().filter(|o| o.changed).count();
            t.rows.push(vec![
                stage.clone(),
                place.unwrap_or_else(|| "local".into()),
                changed.to_string(),
                (of.len() - changed).to_string(),
            ]);
        }
    }
    table(&t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_plugin_api::{ChartRef, HelmRelease};

    #[test]
    fn secrets_never_print() {
        let file = Action::WriteFile {
            path: "/c/issuer.key".into(),
            contents: "-----BEGIN EC PRIVATE KEY-----".into(),
            mode: 0o600,
            dir_mode: 0o700,
            secret: true,
        };
        let secret = Action::Apply {
            cluster: "c1".into(),
            manifest: json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"kubeconfig": "dG9rZW4="}, "stringData": {"token": "abc"}}),
            secret: false,
        };
        let helm = Action::HelmRelease(HelmRelease {
            cluster: "c1".into(),
            release: "linkerd-control-plane".into(),
            namespace: "linkerd".into(),
            create_namespace: false,
            chart: ChartRef {
                name: "linkerd-control-plane".into(),
                version: "1.16.11".into(),
                repo: None,
                path: Some("/charts/linkerd-control-plane".into()),
            },
            values: json!({"identity": {"issuer": {"tls": {"keyPEM": "KEY", "crtPEM": "CRT"}}}}),
            secret_values: vec!["identity.issuer.tls.keyPEM".into(), "no.such.path".into()],
        });
        let steps = vec![PlannedStep {
            stage: "cert".into(),
            operation: "up".into(),
            plugin: "cert".into(),
            notes: vec![],
            actions: [file.clone(), secret.clone(), helm.clone()]
                .iter()
                .map(redact)
                .collect(),
            raw: vec![file, secret, helm],
        }];
        for format in [OutputFormat::Yaml, OutputFormat::Json] {
            let out = dry_run(&steps, &[], format);
            for leaked in ["BEGIN EC PRIVATE KEY", "dG9rZW4=", "abc", "KEY\""] {
                assert!(!out.contains(leaked), "{leaked} leaked in {out}");
            }
            assert!(out.contains("CRT"), "{out}");
            assert!(out.contains(REDACTED), "{out}");
        }
    }

    #[test]
    fn checks_look_like_linkerd_check() {
        let r = |name: &str, status| CheckResult {
            group: "linkerd-multicluster".into(),
            name: name.into(),
            status,
            detail: String::new(),
            items: vec!["cluster2".into()],
            hint: String::new(),
        };
        let out = checks(&[
            r("Link CRD exists", CheckStatus::Ok),
            r("links", CheckStatus::Warn),
        ]);
        assert!(out.starts_with("linkerd-multicluster\n--------------------\n√ Link CRD exists\n        * cluster2\n"), "{out}");
        assert!(out.ends_with("Status check results are ‼\n"), "{out}");
        let out = checks(&[r("x", CheckStatus::Fail)]);
        assert!(out.ends_with("Status check results are ×\n"), "{out}");
    }

    #[test]
    fn tables_align_and_become_json() {
        let t = Table {
            title: "t".into(),
            columns: vec!["NAME".into(), "DAYS LEFT".into()],
            rows: vec![vec!["ca.crt".into(), "3649".into()]],
        };
        assert_eq!(table(&t), "t\nNAME     DAYS LEFT\nca.crt   3649\n");
        assert_eq!(table_json(&t)["rows"][0]["days_left"], "3649");
    }
}
