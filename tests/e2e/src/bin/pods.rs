//! kpaas-mesh-testbed-pods: the test bed's pod runner (a test-bed component, never part of the tool). One per
//! cluster, started by `testbed.sh up` inside the bed's network namespace, next to the MetalLB stand-in.
//!
//! kwok only pretends to run pods. For every pod of its cluster with a container whose image is a Linkerd
//! controller image (`…/controller:<tag>`: `cr.l5d.io/linkerd/controller:<tag>` or a `--registry` rewrite of it) it
//! runs the REAL `controller` binary of that release (`--controller TAG=PATH`, built by `build.sh`), as kubelet
//! would run the container:
//! - the container's args (the subcommand first) plus `-kubeconfig` pointing at a kubeconfig that holds a token of
//!   the pod's own ServiceAccount (TokenRequest bound to the pod) and the API server's CA, so RBAC is the real one;
//!   the container's env (values, field and key references) with `HOSTNAME` = the pod's name;
//! - the volumes it mounts (Secrets, ConfigMaps, projected tokens/ConfigMaps/downward API, emptyDirs) written from
//!   the API objects into a per-pod directory and bind-mounted at the container's paths in a private mount
//!   namespace (`unshare --mount`; a tmpfs over `/run` holds the `/var/run/...` mount points); Secret and ConfigMap
//!   volumes laid out and kept current as kubelet's AtomicWriter does (`..data` swapped by a rename), so a
//!   controller that watches its mounted Secret sees a change as in a real pod; plus the pod's own
//!   `/etc/hosts` and `/etc/resolv.conf`, as kubelet writes them; the binary itself is mounted at
//!   `/run/kpaas-mesh-pod-bin/controller` (named like the image's entrypoint: client-go's user agent and field
//!   manager are `controller`, as in a real pod);
//! - one network namespace per pod (all controller containers of a pod share it, like a pod's containers do),
//!   holding the pod's IP from kwok on `eth0`, one end of a veth pair whose other end (address 169.254.1.1) is in
//!   the bed's namespace with a /32 route to the pod IP. Nothing has a route beyond the bed's namespace. The bed's
//!   API servers listen on 127.0.0.1 of the bed's namespace only: the runner listens on the same 127.0.0.1:PORTs
//!   inside every pod's namespace and forwards each connection to the bed's 127.0.0.1:PORT, so every kubeconfig
//!   of the bed (the link credentials included) works unchanged inside a pod;
//! - cluster DNS + kube-proxy stand-in: the pod's `/etc/hosts` maps every Service of the pod's namespace to the
//!   first ready address of its Endpoints (no ClusterIP, no port translation), rewritten in place when Endpoints
//!   change. That is how the service mirror's probe worker reaches `probe-gateway-<link>` = the gateway address;
//! - a process that exits is restarted with backoff (1 s doubling to 30 s); everything stops when the pod is
//!   deleted (or terminating), and on SIGTERM;
//! - readiness: every controller container's `readinessProbe.httpGet` is polled at the pod IP, and the pod's
//!   `status.containerStatuses[].ready` and `Ready`/`ContainersReady` conditions are patched from it (containers
//!   that do not run here, e.g. linkerd2-proxy, keep what kwok set).
//!
//! Not run: `heartbeat` (it would call home), the Rust policy controller (its own image, or since 2.19 the
//! controller image with entrypoint `/linkerd-policy-controller`), and every other image (linkerd2-proxy, apps).
//!
//! Usage: `kpaas-mesh-testbed-pods --kubeconfig PATH --context NAME --state DIR --controller TAG=PATH ...`

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Endpoints, Pod, Secret, Volume};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The bed-side address of every pod's veth (the pods' next hop).
const GATEWAY_V4: &str = "169.254.1.1";
/// Where the controller binary is mounted inside the pod's mount namespace.
const BIN_DIR: &str = "/run/kpaas-mesh-pod-bin";
/// Token lifetime of the kubeconfig tokens (no refresh: a bed lives far shorter).
const KUBECONFIG_TOKEN_SECONDS: i64 = 86400;

struct Args {
    kubeconfig: PathBuf,
    context: String,
    state: PathBuf,
    controllers: BTreeMap<String, PathBuf>,
}

fn parse_args() -> Result<Args> {
    let (mut kubeconfig, mut context, mut state) = (None, None, None);
    let mut controllers = BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), v.to_string()),
            _ => (
                arg.clone(),
                args.next()
                    .with_context(|| format!("{arg} needs a value"))?,
            ),
        };
        match key.as_str() {
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value)),
            "--context" => context = Some(value),
            "--state" => state = Some(PathBuf::from(value)),
            "--controller" => {
                let (tag, path) = value
                    .split_once('=')
                    .context("--controller takes TAG=PATH")?;
                controllers.insert(tag.to_string(), PathBuf::from(path));
            }
            _ => bail!(
                "unknown argument {key}; usage: --kubeconfig PATH --context NAME --state DIR --controller TAG=PATH ..."
            ),
        }
    }
    Ok(Args {
        kubeconfig: kubeconfig.context("--kubeconfig is required")?,
        context: context.context("--context is required")?,
        state: state.context("--state is required")?,
        controllers,
    })
}

