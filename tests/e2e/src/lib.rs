//! Harness for kpaas-mesh's end-to-end tests: finds the running local test bed (tests/testbed/testbed.sh) from
//! the `KPAAS_MESH_TESTBED` environment variable, hands out a `kube::Client` per cluster context, runs the bed's
//! peer CLIs (kubectl, helm, linkerd) with the bed's environment, and skips loudly when no bed is running.
//!
//! An end-to-end test anywhere in the workspace is an integration test (`tests/*.rs`) that starts with
//! [`testbed_or_skip!`]; `tests/run.sh` runs every integration test of the workspace inside the bed's network
//! namespace, one test at a time.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Config, Resource};
use serde_json::json;

/// Environment variable naming the state directory of a running test bed.
pub const TESTBED_ENV: &str = "KPAAS_MESH_TESTBED";

/// The message printed when an end-to-end test is skipped.
pub const SKIP_MESSAGE: &str =
    "SKIPPED: end-to-end test needs the test bed (KPAAS_MESH_TESTBED unset); run tests/run.sh";

/// Label put on every namespace the harness creates, so leftovers are easy to find.
pub const TEST_LABEL: &str = "kpaas-mesh.test/e2e";

/// Returns the running test bed, or prints [`SKIP_MESSAGE`] to stderr and returns `None` when
/// `KPAAS_MESH_TESTBED` is unset. Panics when the variable is set but the bed is unusable: a broken bed must
/// fail the run, not skip it.
pub fn testbed_or_skip() -> Option<TestBed> {
    match std::env::var_os(TESTBED_ENV) {
        None => {
            // Straight to the stderr handle: libtest captures `eprintln!` of passing tests, and this must be seen.
            use std::io::Write;
            let bar = "=".repeat(SKIP_MESSAGE.len());
            let _ = writeln!(std::io::stderr().lock(), "\n{bar}\n{SKIP_MESSAGE}\n{bar}");
            None
        }
        Some(dir) => match TestBed::open(Path::new(&dir)) {
            Ok(bed) => Some(bed),
            Err(e) => panic!(
                "{TESTBED_ENV}={} is set but the test bed is unusable: {e:#}",
                dir.to_string_lossy()
            ),
        },
    }
}

/// First line of an end-to-end test: binds the [`TestBed`] or returns early (skipped) when none is running.
/// `testbed_or_skip!()` is for tests returning `()`; `testbed_or_skip!(Ok(()))` for tests returning a `Result`.
#[macro_export]
macro_rules! testbed_or_skip {
    () => {
        match $crate::testbed_or_skip() {
            Some(bed) => bed,
            None => return,
        }
    };
    ($ret:expr) => {
        match $crate::testbed_or_skip() {
            Some(bed) => bed,
            None => return $ret,
        }
    };
}

/// A running test bed: its state directory, kubeconfig (one context per cluster) and environment.
#[derive(Debug, Clone)]
pub struct TestBed {
    dir: PathBuf,
    kubeconfig_path: PathBuf,
    kubeconfig: Kubeconfig,
    env: BTreeMap<String, String>,
}

impl TestBed {
    /// Opens the bed whose state directory is `dir` (as written by `testbed.sh up`).
    pub fn open(dir: &Path) -> Result<Self> {
        let kubeconfig_path = dir.join("kubeconfig");
        let kubeconfig = Kubeconfig::read_from(&kubeconfig_path)
            .with_context(|| format!("reading {}", kubeconfig_path.display()))?;
        let env_path = dir.join("env");
        let env_text = std::fs::read_to_string(&env_path)
            .with_context(|| format!("reading {}", env_path.display()))?;
        let env = parse_env_file(&env_text);
        let bed = TestBed {
            dir: dir.to_path_buf(),
            kubeconfig_path,
            kubeconfig,
            env,
        };
        bed.check_network_namespace()?;
        Ok(bed)
    }

