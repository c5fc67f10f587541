//! The command line: clap definitions for every subcommand and the validation of their
//! values (cluster names and contexts, stage lists, durations). Pure: no I/O here, so all of
//! it is unit-tested.

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;

/// Set up Linkerd multi-cluster on K-PaaS clusters (the K-PaaS Linkerd multi-cluster guide,
/// as one command).
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-kpaas_mesh",
    bin_name = "kubectl kpaas-mesh",
    version,
    propagate_version = true,
    disable_help_subcommand = true,
    args_override_self = true
)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides it.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Look for stage plugins in DIR first (repeatable).
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    pub plugin_dirs: Vec<PathBuf>,

    /// The settings file (clusters, kubeconfig, Linkerd version, netfix, plugin options, …);
    /// default: $KPAAS_MESH_CONFIG, else ./kpaas-mesh.yaml when it exists. Flags win over it.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// How progress is shown on stderr: auto (live lines on a terminal, else plain), plain
    /// (timestamped lines), none.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub progress: crate::progress::ProgressMode,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline: cert, control-plane, multicluster (+link), netfix, smi, sample.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh up --cluster cluster1 --cluster cluster2 --dry-run
    ///   kubectl kpaas-mesh up --cluster cluster1=kpaas-a --cluster cluster2=kpaas-b --netfix openstack --os-cloud kpaas
    ///   kubectl kpaas-mesh up --config kpaas-mesh.yaml --linkerd-version 2.18 --restart-workloads
    #[command(verbatim_doc_comment)]
    Up(MeshArgs),
    /// Remove, in reverse order, everything `up` made.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh down --cluster cluster1 --cluster cluster2 --dry-run
    ///   kubectl kpaas-mesh down --cluster cluster1 --cluster cluster2 --skip cert
    #[command(verbatim_doc_comment)]
    Down(MeshArgs),
    /// Show what is installed on every cluster, and every link.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh status --cluster cluster1 --cluster cluster2
    ///   kubectl kpaas-mesh status --config kpaas-mesh.yaml -o json
    #[command(verbatim_doc_comment)]
    Status(MeshArgs),
    /// Run the multicluster checks (like `linkerd multicluster check`) plus kpaas-mesh's own.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh check --cluster cluster1 --cluster cluster2 --wait 5m
    ///   kubectl kpaas-mesh check --cluster cluster1 --cluster cluster2 --only multicluster -o json
    #[command(verbatim_doc_comment)]
    Check(CheckArgs),
    /// Link every cluster to every other one (needs the multicluster stage installed).
    ///
    /// Examples:
    ///   kubectl kpaas-mesh link --cluster cluster1 --cluster cluster2
    ///   kubectl kpaas-mesh link --cluster cluster1 --cluster cluster2 --rotate-credentials
    #[command(verbatim_doc_comment)]
    Link(LinkArgs),
    /// Remove links: all of them, or one direction with --from.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh unlink --cluster cluster1 --cluster cluster2
    ///   kubectl kpaas-mesh unlink --cluster cluster2 --from cluster1
    #[command(verbatim_doc_comment)]
    Unlink(UnlinkArgs),
    /// Send requests from the sample's sleep pod and check that the split answers as weighted.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh verify --cluster cluster1 --cluster cluster2
    ///   kubectl kpaas-mesh verify --cluster cluster1 --cluster cluster2 --requests 400 --from cluster2
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Trust anchor and issuer certificates (guide 3.1) without touching a cluster.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The stage plugins found and loaded.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Print the version of the tool, of its plugin ABI, of every plugin found, and the Linkerd
    /// releases the built-in stages support.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh version
    ///   kubectl kpaas-mesh version -o json | jq '.linkerd[].minor'
    #[command(verbatim_doc_comment)]
    Version {
        #[arg(short = 'o', long = "output", value_enum)]
        output: Option<OutputFormat>,
    },
    /// Write the plan of `up` as files per cluster, for Argo CD, Flux or plain helm and kubectl:
    /// each helm release as release.yaml + values.yaml, each manifest as a file, in apply order;
    /// Secrets and secret helm values in secrets/ (only with --secrets include); PLAN.md gives
    /// the order and what is not a file (waits, IaaS writes, the local certificates).
    ///
    /// Examples:
    ///   kubectl kpaas-mesh render --cluster cluster1 --cluster cluster2 --out ./mesh
    ///   kubectl kpaas-mesh render --config kpaas-mesh.yaml --out ./mesh --secrets include
    #[command(verbatim_doc_comment)]
    Render(RenderArgs),
    /// Write a kpaas-mesh.yaml from the kubeconfig's contexts (every context, or those given
    /// with --context), refusing contexts whose cluster or user name means different things in
    /// the merged kubeconfig files (the guide's 2.3 warning).
    ///
    /// Examples:
    ///   KUBECONFIG=~/.kube/cluster1:~/.kube/cluster2 kubectl kpaas-mesh init
    ///   kubectl kpaas-mesh init --context ctx-a=cluster1 --context ctx-b=cluster2 --out mesh.yaml
    #[command(verbatim_doc_comment)]
    Init(InitArgs),
    /// Print a shell completion script for `kubectl-kpaas_mesh`.
    ///
    /// Examples:
    ///   source <(kubectl-kpaas_mesh completion bash)
    ///   kubectl-kpaas_mesh completion zsh > "${fpath[1]}/_kubectl-kpaas_mesh"
    ///   kubectl-kpaas_mesh completion fish > ~/.config/fish/completions/kubectl-kpaas_mesh.fish
    #[command(verbatim_doc_comment)]
    Completion {
        /// The shell: bash, zsh, fish (also elvish, powershell).
        shell: clap_complete::Shell,
    },
}

