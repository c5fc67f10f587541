//! Shared by the end-to-end tests that drive `kubectl kpaas-mesh` on the test bed: the host
//! binary and its plugins from the workspace's target directory (copied into a temporary
//! plugin directory as a release installs them), and small readers of cluster state.

#![allow(dead_code)]

use anyhow::{Context, Result};
use kpaas_mesh_e2e::TestBed;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

/// How long the pod runner's controllers get to write a log line.
pub const RUNNER_TIMEOUT: Duration = Duration::from_secs(90);

/// The stages the test bed can run for real (netfix-none changes nothing on the clusters).
pub const MESH_STAGES: &str = "cert,control-plane,multicluster,netfix,smi";

pub fn target_dir() -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The built plugins, copied into a fresh plugin directory.
pub fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(target_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("libkpaas_mesh_") && name.ends_with(".so") {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
            n += 1;
        }
    }
    assert!(
        n >= 5,
        "expected the built plugins in {}; run cargo build --workspace",
        target_dir().display()
    );
    dir
}

/// Runs the tool in the bed with the given plugins, certs dir and local charts.
pub struct Tool {
    pub bed: TestBed,
    pub plugins: tempfile::TempDir,
    pub certs: tempfile::TempDir,
    /// `--chart-dir`: the bed's charts (Linkerd 2.14.10), or one release's (`charts/<tag>`).
    pub charts: PathBuf,
    /// Extra environment for the commands.
    pub env: Vec<(String, String)>,
}

impl Tool {
    pub fn new(bed: TestBed) -> Tool {
        let charts = bed.charts_dir().unwrap();
        Tool {
            bed,
            plugins: plugin_dir(),
            certs: tempfile::tempdir().unwrap(),
            charts,
            env: vec![],
        }
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.certs.path().join("certs")
    }

    /// `kubectl-kpaas_mesh <cmd> --cluster ... <extra>`; returns the output whatever the exit.
    pub fn run(&self, cmd: &str, clusters: &[&str], extra: &[&str]) -> Output {
        self.run_words(&[cmd], clusters, extra)
    }

    /// As [`Tool::run`] for a command of several words (`certs rotate anchor`).
    pub fn run_words(&self, words: &[&str], clusters: &[&str], extra: &[&str]) -> Output {
        self.spawn_words(words, clusters, extra)
            .wait_with_output()
            .unwrap()
    }

    /// Starts the command [`Tool::run_words`] runs, its stdout and stderr piped (for commands run side by
    /// side, or signalled).
    pub fn spawn_words(
        &self,
        words: &[&str],
        clusters: &[&str],
        extra: &[&str],
    ) -> std::process::Child {
        let bin = target_dir().join("kubectl-kpaas_mesh");
        let mut c = self.bed.command(bin.to_str().unwrap());
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.arg("--plugin-dir").arg(self.plugins.path()).args(words);
        for cl in clusters {
            c.args(["--cluster", cl]);
        }
        c.arg("--chart-dir").arg(&self.charts);
        c.arg("--certs-dir").arg(self.certs_dir());
        c.args(["--timeout", "3m"]);
        c.args(extra);
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    }

    pub fn ok(&self, cmd: &str, clusters: &[&str], extra: &[&str]) -> String {
        self.ok_words(&[cmd], clusters, extra)
    }

    /// As [`Tool::ok`] for a command of several words.
    pub fn ok_words(&self, words: &[&str], clusters: &[&str], extra: &[&str]) -> String {
        let cmd = words.join(" ");
        let out = self.run_words(words, clusters, extra);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kpaas-mesh {cmd} {clusters:?} {extra:?} failed:\n{text}"
        );
        text
    }
}