/// The release tag of a Linkerd controller image (`<anything>/controller:<tag>`), if it is one.
fn controller_tag(image: &str) -> Option<&str> {
    let (repo, tag) = image.rsplit_once(':')?;
    if tag.contains('/') {
        return None; // a registry port, not a tag
    }
    let last = repo.rsplit('/').next()?;
    (last == "controller" && repo.contains('/')).then_some(tag)
}

/// What every pod of the cluster shares: clients, the API servers to forward, the binaries.
struct Shared {
    client: Client,
    context: String,
    state: PathBuf,
    controllers: BTreeMap<String, PathBuf>,
    /// This cluster's API server URL and CA (PEM) for the pods' kubeconfigs.
    server: String,
    ca_pem: Vec<u8>,
    /// The bed's kubeconfig: the 127.0.0.1 ports of every API server in it are forwarded into every pod's
    /// namespace (read when a pod starts: clusters started after this runner count too).
    kubeconfig_path: PathBuf,
    /// Endpoints' first ready address by namespace/name (the DNS stand-in's data).
    endpoints: Mutex<BTreeMap<(String, String), Ipv4Addr>>,
    /// Running pods by uid.
    pods: Mutex<HashMap<String, PodRun>>,
}

struct PodRun {
    namespace: String,
    hosts: PathBuf,
    name: String,
    ip: Ipv4Addr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn log(ctx: &str, msg: impl AsRef<str>) {
    println!("[{ctx}] {}", msg.as_ref());
}

/// A short, stable id for interface names (≤ 15 chars): FNV-1a of context and uid.
fn short_id(context: &str, uid: &str) -> String {
    let mut h: u32 = 0x811c9dc5;
    for b in context.bytes().chain(uid.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    format!("{h:08x}")
}

fn run_ip(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates the pod's network namespace from a throw-away thread (a network namespace is per thread): `lo` up, the
/// veth pair (pod end `eth0` with the pod IP; bed end `bed_if`, moved into the runner's namespace), the default
/// route to 169.254.1.1, and one listener per API server port on the pod's 127.0.0.1. Returns the namespace (an
/// open file keeps it alive) and the listeners.
fn make_netns(
    bed_if: &str,
    ip: Ipv4Addr,
    ports: &[u16],
) -> Result<(File, Vec<std::net::TcpListener>)> {
    let bed_if = bed_if.to_string();
    let ports = ports.to_vec();
    let runner_pid = std::process::id().to_string();
    std::thread::spawn(move || -> Result<(File, Vec<std::net::TcpListener>)> {
        // SAFETY: unshare only changes this thread's network namespace; the thread ends after the setup.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        }
        let ns = File::open("/proc/thread-self/ns/net").context("opening the new namespace")?;
        let cidr = format!("{ip}/32");
        run_ip(&["link", "set", "lo", "up"])?;
        run_ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &bed_if,
            "netns",
            &runner_pid,
        ])?;
        run_ip(&["addr", "add", &cidr, "dev", "eth0"])?;
        run_ip(&["link", "set", "eth0", "up"])?;
        run_ip(&["route", "add", GATEWAY_V4, "dev", "eth0", "scope", "link"])?;
        run_ip(&["route", "add", "default", "via", GATEWAY_V4, "dev", "eth0"])?;
        let mut listeners = Vec::new();
        for p in ports {
            let l = std::net::TcpListener::bind(("127.0.0.1", p))
                .with_context(|| format!("listening on 127.0.0.1:{p} in the pod's namespace"))?;
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
        Ok((ns, listeners))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// Forwards connections accepted in the pod's namespace to the same port on the bed's 127.0.0.1.
async fn forward(listener: tokio::net::TcpListener, port: u16, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }
    }
}

/// The 127.0.0.1 ports of every API server in the kubeconfig.
fn api_ports(kubeconfig: &Kubeconfig) -> Vec<u16> {
    kubeconfig
        .clusters
        .iter()
        .filter_map(|n| n.cluster.as_ref()?.server.clone())
        .filter_map(|url| {
            url.strip_prefix("https://127.0.0.1:")?
                .trim_end_matches('/')
                .parse::<u16>()
                .ok()
        })
        .collect()
}

async fn token(client: &Client, pod: &Pod, audience: Option<&str>, seconds: i64) -> Result<String> {
    let ns = pod.namespace().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let req: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {
            "audiences": audience.map(|a| vec![a]).unwrap_or_default(),
            "expirationSeconds": seconds,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.name_any(), "uid": pod.uid()},
        }
    }))?;
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let resp: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &req)
        .await
        .with_context(|| format!("TokenRequest for ServiceAccount {ns}/{sa}"))?;
    resp.status
        .map(|s| s.token)
        .context("TokenRequest without a token")
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A key→bytes map written as files, honouring `items` (key → path) when given.
fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
    mode: u32,
) -> Result<()> {
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                if let Some(v) = data.get(&it.key) {
                    write_file(&dir.join(&it.path), v, it.mode.map_or(mode, |m| m as u32))?;
                }
            }
        }
        _ => {
            for (k, v) in data {
                write_file(&dir.join(k), v, mode)?;
            }
        }
    }
    Ok(())
}

