//! Test harness for netfix-openstack against a REAL Keystone and Neutron (PyPI packages run by
//! `tests/openstack/cloud.py` on 127.0.0.1): a [`Cloud`] guard that starts them and stops them
//! when dropped, a driver that talks to the plugin exactly as the host does (JSON request in,
//! answer NeedFacts from a table of Kubernetes facts, call again until a plan; outside a dry
//! run, hand every planned Neutron write back to the plugin's `execute` entry point in plan
//! order and plan again, as the host's executor does), and helpers that read Neutron's state
//! with the admin user.

#![allow(dead_code)]

use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_netfix_openstack::NetfixOpenstack;
use kpaas_mesh_netfix_openstack::config::{CloudConfig, Credentials, Secret};
use kpaas_mesh_netfix_openstack::http::Session;
use kpaas_mesh_plugin_api::export::{call_json, execute_json};
use kpaas_mesh_plugin_api::{
    Action, ClusterRef, ExecuteRequest, ExecuteResponse, Fact, FactAnswer, FactQuery, Operation,
    Plan, StageRequest, StageResponse,
};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub const NEUTRON: &str = "neutron-29.0.0";
pub const KEYSTONE: &str = "keystone-30.0.0";

pub fn cache_dir() -> PathBuf {
    match std::env::var_os("KPAAS_MESH_OPENSTACK_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/kpaas-mesh-openstack"),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Prints past libtest's capture (this must be seen even when the test passes).
pub fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// A running cloud; dropping it stops Keystone and Neutron and removes the state directory.
pub struct Cloud {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    pub dir: PathBuf,
    pub info: Value,
    pub started_in: Duration,
}

impl Cloud {
    /// Starts the cloud, or returns `None` (after a loud SKIPPED) when the venvs are missing.
    /// With `KPAAS_MESH_OPENSTACK_REQUIRED=1` a missing venv fails instead.
    pub fn start_or_skip(test: &str) -> Option<Cloud> {
        let cache = cache_dir();
        let ready = [NEUTRON, KEYSTONE]
            .iter()
            .all(|v| cache.join(v).join(".kpaas-mesh-complete").is_file());
        if !ready {
            let msg = format!(
                "SKIPPED: {test}: no Neutron/Keystone venv in {} — create it with tests/openstack/setup.sh (needs PyPI, \
                 about 1 minute; tests/run.sh runs it first)",
                cache.display()
            );
            if std::env::var("KPAAS_MESH_OPENSTACK_REQUIRED").as_deref() == Ok("1") {
                panic!("{msg} (KPAAS_MESH_OPENSTACK_REQUIRED=1)");
            }
            let bar = "=".repeat(80);
            say(&format!("\n{bar}\n{msg}\n{bar}"));
            return None;
        }
        Some(Cloud::start(test))
    }

    fn start(test: &str) -> Cloud {
        let t0 = Instant::now();
        let dir = std::env::temp_dir().join(format!(
            "kpaas-mesh-openstack-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let python = cache_dir().join(KEYSTONE).join("bin/python");
        let mut child = Command::new(python)
            .arg(repo().join("tests/openstack/cloud.py"))
            .args(["up", "--state"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("cloud.stderr")).unwrap(),
            ))
            .spawn()
            .expect("start tests/openstack/cloud.py");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let mut cloud = Cloud {
            child: Some(child),
            stdin,
            dir: dir.clone(),
            info: Value::Null,
            started_in: Duration::ZERO,
        };
        // Read READY/FAILED on a thread so a hung start times out.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("READY ") || line.starts_with("FAILED") {
                    let _ = tx.send(line);
                    break;
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(l) => l,
            Err(_) => panic!(
                "the cloud did not start within 300 s; logs in {}",
                dir.display()
            ),
        };
        if let Some(path) = line.strip_prefix("READY ") {
            cloud.info = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        } else {
            let err = std::fs::read_to_string(dir.join("cloud.stderr")).unwrap_or_default();
            let tail: Vec<&str> = err.lines().rev().take(15).collect();
            panic!(
                "the cloud did not start: {line}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        cloud.started_in = t0.elapsed();
        cloud
    }

    pub fn keystone_url(&self) -> String {
        self.info["keystone_url"].as_str().unwrap().to_string()
    }

    pub fn member_password(&self) -> String {
        self.info["member"]["password"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every secret of the cloud (passwords, the application credential's secret).
    pub fn secrets(&self) -> Vec<String> {
        vec![
            self.info["admin"]["password"].as_str().unwrap().to_string(),
            self.member_password(),
            self.info["application_credential"]["secret"]
                .as_str()
                .unwrap()
                .to_string(),
        ]
    }

    /// Writes `clouds.yaml` with the test's clouds and returns its path.
    pub fn clouds_yaml(&self) -> String {
        let ks = self.keystone_url();
        let m = &self.info["member"];
        let ac = &self.info["application_credential"];
        let text = format!(
            r#"clouds:
  member:
    auth:
      auth_url: {ks}
      username: {user}
      password: {pw}
      project_name: {project}
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: {ks}
      application_credential_id: {acid}
      application_credential_secret: {acsecret}
  wrongpw:
    auth:
      auth_url: {ks}
      username: {user}
      password: not-the-password
      project_name: {project}
  otherproject:
    auth:
      auth_url: {ks}
      username: {user}
      password: {pw}
      project_name: other
  wrongregion:
    auth:
      auth_url: {ks}
      username: {user}
      password: {pw}
      project_name: {project}
    region_name: RegionTwo
"#,
            user = m["username"].as_str().unwrap(),
            pw = m["password"].as_str().unwrap(),
            project = m["project"].as_str().unwrap(),
            acid = ac["id"].as_str().unwrap(),
            acsecret = ac["secret"].as_str().unwrap(),
        );
        let path = self.dir.join("clouds.yaml");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// An admin session (sees every project's objects) for inspecting Neutron.
    pub fn admin(&self) -> Session {
        Session::login(&CloudConfig {
            auth_url: self.keystone_url(),
            credentials: Credentials::Password {
                username: Some("admin".into()),
                user_id: None,
                user_domain_name: Some("Default".into()),
                user_domain_id: None,
                password: Secret::new(self.info["admin"]["password"].as_str().unwrap()),
                project_name: Some("admin".into()),
                project_id: None,
                project_domain_name: Some("Default".into()),
                project_domain_id: None,
            },
            region_name: None,
            interface: "public".into(),
            cacert: None,
            insecure: false,
            network_endpoint: None,
            source: "test admin".into(),
        })
        .expect("admin login")
    }

    /// A member session (the project the plugin works in).
    pub fn member(&self) -> Session {
        let m = &self.info["member"];
        Session::login(&CloudConfig {
            auth_url: self.keystone_url(),
            credentials: Credentials::Password {
                username: Some(m["username"].as_str().unwrap().into()),
                user_id: None,
                user_domain_name: Some("Default".into()),
                user_domain_id: None,
                password: Secret::new(m["password"].as_str().unwrap()),
                project_name: Some(m["project"].as_str().unwrap().into()),
                project_id: None,
                project_domain_name: Some("Default".into()),
                project_domain_id: None,
            },
            region_name: None,
            interface: "public".into(),
            cacert: None,
            insecure: false,
            network_endpoint: None,
            source: "test member".into(),
        })
        .expect("member login")
    }

    /// The fixture's nodes of `cluster`: (name, ip, server id, port id).
    pub fn nodes(&self, cluster: &str) -> Vec<(String, String, String, String)> {
        self.info["clusters"][cluster]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let s = |k: &str| n[k].as_str().unwrap().to_string();
                (s("name"), s("ip"), s("server_id"), s("port_id"))
            })
            .collect()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        // Closing its stdin makes cloud.py stop both servers and exit; wait for that.
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let t0 = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if t0.elapsed() < Duration::from_secs(30) => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if std::env::var("KPAAS_MESH_OPENSTACK_KEEP").as_deref() != Ok("1") {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The Kubernetes facts of the fake clusters: gateway Service address and Nodes.
#[derive(Clone, Debug)]
pub struct K8s {
    pub gateways: std::collections::BTreeMap<String, Option<String>>,
    pub nodes: std::collections::BTreeMap<String, Vec<Value>>,
    /// Whether the DNAT agent's objects (namespace kpaas-mesh-netfix) exist.
    pub agent_deployed: bool,
}

impl K8s {
    /// `clusters` with gateway `.200` of their node CIDR and every fixture node; nodes listed in
    /// `no_provider_id` get no `spec.providerID` (found by InternalIP then).
    pub fn from_cloud(cloud: &Cloud, clusters: &[&str], no_provider_id: &[&str]) -> K8s {
        let mut k = K8s {
            gateways: Default::default(),
            nodes: Default::default(),
            agent_deployed: false,
        };
        for c in clusters {
            let cidr = cloud.info["clusters"][c]["cidr"].as_str().unwrap();
            let prefix = cidr.rsplit_once('.').unwrap().0;
            k.gateways
                .insert(c.to_string(), Some(format!("{prefix}.200")));
            let nodes = cloud
                .nodes(c)
                .into_iter()
                .map(|(name, ip, server, _)| {
                    let mut n = json!({
                        "metadata": {"name": name},
                        "spec": {},
                        "status": {"addresses": [
                            {"type": "InternalIP", "address": ip},
                            {"type": "Hostname", "address": name}
                        ]}
                    });
                    if !no_provider_id.contains(&name.as_str()) {
                        n["spec"]["providerID"] = json!(format!("openstack:///{server}"));
                    }
                    n
                })
                .collect();
            k.nodes.insert(c.to_string(), nodes);
        }
        k
    }

    fn answer(&self, q: &FactQuery) -> FactAnswer {
        match q {
            FactQuery::Object {
                cluster,
                kind,
                namespace,
                name,
                ..
            } if kind == "Service"
                && namespace.as_deref() == Some("linkerd-multicluster")
                && name == "linkerd-gateway" =>
            {
                FactAnswer::Object {
                    object: self.gateways.get(cluster).map(|ip| {
                        json!({
                            "metadata": {"name": "linkerd-gateway", "namespace": "linkerd-multicluster"},
                            "spec": {"type": "LoadBalancer"},
                            "status": {"loadBalancer": {"ingress": ip.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>()}}
                        })
                    }),
                }
            }
            FactQuery::Objects { cluster, kind, .. } if kind == "Node" => FactAnswer::Objects {
                items: self.nodes.get(cluster).cloned().unwrap_or_default(),
            },
            // The DNAT agent's objects (namespace, DaemonSet, ConfigMap), when deployed.
            FactQuery::Object {
                kind,
                namespace,
                name,
                ..
            } if self.agent_deployed
                && (namespace.as_deref() == Some("kpaas-mesh-netfix")
                    || name == "kpaas-mesh-netfix") =>
            {
                FactAnswer::Object {
                    object: Some(json!({"kind": kind, "metadata": {"name": name}})),
                }
            }
            FactQuery::Object { .. } => FactAnswer::Object { object: None },
            FactQuery::Objects { kind, .. } if kind == "Pod" => FactAnswer::Objects { items: vec![] },
            other => FactAnswer::Error {
                message: format!("not a fact of this test: {other:?}"),
            },
        }
    }
}

/// What [`drive`] saw: the last plan (after the writes ran, re-planned from the cloud), the
/// summary of every Neutron write the first plan held, and what each executed write reported.
#[derive(Clone, Debug)]
pub struct Run {
    pub plan: Plan,
    pub planned: Vec<String>,
    pub done: Vec<ExecuteResponse>,
}

impl std::ops::Deref for Run {
    type Target = Plan;
    fn deref(&self) -> &Plan {
        &self.plan
    }
}

impl Run {
    /// The planned writes' summaries, one per line.
    pub fn planned_text(&self) -> String {
        self.planned.join("\n")
    }
    /// The writes that changed Neutron.
    pub fn changed(&self) -> usize {
        self.done.iter().filter(|d| d.changed).count()
    }
}

/// One conversation with the plugin, as the host has it: the request goes in as JSON, every
/// NeedFacts is answered (a query asked twice is an error, as in the host), until a plan.
/// Outside a dry run the plan's Neutron writes are executed in order through the plugin's
/// `execute` entry point and the stage is planned again, up to four rounds, as the host does.
pub fn drive(
    op: Operation,
    clusters: &[&str],
    extra: Value,
    dry_run: bool,
    k8s: &K8s,
) -> Result<Run, String> {
    let mut first: Option<Vec<String>> = None;
    let mut done = Vec::new();
    for _round in 0..4 {
        let plan = plan_once(op, clusters, extra.clone(), dry_run, k8s)?;
        let writes: Vec<(&Option<String>, &String, &Value)> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Plugin {
                    cluster,
                    summary,
                    op,
                    ..
                } => Some((cluster, summary, op)),
                _ => None,
            })
            .collect();
        let summaries: Vec<String> = writes.iter().map(|(_, s, _)| s.to_string()).collect();
        let planned = first.get_or_insert(summaries).clone();
        if dry_run || writes.is_empty() {
            return Ok(Run {
                plan,
                planned,
                done,
            });
        }
        for (cluster, _, op) in writes {
            let request = ExecuteRequest {
                settings: serde_json::to_value(MeshSettings::default()).unwrap(),
                options: extra.clone(),
                cluster: cluster.clone(),
                op: op.clone(),
            };
            let reply = execute_json(&NetfixOpenstack, &serde_json::to_string(&request).unwrap())?;
            done.push(serde_json::from_str(&reply).unwrap());
        }
    }
    panic!("the plugin still planned Neutron writes after four rounds")
}

fn plan_once(
    op: Operation,
    clusters: &[&str],
    extra: Value,
    dry_run: bool,
    k8s: &K8s,
) -> Result<Plan, String> {
    let mut req = StageRequest::new(
        op,
        clusters
            .iter()
            .map(|c| ClusterRef {
                name: c.to_string(),
                context: c.to_string(),
            })
            .collect(),
    );
    req.settings = serde_json::to_value(MeshSettings::default()).unwrap();
    req.options = extra;
    req.dry_run = dry_run;
    for _ in 0..16 {
        let reply = call_json(&NetfixOpenstack, &serde_json::to_string(&req).unwrap())?;
        match serde_json::from_str::<StageResponse>(&reply).unwrap() {
            StageResponse::Plan(p) => return Ok(p),
            StageResponse::NeedFacts { queries } => {
                assert!(!queries.is_empty(), "NeedFacts without queries");
                for q in queries {
                    assert!(req.fact(&q).is_none(), "asked twice: {q:?}");
                    let answer = k8s.answer(&q);
                    req.facts.push(Fact { query: q, answer });
                }
            }
        }
    }
    panic!("the plugin kept asking for facts")
}

/// Neutron's state as the admin sees it, reduced to what the plugin may change: every port
/// (fixed IPs, pairs, security groups, tags, name, description, revision), floating IP and
/// security group (with its rules).
pub fn snapshot(admin: &Session) -> Value {
    let mut ports = admin.get("/ports").unwrap()["ports"].clone();
    let mut fips = admin.get("/floatingips").unwrap()["floatingips"].clone();
    let mut groups = admin.get("/security-groups").unwrap()["security_groups"].clone();
    for g in groups.as_array_mut().unwrap() {
        let mut rules: Vec<Value> = g["security_group_rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                json!([
                    r["direction"],
                    r["protocol"],
                    r["port_range_min"],
                    r["remote_ip_prefix"],
                    r["id"]
                ])
            })
            .collect();
        rules.sort_by_key(|r| r.to_string());
        g["security_group_rules"] = Value::Array(rules);
    }
    let keep = |v: &mut Value, keys: &[&str]| {
        for item in v.as_array_mut().unwrap() {
            let m = item.as_object_mut().unwrap();
            m.retain(|k, _| keys.contains(&k.as_str()));
        }
        v.as_array_mut()
            .unwrap()
            .sort_by_key(|i| i["id"].as_str().unwrap().to_string());
    };
    keep(
        &mut ports,
        &[
            "id",
            "name",
            "description",
            "fixed_ips",
            "allowed_address_pairs",
            "tags",
            "revision_number",
            "device_id",
            "security_groups",
        ],
    );
    keep(
        &mut groups,
        &["id", "name", "tags", "security_group_rules", "project_id"],
    );
    keep(
        &mut fips,
        &[
            "id",
            "floating_ip_address",
            "port_id",
            "fixed_ip_address",
            "tags",
            "description",
            "revision_number",
        ],
    );
    json!({"ports": ports, "floatingips": fips, "security_groups": groups})
}

/// The plugin's security groups in a [`snapshot`] (tagged `kpaas-mesh`).
pub fn our_groups(snap: &Value) -> Vec<Value> {
    snap["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["tags"].as_array().unwrap().contains(&json!("kpaas-mesh")))
        .cloned()
        .collect()
}

/// The port with `id` from a [`snapshot`].
pub fn port<'a>(snap: &'a Value, id: &str) -> &'a Value {
    snap["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no port {id}"))
}

/// Ports and floating IPs tagged kpaas-mesh in a [`snapshot`].
pub fn ours(snap: &Value) -> (Vec<Value>, Vec<Value>) {
    let tagged = |k: &str| -> Vec<Value> {
        snap[k]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t == "kpaas-mesh")
            })
            .cloned()
            .collect()
    };
    (tagged("ports"), tagged("floatingips"))
}

