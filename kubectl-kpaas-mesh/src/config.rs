//! `kpaas-mesh.yaml`: the flags every command over the clusters repeats, once in a file.
//! Found by `--config`, `$KPAAS_MESH_CONFIG`, or `./kpaas-mesh.yaml`; a flag given on the
//! command line (or through its environment variable) wins over the file, the file over the
//! flag's default. An unknown key is refused with its line. `kubectl kpaas-mesh init` writes one
//! from the kubeconfig's contexts.

use crate::cli::{ClusterSpec, MeshArgs, SetOption, ValuesFile, parse_duration_secs};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file looked for in the working directory.
pub const DEFAULT_NAME: &str = "kpaas-mesh.yaml";
/// The environment variable naming the file.
pub const ENV: &str = "KPAAS_MESH_CONFIG";

/// One cluster of the mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterEntry {
    /// The cluster's name in the mesh (a DNS-1123 label: Linkerd puts it in object names).
    pub name: String,
    /// Its kubeconfig context (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// A kubeconfig file holding that context (merged with the others, in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
}

/// The whole file. Keys are the long flags' names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    #[serde(default)]
    pub clusters: Vec<ClusterEntry>,
    /// Kubeconfig file(s), colon-separated (as `--kubeconfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linkerd_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netfix: Option<String>,
    /// Plugin options by stage or plugin name (as `--set STAGE.KEY=VALUE`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, BTreeMap<String, serde_yaml_ng::Value>>,
    /// Extra helm values files by stage or release (as `--values STAGE=FILE`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs_dir: Option<String>,
    /// How long each wait may take (`5m`, `90s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_workloads: Option<bool>,
}

/// The file this run reads, if any: `--config` and `$KPAAS_MESH_CONFIG` must exist;
/// `./kpaas-mesh.yaml` is read when it is there.
pub fn locate(
    flag: Option<&Path>,
    env: Option<&str>,
    cwd: &Path,
) -> Result<Option<PathBuf>, String> {
    if let Some(p) = flag {
        if !p.is_file() {
            return Err(format!("--config {}: no such file", p.display()));
        }
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(format!("${ENV}={}: no such file", p.display()));
        }
        return Ok(Some(p));
    }
    let here = cwd.join(DEFAULT_NAME);
    Ok(here.is_file().then_some(here))
}

