//! kpaas-mesh-testbed-lb: the test bed's stand-in for MetalLB. It watches every Service of one cluster and gives
//! each `type: LoadBalancer` Service without an address an `status.loadBalancer.ingress[0].ip` from the cluster's
//! private pool, as MetalLB in layer-2 mode would.
//!
//! Gateway probe stand-in: every address it hands out is also added to `lo` of the bed's network namespace (only
//! when it runs inside the namespace `--netns` names), and for every port of the Service whose
//! target port is 4191 (linkerd2-proxy's admin port) it answers HTTP there, standing in for the gateway pod's
//! proxy behind the load balancer: `GET /ready` and `/live` → 200 `ready` while the Service's Endpoints have a
//! ready address (kwok's gateway pod), 503 otherwise; anything else 404. The service mirror's real probe worker
//! (run by the pod runner, `pods.rs`) probes it. Nothing listens on the other ports (no proxy runs), and nothing
//! outside the bed's namespaces can reach these addresses.
//!
//! Usage: `kpaas-mesh-testbed-lb --kubeconfig PATH --context NAME --pool FIRST-LAST [--netns NAME]` (the probe
//! stand-in runs only with `--netns`, and only when the process is inside that namespace)

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    kubeconfig: PathBuf,
    context: String,
    pool: (Ipv4Addr, Ipv4Addr),
    /// The bed's network namespace: the gateway probe stand-in runs only when this process is inside it.
    netns: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut kubeconfig = None;
    let mut context = None;
    let mut pool = None;
    let mut netns = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (
                arg.clone(),
                args.next()
                    .with_context(|| format!("{arg} needs a value"))?,
            ),
        };
        match key.as_str() {
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value)),
            "--context" => context = Some(value),
            "--pool" => pool = Some(kpaas_mesh_e2e::parse_pool(&value)?),
            "--netns" => netns = Some(value),
            _ => bail!(
                "unknown argument {key}; usage: --kubeconfig PATH --context NAME --pool FIRST-LAST [--netns NAME]"
            ),
        }
    }
    Ok(Args {
        kubeconfig: kubeconfig.context("--kubeconfig is required")?,
        context: context.context("--context is required")?,
        pool: pool.context("--pool is required")?,
        netns,
    })
}

/// Which Service holds which address.
struct Allocator {
    first: u32,
    last: u32,
    by_service: BTreeMap<String, Ipv4Addr>,
}

impl Allocator {
    fn used(&self) -> BTreeSet<Ipv4Addr> {
        self.by_service.values().copied().collect()
    }

    /// The address for `key`: the one it already has, the one it asks for (if free), or the lowest free one.
    fn assign(&mut self, key: &str, wanted: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_service.get(key) {
            return Some(*ip);
        }
        let used = self.used();
        let ip = match wanted {
            Some(ip) if !used.contains(&ip) => Some(ip),
            Some(_) => None,
            None => (self.first..=self.last)
                .map(Ipv4Addr::from)
                .find(|ip| !used.contains(ip)),
        }?;
        self.by_service.insert(key.to_string(), ip);
        Some(ip)
    }
}

fn key(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

fn is_load_balancer(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec
            .and_then(|s| s.load_balancer_class.as_deref())
            .is_none()
}

fn current_ip(svc: &Service) -> Option<Ipv4Addr> {
    svc.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .ip
        .as_deref()?
        .parse()
        .ok()
}

fn wanted_ip(svc: &Service) -> Option<Ipv4Addr> {
    let annotated = svc
        .annotations()
        .get("metallb.universe.tf/loadBalancerIPs")
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok());
    annotated.or_else(|| svc.spec.as_ref()?.load_balancer_ip.as_deref()?.parse().ok())
}

/// The ports of `svc` that stand for linkerd2-proxy's admin port (target port 4191).
fn probe_ports(svc: &Service) -> Vec<u16> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter(|p| match &p.target_port {
            Some(IntOrString::Int(t)) => *t == 4191,
            Some(IntOrString::String(_)) => false,
            None => p.port == 4191,
        })
        .filter_map(|p| u16::try_from(p.port).ok())
        .collect()
}

/// Is this process in the network namespace named `netns` (`/run/netns/NAME`, made by `testbed.sh`)? Only then
/// are addresses added to its `lo`.
fn in_netns(netns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata("/proc/self/ns/net"),
        std::fs::metadata(std::path::Path::new("/run/netns").join(netns)),
    ) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Answers the probe on ip:port while running: 200 while the Service has a ready endpoint.
async fn serve_probe(client: Client, ns: String, name: String, ip: Ipv4Addr, port: u16) {
    let listener = match tokio::net::TcpListener::bind((ip, port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("probe stand-in {ip}:{port} ({ns}/{name}): {e}");
            return;
        }
    };
    let api: Api<Endpoints> = Api::namespaced(client, &ns);
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let api = api.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("");
            let (code, body) = if path == "/ready" || path == "/live" {
                let ready = api.get_opt(&name).await.ok().flatten().is_some_and(|ep| {
                    ep.subsets
                        .iter()
                        .flatten()
                        .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()))
                });
                if ready {
                    ("200 OK", "ready\n")
                } else {
                    ("503 Service Unavailable", "not ready\n")
                }
            } else {
                ("404 Not Found", "")
            };
            let _ = conn
                .write_all(
                    format!(
                        "HTTP/1.1 {code}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        });
    }
}

/// The probe stand-ins of every Service that holds an address.
struct Probes {
    enabled: bool,
    running: BTreeMap<String, (Ipv4Addr, Vec<tokio::task::JoinHandle<()>>)>,
}