/// The allowed-address-pair IPs of a port in a [`snapshot`].
pub fn pairs(port: &Value) -> Vec<String> {
    port["allowed_address_pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ip_address"].as_str().unwrap().to_string())
        .collect()
}

/// Everything a plan shows a person or hands on, as one string (for secret checks).
pub fn plan_text(p: &Plan) -> String {
    serde_json::to_string(p).unwrap()
}

/// Fails when `text` holds any of the secrets or something shaped like a Keystone fernet token.
pub fn assert_no_secret(cloud: &Cloud, what: &str, text: &str) {
    for s in cloud.secrets() {
        assert!(!text.contains(&s), "{what} shows a secret: {text}");
    }
    assert!(!text.contains("gAAAAA"), "{what} shows a token: {text}");
}

/// Step timing for the report.
pub struct Timer {
    pub steps: Vec<(String, Duration)>,
    t: Instant,
}

impl Timer {
    pub fn new() -> Timer {
        Timer {
            steps: vec![],
            t: Instant::now(),
        }
    }
    pub fn lap(&mut self, name: &str) {
        self.steps.push((name.to_string(), self.t.elapsed()));
        self.t = Instant::now();
    }
    pub fn report(&self, test: &str) {
        let mut out = format!("\n[{test}] timings:\n");
        for (n, d) in &self.steps {
            out.push_str(&format!("  {:>7.2}s  {n}\n", d.as_secs_f64()));
        }
        say(&out);
    }
}