    /// The clusters' API servers listen on loopback inside the bed's network namespace: a test running outside
    /// it would only see "connection refused", so say what is wrong instead.
    fn check_network_namespace(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Ok(name) = std::fs::read_to_string(self.dir.join("netns")) else {
            return Ok(()); // a bed without a namespace (not made by testbed.sh): nothing to check
        };
        let ours = std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
        let bed =
            std::fs::metadata(Path::new("/run/netns").join(name.trim())).with_context(|| {
                format!("network namespace {} is gone; is the bed up?", name.trim())
            })?;
        if (ours.dev(), ours.ino()) != (bed.dev(), bed.ino()) {
            bail!(
                "this test runs outside the test bed's network namespace {}; run it with \
                 `tests/testbed/testbed.sh exec -- cargo test ...`",
                name.trim()
            );
        }
        Ok(())
    }

    /// The state directory (`KPAAS_MESH_TESTBED`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kubeconfig file holding every cluster's context.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The parsed kubeconfig.
    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
    }

    /// Context names, sorted: `cluster1`, `cluster2`, …
    pub fn contexts(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.clone())
            .collect();
        names.sort_by_key(|n| (n.len(), n.clone()));
        names
    }

    /// A client for the cluster behind `context`.
    pub async fn client(&self, context: &str) -> Result<Client> {
        let options = KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let config = Config::from_custom_kubeconfig(self.kubeconfig.clone(), &options)
            .await
            .with_context(|| format!("kubeconfig context {context}"))?;
        Client::try_from(config).with_context(|| format!("client for context {context}"))
    }

    /// The bed's environment (from its `env` file): KUBECONFIG, PATH, KPAAS_MESH_TESTBED, KPAAS_MESH_CHARTS, …
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// Directory of the bed's binaries (kubectl, helm, linkerd, kwokctl, …).
    pub fn bin_dir(&self) -> Result<PathBuf> {
        self.env_path("KPAAS_MESH_BIN")
    }

    /// Directory of the local charts: `linkerd-crds`, `linkerd-control-plane`, `linkerd-multicluster`,
    /// `linkerd-multicluster-link`, `partials` (and `linkerd-smi` when it could be built).
    pub fn charts_dir(&self) -> Result<PathBuf> {
        self.env_path("KPAAS_MESH_CHARTS")
    }

    fn env_path(&self, key: &str) -> Result<PathBuf> {
        self.env
            .get(key)
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("{key} missing from {}", self.dir.join("env").display()))
    }

    /// The MetalLB stand-in's address pool of `context` (first and last address, inclusive).
    pub fn lb_pool(&self, context: &str) -> Result<(Ipv4Addr, Ipv4Addr)> {
        let path = self.dir.join("lb-pools");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if parts.next() == Some(context) {
                let range = parts
                    .next()
                    .ok_or_else(|| anyhow!("bad line in {}: {line}", path.display()))?;
                return parse_pool(range);
            }
        }
        bail!("no pool for context {context} in {}", path.display())
    }

    /// A command for `program` (looked up in the bed's bin dir first) with the bed's environment.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = match self.bin_dir() {
            Ok(bin) if bin.join(program).exists() => Command::new(bin.join(program)),
            _ => Command::new(program),
        };
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `program args…` with the bed's environment, feeding `stdin` if given; fails unless it exits 0.
    pub fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {program}"))?;
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input)
                .with_context(|| format!("writing to {program}"))?;
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} {} failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// Creates a namespace with a unique name starting with `prefix` in `context`; delete it with
    /// [`TestNamespace::delete`] at the end of the test.
    pub async fn namespace(&self, context: &str, prefix: &str) -> Result<TestNamespace> {
        let client = self.client(context).await?;
        let name = unique_name(prefix);
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { TEST_LABEL: "true" } }
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name} in {context}"))?;
        Ok(TestNamespace {
            client,
            context: context.to_string(),
            name,
        })
    }
}