async fn secret_data(client: &Client, ns: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("Secret {ns}/{name}"))?;
    Ok(s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

async fn configmap_data(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("ConfigMap {ns}/{name}"))?;
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    out.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    Ok(out)
}

/// The value of a downward-API field path.
fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => Some(pod.name_any()),
        "metadata.namespace" => pod.namespace(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
        "status.hostIP" => pod.status.as_ref().and_then(|s| s.host_ip.clone()),
        _ => {
            let key = path
                .strip_prefix("metadata.labels['")
                .map(|k| (k, true))
                .or_else(|| {
                    path.strip_prefix("metadata.annotations['")
                        .map(|k| (k, false))
                })?;
            let k = key.0.strip_suffix("']")?;
            if key.1 {
                pod.labels().get(k).cloned()
            } else {
                pod.annotations().get(k).cloned()
            }
        }
    }
}

/// The files of a Secret or ConfigMap volume (relative path → bytes, mode), as `items` maps them.
fn volume_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
    mode: u32,
) -> BTreeMap<String, (Vec<u8>, u32)> {
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|it| {
                let v = data.get(&it.key)?;
                Some((
                    it.path.clone(),
                    (v.clone(), it.mode.map_or(mode, |m| m as u32)),
                ))
            })
            .collect(),
        _ => data
            .iter()
            .map(|(k, v)| (k.clone(), (v.clone(), mode)))
            .collect(),
    }
}

/// Writes a Secret or ConfigMap volume the way kubelet's AtomicWriter does, so programs that
/// watch for updates see them as in a real pod: the files in a fresh `..<timestamp>` directory,
/// the symlink `..data` switched to it by renaming `..data_tmp` over it (one atomic rename:
/// inotify reports a Create of `..data`, what Linkerd's `FsCredsWatcher` waits for), each
/// top-level name a symlink into `..data/`, the previous directory removed.
fn atomic_write(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let previous = std::fs::read_link(dir.join("..data")).ok();
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let generation = dir.join(&stamp);
    for (path, (bytes, mode)) in files {
        write_file(&generation.join(path), bytes, *mode)?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    let mut tops: Vec<&str> = files.keys().filter_map(|p| p.split('/').next()).collect();
    tops.dedup();
    for top in tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    if let Some(old) = previous
        && old != Path::new(&stamp)
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// A Secret or ConfigMap volume's current files (`None`: an optional one that does not exist).
async fn object_volume(
    client: &Client,
    ns: &str,
    vol: &Volume,
) -> Result<Option<BTreeMap<String, (Vec<u8>, u32)>>> {
    if let Some(s) = &vol.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.map_or(0o644, |m| m as u32);
        match secret_data(client, ns, &name).await {
            Ok(data) => Ok(Some(volume_files(&data, s.items.as_ref(), mode))),
            Err(e) if s.optional == Some(true) => {
                eprintln!("optional volume: {e:#}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    } else if let Some(c) = &vol.config_map {
        let mode = c.default_mode.map_or(0o644, |m| m as u32);
        match configmap_data(client, ns, &c.name).await {
            Ok(data) => Ok(Some(volume_files(&data, c.items.as_ref(), mode))),
            Err(e) if c.optional == Some(true) => {
                eprintln!("optional volume: {e:#}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    } else {
        Ok(None)
    }
}

/// How often Secret and ConfigMap volumes are compared with their objects (kubelet syncs
/// them about once a minute; the bed is quicker, and polls rather than watches, like kubelet's
/// default `configMapAndSecretChangeDetectionStrategy: Watch` caches but never faster).
const VOLUME_SYNC: Duration = Duration::from_secs(2);

/// Keeps a pod's Secret and ConfigMap volumes current (as kubelet does), until `stop`.
async fn sync_volumes(
    shared: Arc<Shared>,
    pod: Pod,
    dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let ns = pod.namespace().unwrap_or_default();
    let vols: Vec<Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.secret.is_some() || v.config_map.is_some())
        .filter(|v| dir.join("volumes").join(&v.name).join("..data").exists())
        .collect();
    if vols.is_empty() {
        return;
    }
    let mut last: BTreeMap<String, BTreeMap<String, (Vec<u8>, u32)>> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(VOLUME_SYNC) => {}
        }
        for v in &vols {
            let Ok(Some(files)) = object_volume(&shared.client, &ns, v).await else {
                continue;
            };
            let vdir = dir.join("volumes").join(&v.name);
            let current = match last.get(&v.name) {
                Some(f) => f.clone(),
                None => read_generation(&vdir),
            };
            if current != files {
                match atomic_write(&vdir, &files) {
                    Ok(()) => log(
                        &shared.context,
                        format!("{ns}/{}: volume {} updated", pod.name_any(), v.name),
                    ),
                    Err(e) => log(
                        &shared.context,
                        format!("{ns}/{}: volume {}: {e:#}", pod.name_any(), v.name),
                    ),
                }
            }
            last.insert(v.name.clone(), files);
        }
    }
}

/// The files the current `..data` generation of a volume holds.
fn read_generation(vdir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let base = vdir.join("..data");
    let mut stack = vec![base.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let (Ok(bytes), Ok(meta)) = (std::fs::read(&p), std::fs::metadata(&p)) {
                let rel = p.strip_prefix(&base).unwrap_or(&p).display().to_string();
                out.insert(rel, (bytes, meta.permissions().mode() & 0o7777));
            }
        }
    }
    out
}

/// Writes one volume into `dir`.
async fn materialise(client: &Client, pod: &Pod, vol: &Volume, dir: &Path) -> Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    std::fs::create_dir_all(dir)?;
    if vol.secret.is_some() || vol.config_map.is_some() {
        if let Some(files) = object_volume(client, &ns, vol).await? {
            atomic_write(dir, &files)?;
        }
    } else if let Some(p) = &vol.projected {
        let mode = p.default_mode.map_or(0o644, |m| m as u32);
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                let tok = token(
                    client,
                    pod,
                    t.audience.as_deref(),
                    t.expiration_seconds.unwrap_or(3600),
                )
                .await?;
                write_file(&dir.join(&t.path), tok.as_bytes(), mode)?;
            }
            if let Some(c) = &src.config_map {
                let data = configmap_data(client, &ns, &c.name).await?;
                write_keys(dir, &data, c.items.as_ref(), mode)?;
            }
            if let Some(s) = &src.secret {
                let data = secret_data(client, &ns, &s.name).await?;
                write_keys(dir, &data, s.items.as_ref(), mode)?;
            }
            if let Some(d) = &src.downward_api {
                for it in d.items.iter().flatten() {
                    if let Some(f) = &it.field_ref {
                        let v = field_value(pod, &f.field_path).unwrap_or_default();
                        write_file(&dir.join(&it.path), v.as_bytes(), mode)?;
                    }
                }
            }
        }
    } else if vol.empty_dir.is_none() {
        eprintln!(
            "volume {} of {ns}/{}: kind not supported by the pod runner; left empty",
            vol.name,
            pod.name_any()
        );
    }
    Ok(())
}

