//! The subcommands: each validates its input completely before touching anything, then
//! drives the pipeline (plan a step, carry it out, hand its outputs to the next step) and
//! prints the result.

use crate::cli::{
    CertsCommand, CertsGenerateArgs, CheckArgs, Cli, Command, MeshArgs, OutputFormat,
    PluginsCommand, UnlinkArgs, VerifyArgs, selected_stages, validate_clusters,
};
use crate::clusters::Clusters;
use crate::executor::{Executor, Outcome};
use crate::facts::{FactSource, LiveFacts, LocalFacts};
use crate::loader::{Plugin, Registry, default_search_dirs, host_abi_version};
use crate::pipeline::{Step, plan_stage, steps};
use crate::render;
use kpaas_mesh_plugin_api::options::{CertOptions, MeshOptions};
use kpaas_mesh_plugin_api::{
    CheckResult, CheckStatus, ClusterRef, Operation, Plan, Stage, StageRequest, Table,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(cli: Cli) -> Result<ExitCode, String> {
    let dirs = cli.plugin_dirs.clone();
    match cli.command {
        Command::Version => {
            println!(
                "kubectl-kpaas_mesh {} (plugin ABI {})",
                env!("CARGO_PKG_VERSION"),
                host_abi_version()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins(PluginsCommand::List { output }) => plugins_list(&dirs, output),
        Command::Certs(CertsCommand::Generate(args)) => certs_generate(&dirs, args).await,
        Command::Certs(CertsCommand::Inspect { dir, output }) => {
            certs_inspect(&dirs, &dir, output).await
        }
        Command::Up(args) => mesh(&dirs, Operation::Up, args, MeshExtra::default()).await,
        Command::Down(args) => mesh(&dirs, Operation::Down, args, MeshExtra::default()).await,
        Command::Status(args) => mesh(&dirs, Operation::Status, args, MeshExtra::default()).await,
        Command::Link(args) => mesh(&dirs, Operation::Link, args, MeshExtra::default()).await,
        Command::Check(CheckArgs { mesh: args, wait }) => {
            let extra = MeshExtra {
                wait,
                ..MeshExtra::default()
            };
            mesh(&dirs, Operation::Check, args, extra).await
        }
        Command::Unlink(UnlinkArgs { mesh: args, from }) => {
            let extra = MeshExtra {
                from,
                ..MeshExtra::default()
            };
            mesh(&dirs, Operation::Unlink, args, extra).await
        }
        Command::Verify(VerifyArgs {
            mesh: mut args,
            requests,
            from,
            max_errors,
        }) => {
            args.only = vec![Stage::Sample];
            args.skip.clear();
            let extra = MeshExtra {
                verify: Some(json!({"requests": requests, "from": from, "max_errors": max_errors})),
                ..MeshExtra::default()
            };
            mesh(&dirs, Operation::Check, args, extra).await
        }
    }
}

fn discover(dirs: &[PathBuf]) -> Registry {
    let reg = Registry::discover(default_search_dirs(dirs));
    for e in &reg.errors {
        tracing::warn!("{e}");
    }
    reg
}

fn plugins_list(dirs: &[PathBuf], output: Option<OutputFormat>) -> Result<ExitCode, String> {
    let reg = discover(dirs);
    match output {
        Some(OutputFormat::Json) | Some(OutputFormat::Yaml) => {
            let doc = json!({
                "plugins": reg.plugins.iter().map(|p| &p.info).collect::<Vec<_>>(),
                "errors": reg.errors,
                "searched": reg.searched.iter().map(|d| json!({"path": d.path, "origin": d.origin})).collect::<Vec<_>>(),
            });
            let text = if output == Some(OutputFormat::Json) {
                serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n"
            } else {
                serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?
            };
            print!("{text}");
        }
        None => {
            let mut plugins: Vec<&Plugin> = reg.plugins.iter().collect();
            plugins.sort_by_key(|p| (p.info.stage, p.info.name.clone()));
            let t = Table {
                title: String::new(),
                columns: ["NAME", "STAGE", "VERSION", "ABI", "FILE", "DESCRIPTION"]
                    .map(String::from)
                    .to_vec(),
                rows: plugins
                    .iter()
                    .map(|p| {
                        vec![
                            p.info.name.clone(),
                            p.info.stage.to_string(),
                            p.info.version.clone(),
                            p.info.abi_version.clone(),
                            p.info.path.display().to_string(),
                            p.info.description.clone(),
                        ]
                    })
                    .collect(),
            };
            print!("{}", render::table(&t));
            if reg.plugins.is_empty() {
                let dirs: Vec<String> = reg
                    .searched
                    .iter()
                    .map(|d| format!("{} ({})", d.path.display(), d.origin))
                    .collect();
                println!("no plugins found; searched: {}", dirs.join(", "));
            }
            for e in &reg.errors {
                eprintln!("error: {e}");
            }
        }
    }
    Ok(if reg.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn path_string(p: &Path) -> String {
    p.display().to_string()
}

/// `~/.kpaas-mesh/certs` unless `--certs-dir` / `$KPAAS_MESH_CERTS_DIR` says otherwise.
fn certs_dir(args: &MeshArgs) -> PathBuf {
    args.certs_dir.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".kpaas-mesh/certs")
    })
}

async fn run_one_stage(
    plugin: &Plugin,
    request: StageRequest,
    facts: &impl FactSource,
) -> Result<Plan, String> {
    let stage = Arc::new(plugin.new_stage()?);
    plan_stage(plugin, &stage, request, facts).await
}

async fn certs_generate(dirs: &[PathBuf], args: CertsGenerateArgs) -> Result<ExitCode, String> {
    let reg = discover(dirs);
    let plugin = reg.for_stage(Stage::Cert, "none")?;
    let mut opts = CertOptions::new(path_string(&args.out));
    opts.anchor_cert = args.anchor_cert.as_deref().map(path_string);
    opts.anchor_key = args.anchor_key.as_deref().map(path_string);
    opts.issuer_validity_secs = args.issuer_validity;
    let mut request = StageRequest::new(Operation::Up, vec![]);
    request.options = serde_json::to_value(&opts).map_err(|e| e.to_string())?;
    request.dry_run = args.dry_run;
    let plan = run_one_stage(plugin, request, &LocalFacts).await?;
    if args.dry_run {
        let step =
            render::PlannedStep::new("cert".into(), "up".into(), plugin.info.name.clone(), &plan);
        print!("{}", render::dry_run(&[step], &[], OutputFormat::Yaml));
        return Ok(ExitCode::SUCCESS);
    }
    let outcomes = Executor { clusters: None }.run(&plan.actions).await?;
    for n in &plan.notes {
        println!("{n}");
    }
    for o in &outcomes {
        println!(
            "{} {}",
            if o.changed { "wrote" } else { "unchanged" },
            o.what.trim_start_matches("file ")
        );
    }
    print_problems(&plan.checks);
    Ok(ExitCode::SUCCESS)
}

/// Warnings and failures of checks that came with a plan, one line each.
fn print_problems(checks: &[CheckResult]) {
    for c in checks {
        let word = match c.status {
            CheckStatus::Warn => "warning",
            CheckStatus::Fail => "error",
            _ => continue,
        };
        eprintln!("{word}: {}: {}", c.name, c.detail);
    }
}

async fn certs_inspect(
    dirs: &[PathBuf],
    dir: &Path,
    output: Option<OutputFormat>,
) -> Result<ExitCode, String> {
    let reg = discover(dirs);
    let plugin = reg.for_stage(Stage::Cert, "none")?;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let mut request = StageRequest::new(Operation::Status, vec![]);
    request.options =
        serde_json::to_value(CertOptions::new(path_string(dir))).map_err(|e| e.to_string())?;
    let plan = run_one_stage(plugin, request, &LocalFacts).await?;
    print_status(&plan.tables, &plan.checks, output)?;
    Ok(exit_for(&plan.checks))
}

fn exit_for(checks: &[CheckResult]) -> ExitCode {
    if checks.iter().any(|c| c.status == CheckStatus::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_status(
    tables: &[Table],
    checks: &[CheckResult],
    output: Option<OutputFormat>,
) -> Result<(), String> {
    match output {
        Some(format) => {
            let doc = json!({
                "tables": tables.iter().map(render::table_json).collect::<Vec<_>>(),
                "checks": checks,
                "ok": !checks.iter().any(|c| c.status == CheckStatus::Fail),
            });
            let text = match format {
                OutputFormat::Json => {
                    serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n"
                }
                OutputFormat::Yaml => serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?,
            };
            print!("{text}");
        }
        None => {
            for t in tables {
                println!("{}", render::table(t));
            }
            if !checks.is_empty() {
                print!("{}", render::checks(checks));
            }
        }
    }
    Ok(())
}

#[derive(Default)]
struct MeshExtra {
    wait: Option<u64>,
    from: Option<String>,
    /// `verify`'s settings, handed to the sample stage's check.
    verify: Option<Value>,
}

/// The options every Linkerd stage gets, read once per command (value files included).
fn mesh_options(args: &MeshArgs, extra: &MeshExtra) -> Result<MeshOptions, String> {
    kpaas_mesh_plugin_api::linkerd::release(&args.linkerd_version)?;
    let mut values = BTreeMap::new();
    for v in &args.values {
        let text = std::fs::read_to_string(&v.file)
            .map_err(|e| format!("--values {}={}: {e}", v.key, v.file.display()))?;
        let parsed: Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("--values {}={}: not YAML: {e}", v.key, v.file.display()))?;
        if !parsed.is_object() {
            return Err(format!(
                "--values {}={}: not a YAML mapping",
                v.key,
                v.file.display()
            ));
        }
        values.insert(v.key.clone(), parsed);
    }
    if let Some(dir) = &args.chart_dir
        && !dir.is_dir()
    {
        return Err(format!("--chart-dir {}: not a directory", dir.display()));
    }
    Ok(MeshOptions {
        linkerd_version: args.linkerd_version.clone(),
        chart_dir: args.chart_dir.as_deref().map(path_string),
        registry: args.registry.clone(),
        values,
        timeout_secs: args.timeout,
        certs_dir: Some(path_string(&certs_dir(args))),
        unlink_from: extra.from.clone(),
        extra: stage_extra(args, extra)?,
    })
}

/// The stages' own options: netfix (`--gateway-public`, `--os-cloud`, `--netfix-opt`) and
/// sample (`--sample-client`, `--weights`, and `verify`'s settings).
fn stage_extra(args: &MeshArgs, mesh_extra: &MeshExtra) -> Result<Value, String> {
    let mut extra = serde_json::Map::new();
    if let Some(client) = &args.sample_client {
        extra.insert("sample_client".into(), Value::String(client.clone()));
    }
    if !args.weights.is_empty() {
        let mut map = serde_json::Map::new();
        for kv in &args.weights {
            let w: u32 = kv
                .value
                .parse()
                .map_err(|_| format!("--weights {}={}: not a number", kv.key, kv.value))?;
            map.insert(kv.key.clone(), Value::from(w));
        }
        extra.insert("weights".into(), Value::Object(map));
    }
    if let Some(v) = &mesh_extra.verify {
        extra.insert("verify".into(), v.clone());
    }
    if !args.gateway_public.is_empty() {
        let mut map = serde_json::Map::new();
        for kv in &args.gateway_public {
            if !args.clusters.iter().any(|c| c.name == kv.key) {
                return Err(format!(
                    "--gateway-public {}={}: no cluster named {}",
                    kv.key, kv.value, kv.key
                ));
            }
            map.insert(kv.key.clone(), Value::String(kv.value.clone()));
        }
        extra.insert("gateway_public".into(), Value::Object(map));
    }
    if let Some(cloud) = &args.os_cloud {
        extra.insert("os_cloud".into(), Value::String(cloud.clone()));
    }
    for kv in &args.netfix_opts {
        let v = match kv.value.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::String(other.to_string()),
        };
        extra.insert(kv.key.replace('-', "_"), v);
    }
    Ok(Value::Object(extra))
}

/// The options one stage gets.
fn stage_options(stage: Stage, args: &MeshArgs, mesh: &MeshOptions) -> Result<Value, String> {
    match stage {
        Stage::Cert => serde_json::to_value(CertOptions::new(path_string(&certs_dir(args)))),
        _ => serde_json::to_value(mesh),
    }
    .map_err(|e| e.to_string())
}

async fn mesh(
    dirs: &[PathBuf],
    command: Operation,
    args: MeshArgs,
    extra: MeshExtra,
) -> Result<ExitCode, String> {
    // 1. Validate everything before touching anything.
    let min = match command {
        Operation::Status | Operation::Check => 1,
        Operation::Unlink if extra.from.is_some() => 1,
        _ => 2,
    };
    validate_clusters(&args.clusters, min)?;
    if let Some(from) = &extra.from {
        crate::cli::validate_dns1123_label(from)?;
        if !args.clusters.iter().any(|c| &c.name != from) {
            return Err(format!(
                "--from {from}: give the clusters to unlink it from with --cluster"
            ));
        }
    }
    let clusters = Clusters::load(args.kubeconfig.as_deref(), &args.clusters)?;
    let mesh_opts = mesh_options(&args, &extra)?;
    let reg = discover(dirs);
    let stages = selected_stages(&args.only, &args.skip);
    let plan_steps = steps(command, &stages);
    if plan_steps.is_empty() {
        return Err(format!(
            "no stage of {} is selected (--only/--skip left nothing to do)",
            op_name(command)
        ));
    }
    let mut resolved: Vec<(Step, &Plugin)> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for step in &plan_steps {
        match reg.for_stage(step.stage, &args.netfix) {
            Ok(p) => resolved.push((*step, p)),
            Err(e) => {
                if !missing.contains(&e) {
                    missing.push(e)
                }
            }
        }
    }
    let read_only = matches!(command, Operation::Status | Operation::Check);
    if !missing.is_empty() && !args.dry_run && !read_only {
        return Err(format!(
            "{}; nothing was changed (use --only/--skip to run the installed stages)",
            missing.join("; ")
        ));
    }
    // status/check report on the stages that are installed; with none of them (or for
    // verify, without the sample plugin) there is nothing to report on.
    if read_only && !missing.is_empty() && (resolved.is_empty() || extra.verify.is_some()) {
        return Err(missing.join("; "));
    }

    // 2. Plan each step against what the clusters hold now; carry it out unless dry-run.
    let facts = LiveFacts {
        clusters: &clusters,
    };
    let refs: Vec<ClusterRef> = clusters.refs().to_vec();
    let deadline = extra
        .wait
        .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    // 2a. Pre-flight: plan every step as a dry run (facts are read, nothing is changed), so
    //     bad input found by a late stage (a missing --gateway-public, an unknown cluster in
    //     --weights, ...) stops the command before the first change.
    if !args.dry_run && !read_only {
        let mut inputs: BTreeMap<String, Value> = BTreeMap::new();
        for (step, plugin) in &resolved {
            let mut request = StageRequest::new(step.operation, refs.clone());
            request.options = stage_options(step.stage, &args, &mesh_opts)?;
            request.inputs = inputs.clone();
            request.dry_run = true;
            let plan = run_one_stage(plugin, request, &facts)
                .await
                .map_err(|e| format!("{e} (found before any change; nothing was changed)"))?;
            if !plan.outputs.is_null() {
                inputs.insert(step.stage.to_string(), plan.outputs);
            }
        }
    }
    loop {
        let mut inputs: BTreeMap<String, Value> = BTreeMap::new();
        let mut planned = Vec::new();
        let mut report: Vec<(String, Vec<Outcome>)> = Vec::new();
        let mut tables = Vec::new();
        let mut checks = Vec::new();
        for (step, plugin) in &resolved {
            let mut request = StageRequest::new(step.operation, refs.clone());
            request.options = stage_options(step.stage, &args, &mesh_opts)?;
            request.inputs = inputs.clone();
            request.dry_run = args.dry_run;
            let plan = run_one_stage(plugin, request, &facts).await?;
            let label = if step.operation == command {
                step.stage.to_string()
            } else {
                format!("{} ({})", step.stage, op_name(step.operation))
            };
            if !plan.outputs.is_null() {
                inputs.insert(step.stage.to_string(), plan.outputs.clone());
            }
            tables.extend(plan.tables.clone());
            checks.extend(plan.checks.clone());
            if args.dry_run {
                planned.push(render::PlannedStep::new(
                    step.stage.to_string(),
                    op_name(step.operation).into(),
                    plugin.info.name.clone(),
                    &plan,
                ));
                continue;
            }
            for n in &plan.notes {
                eprintln!("{label}: {n}");
            }
            if !plan.actions.is_empty() {
                eprintln!("{label}: {} action(s)", plan.actions.len());
                let outcomes = Executor {
                    clusters: Some(&clusters),
                }
                .run(&plan.actions)
                .await
                .map_err(|e| format!("stage {label}: {e}"))?;
                report.push((label, outcomes));
            }
        }
        if args.dry_run {
            print!(
                "{}",
                render::dry_run(
                    &planned,
                    &missing,
                    args.output.unwrap_or(OutputFormat::Yaml)
                )
            );
            return Ok(if missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                for m in &missing {
                    eprintln!("error: {m}");
                }
                ExitCode::FAILURE
            });
        }
        if read_only {
            let failing = checks.iter().any(|c| c.status == CheckStatus::Fail);
            if failing
                && let Some(deadline) = deadline
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                continue;
            }
            print_status(&tables, &checks, args.output)?;
            for m in &missing {
                eprintln!("note: {m}");
            }
            return Ok(exit_for(&checks));
        }
        if !report.is_empty() {
            print!("{}", render::report(&report));
        }
        print_problems(&checks);
        let changed: usize = report
            .iter()
            .map(|(_, o)| o.iter().filter(|o| o.changed).count())
            .sum();
        println!(
            "{} done on {}: {changed} change(s)",
            op_name(command),
            clusters.names().join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Up => "up",
        Operation::Down => "down",
        Operation::Status => "status",
        Operation::Check => "check",
        Operation::Link => "link",
        Operation::Unlink => "unlink",
    }
}
