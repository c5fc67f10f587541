//! kpaas-mesh-testbed-lb: the test bed's stand-in for MetalLB. It watches every Service of one cluster and gives
//! each `type: LoadBalancer` Service without an address an `status.loadBalancer.ingress[0].ip` from the cluster's
//! private pool, as MetalLB in layer-2 mode would. It only writes status: nothing ever listens on or dials these
//! addresses (the bed's network namespace has no route to them).
//!
//! Usage: `kpaas-mesh-testbed-lb --kubeconfig PATH --context NAME --pool FIRST-LAST`

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;

struct Args {
    kubeconfig: PathBuf,
    context: String,
    pool: (Ipv4Addr, Ipv4Addr),
}

fn parse_args() -> Result<Args> {
    let mut kubeconfig = None;
    let mut context = None;
    let mut pool = None;
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
            _ => bail!(
                "unknown argument {key}; usage: --kubeconfig PATH --context NAME --pool FIRST-LAST"
            ),
        }
    }
    Ok(Args {
        kubeconfig: kubeconfig.context("--kubeconfig is required")?,
        context: context.context("--context is required")?,
        pool: pool.context("--pool is required")?,
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

async fn handle(
    api_client: &Client,
    alloc: &mut Allocator,
    context: &str,
    svc: Service,
) -> Result<()> {
    let k = key(&svc);
    if !is_load_balancer(&svc) {
        alloc.by_service.remove(&k);
        return Ok(());
    }
    if let Some(ip) = current_ip(&svc) {
        alloc.by_service.entry(k).or_insert(ip);
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
    println!(
        "[{}] MetalLB stand-in watching Services; pool {}-{}",
        args.context, args.pool.0, args.pool.1
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
                } else {
                    pending.push(svc);
                }
            }
            watcher::Event::InitDone => {
                initialised = true;
                for svc in std::mem::take(&mut pending) {
                    if let Err(e) = handle(&client, &mut alloc, &args.context, svc).await {
                        eprintln!("[{}] {e:#}", args.context);
                    }
                }
            }
            watcher::Event::Apply(svc) if initialised => {
                if let Err(e) = handle(&client, &mut alloc, &args.context, svc).await {
                    eprintln!("[{}] {e:#}", args.context);
                }
            }
            watcher::Event::Apply(svc) => pending.push(svc),
            watcher::Event::Delete(svc) => {
                if alloc.by_service.remove(&key(&svc)).is_some() {
                    println!("[{}] {}: released", args.context, key(&svc));
                }
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