impl Probes {
    fn ensure(&mut self, client: &Client, context: &str, svc: &Service, ip: Ipv4Addr) {
        let k = key(svc);
        if !self.enabled || self.running.get(&k).is_some_and(|(a, _)| *a == ip) {
            return;
        }
        self.release(context, &k);
        let out = std::process::Command::new("ip")
            .args(["addr", "replace", &format!("{ip}/32"), "dev", "lo"])
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("[{context}] {k}: cannot add {ip} to lo: {out:?}");
            return;
        }
        let ports = probe_ports(svc);
        let tasks = ports
            .iter()
            .map(|p| {
                tokio::spawn(serve_probe(
                    client.clone(),
                    svc.namespace().unwrap_or_default(),
                    svc.name_any(),
                    ip,
                    *p,
                ))
            })
            .collect();
        if !ports.is_empty() {
            println!("[{context}] {k}: probe stand-in on {ip} ports {ports:?}");
        }
        self.running.insert(k, (ip, tasks));
    }

    fn release(&mut self, context: &str, k: &str) {
        if let Some((ip, tasks)) = self.running.remove(k) {
            for t in tasks {
                t.abort();
            }
            let _ = std::process::Command::new("ip")
                .args(["addr", "del", &format!("{ip}/32"), "dev", "lo"])
                .output();
            println!("[{context}] {k}: {ip} removed from lo");
        }
    }
}

async fn handle(
    api_client: &Client,
    alloc: &mut Allocator,
    probes: &mut Probes,
    context: &str,
    svc: Service,
) -> Result<()> {
    let k = key(&svc);
    if !is_load_balancer(&svc) {
        alloc.by_service.remove(&k);
        probes.release(context, &k);
        return Ok(());
    }
    if let Some(ip) = current_ip(&svc) {
        alloc.by_service.entry(k).or_insert(ip);
        probes.ensure(api_client, context, &svc, ip);
        return Ok(());
    }
    let Some(ip) = alloc.assign(&k, wanted_ip(&svc)) else {
        eprintln!("[{context}] {k}: no free address in the pool (or the requested one is taken)");
        return Ok(());
    };
    let api: Api<Service> =
        Api::namespaced(api_client.clone(), &svc.namespace().unwrap_or_default());
    let patch = json!({ "status": { "loadBalancer": { "ingress": [ { "ip": ip.to_string(), "ipMode": "VIP" } ] } } });
    api.patch_status(
        &svc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .with_context(|| format!("patching status of {k}"))?;
    println!("[{context}] {k}: assigned {ip}");
    probes.ensure(api_client, context, &svc, ip);
    Ok(())
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
    let client = Client::try_from(Config::from_custom_kubeconfig(kubeconfig, &options).await?)?;
    let mut alloc = Allocator {
        first: u32::from(args.pool.0),
        last: u32::from(args.pool.1),
        by_service: BTreeMap::new(),
    };
    let mut probes = Probes {
        enabled: args.netns.as_deref().is_some_and(in_netns),
        running: BTreeMap::new(),
    };
    println!(
        "[{}] MetalLB stand-in watching Services; pool {}-{}; gateway probe stand-in {}",
        args.context,
        args.pool.0,
        args.pool.1,
        if probes.enabled { "on" } else { "off" }
    );
    let api: Api<Service> = Api::all(client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // Addresses already handed out are learnt during the initial listing, before anything new is assigned.
    let mut pending: Vec<Service> = Vec::new();
    let mut initialised = false;
    while let Some(event) = events.try_next().await? {
        match event {
            watcher::Event::Init => {
                alloc.by_service.clear();
                pending.clear();
                initialised = false;
            }
            watcher::Event::InitApply(svc) => {
                if let Some(ip) = current_ip(&svc).filter(|_| is_load_balancer(&svc)) {
                    alloc.by_service.insert(key(&svc), ip);
                    probes.ensure(&client, &args.context, &svc, ip);
                } else {
                    pending.push(svc);
                }
            }
            watcher::Event::InitDone => {
                initialised = true;
                for svc in std::mem::take(&mut pending) {
                    if let Err(e) =
                        handle(&client, &mut alloc, &mut probes, &args.context, svc).await
                    {
                        eprintln!("[{}] {e:#}", args.context);
                    }
                }
            }
            watcher::Event::Apply(svc) if initialised => {
                if let Err(e) = handle(&client, &mut alloc, &mut probes, &args.context, svc).await {
                    eprintln!("[{}] {e:#}", args.context);
                }
            }
            watcher::Event::Apply(svc) => pending.push(svc),
            watcher::Event::Delete(svc) => {
                if alloc.by_service.remove(&key(&svc)).is_some() {
                    println!("[{}] {}: released", args.context, key(&svc));
                }
                probes.release(&args.context, &key(&svc));
            }
        }
    }
    bail!("the Service watch ended")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_hands_out_lowest_free_and_honours_requests() {
        let mut a = Allocator {
            first: u32::from(Ipv4Addr::new(172, 21, 0, 10)),
            last: u32::from(Ipv4Addr::new(172, 21, 0, 11)),
            by_service: BTreeMap::new(),
        };
        assert_eq!(a.assign("ns/a", None), Some(Ipv4Addr::new(172, 21, 0, 10)));
        assert_eq!(a.assign("ns/a", None), Some(Ipv4Addr::new(172, 21, 0, 10)));
        assert_eq!(a.assign("ns/b", Some(Ipv4Addr::new(172, 21, 0, 10))), None);
        assert_eq!(a.assign("ns/c", None), Some(Ipv4Addr::new(172, 21, 0, 11)));
        assert_eq!(a.assign("ns/d", None), None);
        a.by_service.remove("ns/a");
        assert_eq!(a.assign("ns/d", None), Some(Ipv4Addr::new(172, 21, 0, 10)));
    }
}