/// Every object of every listable kind: "group/kind namespace/name", Events left out (the
/// controllers write them all the time).
pub async fn object_set(bed: &TestBed, context: &str) -> Result<BTreeSet<String>> {
    let client = bed.client(context).await?;
    // An API group that goes away during discovery (its CRDs just deleted, e.g. by `down`)
    // fails the whole discovery with a 404: discover again.
    let mut attempt = 0;
    let discovery = loop {
        match Discovery::new(client.clone()).run().await {
            Ok(d) => break d,
            Err(kube::Error::Api(e)) if e.code == 404 && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).context("discovery"),
        }
    };
    let mut out = BTreeSet::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) || ar.kind == "Event" {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let list = match api.list(&ListParams::default()).await {
                Ok(list) => list,
                // A kind whose CRD is being established or removed right now is discovered but not
                // served yet/any more: it has no objects.
                Err(kube::Error::Api(e)) if e.code == 404 => continue,
                Err(e) => return Err(e).with_context(|| format!("list {}", ar.kind)),
            };
            for o in list.items {
                let ns = if caps.scope == Scope::Namespaced {
                    o.metadata.namespace.clone().unwrap_or_default()
                } else {
                    String::new()
                };
                out.insert(format!(
                    "{}/{} {}/{}",
                    ar.group,
                    ar.kind,
                    ns,
                    o.metadata.name.unwrap_or_default()
                ));
            }
        }
    }
    Ok(out)
}

pub async fn get(
    bed: &TestBed,
    context: &str,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>> {
    let client = bed.client(context).await?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = kube::discovery::pinned_kind(&client, &gvk).await?;
    let api: Api<DynamicObject> = match (caps.scope, ns) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client, ns, &ar),
        _ => Api::all_with(client, &ar),
    };
    Ok(api
        .get_opt(name)
        .await?
        .map(|o| serde_json::to_value(o).unwrap()))
}

/// helm's own view of the releases (the real helm binary is the peer here).
pub fn helm_releases(bed: &TestBed, context: &str) -> Result<BTreeMap<String, (String, u64)>> {
    let out = bed.run(
        "helm",
        &["list", "-A", "-o", "json", "--kube-context", context],
        None,
    )?;
    let list: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    Ok(list
        .into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_string(),
                (
                    r["chart"].as_str().unwrap_or("").to_string(),
                    r["revision"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                ),
            )
        })
        .collect())
}