/// The container's environment, as kubelet resolves it (values, field refs, Secret and ConfigMap keys).
async fn container_env(client: &Client, pod: &Pod, c: &Container) -> Result<Vec<(String, String)>> {
    let ns = pod.namespace().unwrap_or_default();
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOSTNAME".to_string(), pod.name_any()),
    ];
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path).unwrap_or_default()
            } else if let Some(k) = &from.secret_key_ref {
                let data = secret_data(client, &ns, &k.name).await?;
                String::from_utf8_lossy(data.get(&k.key).map_or(&[][..], |v| v)).into_owned()
            } else if let Some(k) = &from.config_map_key_ref {
                let data = configmap_data(client, &ns, &k.name).await?;
                String::from_utf8_lossy(data.get(&k.key).map_or(&[][..], |v| v)).into_owned()
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.push((e.name.clone(), value));
    }
    Ok(env)
}

fn kubeconfig_yaml(server: &str, ca_pem: &[u8], token_file: &Path) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: pod\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: pod\n  user:\n    tokenFile: {}\ncontexts:\n- name: pod\n  context:\n    cluster: pod\n    user: pod\ncurrent-context: pod\n",
        token_file.display()
    )
}

fn hosts_text(shared: &Shared, namespace: &str, pod_name: &str, ip: Ipv4Addr) -> String {
    let mut s = format!(
        "# written by the test bed's pod runner (kubelet's /etc/hosts + cluster DNS stand-in)\n127.0.0.1\tlocalhost\n{ip}\t{pod_name}\n"
    );
    for ((ns, name), addr) in shared.endpoints.lock().unwrap().iter() {
        if ns == namespace {
            s.push_str(&format!(
                "{addr}\t{name} {name}.{ns} {name}.{ns}.svc {name}.{ns}.svc.cluster.local\n"
            ));
        }
    }
    s
}