/// A namespace created for one test.
pub struct TestNamespace {
    /// Client of the namespace's cluster.
    pub client: Client,
    /// Context the namespace lives in.
    pub context: String,
    /// The namespace's name.
    pub name: String,
}

impl TestNamespace {
    /// An `Api` for namespaced objects in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace and waits until it is gone.
    pub async fn delete(self) -> Result<()> {
        delete_and_wait(
            Api::<Namespace>::all(self.client.clone()),
            &self.name,
            Duration::from_secs(120),
        )
        .await
        .with_context(|| format!("deleting namespace {} in {}", self.name, self.context))
    }
}

/// Deletes `name` (if it exists) and waits until it is gone.
pub async fn delete_and_wait<K>(api: Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: Clone + Debug + Send + serde::de::DeserializeOwned + Resource + 'static,
{
    match api.delete(name, &DeleteParams::foreground()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    wait_for(api, name, |obj: Option<&K>| obj.is_none(), timeout)
        .await
        .map(|_| ())
}

/// Waits (with a watch, not polling) until `cond` holds for object `name`, at most `timeout`.
pub async fn wait_for<K>(
    api: Api<K>,
    name: &str,
    cond: impl Condition<K>,
    timeout: Duration,
) -> Result<Option<K>>
where
    K: Clone + Debug + Send + serde::de::DeserializeOwned + Resource + 'static,
{
    with_timeout(timeout, format!("waiting for {name}"), async {
        Ok(await_condition(api, name, cond).await?)
    })
    .await
}

/// Runs `fut`, failing with `what` if it takes longer than `timeout`.
pub async fn with_timeout<T>(
    timeout: Duration,
    what: String,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => bail!("timed out after {timeout:?}: {what}"),
    }
}

/// A name unique across test runs and processes: `<prefix>-<pid>-<time>-<counter>`, valid as a DNS label.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        % 1_000_000_000;
    format!("{prefix}-{}-{t}-{n}", std::process::id())
}

/// Parses `first-last` (IPv4, inclusive) as written in the bed's `lb-pools` file.
pub fn parse_pool(range: &str) -> Result<(Ipv4Addr, Ipv4Addr)> {
    let (a, b) = range
        .split_once('-')
        .ok_or_else(|| anyhow!("pool {range:?} is not first-last"))?;
    let first: Ipv4Addr = a
        .trim()
        .parse()
        .with_context(|| format!("pool start {a:?}"))?;
    let last: Ipv4Addr = b
        .trim()
        .parse()
        .with_context(|| format!("pool end {b:?}"))?;
    if u32::from(first) > u32::from(last) {
        bail!("pool {range:?} is empty");
    }
    Ok((first, last))
}

/// Parses the bed's `env` file: lines `export KEY="value"` (or `KEY=value`); others are ignored.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_is_parsed() {
        let env = parse_env_file(
            "# comment\nexport KUBECONFIG=\"/tmp/tb/kubeconfig\"\nexport PATH='/bin:/usr/bin'\nX=1\n\nnot a pair\n",
        );
        assert_eq!(env["KUBECONFIG"], "/tmp/tb/kubeconfig");
        assert_eq!(env["PATH"], "/bin:/usr/bin");
        assert_eq!(env["X"], "1");
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn pools_are_parsed() {
        let (a, b) = parse_pool("172.21.0.10-172.21.0.250").unwrap();
        assert_eq!(a, Ipv4Addr::new(172, 21, 0, 10));
        assert_eq!(b, Ipv4Addr::new(172, 21, 0, 250));
        assert!(parse_pool("172.21.0.10").is_err());
        assert!(parse_pool("172.21.0.10-172.21.0.1").is_err());
    }

    #[test]
    fn unique_names_differ_and_are_dns_labels() {
        let a = unique_name("smoke");
        let b = unique_name("smoke");
        assert_ne!(a, b);
        assert!(a.len() <= 63);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