/// Parses the file (an unknown key or a wrong type is one line naming the file and the line).
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, String> {
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether `text` is a krew plugin manifest (the release's is also called kpaas-mesh.yaml).
pub fn is_krew_manifest(text: &str) -> bool {
    serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
        .ok()
        .and_then(|v| {
            v.get("apiVersion")
                .and_then(|a| a.as_str())
                .map(String::from)
        })
        .is_some_and(|a| a.starts_with("krew.googlecontainertools.github.com/"))
}

/// Whether the flag `id` of the command was left to its default (so the file may set it).
fn unset(m: &ArgMatches, id: &str) -> bool {
    matches!(m.value_source(id), None | Some(ValueSource::DefaultValue))
}

/// The matches of the innermost subcommand (where the mesh flags are).
pub fn leaf(m: &ArgMatches) -> &ArgMatches {
    match m.subcommand() {
        Some((_, sub)) => leaf(sub),
        None => m,
    }
}

fn scalar(v: &serde_yaml_ng::Value) -> Result<String, String> {
    match v {
        serde_yaml_ng::Value::String(s) => Ok(s.clone()),
        serde_yaml_ng::Value::Bool(b) => Ok(b.to_string()),
        serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
        _ => Err("expected a string, number or boolean".into()),
    }
}

/// The `--set` values one option of the file stands for: a scalar is one; a mapping (for
/// map options such as the sample's weights) is one `KEY=VALUE` per entry.
fn option_values(v: &serde_yaml_ng::Value) -> Result<Vec<String>, String> {
    match v {
        serde_yaml_ng::Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| Ok(format!("{}={}", scalar(k)?, scalar(v)?)))
            .collect(),
        other => Ok(vec![scalar(other)?]),
    }
}

/// Fills in `args` from `file` where the command line left a flag unset. `m` are the matches of
/// the command whose flags `args` are; `dir` is the file's directory (relative paths in the file
/// are relative to it).
pub fn apply(
    file: &ConfigFile,
    dir: &Path,
    m: &ArgMatches,
    args: &mut MeshArgs,
) -> Result<(), String> {
    let path = |p: &str| -> String {
        let p = Path::new(p);
        if p.is_relative() {
            dir.join(p)
        } else {
            p.to_path_buf()
        }
        .display()
        .to_string()
    };
    if unset(m, "clusters") && !file.clusters.is_empty() {
        let mut specs = Vec::new();
        for c in &file.clusters {
            let spec = match &c.context {
                Some(ctx) => format!("{}={ctx}", c.name),
                None => c.name.clone(),
            };
            specs.push(
                spec.parse::<ClusterSpec>()
                    .map_err(|e| format!("config clusters: {e}"))?,
            );
        }
        args.clusters = specs;
    }
    if unset(m, "kubeconfig") {
        let mut list: Vec<String> = file
            .kubeconfig
            .iter()
            .flat_map(|k| {
                std::env::split_paths(k)
                    .map(|p| path(&p.display().to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for c in &file.clusters {
            if let Some(k) = &c.kubeconfig {
                let k = path(k);
                if !list.contains(&k) {
                    list.push(k);
                }
            }
        }
        if !list.is_empty() {
            args.kubeconfig = Some(list.join(":"));
        }
    }
    if unset(m, "linkerd_version")
        && let Some(v) = &file.linkerd_version
    {
        args.linkerd_version = v.clone();
    }
    if unset(m, "netfix")
        && let Some(v) = &file.netfix
    {
        args.netfix = v.clone();
    }
    if unset(m, "chart_dir")
        && let Some(v) = &file.chart_dir
    {
        args.chart_dir = Some(PathBuf::from(path(v)));
    }
    if unset(m, "registry")
        && let Some(v) = &file.registry
    {
        args.registry = Some(v.clone());
    }
    if unset(m, "certs_dir")
        && let Some(v) = &file.certs_dir
    {
        args.certs_dir = Some(PathBuf::from(path(v)));
    }
    if unset(m, "timeout")
        && let Some(v) = &file.timeout
    {
        args.timeout = parse_duration_secs(v).map_err(|e| format!("config timeout: {e}"))?;
    }
    if unset(m, "restart_workloads")
        && let Some(v) = file.restart_workloads
    {
        args.restart_workloads = v;
    }
    // plugin options and values files: the file's first, so a flag for the same key wins
    // (the last one given is the one used)
    let mut set = Vec::new();
    for (target, options) in &file.plugins {
        for (key, value) in options {
            let values =
                option_values(value).map_err(|e| format!("config plugins.{target}.{key}: {e}"))?;
            for value in values {
                set.push(SetOption {
                    target: target.clone(),
                    key: key.clone(),
                    value,
                });
            }
        }
    }
    set.append(&mut args.set);
    args.set = set;
    let mut values: Vec<ValuesFile> = file
        .values
        .iter()
        .map(|(k, f)| ValuesFile {
            key: k.clone(),
            file: PathBuf::from(path(f)),
        })
        .filter(|v| !args.values.iter().any(|a| a.key == v.key))
        .collect();
    values.append(&mut args.values);
    args.values = values;
    Ok(())
}

/// `init`: a kpaas-mesh.yaml naming the kubeconfig's contexts as the mesh's clusters.
pub fn init(args: &crate::cli::InitArgs) -> Result<String, String> {
    use crate::clusters::{check_collisions, kubeconfig_files, name_collisions, read_kubeconfig};
    if args.out.exists() && !args.force {
        return Err(format!(
            "{} exists: give --force to replace it",
            args.out.display()
        ));
    }
    kpaas_mesh_kit::linkerd::release(&args.linkerd_version)?;
    let (merged, _) = read_kubeconfig(args.kubeconfig.as_deref())?;
    let files = kubeconfig_files(args.kubeconfig.as_deref());
    let mut each = Vec::new();
    for p in &files {
        let k = kube::config::Kubeconfig::read_from(p)
            .map_err(|e| format!("cannot read kubeconfig {}: {e}", p.display()))?;
        each.push((p.clone(), k));
    }
    let collisions = name_collisions(&each);
    let chosen: Vec<(String, String)> = if args.contexts.is_empty() {
        merged
            .contexts
            .iter()
            .map(|c| (c.name.clone(), c.name.clone()))
            .collect()
    } else {
        args.contexts
            .iter()
            .map(|c| match c.split_once('=') {
                Some((ctx, name)) => (ctx.to_string(), name.to_string()),
                None => (c.clone(), c.clone()),
            })
            .collect()
    };
    if chosen.len() < 2 {
        return Err(format!(
            "the kubeconfig has {} context(s); a mesh needs at least 2 (KUBECONFIG=a:b merges files)",
            chosen.len()
        ));
    }
    let known: Vec<&str> = merged.contexts.iter().map(|c| c.name.as_str()).collect();
    let mut clusters = Vec::new();
    for (ctx, name) in &chosen {
        if !known.contains(&ctx.as_str()) {
            return Err(format!(
                "--context {ctx}: not in the kubeconfig (contexts: {})",
                known.join(", ")
            ));
        }
        crate::cli::validate_dns1123_label(name)
            .map_err(|e| format!("context '{ctx}': {e}; name it with --context {ctx}=NAME"))?;
        check_collisions(&merged, &collisions, ctx)?;
        if clusters.iter().any(|c: &ClusterEntry| &c.name == name) {
            return Err(format!("cluster name '{name}' is given twice"));
        }
        clusters.push(ClusterEntry {
            name: name.clone(),
            context: (ctx != name).then(|| ctx.clone()),
            kubeconfig: None,
        });
    }
    let file = ConfigFile {
        clusters,
        kubeconfig: args
            .kubeconfig
            .clone()
            .or_else(|| std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty())),
        linkerd_version: Some(args.linkerd_version.clone()),
        netfix: Some(args.netfix.clone()),
        ..ConfigFile::default()
    };
    let body = serde_yaml_ng::to_string(&file).map_err(|e| e.to_string())?;
    let text = format!(
        "# kpaas-mesh settings (written by `kubectl kpaas-mesh init`); flags given on the command line win.\n\
         # Also: plugins: {{STAGE: {{KEY: VALUE}}}}, values: {{STAGE: FILE}}, chart-dir, registry, certs-dir,\n\
         # timeout, restart-workloads (`kubectl kpaas-mesh plugins describe NAME` lists a plugin's options).\n{body}"
    );
    std::fs::write(&args.out, &text).map_err(|e| format!("{}: {e}", args.out.display()))?;
    Ok(format!(
        "wrote {} with clusters {}",
        args.out.display(),
        chosen
            .iter()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Reads the settings file (if any) into the command's cluster flags. `m` are the whole
/// command line's matches.
pub fn load_into(cli: &mut crate::cli::Cli, m: &ArgMatches) -> Result<(), String> {
    let Some(args) = cli.command.mesh_args_mut() else {
        return Ok(());
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let env = std::env::var(ENV).ok();
    let Some(path) = locate(cli.config.as_deref(), env.as_deref(), &cwd)? else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if is_krew_manifest(&text) {
        // the release's krew manifest has the same name; where it was downloaded it is not ours
        if cli.config.is_none() && env.as_deref().is_none_or(str::is_empty) {
            tracing::info!(
                "{} is a krew plugin manifest: not read as settings",
                path.display()
            );
            return Ok(());
        }
        return Err(format!(
            "{}: a krew plugin manifest, not kpaas-mesh settings (`kubectl kpaas-mesh init` writes those)",
            path.display()
        ));
    }
    let file = parse(&path, &text)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    apply(&file, &dir, leaf(m), args)?;
    tracing::info!("settings from {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, FromArgMatches};

    /// Parses `argv` and applies `yaml` as the settings file in `/etc/mesh`.
    fn run(argv: &[&str], yaml: &str) -> Result<MeshArgs, String> {
        let m = Cli::command()
            .try_get_matches_from(std::iter::once("kubectl-kpaas_mesh").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        let mut cli = Cli::from_arg_matches(&m).map_err(|e| e.to_string())?;
        let file = parse(Path::new("kpaas-mesh.yaml"), yaml)?;
        let args = cli.command.mesh_args_mut().unwrap();
        apply(&file, Path::new("/etc/mesh"), leaf(&m), args)?;
        Ok(args.clone())
    }

    const FILE: &str = "\
clusters:
- name: cluster1
  context: ctx-a
  kubeconfig: a.yaml
- name: cluster2
  kubeconfig: /abs/b.yaml
linkerd-version: '2.18'
netfix: baremetal
plugins:
  netfix:
    gateway_public:
      cluster1: 203.0.113.7
  sample:
    client: cluster1
values:
  control-plane: ha.yaml
chart-dir: charts
certs-dir: /srv/certs
timeout: 90s
restart-workloads: true
";

    #[test]
    fn the_file_fills_what_the_command_line_leaves_unset() {
        let a = run(&["up"], FILE).unwrap();
        let names: Vec<(&str, &str)> = a
            .clusters
            .iter()
            .map(|c| (c.name.as_str(), c.context.as_str()))
            .collect();
        assert_eq!(names, [("cluster1", "ctx-a"), ("cluster2", "cluster2")]);
        assert_eq!(
            a.kubeconfig.as_deref(),
            Some("/etc/mesh/a.yaml:/abs/b.yaml")
        );
        assert_eq!(a.linkerd_version, "2.18");
        assert_eq!(a.netfix, "baremetal");
        assert_eq!(a.timeout, 90);
        assert!(a.restart_workloads);
        assert_eq!(a.chart_dir.as_deref(), Some(Path::new("/etc/mesh/charts")));
        assert_eq!(a.certs_dir.as_deref(), Some(Path::new("/srv/certs")));
        assert_eq!(a.values.len(), 1);
        assert_eq!(a.values[0].file, Path::new("/etc/mesh/ha.yaml"));
        let set: Vec<String> = a
            .set
            .iter()
            .map(|s| format!("{}.{}={}", s.target, s.key, s.value))
            .collect();
        assert_eq!(
            set,
            [
                "netfix.gateway_public=cluster1=203.0.113.7",
                "sample.client=cluster1"
            ]
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let a = run(
            &[
                "check",
                "--cluster",
                "x=ctx-x",
                "--cluster",
                "y",
                "--linkerd-version",
                "2.20",
                "--netfix",
                "none",
                "--timeout",
                "5m",
                "--kubeconfig",
                "/k",
                "--set",
                "sample.client=y",
                "--values",
                "control-plane=mine.yaml",
            ],
            FILE,
        )
        .unwrap();
        assert_eq!(a.clusters.len(), 2);
        assert_eq!(a.clusters[0].name, "x");
        assert_eq!(a.linkerd_version, "2.20");
        assert_eq!(a.netfix, "none");
        assert_eq!(a.timeout, 300);
        assert_eq!(a.kubeconfig.as_deref(), Some("/k"));
        // the flag's --set comes last, so it is the one used
        assert_eq!(a.set.last().unwrap().value, "y");
        assert_eq!(a.values.len(), 1);
        assert_eq!(a.values[0].file, Path::new("mine.yaml"));
        // nested commands too
        let a = run(&["certs", "rotate", "issuer"], FILE).unwrap();
        assert_eq!(a.clusters.len(), 2);
        let a = run(&["link", "--rotate-credentials"], FILE).unwrap();
        assert_eq!(a.netfix, "baremetal");
    }

    #[test]
    fn an_unknown_key_or_a_wrong_value_is_one_line_with_where() {
        let err = run(&["up"], "clusters: []\nlinkerd-versoin: '2.18'\n").unwrap_err();
        assert!(err.starts_with("kpaas-mesh.yaml: "), "{err}");
        assert!(
            err.contains("unknown field `linkerd-versoin`") && err.contains("line 2"),
            "{err}"
        );
        let err = run(&["up"], "clusters:\n- name: c1\n  contxt: a\n").unwrap_err();
        assert!(
            err.contains("unknown field `contxt`") && err.contains("line 3"),
            "{err}"
        );
        let err = run(&["up"], "clusters:\n- name: Bad_Name\n").unwrap_err();
        assert!(err.starts_with("config clusters: "), "{err}");
        let err = run(&["up"], "timeout: soon\n").unwrap_err();
        assert!(err.starts_with("config timeout: "), "{err}");
        let err = run(&["up"], "plugins:\n  sample:\n    client: [a, b]\n").unwrap_err();
        assert!(err.starts_with("config plugins.sample.client: "), "{err}");
        assert!(!err.contains('\n'));
        assert!(is_krew_manifest(
            "apiVersion: krew.googlecontainertools.github.com/v1alpha2\nkind: Plugin\n"
        ));
        assert!(!is_krew_manifest(FILE));
        // an empty file is no settings
        assert!(run(&["up", "--cluster", "a", "--cluster", "b"], "").is_ok());
    }

    #[test]
    fn the_file_is_found_by_flag_then_environment_then_working_directory() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.yaml");
        std::fs::write(&f, "").unwrap();
        assert_eq!(
            locate(Some(&f), Some("/nope"), d.path()).unwrap(),
            Some(f.clone())
        );
        let err = locate(Some(Path::new("/nope.yaml")), None, d.path()).unwrap_err();
        assert_eq!(err, "--config /nope.yaml: no such file");
        assert_eq!(locate(None, f.to_str(), d.path()).unwrap(), Some(f.clone()));
        let err = locate(None, Some("/nope.yaml"), d.path()).unwrap_err();
        assert_eq!(err, "$KPAAS_MESH_CONFIG=/nope.yaml: no such file");
        assert_eq!(locate(None, None, d.path()).unwrap(), None);
        std::fs::write(d.path().join(DEFAULT_NAME), "").unwrap();
        assert_eq!(
            locate(None, Some(""), d.path()).unwrap(),
            Some(d.path().join(DEFAULT_NAME))
        );
    }

    fn kubeconfig(cluster: &str, server: &str, user: &str, token: &str, ctx: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n\
             users:\n- name: {user}\n  user:\n    token: {token}\n\
             contexts:\n- name: {ctx}\n  context:\n    cluster: {cluster}\n    user: {user}\n"
        )
    }

    #[test]
    fn init_writes_a_file_the_commands_read_and_refuses_colliding_names() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::write(
            &a,
            kubeconfig("c-a", "https://10.0.0.1:6443", "u-a", "t1", "ctx-a"),
        )
        .unwrap();
        std::fs::write(
            &b,
            kubeconfig("c-b", "https://10.0.0.2:6443", "u-b", "t2", "ctx-b"),
        )
        .unwrap();
        let out = d.path().join("kpaas-mesh.yaml");
        let list = format!("{}:{}", a.display(), b.display());
        let args = crate::cli::InitArgs {
            kubeconfig: Some(list.clone()),
            contexts: vec!["ctx-a=cluster1".into(), "ctx-b=cluster2".into()],
            out: out.clone(),
            force: false,
            netfix: "none".into(),
            linkerd_version: "stable-2.14.10".into(),
        };
        let said = init(&args).unwrap();
        assert!(said.ends_with("with clusters cluster1, cluster2"), "{said}");
        let text = std::fs::read_to_string(&out).unwrap();
        let file = parse(&out, &text).unwrap();
        assert_eq!(file.clusters[0].context.as_deref(), Some("ctx-a"));
        assert_eq!(file.kubeconfig.as_deref(), Some(list.as_str()));
        // the commands take it as it is
        let m = Cli::command()
            .try_get_matches_from(["kubectl-kpaas_mesh", "up"])
            .unwrap();
        let mut cli = Cli::from_arg_matches(&m).unwrap();
        let Command::Up(args_up) = &mut cli.command else {
            panic!()
        };
        apply(&file, d.path(), leaf(&m), args_up).unwrap();
        assert_eq!(args_up.clusters[1].context, "ctx-b");
        // not over an existing file without --force
        assert!(init(&args).unwrap_err().contains("exists: give --force"));
        // kubeadm's names in both files: the contexts would reach the wrong cluster
        std::fs::write(
            &a,
            kubeconfig(
                "kubernetes",
                "https://10.0.0.1:6443",
                "kubernetes-admin",
                "t1",
                "ctx-a",
            ),
        )
        .unwrap();
        std::fs::write(
            &b,
            kubeconfig(
                "kubernetes",
                "https://10.0.0.2:6443",
                "kubernetes-admin",
                "t2",
                "ctx-b",
            ),
        )
        .unwrap();
        let err = init(&crate::cli::InitArgs {
            force: true,
            ..args.clone()
        })
        .unwrap_err();
        assert!(
            err.starts_with("context 'ctx-a': cluster kubernetes is defined differently in "),
            "{err}"
        );
        assert!(err.contains("guide 2.3"), "{err}");
        // the same check guards every command over the clusters
        let specs: Vec<crate::cli::ClusterSpec> =
            vec!["x=ctx-a".parse().unwrap(), "y=ctx-b".parse().unwrap()];
        let err = crate::clusters::Clusters::load(Some(&list), &specs)
            .err()
            .unwrap();
        assert!(
            err.starts_with("cluster x: context 'ctx-a': cluster kubernetes"),
            "{err}"
        );
        // a context name that is no cluster name
        std::fs::write(
            &a,
            kubeconfig("c-a", "https://10.0.0.1:6443", "u-a", "t1", "Admin@A"),
        )
        .unwrap();
        std::fs::write(
            &b,
            kubeconfig("c-b", "https://10.0.0.2:6443", "u-b", "t2", "ctx-b"),
        )
        .unwrap();
        let err = init(&crate::cli::InitArgs {
            force: true,
            contexts: vec![],
            ..args
        })
        .unwrap_err();
        assert!(err.contains("name it with --context Admin@A=NAME"), "{err}");
    }
}