/// Rewrites a file in place (same inode: it is bind-mounted into the pod's mount namespace).
fn rewrite_in_place(path: &Path, text: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
    {
        let _ = f.write_all(text.as_bytes());
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// One controller container: its argv, env and mounts, ready to run.
struct ContainerRun {
    name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    /// (source, target, read-only)
    mounts: Vec<(PathBuf, String, bool)>,
    log: PathBuf,
    readiness: Option<(String, u16, i32)>,
}

async fn prepare(shared: &Shared, pod: &Pod, dir: &Path) -> Result<Vec<ContainerRun>> {
    let spec = pod.spec.as_ref().context("pod without spec")?;
    let client = &shared.client;
    let token_file = dir.join("kube-token");
    let tok = token(client, pod, None, KUBECONFIG_TOKEN_SECONDS).await?;
    write_file(&token_file, tok.as_bytes(), 0o600)?;
    let kubeconfig = dir.join("kubeconfig");
    write_file(
        &kubeconfig,
        kubeconfig_yaml(&shared.server, &shared.ca_pem, &token_file).as_bytes(),
        0o600,
    )?;
    let ns = pod.namespace().unwrap_or_default();
    write_file(
        &dir.join("resolv.conf"),
        format!("search {ns}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")
            .as_bytes(),
        0o644,
    )?;
    let mut runs = Vec::new();
    let mut done_volumes = BTreeMap::new();
    for c in &spec.containers {
        let Some(tag) = c.image.as_deref().and_then(controller_tag) else {
            continue;
        };
        let Some(bin) = shared.controllers.get(tag) else {
            log(
                &shared.context,
                format!(
                    "{ns}/{} {}: no controller binary for {tag}; left to kwok",
                    pod.name_any(),
                    c.name
                ),
            );
            continue;
        };
        // Since 2.19 the controller image also holds the Rust policy controller, run with its
        // own entrypoint (`command: [/linkerd-policy-controller]`): not the Go binary's, so
        // not run here (like the policy-controller image before).
        if let Some(entry) = c.command.iter().flatten().next()
            && !entry.ends_with("/controller")
            && entry != "controller"
        {
            log(
                &shared.context,
                format!(
                    "{ns}/{} {}: entrypoint {entry} is not the controller binary; left to kwok",
                    pod.name_any(),
                    c.name
                ),
            );
            continue;
        }
        let mut args: Vec<String> = c.command.iter().flatten().skip(1).cloned().collect();
        args.extend(c.args.iter().flatten().cloned());
        if args.first().map(String::as_str) == Some("heartbeat") {
            log(
                &shared.context,
                format!(
                    "{ns}/{}: heartbeat is not run (it calls home)",
                    pod.name_any()
                ),
            );
            continue;
        }
        let mut argv = vec![bin.display().to_string()];
        if !args.is_empty() {
            argv.push(args[0].clone());
            argv.push(format!("-kubeconfig={}", kubeconfig.display()));
            argv.extend(args[1..].iter().cloned());
        }
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let Some(vol) = spec.volumes.iter().flatten().find(|v| v.name == m.name) else {
                continue;
            };
            let vdir = dir.join("volumes").join(&vol.name);
            if !done_volumes.contains_key(&vol.name) {
                materialise(client, pod, vol, &vdir).await?;
                done_volumes.insert(vol.name.clone(), ());
            }
            let src = match m.sub_path.as_deref() {
                Some(p) if !p.is_empty() => vdir.join(p),
                _ => vdir,
            };
            mounts.push((src, m.mount_path.clone(), m.read_only == Some(true)));
        }
        mounts.push((dir.join("hosts"), "/etc/hosts".into(), true));
        mounts.push((dir.join("resolv.conf"), "/etc/resolv.conf".into(), true));
        let readiness = c.readiness_probe.as_ref().and_then(|p| {
            let h = p.http_get.as_ref()?;
            let port = match &h.port {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => {
                    u16::try_from(*i).ok()?
                }
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(n) => c
                    .ports
                    .iter()
                    .flatten()
                    .find(|cp| cp.name.as_deref() == Some(n))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())?,
            };
            Some((
                h.path.clone().unwrap_or_else(|| "/".into()),
                port,
                p.period_seconds.unwrap_or(10),
            ))
        });
        runs.push(ContainerRun {
            name: c.name.clone(),
            argv,
            env: container_env(client, pod, c).await?,
            mounts,
            log: shared.state.join("logs/pods").join(format!(
                "{}.{ns}.{}.{}.log",
                shared.context,
                pod.name_any(),
                c.name
            )),
            readiness,
        });
    }
    Ok(runs)
}

/// The `sh -c` script run in the private mount namespace: the pod's mounts, then exec of the binary.
fn mount_script(mounts: &[(PathBuf, String, bool)]) -> String {
    let mut s = String::from("set -eu\nmount -t tmpfs -o mode=0755 kpaas-pod-run /run\n");
    for (src, target, ro) in mounts {
        let under_run = target.starts_with("/run/") || target.starts_with("/var/run/");
        if !under_run && !Path::new(target).exists() {
            s.push_str(&format!(
                "echo 'pod runner: cannot mount at {target} (only /run and existing paths)' >&2\n"
            ));
            continue;
        }
        let t = shell_quote(target);
        if src.is_dir() {
            s.push_str(&format!("mkdir -p {t}\n"));
        } else if under_run {
            s.push_str(&format!("mkdir -p \"$(dirname {t})\"; : > {t}\n"));
        }
        s.push_str(&format!(
            "mount --bind {} {t}\n",
            shell_quote(&src.display().to_string())
        ));
        if *ro {
            s.push_str(&format!("mount -o remount,bind,ro {t}\n"));
        }
    }
    // The binary at a fixed path whose name is the image's entrypoint name, `controller` (client-go derives the
    // user agent, and so the field manager, from it).
    s.push_str(&format!(
        "bin=$1; shift\nmkdir -p {BIN_DIR}; : > {BIN_DIR}/controller\nmount --bind \"$bin\" {BIN_DIR}/controller\nexec {BIN_DIR}/controller \"$@\"\n"
    ));
    s
}

