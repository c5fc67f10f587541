//! The subcommands: each validates its input completely before touching anything, then
//! drives the pipeline (plan a step, carry it out, hand its outputs to the next step) and
//! prints the result.

use crate::cli::{
    CertsCommand, CertsGenerateArgs, CheckArgs, Cli, Command, LinkArgs, MeshArgs, OutputFormat,
    PluginsCommand, RenderArgs, UnlinkArgs, VerifyArgs, selected_stages, validate_clusters,
};
use crate::clusters::Clusters;
use crate::executor::{Executor, Outcome, PLUGIN_ROUNDS, PluginRunner};
use crate::facts::{FactSource, LiveFacts, LocalFacts};
use crate::loader::{Plugin, Registry, default_search_dirs, host_abi_version};
use crate::options::{self, Given};
use crate::pipeline::{Step, op_name, plan_stage, steps, up_order};
use crate::render;
use kpaas_mesh_kit::stages::{self as built_in, CERT, SAMPLE};
use kpaas_mesh_kit::{CertOptions, MeshSettings};
use kpaas_mesh_plugin_api::{
    CheckResult, CheckStatus, ClusterRef, Descriptor, Operation, Plan, StageRequest, Table,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The completion script for `shell`. Bash's is generated for the name `kubectl_kpaas_mesh` and
/// then registered for the binary: clap_complete 4.6 turns a `-` in the bin name into `__` in the
/// function it dispatches from and into `__subcmd__` in the case labels it dispatches to, so with
/// the real name no subcommand would complete (the test loads the script into bash).
fn completion_script(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    const BIN: &str = "kubectl-kpaas_mesh";
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    if shell == clap_complete::Shell::Bash {
        let plain = BIN.replace('-', "_");
        clap_complete::generate(shell, &mut cmd, &plain, &mut out);
        let text = String::from_utf8_lossy(&out);
        return text
            .lines()
            .map(|l| match l.trim_start().starts_with("complete ") {
                true => l.replace(&format!(" {plain}"), &format!(" {BIN}")),
                false => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn run(cli: Cli) -> Result<ExitCode, String> {
    let dirs = cli.plugin_dirs.clone();
    match cli.command {
        Command::Version { output } => version(&dirs, output),
        Command::Completion { shell } => {
            print!("{}", completion_script(shell));
            Ok(ExitCode::SUCCESS)
        }
        Command::Render(args) => render_out(&dirs, args).await,
        Command::Init(args) => {
            println!("{}", crate::config::init(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins(PluginsCommand::List { output }) => plugins_list(&dirs, output),
        Command::Plugins(PluginsCommand::Describe { name, output }) => {
            plugins_describe(&dirs, &name, output)
        }
        Command::Certs(CertsCommand::Generate(args)) => certs_generate(&dirs, args).await,
        Command::Certs(CertsCommand::Status(args)) => {
            let mut args = *args;
            // the cert stage's status: its tables and checks, on the clusters
            args.only = vec![CERT.to_string()];
            args.skip.clear();
            mesh(&dirs, Operation::Status, args, MeshExtra::default()).await
        }
        Command::Certs(CertsCommand::Rotate(args)) => {
            crate::rotate::certs_rotate(&dirs, *args).await
        }
        Command::Certs(CertsCommand::Inspect { dir, output }) => {
            certs_inspect(&dirs, &dir, output).await
        }
        Command::Up(args) => mesh(&dirs, Operation::Up, args, MeshExtra::default()).await,
        Command::Down(args) => mesh(&dirs, Operation::Down, args, MeshExtra::default()).await,
        Command::Status(args) => mesh(&dirs, Operation::Status, args, MeshExtra::default()).await,
        Command::Link(LinkArgs {
            mesh: args,
            rotate_credentials: true,
        }) => crate::credentials::rotate(&dirs, args).await,
        Command::Link(LinkArgs { mesh: args, .. }) => {
            mesh(&dirs, Operation::Link, args, MeshExtra::default()).await
        }
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
            args.only = vec![SAMPLE.to_string()];
            args.skip.clear();
            let extra = MeshExtra {
                verify: Some(json!({"requests": requests, "from": from, "max_errors": max_errors})),
                ..MeshExtra::default()
            };
            mesh(&dirs, Operation::Check, args, extra).await
        }
    }
}

pub(crate) fn discover(dirs: &[PathBuf]) -> Registry {
    let reg = Registry::discover(default_search_dirs(dirs));
    for e in &reg.errors {
        tracing::warn!("{e}");
    }
    reg
}

/// `version`: the tool, the ABI, each plugin found (name, stage, version, ABI) and the Linkerd
/// releases of the release data (`-o json|yaml` for scripts).
fn version(dirs: &[PathBuf], output: Option<OutputFormat>) -> Result<ExitCode, String> {
    let reg = discover(dirs);
    let releases = kpaas_mesh_kit::linkerd::RELEASES.iter();
    match output {
        Some(format) => {
            let doc = json!({
                "version": env!("CARGO_PKG_VERSION"),
                "abi": host_abi_version(),
                "plugins": reg.plugins.iter().map(|p| json!({
                    "name": p.info.name, "stage": p.info.stage, "version": p.info.version,
                    "abi": p.info.abi_version, "file": p.info.path,
                })).collect::<Vec<_>>(),
                "linkerd": releases.map(|r| json!({
                    "version": r.version, "minor": r.minor, "default": r.version == kpaas_mesh_kit::linkerd::DEFAULT_VERSION,
                    "repo": r.repo, "charts": {"linkerd-crds": r.charts.crds,
                        "linkerd-control-plane": r.charts.control_plane,
                        "linkerd-multicluster": r.charts.multicluster},
                    "links": match r.links { kpaas_mesh_kit::linkerd::LinkStyle::Link => "link",
                        kpaas_mesh_kit::linkerd::LinkStyle::LinkGen => "link-gen" },
                    "link_api": r.link_api,
                })).collect::<Vec<_>>(),
            });
            let text = if format == OutputFormat::Json {
                serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n"
            } else {
                serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?
            };
            print!("{text}");
        }
        None => {
            println!(
                "kubectl-kpaas_mesh {} (plugin ABI {})",
                env!("CARGO_PKG_VERSION"),
                host_abi_version()
            );
            let mut plugins: Vec<&Plugin> = reg.plugins.iter().collect();
            plugins.sort_by_key(|p| (p.info.stage.clone(), p.info.name.clone()));
            for p in plugins {
                println!(
                    "plugin {} {} (stage {}, ABI {})",
                    p.info.name, p.info.version, p.info.stage, p.info.abi_version
                );
            }
            for r in kpaas_mesh_kit::linkerd::RELEASES.iter() {
                let default = if r.version == kpaas_mesh_kit::linkerd::DEFAULT_VERSION {
                    " (default)"
                } else {
                    ""
                };
                println!("linkerd {} = {}{default}", r.minor, r.version);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
            plugins.sort_by_key(|p| (p.info.stage.clone(), p.info.name.clone()));
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
                            p.info.stage.clone(),
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

/// `plugins describe NAME`: one plugin's descriptor (by plugin name, else by stage name).
fn plugins_describe(
    dirs: &[PathBuf],
    name: &str,
    output: Option<OutputFormat>,
) -> Result<ExitCode, String> {
    let reg = discover(dirs);
    let plugin = reg
        .by_name(name)
        .or_else(|| {
            let mut of_stage = reg.plugins.iter().filter(|p| p.info.stage == name);
            match (of_stage.next(), of_stage.next()) {
                (Some(p), None) => Some(p),
                _ => None,
            }
        })
        .ok_or_else(|| {
            let names: Vec<&str> = reg.plugins.iter().map(|p| p.info.name.as_str()).collect();
            format!(
                "no plugin named '{name}' (plugins: {})",
                if names.is_empty() {
                    "none found".to_string()
                } else {
                    names.join(", ")
                }
            )
        })?;
    let d = &plugin.info.descriptor;
    match output {
        Some(format) => {
            let doc = json!({"plugin": &plugin.info, "descriptor": d});
            print!("{}", render::document(&doc, format)?);
        }
        None => print!(
            "{}",
            render::descriptor(&plugin.info.name, &plugin.info.description, d)
        ),
    }
    Ok(ExitCode::SUCCESS)
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
    let plugin = reg.for_stage(CERT, "none")?;
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
    let outcomes = Executor {
        clusters: None,
        plugin: None,
    }
    .run(&plan.actions)
    .await?;
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
pub(crate) fn print_problems(checks: &[CheckResult]) {
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
    let plugin = reg.for_stage(CERT, "none")?;
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
pub(crate) struct MeshExtra {
    wait: Option<u64>,
    from: Option<String>,
    /// `verify`'s settings, handed to the sample stage's check.
    verify: Option<Value>,
}

/// The settings every stage gets, read once per command (value files included).
pub(crate) fn mesh_settings(args: &MeshArgs, extra: &MeshExtra) -> Result<MeshSettings, String> {
    kpaas_mesh_kit::linkerd::release(&args.linkerd_version)?;
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
    if let Some(r) = &args.registry {
        let ok_chars = r
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c));
        if r.is_empty() || !ok_chars || r.contains("://") || r.starts_with('/') || r.ends_with('/')
        {
            return Err(format!(
                "--registry '{r}': not an image registry path (HOST[:PORT]/PATH, e.g. harbor.example.com/linkerd)"
            ));
        }
    }
    for kv in &args.gateway_public {
        if !args.clusters.iter().any(|c| c.name == kv.key) {
            return Err(format!(
                "--gateway-public {}={}: no cluster named {}",
                kv.key, kv.value, kv.key
            ));
        }
    }
    Ok(MeshSettings {
        linkerd_version: args.linkerd_version.clone(),
        chart_dir: args.chart_dir.as_deref().map(path_string),
        registry: args.registry.clone(),
        values,
        timeout_secs: args.timeout,
        certs_dir: Some(path_string(&certs_dir(args))),
        unlink_from: extra.from.clone(),
        verify: extra.verify.clone(),
        rotate_credentials: None,
    })
}

/// One step of a command with the plugin that runs it and that plugin's options.
pub(crate) struct Resolved<'a> {
    step: Step,
    plugin: &'a Plugin,
    options: Value,
}

impl Resolved<'_> {
    /// The stage this step belongs to.
    pub(crate) fn stage(&self) -> &str {
        &self.step.stage
    }
}

/// What a command will run: its steps in order, and the stages it needs whose plugin is not
/// installed (one line each).
pub(crate) struct Pipeline<'a> {
    pub(crate) steps: Vec<Resolved<'a>>,
    pub(crate) missing: Vec<String>,
}

/// The operations a built-in stage answers, for a stage whose plugin is not installed.
fn built_in_operations(stage: &str) -> Vec<Operation> {
    match stage {
        built_in::MULTICLUSTER => built_in::multicluster_descriptor().operations,
        built_in::NETFIX => built_in::netfix_descriptor().operations,
        _ => built_in::LIFECYCLE.to_vec(),
    }
}

/// Picks one plugin per stage (`--netfix` picks among the netfix plugins), orders the stages
/// by their descriptors, applies `--only` / `--skip` and builds every plugin's options from
/// `--set` and the alias flags. Every error is found here, before anything runs.
pub(crate) fn resolve<'a>(
    reg: &'a Registry,
    command: Operation,
    args: &MeshArgs,
) -> Result<Pipeline<'a>, String> {
    let mut chosen: Vec<&Plugin> = Vec::new();
    let mut missing_stages: Vec<(String, String)> = Vec::new();
    let mut stage_names: Vec<String> = reg.stages();
    for b in built_in::BUILT_IN {
        if !stage_names.iter().any(|s| s == b) {
            stage_names.push(b.to_string());
        }
    }
    for stage in &stage_names {
        match reg.for_stage(stage, &args.netfix) {
            Ok(p) => chosen.push(p),
            Err(e) if e.starts_with("two plugins") => return Err(e),
            Err(e) => missing_stages.push((stage.clone(), e)),
        }
    }
    let descriptors: Vec<&Descriptor> = chosen.iter().map(|p| &p.info.descriptor).collect();
    let order = up_order(&descriptors)?;
    let known: Vec<String> = {
        let mut k: Vec<String> = order
            .iter()
            .filter(|n| n.main)
            .map(|n| n.stage.clone())
            .collect();
        for (s, _) in &missing_stages {
            k.push(s.clone());
        }
        k
    };
    let selected = selected_stages(&args.only, &args.skip, &known)?;
    let plugin_of = |stage: &str| chosen.iter().find(|p| p.info.stage == stage).copied();
    let planned = steps(command, &order, &selected, |s| {
        plugin_of(s).map(|p| p.info.descriptor.clone())
    });
    let mut missing = Vec::new();
    for (stage, why) in &missing_stages {
        if selected.contains(stage)
            && built_in_operations(stage).contains(&command)
            && !missing.contains(why)
        {
            missing.push(why.clone());
        }
    }

    // plugin options: every --set must be aimed at a stage or plugin this command knows
    let given: Vec<Given> = options::given(args);
    if let Some(g) = options::unclaimed(&given, |g| {
        known.contains(&g.target) || chosen.iter().any(|p| p.info.name == g.target)
    }) {
        return Err(format!(
            "{}: no stage or plugin named '{}' (stages: {})",
            g.origin,
            g.target,
            known.join(", ")
        ));
    }
    let mut options_of: BTreeMap<String, Value> = BTreeMap::new();
    for p in &chosen {
        let mine: Vec<&Given> = given
            .iter()
            .filter(|g| options::targets(g, &p.info.stage, &p.info.name))
            .collect();
        let base = if p.info.stage == CERT {
            match serde_json::to_value(CertOptions::new(path_string(&certs_dir(args)))) {
                Ok(Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            }
        } else {
            serde_json::Map::new()
        };
        let opts = options::build(&p.info.name, &p.info.descriptor, &mine, base)?;
        if p.info.stage == CERT {
            serde_json::from_value::<CertOptions>(opts.clone())
                .map_err(|e| format!("--set cert.…: {e}"))?;
        }
        options_of.insert(p.info.stage.clone(), opts);
    }
    let steps = planned
        .into_iter()
        .filter_map(|step| {
            let plugin = plugin_of(&step.stage)?;
            let options = options_of.get(&step.stage).cloned().unwrap_or(Value::Null);
            Some(Resolved {
                step,
                plugin,
                options,
            })
        })
        .collect();
    Ok(Pipeline { steps, missing })
}

/// The label of a step in progress lines and reports: the stage, with the operation when
/// it is not the command's own (`multicluster (link)`).
fn step_label(step: &Step, command: Operation) -> String {
    if step.operation == command {
        step.stage.clone()
    } else {
        format!("{} ({})", step.stage, op_name(step.operation))
    }
}

/// Everything one step of a run needs to plan against the clusters.
pub(crate) struct StepContext<'a, F: FactSource> {
    pub(crate) refs: &'a [ClusterRef],
    pub(crate) settings: &'a Value,
    pub(crate) facts: &'a F,
}

impl<F: FactSource> StepContext<'_, F> {
    /// Plans `r` with the outputs of the steps before it.
    async fn plan(
        &self,
        r: &Resolved<'_>,
        stage: &Arc<kpaas_mesh_plugin_api::ffi::StageBox>,
        inputs: &BTreeMap<String, Value>,
        dry_run: bool,
    ) -> Result<Plan, String> {
        let mut request = StageRequest::new(r.step.operation, self.refs.to_vec());
        request.settings = self.settings.clone();
        request.options = r.options.clone();
        request.inputs = inputs.clone();
        request.dry_run = dry_run;
        plan_stage(r.plugin, stage, request, self.facts).await
    }
}

/// Pre-flight: plans every step as a dry run (facts are read, nothing is changed), so bad
/// input found by a late stage (a missing --gateway-public, an unknown cluster in --weights,
/// ...) stops the command before the first change.
pub(crate) async fn preflight<F: FactSource>(
    pipeline: &Pipeline<'_>,
    ctx: &StepContext<'_, F>,
) -> Result<(), String> {
    let mut inputs: BTreeMap<String, Value> = BTreeMap::new();
    for r in &pipeline.steps {
        let stage = Arc::new(r.plugin.new_stage()?);
        let plan = ctx
            .plan(r, &stage, &inputs, true)
            .await
            .map_err(|e| format!("{e} (found before any change; nothing was changed)"))?;
        // a local chart of every planned release must be there, in the planned version
        for a in &plan.actions {
            if let kpaas_mesh_plugin_api::Action::HelmRelease(h) = a
                && let Some(path) = &h.chart.path
            {
                crate::helm::resolve_local_chart(path, &h.chart.version).map_err(|e| {
                    format!(
                        "stage {}: release {}: {e} (found before any change; nothing was changed)",
                        r.step.stage, h.release
                    )
                })?;
            }
        }
        if !plan.outputs.is_null() {
            inputs.insert(r.step.stage.clone(), plan.outputs);
        }
    }
    Ok(())
}

/// What one pass over the steps produced.
#[derive(Default)]
pub(crate) struct Pass {
    pub(crate) planned: Vec<render::PlannedStep>,
    pub(crate) report: Vec<(String, Vec<Outcome>)>,
    pub(crate) tables: Vec<Table>,
    pub(crate) checks: Vec<CheckResult>,
    /// Each stage's outputs, by stage name.
    pub(crate) outputs: BTreeMap<String, Value>,
}

/// Plans every step and, unless `dry_run`, carries it out before planning the next one
/// (later steps see the clusters as the earlier ones left them, and their outputs).
pub(crate) async fn run_steps(
    pipeline: &Pipeline<'_>,
    ctx: &StepContext<'_, LiveFacts<'_>>,
    clusters: &Clusters,
    command: Operation,
    dry_run: bool,
) -> Result<Pass, String> {
    let mut pass = Pass::default();
    let mut inputs: BTreeMap<String, Value> = BTreeMap::new();
    for r in &pipeline.steps {
        let stage = Arc::new(r.plugin.new_stage()?);
        let mut plan = ctx.plan(r, &stage, &inputs, dry_run).await?;
        let label = step_label(&r.step, command);
        pass.tables.extend(plan.tables.clone());
        pass.checks.extend(plan.checks.clone());
        if dry_run {
            pass.planned.push(render::PlannedStep::new(
                r.step.stage.clone(),
                op_name(r.step.operation).into(),
                r.plugin.info.name.clone(),
                &plan,
            ));
        } else {
            let runner = PluginRunner {
                name: r.plugin.info.name.clone(),
                stage: Arc::clone(&stage),
                settings: ctx.settings.clone(),
                options: r.options.clone(),
            };
            let executor = Executor {
                clusters: Some(clusters),
                plugin: Some(&runner),
            };
            let report = std::cell::RefCell::new(&mut pass.report);
            plan = crate::executor::converge(
                plan,
                PLUGIN_ROUNDS,
                &format!("stage {label}: plugin {}", r.plugin.info.name),
                |p| {
                    for n in &p.notes {
                        crate::progress::line(&format!("{label}: {n}"));
                    }
                },
                || ctx.plan(r, &stage, &inputs, false),
                |actions| {
                    let (executor, label, report) = (&executor, &label, &report);
                    async move {
                        crate::progress::line(&format!("{label}: {} action(s)", actions.len()));
                        crate::progress::set_stage(label);
                        let outcomes = executor
                            .run(&actions)
                            .await
                            .map_err(|e| format!("stage {label}: {e}"))?;
                        report.borrow_mut().push((label.clone(), outcomes));
                        Ok(())
                    }
                },
            )
            .await?;
        }
        if !plan.outputs.is_null() {
            pass.outputs
                .insert(r.step.stage.clone(), plan.outputs.clone());
            inputs.insert(r.step.stage.clone(), plan.outputs);
        }
    }
    Ok(pass)
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
    let settings =
        serde_json::to_value(mesh_settings(&args, &extra)?).map_err(|e| e.to_string())?;
    let reg = discover(dirs);
    let pipeline = resolve(&reg, command, &args)?;
    if pipeline.steps.is_empty() && pipeline.missing.is_empty() {
        return Err(format!(
            "no stage of {} is selected (--only/--skip left nothing to do)",
            op_name(command)
        ));
    }
    let missing = &pipeline.missing;
    let read_only = matches!(command, Operation::Status | Operation::Check);
    if !missing.is_empty() && !args.dry_run && !read_only {
        return Err(format!(
            "{}; nothing was changed (use --only/--skip to run the installed stages)",
            missing.join("; ")
        ));
    }
    // status/check report on the stages that are installed; with none of them (or for
    // verify, without the sample plugin) there is nothing to report on.
    if read_only && !missing.is_empty() && (pipeline.steps.is_empty() || extra.verify.is_some()) {
        return Err(missing.join("; "));
    }

    // 2. One changing command at a time on these clusters (a Lease on each, released at the end);
    // not for a dry run, a read-only command, or one that only writes local files (`--only cert`).
    let local_only = pipeline.steps.iter().all(|r| r.step.stage == CERT);
    let mut held = if args.dry_run || read_only || local_only {
        None
    } else {
        Some(crate::lock::acquire(&clusters, op_name(command)).await?)
    };
    let result: Result<ExitCode, String> = async {
    // 3. Plan each step against what the clusters hold now; carry it out unless dry-run.
    let facts = LiveFacts {
        clusters: &clusters,
    };
    let refs: Vec<ClusterRef> = clusters.refs().to_vec();
    let ctx = StepContext {
        refs: &refs,
        settings: &settings,
        facts: &facts,
    };
    let deadline = extra
        .wait
        .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    // 2a. An upgrade across several Linkerd minors: a whole `up` of each release in between
    // first (Linkerd allows the control plane one minor ahead of its proxies), then this one.
    if command == Operation::Up {
        let target = kpaas_mesh_kit::linkerd::release(&args.linkerd_version)?;
        let installed = crate::upgrade::installed(&facts, &clusters).await;
        for step in kpaas_mesh_kit::linkerd::upgrade_path(&installed, target) {
            let mut s: MeshSettings =
                serde_json::from_value(settings.clone()).map_err(|e| e.to_string())?;
            s.linkerd_version = step.version.clone();
            let step_settings = serde_json::to_value(&s).map_err(|e| e.to_string())?;
            let step_ctx = StepContext {
                refs: &refs,
                settings: &step_settings,
                facts: &facts,
            };
            eprintln!(
                "upgrade: Linkerd {} ({}) first, on the way to {} ({})",
                step.minor, step.version, target.minor, target.version
            );
            if !args.dry_run {
                preflight(&pipeline, &step_ctx).await?;
            }
            let pass = run_steps(&pipeline, &step_ctx, &clusters, command, args.dry_run).await?;
            if args.dry_run {
                eprintln!(
                    "note: the dry run shows the step to {}; the next steps are planned once it is in place",
                    step.version
                );
                return Ok(report_dry_run(&pass, missing, args.output));
            }
            report_step(&pass, step, &clusters);
            let stale = crate::upgrade::meshed_workloads(&clusters, step).await?;
            if !stale.is_empty() {
                let list: Vec<String> = stale.iter().map(|w| w.to_string()).collect();
                if !args.restart_workloads {
                    return Err(format!(
                        "upgraded to Linkerd {} ({}); restart these meshed workloads, then run `up` again to go on to {}: {} (or give --restart-workloads)",
                        step.minor,
                        step.version,
                        target.minor,
                        list.join(", ")
                    ));
                }
                eprintln!("upgrade: restarting {}", list.join(", "));
                crate::upgrade::restart(
                    &clusters,
                    &stale,
                    std::time::Duration::from_secs(args.timeout),
                )
                .await?;
            }
        }
    }
    if !args.dry_run && !read_only {
        preflight(&pipeline, &ctx).await?;
    }
    loop {
        let pass = run_steps(&pipeline, &ctx, &clusters, command, args.dry_run).await?;
        if args.dry_run {
            return Ok(report_dry_run(&pass, missing, args.output));
        }
        if read_only {
            let failing = pass.checks.iter().any(|c| c.status == CheckStatus::Fail);
            if failing
                && let Some(deadline) = deadline
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                continue;
            }
            print_status(&pass.tables, &pass.checks, args.output)?;
            for m in missing {
                eprintln!("note: {m}");
            }
            return Ok(exit_for(&pass.checks));
        }
        return Ok(report_changes(&pass, command, &clusters));
    }
    }
    .await;
    if let Some(h) = held.as_mut() {
        h.release().await;
    }
    result
}

/// `render --out DIR`: `up` planned as a dry run against the clusters, written as files.
async fn render_out(dirs: &[PathBuf], args: RenderArgs) -> Result<ExitCode, String> {
    let mesh = args.mesh;
    validate_clusters(&mesh.clusters, 2)?;
    let clusters = Clusters::load(mesh.kubeconfig.as_deref(), &mesh.clusters)?;
    let settings = serde_json::to_value(mesh_settings(&mesh, &MeshExtra::default())?)
        .map_err(|e| e.to_string())?;
    let reg = discover(dirs);
    let pipeline = resolve(&reg, Operation::Up, &mesh)?;
    if !pipeline.missing.is_empty() {
        return Err(format!(
            "{}; nothing was written",
            pipeline.missing.join("; ")
        ));
    }
    let facts = LiveFacts {
        clusters: &clusters,
    };
    let refs: Vec<ClusterRef> = clusters.refs().to_vec();
    let ctx = StepContext {
        refs: &refs,
        settings: &settings,
        facts: &facts,
    };
    let pass = run_steps(&pipeline, &ctx, &clusters, Operation::Up, true).await?;
    let files = crate::gitops::files(&pass.planned, args.secrets);
    crate::gitops::write(&args.out, &files)?;
    println!(
        "rendered {} file(s) for {} into {} (PLAN.md gives the order)",
        files.len(),
        clusters.names().join(", "),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--dry-run`'s output; fails when a needed plugin is missing.
pub(crate) fn report_dry_run(
    pass: &Pass,
    missing: &[String],
    output: Option<OutputFormat>,
) -> ExitCode {
    print!(
        "{}",
        render::dry_run(&pass.planned, missing, output.unwrap_or(OutputFormat::Yaml))
    );
    if missing.is_empty() {
        return ExitCode::SUCCESS;
    }
    for m in missing {
        eprintln!("error: {m}");
    }
    ExitCode::FAILURE
}

/// The report of one step of an upgrade across minors (on stderr: stdout has the final report).
fn report_step(pass: &Pass, step: &kpaas_mesh_kit::linkerd::LinkerdRelease, clusters: &Clusters) {
    if !pass.report.is_empty() {
        eprint!("{}", render::report(&pass.report));
    }
    let changed: usize = pass
        .report
        .iter()
        .map(|(_, o)| o.iter().filter(|o| o.changed).count())
        .sum();
    eprintln!(
        "upgrade to {} done on {}: {changed} change(s)",
        step.version,
        clusters.names().join(", ")
    );
}

/// The per cluster × stage report of a run that changed things, and its summary line.
fn report_changes(pass: &Pass, command: Operation, clusters: &Clusters) -> ExitCode {
    if !pass.report.is_empty() {
        print!("{}", render::report(&pass.report));
    }
    print_problems(&pass.checks);
    let changed: usize = pass
        .report
        .iter()
        .map(|(_, o)| o.iter().filter(|o| o.changed).count())
        .sum();
    println!(
        "{} done on {}: {changed} change(s)",
        op_name(command),
        clusters.names().join(", ")
    );
    ExitCode::SUCCESS
}