/// Flags shared by the commands that work on a set of clusters.
#[derive(Debug, Clone, Args)]
pub struct MeshArgs {
    /// A cluster of the mesh: NAME=CONTEXT, or NAME when the kubeconfig context has that name.
    /// Repeat it for every cluster (at least two for up, down, link and unlink); or list them
    /// under `clusters` in kpaas-mesh.yaml.
    #[arg(long = "cluster", value_name = "NAME[=CONTEXT]")]
    pub clusters: Vec<ClusterSpec>,

    /// Kubeconfig file(s); defaults to $KUBECONFIG (colon-separated, merged like kubectl),
    /// then ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<String>,

    /// The netfix plugin that makes gateways reachable across clusters.
    #[arg(long, value_name = "NAME", default_value = "none")]
    pub netfix: String,

    /// Run only these stages (comma-separated; `plugins list` shows the installed ones).
    #[arg(
        long,
        value_name = "STAGE,..",
        value_delimiter = ',',
        conflicts_with = "skip"
    )]
    pub only: Vec<String>,

    /// Run every stage except these (comma-separated).
    #[arg(long, value_name = "STAGE,..", value_delimiter = ',')]
    pub skip: Vec<String>,

    /// A stage plugin's option (repeatable), checked against the plugin's schema before
    /// anything runs: STAGE.KEY=VALUE, or PLUGIN.KEY=VALUE (e.g. netfix.mode=dnat,
    /// sample.client=cluster1); `plugins describe NAME` lists a plugin's options.
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
    pub set: Vec<SetOption>,

    /// Print every action (files, manifests, helm releases) instead of doing it.
    #[arg(long)]
    pub dry_run: bool,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,

    /// Directory of the trust anchor and issuer (ca.crt ca.key issuer.crt issuer.key).
    #[arg(long, value_name = "DIR", env = "KPAAS_MESH_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,

    /// The Linkerd release to install: a tag (stable-2.14.10, edge-25.4.4) or a minor (2.18);
    /// `version` lists them. On clusters running an older release `up` upgrades them, through
    /// every minor in between (Linkerd's control plane may be one minor ahead of its proxies).
    #[arg(long, value_name = "VERSION", default_value = kpaas_mesh_kit::linkerd::DEFAULT_VERSION)]
    pub linkerd_version: String,

    /// Between the steps of an upgrade across minors, restart the meshed workloads whose
    /// proxies are older than the new control plane (`kubectl rollout restart`); without it
    /// `up` stops after the step and lists them.
    #[arg(long)]
    pub restart_workloads: bool,

    /// Install charts from this directory (DIR/<chart>/ or DIR/<chart>-<version>.tgz)
    /// instead of the public helm repositories (air-gapped installs).
    #[arg(long, value_name = "DIR", env = "KPAAS_MESH_CHART_DIR")]
    pub chart_dir: Option<PathBuf>,

    /// Rewrite every image to this registry path, e.g. harbor.example.com/linkerd.
    #[arg(long, value_name = "HOST/PATH")]
    pub registry: Option<String>,

    /// Extra helm values for a stage or release from a YAML file (repeatable),
    /// e.g. --values control-plane=ha.yaml.
    #[arg(long = "values", value_name = "STAGE=FILE")]
    pub values: Vec<ValuesFile>,

    /// netfix: the reachable (public) address of a cluster's gateway, e.g.
    /// --gateway-public cluster2=203.0.113.7 (repeatable; netfix-baremetal's DNAT target).
    #[arg(long = "gateway-public", value_name = "NAME=ADDRESS")]
    pub gateway_public: Vec<KeyValue>,

    /// netfix-openstack: the cloud in clouds.yaml (as `openstack --os-cloud`); else OS_CLOUD / OS_* variables.
    #[arg(long = "os-cloud", value_name = "NAME", env = "OS_CLOUD")]
    pub os_cloud: Option<String>,

    /// An option for the netfix plugin (repeatable), e.g. --netfix-opt mode=dnat.
    #[arg(long = "netfix-opt", value_name = "KEY=VALUE")]
    pub netfix_opts: Vec<KeyValue>,

    /// sample: the cluster that runs the sleep client and the traffic split (default: the second).
    #[arg(long = "sample-client", value_name = "NAME")]
    pub sample_client: Option<String>,

    /// sample: split weights per cluster, e.g. --weights cluster1=50,cluster2=50 (default: equal).
    #[arg(long, value_name = "NAME=WEIGHT,..", value_delimiter = ',')]
    pub weights: Vec<KeyValue>,

    /// How long each wait (Deployments Available, gateway address) may take.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_secs)]
    pub timeout: u64,
}