/// The runner's log files of the containers of pods whose name starts with `pod_prefix`.
pub fn runner_logs(bed: &TestBed, context: &str, ns: &str, pod_prefix: &str) -> Vec<PathBuf> {
    let dir = bed.dir().join("logs/pods");
    let prefix = format!("{context}.{ns}.{pod_prefix}");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Waits (polling the files another process writes, with a deadline) until a runner log of those pods contains
/// `needle`.
pub fn wait_log(bed: &TestBed, context: &str, ns: &str, pod_prefix: &str, needle: &str) {
    let deadline = Instant::now() + RUNNER_TIMEOUT;
    loop {
        let logs = runner_logs(bed, context, ns, pod_prefix);
        if logs.iter().any(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(needle)
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log of {context} {ns}/{pod_prefix}* says {needle:?} within {RUNNER_TIMEOUT:?}; logs: {logs:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The row `name` of `check --only <only> -o json`.
pub fn check_row(tool: &Tool, clusters: &[&str], only: &str, name: &str) -> Value {
    let out = tool.run("check", clusters, &["--only", only, "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check row {name:?}: {doc}"))
        .clone()
}

/// Runs `check` until its row `name` satisfies `want` (what the controllers report settles within seconds: a
/// probe worker that just started has not probed yet), with a deadline; returns that row.
pub fn wait_check_row(
    tool: &Tool,
    clusters: &[&str],
    only: &str,
    name: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + RUNNER_TIMEOUT;
    loop {
        let row = check_row(tool, clusters, only, name);
        if want(&row) {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "check row {name:?} is still {row} after {RUNNER_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The name of a live pod in `ns` matching `selector`, other than `not` (the one a Deployment makes after `not`
/// was deleted), waiting for one with a deadline.
pub async fn wait_pod(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    not: Option<&str>,
) -> String {
    let api = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns);
    let deadline = Instant::now() + RUNNER_TIMEOUT;
    loop {
        let pods = api
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        if let Some(name) = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name.clone())
            .find(|n| Some(n.as_str()) != not)
        {
            return name;
        }
        assert!(
            Instant::now() < deadline,
            "no pod {selector} in {ns} other than {not:?} within {RUNNER_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The subset check of parity: every field the real linkerd CLI sets is set the same way on
/// the object the tool made (the API server adds defaults on top of both).
pub fn contained(real: &Value, ours: &Value, path: &str, diffs: &mut Vec<String>) {
    match (real, ours) {
        (Value::Object(r), Value::Object(o)) => {
            for (k, v) in r {
                if k == "creationTimestamp" {
                    continue;
                }
                contained(
                    v,
                    o.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    diffs,
                );
            }
        }
        (Value::Array(r), Value::Array(o)) if r.len() == o.len() => {
            for (i, (a, b)) in r.iter().zip(o).enumerate() {
                contained(a, b, &format!("{path}[{i}]"), diffs);
            }
        }
        (Value::Null, Value::Null) | (Value::Null, Value::Object(_)) => {}
        (r, o) if r == o => {}
        (r, o) => diffs.push(format!("{path}: linkerd={r} kpaas-mesh={o}")),
    }
}

pub fn decode_kubeconfig(secret: &Value) -> Value {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["kubeconfig"].as_str().unwrap())
        .unwrap();
    serde_yaml_ng::from_slice(&b).unwrap()
}

/// What a peer CLI printed for `source` to apply (`linkerd multicluster link` or `link-gen`),
/// object by object against what the tool made on `source`: the printed objects as
/// (kind, namespace, name), and the differences (none at parity). Intended differences, the
/// same for every release: linkerd copies a CA *file path* from the operator's kubeconfig
/// (useless inside the service mirror's pod), kpaas-mesh inlines that file as data; link-gen
/// prints the Link's empty `status: {}` (the API server keeps status out of a created object);
/// 2.20's client-go writes no empty `preferences: {}` into a kubeconfig, kpaas-mesh (like 2.14's
/// and 2.18's) does — the same kubeconfig to every reader.
pub async fn printed_parity(
    bed: &TestBed,
    source: &str,
    text: &str,
) -> Result<(Vec<(String, Option<String>, String)>, Vec<String>)> {
    use base64::Engine;
    let mut diffs = Vec::new();
    let mut printed = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let real: Value = serde::Deserialize::deserialize(doc)?;
        if real.is_null() {
            continue;
        }
        let kind = real["kind"].as_str().unwrap().to_string();
        let name = real["metadata"]["name"].as_str().unwrap().to_string();
        let ns = real["metadata"]["namespace"].as_str().map(str::to_string);
        printed.push((kind.clone(), ns.clone(), name.clone()));
        let Some(ours) = get(
            bed,
            source,
            real["apiVersion"].as_str().unwrap(),
            &kind,
            ns.as_deref(),
            &name,
        )
        .await?
        else {
            diffs.push(format!("{kind} {name} missing on {source}"));
            continue;
        };
        let mut real = real.clone();
        if kind == "Secret" {
            let mut r = decode_kubeconfig(&real);
            let mut o = decode_kubeconfig(&ours);
            assert_eq!(
                r["users"][0]["user"]["token"], o["users"][0]["user"]["token"],
                "token differs for {kind} {name}"
            );
            if let Some(path) = r["clusters"][0]["cluster"]["certificate-authority"].as_str() {
                let ca = std::fs::read(path)?;
                let cluster = r["clusters"][0]["cluster"].as_object_mut().unwrap();
                cluster.remove("certificate-authority");
                cluster.insert(
                    "certificate-authority-data".into(),
                    base64::engine::general_purpose::STANDARD.encode(ca).into(),
                );
            }
            for kc in [&mut r, &mut o] {
                if kc["preferences"] == serde_json::json!({}) {
                    kc.as_object_mut().unwrap().remove("preferences");
                }
            }
            if r != o {
                diffs.push(format!(
                    "{kind} {name}: kubeconfig linkerd={r} kpaas-mesh={o}"
                ));
            }
            real["data"] = Value::Null;
        }
        if real["status"] == serde_json::json!({}) {
            real.as_object_mut().unwrap().remove("status");
        }
        contained(&real, &ours, &format!("{kind}/{name}"), &mut diffs);
        // And nothing extra in labels/annotations, beyond what the API server adds.
        for field in ["labels", "annotations"] {
            let keys = |v: &Value| -> BTreeSet<String> {
                v["metadata"][field]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default()
            };
            let extra: Vec<String> = keys(&ours)
                .difference(&keys(&real))
                .filter(|k| *k != "deployment.kubernetes.io/revision")
                .cloned()
                .collect();
            if !extra.is_empty() {
                diffs.push(format!("{kind} {name}: extra {field} {extra:?}"));
            }
        }
    }
    Ok((printed, diffs))
}

// --- Linkerd's identity API, as a proxy calls it (messages written by hand from linkerd2-proxy-api's
// identity.proto: prost derives, no protoc) ---

#[derive(Clone, PartialEq, prost::Message)]
pub struct CertifyRequest {
    #[prost(string, tag = "1")]
    pub identity: String,
    #[prost(bytes = "vec", tag = "2")]
    pub token: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub certificate_signing_request: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CertifyResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub leaf_certificate: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub intermediate_certificates: Vec<Vec<u8>>,
    #[prost(message, optional, tag = "3")]
    pub valid_until: Option<Timestamp>,
}

pub async fn certify(addr: &str, req: CertifyRequest) -> Result<CertifyResponse, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connecting to {addr}: {e}")))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/io.linkerd.proxy.identity.Identity/Certify");
    let codec = tonic::codec::ProstCodec::<CertifyRequest, CertifyResponse>::default();
    grpc.unary(tonic::Request::new(req), path, codec)
        .await
        .map(|r| r.into_inner())
}

pub async fn sa_token(client: &kube::Client, ns: &str, sa: &str) -> String {
    let req: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": ["identity.l5d.io"], "expirationSeconds": 600}
        }))
        .unwrap();
    let resp: k8s_openapi::api::authentication::v1::TokenRequest =
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), ns)
            .create_subresource("token", sa, &kube::api::PostParams::default(), &req)
            .await
            .unwrap();
    resp.status.unwrap().token
}

pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// Asks `cluster`'s identity controller (the running, Ready `linkerd-identity` pod, at its pod IP) for a leaf as
/// a proxy of ServiceAccount `ns/sa` would, retrying while it is unavailable; returns the leaf and the chain it
/// came with (the issuer), as PEM.
pub async fn proxy_leaf(bed: &TestBed, cluster: &str, ns: &str, sa: &str) -> (String, String) {
    let client = bed.client(cluster).await.unwrap();
    let identity = format!("{sa}.{ns}.serviceaccount.identity.linkerd.cluster.local");
    let token = sa_token(&client, ns, sa).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![identity.clone()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, identity.clone());
    let csr = params.serialize_request(&key).unwrap();
    let request = CertifyRequest {
        identity,
        token: token.into_bytes(),
        certificate_signing_request: csr.der().to_vec(),
    };
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "linkerd");
    let resp = kpaas_mesh_e2e::with_timeout(
        Duration::from_secs(120),
        format!("Certify on {cluster}"),
        async {
            loop {
                let list = pods
                    .list(
                        &ListParams::default()
                            .labels("linkerd.io/control-plane-component=identity"),
                    )
                    .await?;
                let ready = list.items.iter().find(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().is_some_and(|s| {
                            s.conditions
                                .iter()
                                .flatten()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                });
                if let Some(ip) = ready.and_then(|p| p.status.as_ref()?.pod_ip.clone()) {
                    match certify(&format!("{ip}:8080"), request.clone()).await {
                        Ok(r) => return Ok(r),
                        Err(s) if s.code() == tonic::Code::Unavailable => {}
                        Err(s) => anyhow::bail!("Certify failed: {s}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        },
    )
    .await
    .unwrap();
    let chain = resp
        .intermediate_certificates
        .iter()
        .map(|c| pem("CERTIFICATE", c))
        .collect();
    (pem("CERTIFICATE", &resp.leaf_certificate), chain)
}

/// `openssl verify` of a leaf (with its chain) against a bundle of roots.
pub fn verifies(leaf: &str, chain: &str, roots: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    for (f, t) in [
        ("leaf.pem", leaf),
        ("chain.pem", chain),
        ("roots.pem", roots),
    ] {
        std::fs::write(dir.path().join(f), t).unwrap();
    }
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.path().join("roots.pem"))
        .arg("-untrusted")
        .arg(dir.path().join("chain.pem"))
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