/// Runs one controller container until `stop`, restarting it with backoff when it exits.
async fn supervise(
    ctx: String,
    who: String,
    run: Arc<ContainerRun>,
    netns_fd: i32,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut restarts = 0u32;
    let _ = std::fs::create_dir_all(run.log.parent().unwrap_or(Path::new("/")));
    loop {
        let Ok(logf) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&run.log)
        else {
            log(&ctx, format!("{who}: cannot open {}", run.log.display()));
            return;
        };
        let Ok(errf) = logf.try_clone() else { return };
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(mount_script(&run.mounts))
            .arg("pod-runner")
            .args(&run.argv)
            .env_clear()
            .envs(run.env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .stdout(logf)
            .stderr(errf)
            .kill_on_drop(true);
        // SAFETY: setns is async-signal-safe; the fd is open in the parent and inherited by the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                log(&ctx, format!("{who}: cannot start: {e}"));
                return;
            }
        };
        log(
            &ctx,
            format!(
                "{who}: started pid {} (restart {restarts})",
                child.id().unwrap_or(0)
            ),
        );
        tokio::select! {
            status = child.wait() => {
                log(&ctx, format!("{who}: exited ({}) after {:?}", status.map(|s| s.to_string()).unwrap_or_default(), started.elapsed()));
            }
            _ = stop.changed() => {
                if let Some(pid) = child.id() {
                    // SAFETY: plain kill(2) of our own child.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                log(&ctx, format!("{who}: stopped"));
                return;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        restarts += 1;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Minimal HTTP/1.1 GET; true for a 2xx answer.
async fn http_ok(ip: Ipv4Addr, port: u16, path: &str) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        let line = String::from_utf8_lossy(&buf[..n]).to_string();
        Some(
            line.split_whitespace()
                .nth(1)
                .is_some_and(|c| c.starts_with('2')),
        )
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Polls the readiness endpoints of the pod's controller containers and patches the pod's status from them.
async fn readiness(
    shared: Arc<Shared>,
    pod_ns: String,
    pod_name: String,
    ip: Ipv4Addr,
    probes: Vec<(String, String, u16, i32)>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &pod_ns);
    let period = probes.iter().map(|p| p.3).min().unwrap_or(10).clamp(1, 10) as u64;
    let mut last: Option<BTreeMap<String, bool>> = None;
    loop {
        let mut now = BTreeMap::new();
        for (name, path, port, _) in &probes {
            now.insert(name.clone(), http_ok(ip, *port, path).await);
        }
        if last.as_ref() != Some(&now)
            && let Err(e) = patch_ready(&api, &pod_name, &now).await
        {
            log(
                &shared.context,
                format!("{pod_ns}/{pod_name}: readiness patch: {e:#}"),
            );
        } else {
            last = Some(now);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(period)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn patch_ready(api: &Api<Pod>, name: &str, ready: &BTreeMap<String, bool>) -> Result<()> {
    let pod = api.get_status(name).await?;
    let status = pod.status.unwrap_or_default();
    let mut statuses = status.container_statuses.unwrap_or_default();
    for s in statuses.iter_mut() {
        if let Some(r) = ready.get(&s.name) {
            s.ready = *r;
        }
    }
    let all = statuses.iter().all(|s| s.ready);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut conditions = status.conditions.unwrap_or_default();
    for c in conditions.iter_mut() {
        if c.type_ == "Ready" || c.type_ == "ContainersReady" {
            let v = if all { "True" } else { "False" };
            if c.status != v {
                c.status = v.into();
                c.last_transition_time = serde_json::from_value(json!(now)).ok();
            }
        }
    }
    let patch = json!({"status": {"containerStatuses": statuses, "conditions": conditions}});
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

async fn start_pod(shared: Arc<Shared>, pod: Pod) -> Result<()> {
    let uid = pod.uid().unwrap_or_default();
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let ip: Ipv4Addr = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .context("no pod IP yet")?
        .parse()
        .context("pod IP")?;
    let id = short_id(&shared.context, &uid);
    let dir = shared
        .state
        .join("pods")
        .join(&shared.context)
        .join(format!("{ns}_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let runs = prepare(&shared, &pod, &dir).await?;
    if runs.is_empty() {
        return Ok(());
    }
    let hosts = dir.join("hosts");
    write_file(
        &hosts,
        hosts_text(&shared, &ns, &name, ip).as_bytes(),
        0o644,
    )?;
    let bed_if = format!("kp{id}");
    let api_ports = api_ports(&Kubeconfig::read_from(&shared.kubeconfig_path)?);
    // A run of this pod just stopped (its IP changed) may leave the bed-side end for a moment.
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &bed_if])
        .stderr(std::process::Stdio::null())
        .status();
    let (netns, listeners) = make_netns(&bed_if, ip, &api_ports)?;
    run_ip(&["addr", "add", &format!("{GATEWAY_V4}/32"), "dev", &bed_if])?;
    run_ip(&["link", "set", &bed_if, "up"])?;
    run_ip(&[
        "route",
        "add",
        &format!("{ip}/32"),
        "dev",
        &bed_if,
        "src",
        GATEWAY_V4,
    ])?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (l, port) in listeners.into_iter().zip(api_ports.iter().copied()) {
        let l = tokio::net::TcpListener::from_std(l)?;
        tasks.push(tokio::spawn(forward(l, port, stop_rx.clone())));
    }
    let netns = Arc::new(netns);
    let mut probes = Vec::new();
    for run in runs {
        if let Some((path, port, period)) = &run.readiness {
            probes.push((run.name.clone(), path.clone(), *port, *period));
        }
        let who = format!("{ns}/{name} {}", run.name);
        let ns_keep = netns.clone();
        let stop = stop_rx.clone();
        let ctx = shared.context.clone();
        tasks.push(tokio::spawn(async move {
            supervise(ctx, who, Arc::new(run), ns_keep.as_raw_fd(), stop).await;
            drop(ns_keep);
        }));
    }
    tasks.push(tokio::spawn(sync_volumes(
        shared.clone(),
        pod.clone(),
        dir.clone(),
        stop_rx.clone(),
    )));
    if !probes.is_empty() {
        tasks.push(tokio::spawn(readiness(
            shared.clone(),
            ns.clone(),
            name.clone(),
            ip,
            probes,
            stop_rx.clone(),
        )));
    }
    log(
        &shared.context,
        format!(
            "{ns}/{name}: running (pod IP {ip}, veth {bed_if}, dir {})",
            dir.display()
        ),
    );
    shared.pods.lock().unwrap().insert(
        uid,
        PodRun {
            namespace: ns,
            hosts,
            name,
            ip,
            stop: stop_tx,
            tasks,
        },
    );
    Ok(())
}

async fn stop_pod(shared: &Shared, uid: &str) {
    let run = shared.pods.lock().unwrap().remove(uid);
    if let Some(run) = run {
        let _ = run.stop.send(true);
        for t in run.tasks {
            let _ = t.await;
        }
        if let Some(dir) = run.hosts.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        log(
            &shared.context,
            format!(
                "{}/{}: stopped (pod IP {})",
                run.namespace, run.name, run.ip
            ),
        );
    }
}

fn wants_run(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .is_some_and(|s| s.pod_ip.is_some() && s.phase.as_deref() == Some("Running"))
        && pod.spec.as_ref().is_some_and(|s| {
            s.host_network != Some(true)
                && s.containers
                    .iter()
                    .any(|c| c.image.as_deref().and_then(controller_tag).is_some())
        })
}

async fn watch_pods(shared: Arc<Shared>) -> Result<()> {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut seen = Vec::new();
    while let Some(event) = events.try_next().await? {
        let pods = match event {
            watcher::Event::Init => {
                seen.clear();
                continue;
            }
            watcher::Event::InitApply(p) => {
                seen.push(p.uid().unwrap_or_default());
                vec![p]
            }
            watcher::Event::InitDone => {
                let gone: Vec<String> = shared
                    .pods
                    .lock()
                    .unwrap()
                    .keys()
                    .filter(|k| !seen.contains(k))
                    .cloned()
                    .collect();
                for uid in gone {
                    stop_pod(&shared, &uid).await;
                }
                continue;
            }
            watcher::Event::Apply(p) => vec![p],
            watcher::Event::Delete(p) => {
                stop_pod(&shared, &p.uid().unwrap_or_default()).await;
                continue;
            }
        };
        for pod in pods {
            let uid = pod.uid().unwrap_or_default();
            let mut running = shared.pods.lock().unwrap().contains_key(&uid);
            // kwok may hand a new pod an address that a terminating pod still holds and move it to
            // another one moments later: the pod's run follows its current status.podIP.
            let ip_now: Option<Ipv4Addr> = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok());
            let ip_then = shared.pods.lock().unwrap().get(&uid).map(|r| r.ip);
            if running && ip_now.is_some() && ip_now != ip_then {
                log(
                    &shared.context,
                    format!(
                        "{}/{}: pod IP changed from {} to {}; restarting its run",
                        pod.namespace().unwrap_or_default(),
                        pod.name_any(),
                        ip_then.map(|i| i.to_string()).unwrap_or_default(),
                        ip_now.map(|i| i.to_string()).unwrap_or_default()
                    ),
                );
                stop_pod(&shared, &uid).await;
                running = false;
            }
            if !wants_run(&pod) {
                if running {
                    stop_pod(&shared, &uid).await;
                }
            } else if !running {
                let who = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                if let Err(e) = start_pod(shared.clone(), pod).await {
                    log(&shared.context, format!("{who}: cannot run: {e:#}"));
                }
            }
        }
    }
    bail!("the Pod watch ended")
}

fn first_ready(ep: &Endpoints) -> Option<Ipv4Addr> {
    ep.subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .find_map(|a| a.ip.parse().ok())
}

/// Keeps the DNS stand-in's table (Endpoints → first ready address) and every running pod's /etc/hosts current.
async fn watch_endpoints(shared: Arc<Shared>) -> Result<()> {
    let api: Api<Endpoints> = Api::all(shared.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.try_next().await? {
        let changed_ns = {
            let mut table = shared.endpoints.lock().unwrap();
            match event {
                watcher::Event::Init => {
                    table.clear();
                    None
                }
                watcher::Event::InitApply(ep) | watcher::Event::Apply(ep) => {
                    let key = (ep.namespace().unwrap_or_default(), ep.name_any());
                    let before = table.get(&key).copied();
                    match first_ready(&ep) {
                        Some(a) => table.insert(key.clone(), a),
                        None => table.remove(&key),
                    };
                    (before != table.get(&key).copied()).then_some(key.0)
                }
                watcher::Event::Delete(ep) => {
                    let key = (ep.namespace().unwrap_or_default(), ep.name_any());
                    table.remove(&key).map(|_| key.0)
                }
                watcher::Event::InitDone => None,
            }
        };
        if let Some(ns) = changed_ns {
            let targets: Vec<(PathBuf, String, Ipv4Addr)> = shared
                .pods
                .lock()
                .unwrap()
                .values()
                .filter(|p| p.namespace == ns)
                .map(|p| (p.hosts.clone(), p.name.clone(), p.ip))
                .collect();
            for (path, name, ip) in targets {
                rewrite_in_place(&path, &hosts_text(&shared, &ns, &name, ip));
            }
        }
    }
    bail!("the Endpoints watch ended")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let options = KubeConfigOptions {
        context: Some(args.context.clone()),
        ..Default::default()
    };
    let client =
        Client::try_from(Config::from_custom_kubeconfig(kubeconfig.clone(), &options).await?)?;
    let ctx_entry = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == args.context)
        .and_then(|c| c.context.clone())
        .context("context not in the kubeconfig")?;
    let mut server = String::new();
    let mut ca_pem = Vec::new();
    for named in &kubeconfig.clusters {
        let Some(c) = &named.cluster else { continue };
        let url = c.server.clone().unwrap_or_default();
        if named.name == ctx_entry.cluster {
            server = url;
            ca_pem = if let Some(d) = &c.certificate_authority_data {
                base64::engine::general_purpose::STANDARD.decode(d)?
            } else {
                let f = c
                    .certificate_authority
                    .as_ref()
                    .context("cluster without a CA")?;
                std::fs::read(f).with_context(|| format!("reading {f}"))?
            };
        }
    }
    if server.is_empty() {
        bail!("no cluster entry for context {}", args.context);
    }
    let shared = Arc::new(Shared {
        client,
        context: args.context.clone(),
        state: args.state.clone(),
        controllers: args.controllers.clone(),
        server,
        ca_pem,
        kubeconfig_path: args.kubeconfig.clone(),
        endpoints: Mutex::new(BTreeMap::new()),
        pods: Mutex::new(HashMap::new()),
    });
    log(
        &args.context,
        format!(
            "pod runner watching Pods; controllers {:?}; API servers forwarded into pods: those of {}",
            args.controllers,
            args.kubeconfig.display()
        ),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        r = watch_pods(shared.clone()) => r,
        r = watch_endpoints(shared.clone()) => r,
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    let uids: Vec<String> = shared.pods.lock().unwrap().keys().cloned().collect();
    for uid in uids {
        stop_pod(&shared, &uid).await;
    }
    log(&args.context, "pod runner stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_images_are_recognised() {
        assert_eq!(
            controller_tag("cr.l5d.io/linkerd/controller:stable-2.14.10"),
            Some("stable-2.14.10")
        );
        assert_eq!(
            controller_tag("harbor.k-paas.example/linkerd/controller:stable-2.14.10"),
            Some("stable-2.14.10")
        );
        assert_eq!(controller_tag("registry:5000/controller"), None);
        assert_eq!(
            controller_tag("cr.l5d.io/linkerd/proxy:stable-2.14.10"),
            None
        );
        assert_eq!(
            controller_tag("cr.l5d.io/linkerd/policy-controller:stable-2.14.10"),
            None
        );
        assert_eq!(controller_tag("controller:latest"), None);
    }

    #[test]
    fn mount_script_binds_and_execs() {
        let s = mount_script(&[
            (
                PathBuf::from("/nonexistent-src"),
                "/var/run/linkerd/identity/issuer".into(),
                true,
            ),
            (PathBuf::from("/x"), "/no/such/dir".into(), false),
        ]);
        assert!(s.contains("mount -t tmpfs"));
        assert!(s.contains("mount --bind '/nonexistent-src' '/var/run/linkerd/identity/issuer'"));
        assert!(s.contains("remount,bind,ro '/var/run/linkerd/identity/issuer'"));
        assert!(s.contains("cannot mount at /no/such/dir"));
        assert!(
            s.trim_end()
                .ends_with("exec /run/kpaas-mesh-pod-bin/controller \"$@\"")
        );
    }

    #[test]
    fn short_ids_fit_interface_names() {
        let a = short_id("cluster1", "0b6f2e0c-1");
        assert_eq!(a.len(), 8);
        assert_ne!(a, short_id("cluster2", "0b6f2e0c-1"));
    }
}