/// One `KEY=VALUE` flag value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl FromStr for KeyValue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok(KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            }),
            _ => Err(format!("'{s}': expected KEY=VALUE")),
        }
    }
}

/// One `--set STAGE.KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOption {
    /// A stage name or a plugin name.
    pub target: String,
    pub key: String,
    pub value: String,
}

impl FromStr for SetOption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}': expected STAGE.KEY=VALUE, e.g. netfix.mode=dnat");
        let (lhs, value) = s.split_once('=').ok_or_else(bad)?;
        let (target, key) = lhs.split_once('.').ok_or_else(bad)?;
        if target.is_empty() || key.is_empty() {
            return Err(bad());
        }
        Ok(SetOption {
            target: target.to_string(),
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

/// One `--values KEY=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuesFile {
    pub key: String,
    pub file: PathBuf,
}

impl FromStr for ValuesFile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, f)) if !k.is_empty() && !f.is_empty() => Ok(ValuesFile {
                key: k.to_string(),
                file: PathBuf::from(f),
            }),
            _ => Err(format!(
                "'{s}': expected STAGE=FILE, e.g. control-plane=values.yaml"
            )),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Retry failing checks until they pass or this much time has passed (e.g. 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
    pub wait: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// The directory to write (must not exist or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Secrets and secret helm values: omit (listed in PLAN.md) or include (files 0600).
    #[arg(long, value_enum, default_value = "omit")]
    pub secrets: crate::gitops::SecretsMode,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Kubeconfig file(s), colon-separated; default $KUBECONFIG, then ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<String>,
    /// A context to put in the file as a cluster, CONTEXT or CONTEXT=NAME (repeatable; default:
    /// every context, named after it).
    #[arg(long = "context", value_name = "CONTEXT[=NAME]")]
    pub contexts: Vec<String>,
    /// Where to write it.
    #[arg(long, value_name = "FILE", default_value = "kpaas-mesh.yaml")]
    pub out: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
    /// The netfix plugin to write (none, openstack, baremetal, or a vendor's).
    #[arg(long, value_name = "NAME", default_value = "none")]
    pub netfix: String,
    /// The Linkerd release to write.
    #[arg(long, value_name = "VERSION", default_value = kpaas_mesh_kit::linkerd::DEFAULT_VERSION)]
    pub linkerd_version: String,
}

#[derive(Debug, Clone, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Replace the ServiceAccount token every link carries: a new token Secret on each
    /// cluster, every peer's credentials moved to it and its service mirror restarted, then the
    /// old token Secrets removed (give every cluster of the mesh: links from clusters not given
    /// would keep the old token and stop working).
    #[arg(long)]
    pub rotate_credentials: bool,
}

#[derive(Debug, Clone, Args)]
pub struct UnlinkArgs {
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Remove only the link to this cluster, on the clusters given with --cluster.
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// How many requests to send.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub requests: u32,
    /// The cluster whose sleep pod sends them (default: the sample's client cluster).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// How many failed requests (non-2xx, timeouts, unreadable answers) are tolerated.
    #[arg(long, default_value_t = 0)]
    pub max_errors: u32,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create (or reuse) ca.crt ca.key issuer.crt issuer.key in DIR.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh certs generate --out ~/.kpaas-mesh/certs
    ///   kubectl kpaas-mesh certs generate --out ./certs --anchor-cert root.crt --anchor-key root.key
    #[command(verbatim_doc_comment)]
    Generate(CertsGenerateArgs),
    /// Show subject, issuer, key type and expiry of every file in DIR.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh certs inspect ~/.kpaas-mesh/certs
    ///   kubectl kpaas-mesh certs inspect ./certs -o json
    #[command(verbatim_doc_comment)]
    Inspect {
        /// The certificate directory.
        dir: PathBuf,
        #[arg(short = 'o', long = "output", value_enum)]
        output: Option<OutputFormat>,
    },
    /// The certificates the clusters run with next to the local ones: per cluster its trust
    /// roots and issuer (subject, not-after, days left, which root signs it), warnings under
    /// the warn days, and whether every cluster's issuer is trusted by every peer
    /// (`status --only cert`).
    ///
    /// Examples:
    ///   kubectl kpaas-mesh certs status --cluster cluster1 --cluster cluster2 --certs-dir ./certs
    ///   kubectl kpaas-mesh certs status --cluster cluster1 --cluster cluster2 -o json
    #[command(verbatim_doc_comment)]
    Status(Box<MeshArgs>),
    /// Rotate the certificates of a running mesh on every cluster, planned from what the
    /// clusters run, so a stopped rotation resumes where it stopped when run again.
    ///
    /// `issuer`: a new issuer from the same trust anchor (the certs dir's ca.key), rolled out
    /// through the control-plane release; done when each cluster's identity controller reports
    /// it loaded it (its IssuerUpdated Event).
    ///
    /// `anchor`: a new trust anchor (ca-new.crt, generated or --anchor-cert), in three phases
    /// on every cluster in lockstep: trust new + old, then issuers signed by the new anchor,
    /// then drop the old one; a phase starts only when every cluster finished the previous
    /// one. Meshed workloads must restart between phases: --restart-workloads does it,
    /// otherwise the command stops after a phase and lists them. At the end ca.crt/ca.key are
    /// the new anchor (the old certificate stays as ca-old.crt).
    ///
    /// Examples:
    ///   kubectl kpaas-mesh certs rotate issuer --cluster cluster1 --cluster cluster2 --certs-dir ./certs
    ///   kubectl kpaas-mesh certs rotate anchor --cluster cluster1 --cluster cluster2 --certs-dir ./certs --dry-run
    ///   kubectl kpaas-mesh certs rotate anchor --cluster cluster1 --cluster cluster2 --certs-dir ./certs --restart-workloads
    #[command(verbatim_doc_comment)]
    Rotate(Box<CertsRotateArgs>),
}

/// What `certs rotate` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RotateWhat {
    Issuer,
    Anchor,
}

impl RotateWhat {
    pub fn name(self) -> &'static str {
        match self {
            RotateWhat::Issuer => "issuer",
            RotateWhat::Anchor => "anchor",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CertsRotateArgs {
    /// `issuer` or `anchor`.
    #[arg(value_enum)]
    pub what: RotateWhat,
    /// anchor: the new trust anchor to roll out instead of generating one (needs --anchor-key).
    #[arg(long, value_name = "FILE", requires = "anchor_key")]
    pub anchor_cert: Option<PathBuf>,
    /// anchor: the new trust anchor's private key.
    #[arg(long, value_name = "FILE", requires = "anchor_cert")]
    pub anchor_key: Option<PathBuf>,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CertsGenerateArgs {
    /// The certificate directory (created with mode 0700).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Import this trust anchor certificate instead of generating one (needs --anchor-key).
    #[arg(long, value_name = "FILE", requires = "anchor_key")]
    pub anchor_cert: Option<PathBuf>,
    /// The imported trust anchor's private key.
    #[arg(long, value_name = "FILE", requires = "anchor_cert")]
    pub anchor_key: Option<PathBuf>,
    /// Validity of a newly issued issuer certificate (e.g. 8760h, 365d).
    #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_duration_secs)]
    pub issuer_validity: u64,
    /// Print the actions instead of writing files (keys redacted).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List every plugin found, with its stage, version and file.
    ///
    /// Examples:
    ///   kubectl kpaas-mesh plugins list
    ///   kubectl kpaas-mesh --plugin-dir ./vendor-plugins plugins list -o json
    #[command(verbatim_doc_comment)]
    List {
        #[arg(short = 'o', long = "output", value_enum)]
        output: Option<OutputFormat>,
    },
    /// A plugin's descriptor: its stage, where it runs, its operations and its options
    /// (what `--set NAME.KEY=VALUE` accepts).
    ///
    /// Examples:
    ///   kubectl kpaas-mesh plugins describe netfix-openstack
    ///   kubectl kpaas-mesh plugins describe sample -o json
    #[command(verbatim_doc_comment)]
    Describe {
        /// A plugin name (`netfix-openstack`) or a stage name (`sample`).
        name: String,
        #[arg(short = 'o', long = "output", value_enum)]
        output: Option<OutputFormat>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// One `--cluster` value: the Linkerd cluster name and the kubeconfig context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub context: String,
}

impl FromStr for ClusterSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, context) = match s.split_once('=') {
            Some((n, c)) => (n, c),
            None => (s, s),
        };
        validate_dns1123_label(name)?;
        if context.is_empty() {
            return Err(format!("'{s}': the context after '=' is empty"));
        }
        Ok(ClusterSpec {
            name: name.to_string(),
            context: context.to_string(),
        })
    }
}

/// Linkerd uses the cluster name in object names (`cluster-credentials-<name>`, mirror
/// services `<svc>-<name>`), so it must be a DNS-1123 label.
pub fn validate_dns1123_label(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if name.is_empty()
        || name.len() > 63
        || !ok_chars
        || !ends_ok(name.as_bytes().first())
        || !ends_ok(name.as_bytes().last())
    {
        return Err(format!(
            "cluster name '{name}' is not a DNS-1123 label (lowercase letters, digits and '-', \
             starting and ending with a letter or digit, at most 63 characters)"
        ));
    }
    Ok(())
}

/// Checks a set of `--cluster` values: distinct names and at least `min` of them.
pub fn validate_clusters(clusters: &[ClusterSpec], min: usize) -> Result<(), String> {
    if clusters.len() < min {
        return Err(format!(
            "need at least {min} clusters (--cluster NAME[=CONTEXT], repeated, or `clusters` in kpaas-mesh.yaml); got {}",
            clusters.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for c in clusters {
        if !seen.insert(&c.name) {
            return Err(format!("cluster name '{}' is given twice", c.name));
        }
    }
    Ok(())
}

/// The stages a command runs after `--only` / `--skip`, of the `known` ones (every stage an
/// installed plugin provides, and the built-in names). A name that is none of them is
/// refused with the list.
pub fn selected_stages(
    only: &[String],
    skip: &[String],
    known: &[String],
) -> Result<Vec<String>, String> {
    for (flag, list) in [("--only", only), ("--skip", skip)] {
        if let Some(bad) = list.iter().find(|s| !known.contains(s)) {
            return Err(format!(
                "{flag} {bad}: unknown stage (stages: {})",
                known.join(", ")
            ));
        }
    }
    Ok(known
        .iter()
        .filter(|s| only.is_empty() || only.contains(s))
        .filter(|s| !skip.contains(s))
        .cloned()
        .collect())
}

/// Parses `8760h`, `30m`, `90s`, `365d`, `1h30m` or plain seconds into seconds.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration '{s}' (use e.g. 8760h, 30m, 90s, 365d)");
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

impl Command {
    /// The cluster flags of the commands that work on clusters.
    pub fn mesh_args_mut(&mut self) -> Option<&mut MeshArgs> {
        match self {
            Command::Up(m) | Command::Down(m) | Command::Status(m) => Some(m),
            Command::Check(a) => Some(&mut a.mesh),
            Command::Render(a) => Some(&mut a.mesh),
            Command::Link(a) => Some(&mut a.mesh),
            Command::Unlink(a) => Some(&mut a.mesh),
            Command::Verify(a) => Some(&mut a.mesh),
            Command::Certs(CertsCommand::Status(m)) => Some(m),
            Command::Certs(CertsCommand::Rotate(a)) => Some(&mut a.mesh),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-kpaas_mesh").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn certs_status_takes_the_mesh_flags_and_version_takes_output() {
        let cli = parse(&[
            "certs",
            "status",
            "--cluster",
            "c1",
            "--cluster",
            "c2",
            "--certs-dir",
            "/c",
            "-o",
            "json",
        ])
        .unwrap();
        let Command::Certs(CertsCommand::Status(args)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(args.clusters.len(), 2);
        assert_eq!(args.output, Some(OutputFormat::Json));
        let cli = parse(&["version", "-o", "yaml"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Version {
                output: Some(OutputFormat::Yaml)
            }
        ));
        let cli = parse(&[
            "up",
            "--cluster",
            "a",
            "--cluster",
            "b",
            "--linkerd-version",
            "2.20",
            "--restart-workloads",
        ])
        .unwrap();
        let Command::Up(args) = cli.command else {
            panic!()
        };
        assert!(args.restart_workloads);
        assert_eq!(args.linkerd_version, "2.20");
    }

    #[test]
    fn up_parses_clusters_stages_and_flags() {
        let cli = parse(&[
            "up",
            "--cluster",
            "cluster1",
            "--cluster",
            "east=kubernetes-admin@east",
            "--only",
            "cert,control-plane",
            "--dry-run",
            "-o",
            "json",
            "-vv",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 2);
        let Command::Up(args) = cli.command else {
            panic!("not up")
        };
        assert_eq!(
            args.clusters,
            vec![
                ClusterSpec {
                    name: "cluster1".into(),
                    context: "cluster1".into()
                },
                ClusterSpec {
                    name: "east".into(),
                    context: "kubernetes-admin@east".into()
                },
            ]
        );
        assert_eq!(args.only, ["cert", "control-plane"]);
        assert!(args.dry_run);
        assert_eq!(args.output, Some(OutputFormat::Json));
        assert_eq!(args.netfix, "none");
    }

    #[test]
    fn bad_values_are_rejected_by_the_parser() {
        let err = parse(&["up", "--cluster", "Cluster_1"]).unwrap_err();
        assert!(err.to_string().contains("not a DNS-1123 label"), "{err}");
        let err = parse(&["up", "--cluster", "a=", "--cluster", "b"]).unwrap_err();
        assert!(
            err.to_string().contains("context after '=' is empty"),
            "{err}"
        );
        // stage names are checked against the installed plugins (selected_stages), not here
        assert!(parse(&["up", "--cluster", "a", "--only", "dns"]).is_ok());
        let err = parse(&["up", "--cluster", "a", "--only", "cert", "--skip", "smi"]).unwrap_err();
        assert!(err.to_string().contains("cannot be used with"), "{err}");
        // every command's help shows examples
        fn leaves(c: &clap::Command, path: String, out: &mut Vec<(String, String)>) {
            let subs: Vec<&clap::Command> = c.get_subcommands().collect();
            if subs.is_empty() {
                out.push((path.clone(), c.clone().render_long_help().to_string()));
            }
            for s in subs {
                leaves(s, format!("{path} {}", s.get_name()), out);
            }
        }
        let mut all = Vec::new();
        leaves(
            &<Cli as clap::CommandFactory>::command(),
            String::new(),
            &mut all,
        );
        assert!(all.len() >= 15, "{}", all.len());
        for (path, help) in &all {
            let example = help
                .split_once("Examples:\n  ")
                .and_then(|(_, rest)| rest.lines().next());
            assert!(
                example.is_some_and(|l| l.contains("kpaas-mesh") || l.contains("kpaas_mesh")),
                "`{path}` --help has no examples:\n{help}"
            );
        }
        // a flag given twice: the last one counts (repeatable ones add up)
        let twice = parse(&[
            "up",
            "--cluster",
            "a",
            "--cluster",
            "b",
            "--timeout",
            "3m",
            "--timeout",
            "15s",
        ])
        .unwrap();
        let Command::Up(m) = twice.command else {
            panic!()
        };
        assert_eq!((m.timeout, m.clusters.len()), (15, 2));
        // clusters may come from kpaas-mesh.yaml: their count is checked once it is read
        let up = parse(&["up"]).unwrap();
        let Command::Up(m) = up.command else { panic!() };
        let err = validate_clusters(&m.clusters, 2).unwrap_err();
        assert!(err.starts_with("need at least 2 clusters"), "{err}");
        let err = parse(&["certs", "generate", "--out", "d", "--anchor-cert", "c"]).unwrap_err();
        assert!(err.to_string().contains("--anchor-key"), "{err}");
    }

    #[test]
    fn netfix_flags_parse() {
        let cli = parse(&[
            "up",
            "--cluster",
            "a",
            "--cluster",
            "b",
            "--netfix",
            "baremetal",
            "--gateway-public",
            "b=203.0.113.7",
            "--netfix-opt",
            "mode=dnat",
            "--os-cloud",
            "kpaas",
        ])
        .unwrap();
        let Command::Up(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.netfix, "baremetal");
        assert_eq!(
            args.gateway_public,
            vec![KeyValue {
                key: "b".into(),
                value: "203.0.113.7".into()
            }]
        );
        assert_eq!(args.netfix_opts[0].key, "mode");
        assert_eq!(args.os_cloud.as_deref(), Some("kpaas"));
        let err = parse(&["up", "--cluster", "a", "--gateway-public", "b"]).unwrap_err();
        assert!(err.to_string().contains("expected KEY=VALUE"), "{err}");
    }

    #[test]
    fn dns1123_labels() {
        for ok in ["a", "cluster1", "k-paas-1", &"a".repeat(63)] {
            validate_dns1123_label(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64), "ü"] {
            assert!(validate_dns1123_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_sets_need_distinct_names_and_a_minimum() {
        let a: ClusterSpec = "a".parse().unwrap();
        let b: ClusterSpec = "b=ctx".parse().unwrap();
        let a2: ClusterSpec = "a=other".parse().unwrap();
        validate_clusters(&[a.clone(), b.clone()], 2).unwrap();
        let err = validate_clusters(std::slice::from_ref(&a), 2).unwrap_err();
        assert!(err.starts_with("need at least 2 clusters"), "{err}");
        let err = validate_clusters(&[a, b, a2], 2).unwrap_err();
        assert_eq!(err, "cluster name 'a' is given twice");
    }

    #[test]
    fn stage_selection_filters_the_known_stages() {
        let known: Vec<String> = ["cert", "control-plane", "dns", "netfix", "smi"]
            .map(String::from)
            .to_vec();
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(selected_stages(&[], &[], &known).unwrap(), known);
        assert_eq!(
            selected_stages(&v(&["smi", "cert"]), &[], &known).unwrap(),
            v(&["cert", "smi"])
        );
        assert_eq!(
            selected_stages(&[], &v(&["netfix", "dns"]), &known).unwrap(),
            v(&["cert", "control-plane", "smi"])
        );
        assert_eq!(
            selected_stages(&v(&["dsn"]), &[], &known).unwrap_err(),
            "--only dsn: unknown stage (stages: cert, control-plane, dns, netfix, smi)"
        );
    }

    #[test]
    fn set_options_parse() {
        let o: SetOption = "netfix.mode=dnat".parse().unwrap();
        assert_eq!(
            (o.target.as_str(), o.key.as_str(), o.value.as_str()),
            ("netfix", "mode", "dnat")
        );
        let o: SetOption = "sample.weights=c1=20,c2=80".parse().unwrap();
        assert_eq!(o.value, "c1=20,c2=80");
        for bad in ["mode=dnat", ".mode=x", "netfix.=x", "netfix.mode"] {
            assert!(bad.parse::<SetOption>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("8760h").unwrap(), 8760 * 3600);
        assert_eq!(parse_duration_secs("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration_secs("365d").unwrap(), 365 * 86400);
        assert_eq!(parse_duration_secs("90").unwrap(), 90);
        for bad in ["", "h", "10x", "10h5", "0h", "99999999999999999999d"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }
}
