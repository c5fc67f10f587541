//! Smoke tests that prove the test bed is real, from Rust with kube-rs: Ready kwok nodes in every cluster, a
//! Deployment that becomes Available, a ServiceAccount token Secret filled by the controller-manager, `helm install`
//! of the local linkerd-crds chart, the real `linkerd install --crds | kubectl apply -f -`, a LoadBalancer Service
//! that gets an address from the MetalLB stand-in, and clusters that are independent of each other.
//! Every test cleans up what it creates (unique names), so the tests can be re-run on the same bed.
//! Without a bed (`KPAAS_MESH_TESTBED` unset) each test prints SKIPPED and passes.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kpaas_mesh_e2e::{TestBed, TestNamespace, testbed_or_skip, unique_name, wait_for};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);

/// A CRD that both `linkerd install --crds` and the linkerd-crds chart create.
const LINKERD_CRD: &str = "servers.policy.linkerd.io";

/// Runs `body` in a fresh namespace of `context`, then deletes the namespace whatever the outcome.
async fn in_namespace<F, Fut>(bed: &TestBed, context: &str, prefix: &str, body: F) -> Result<()>
where
    F: FnOnce(TestNamespace) -> Fut,
    Fut: Future<Output = (TestNamespace, Result<()>)>,
{
    let ns = bed.namespace(context, prefix).await?;
    let (ns, result) = body(ns).await;
    let cleanup = ns.delete().await;
    result.and(cleanup)
}

fn first_context(bed: &TestBed) -> String {
    bed.contexts()
        .first()
        .cloned()
        .expect("the bed has at least one context")
}

fn last_context(bed: &TestBed) -> String {
    bed.contexts()
        .last()
        .cloned()
        .expect("the bed has at least one context")
}

#[tokio::test]
async fn the_tests_run_in_a_loopback_only_namespace() -> Result<()> {
    let bed = testbed_or_skip!(Ok(()));
    let links = bed.run("ip", &["-o", "link", "show"], None)?.stdout;
    let names: Vec<String> = String::from_utf8_lossy(&links)
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(str::to_string))
        .collect();
    ensure!(
        names == ["lo"],
        "the namespace has links {names:?}, expected only lo"
    );
    let routes = bed.run("ip", &["route", "show"], None)?.stdout;
    ensure!(
        routes.is_empty(),
        "the namespace has routes: {}",
        String::from_utf8_lossy(&routes)
    );
    Ok(())
}

#[tokio::test]
async fn every_cluster_has_three_ready_kwok_nodes() -> Result<()> {
    let bed = testbed_or_skip!(Ok(()));
    let contexts = bed.contexts();
    ensure!(
        contexts.len() >= 2,
        "expected at least 2 clusters, got {contexts:?}"
    );
    for (i, ctx) in contexts.iter().enumerate() {
        ensure!(
            *ctx == format!("cluster{}", i + 1),
            "contexts are not cluster1..N: {contexts:?}"
        );
        let nodes = Api::<Node>::all(bed.client(ctx).await?)
            .list(&ListParams::default())
            .await?;
        let ready = nodes
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        ensure!(
            ready >= 3,
            "{ctx}: {ready} Ready nodes of {}",
            nodes.items.len()
        );
    }
    Ok(())
}

#[tokio::test]
async fn deployment_becomes_available() -> Result<()> {
    let bed = testbed_or_skip!(Ok(()));
    in_namespace(&bed, &first_context(&bed), "smoke-deploy", |ns| async move {
        let r = async {
            let api: Api<Deployment> = ns.api();
            let deploy: Deployment = serde_json::from_value(json!({
                "metadata": { "name": "web" },
                "spec": {
                    "replicas": 2,
                    "selector": { "matchLabels": { "app": "web" } },
                    "template": {
                        "metadata": { "labels": { "app": "web" } },
                        // kwok only pretends to run it: the image is never pulled
                        "spec": { "containers": [ { "name": "web", "image": "registry.invalid/web:1" } ] }
                    }
                }
            }))?;
            api.create(&PostParams::default(), &deploy).await?;
            wait_for(
                api,
                "web",
                |d: Option<&Deployment>| {
                    d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                        s.available_replicas == Some(2)
                            && s.conditions
                                .as_ref()
                                .is_some_and(|c| c.iter().any(|c| c.type_ == "Available" && c.status == "True"))
                    })
                },
                TIMEOUT,
            )
            .await
            .context("Deployment web did not become Available")?;
            Ok(())
        }
        .await;
        (ns, r)
    })
    .await
}

#[tokio::test]
async fn service_account_token_secret_is_filled() -> Result<()> {
    let bed = testbed_or_skip!(Ok(()));
    in_namespace(&bed, &last_context(&bed), "smoke-token", |ns| async move {
        let r = async {
            let sa: ServiceAccount =
                serde_json::from_value(json!({ "metadata": { "name": "remote-access" } }))?;
            ns.api::<ServiceAccount>()
                .create(&PostParams::default(), &sa)
                .await?;
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {
                    "name": "remote-access-token",
                    "annotations": { "kubernetes.io/service-account.name": "remote-access" }
                },
                "type": "kubernetes.io/service-account-token"
            }))?;
            let api: Api<Secret> = ns.api();
            api.create(&PostParams::default(), &secret).await?;
            let filled = wait_for(
                api,
                "remote-access-token",
                |s: Option<&Secret>| {
                    s.and_then(|s| s.data.as_ref())
                        .is_some_and(|d| d.contains_key("token") && d.contains_key("ca.crt"))
                },
                TIMEOUT,
            )
            .await
            .context("token Secret was not filled by the controller-manager")?
            .context("token Secret vanished")?;
            let token = &filled.data.as_ref().expect("data")["token"].0;
            // a JWT: three dot-separated parts
            ensure!(
                token.split(|b| *b == b'.').count() == 3,
                "token is not a JWT"
            );
            Ok(())
        }
        .await;
        (ns, r)
    })
    .await
}

async fn crd_exists(client: &Client, name: &str) -> Result<bool> {
    Ok(Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt(name)
        .await?
        .is_some())
}

async fn wait_crd_gone(client: &Client, name: &str) -> Result<()> {
    wait_for(
        Api::<CustomResourceDefinition>::all(client.clone()),
        name,
        |c: Option<&CustomResourceDefinition>| c.is_none(),
        TIMEOUT,
    )
    .await
    .with_context(|| format!("CRD {name} was not removed"))?;
    Ok(())
}

#[tokio::test]
async fn helm_installs_the_local_linkerd_crds_chart() -> Result<()> {
    let bed = testbed_or_skip!(Ok(()));
    let ctx = first_context(&bed);
    let client = bed.client(&ctx).await?;
    if crd_exists(&client, LINKERD_CRD).await? {
        bail!("{ctx} already has {LINKERD_CRD}: a previous test left Linkerd's CRDs behind");
    }
    let chart = bed.charts_dir()?.join("linkerd-crds");
    let release = unique_name("crds");
    let (bed_ref, ctx_ref) = (&bed, ctx.as_str());
    in_namespace(&bed, &ctx, "smoke-helm", |ns| async move {
        let (bed, ctx) = (bed_ref, ctx_ref);
        let r = async {
            let chart = chart.to_str().context("chart path")?;
            let ns_name = ns.name.as_str();
            let args = [
                "install",
                &release,
                chart,
                "--kube-context",
                ctx,
                "-n",
                ns_name,
                "--wait",
            ];
            let installed = bed.run("helm", &args, None);
            let present = crd_exists(&ns.client, LINKERD_CRD).await;
            let uninstalled = bed.run(
                "helm",
                &["uninstall", &release, "--kube-context", ctx, "-n", ns_name],
                None,
            );
            let gone = wait_crd_gone(&ns.client, LINKERD_CRD).await;
            installed?;
            ensure!(
                present?,
                "helm install succeeded but {LINKERD_CRD} is missing"
            );
            uninstalled?;
            gone
        }
        .await;
        (ns, r)
    })
    .await
}

#[tokio::test]
async fn linkerd_install_crds_applies_with_kubectl() -> Result<()> {
    let bed = testbed_or_skip!(Ok(()));
    // the last cluster: the helm test uses the first, so the two never fight over the same CRDs
    let ctx = last_context(&bed);
    let client = bed.client(&ctx).await?;
    if crd_exists(&client, LINKERD_CRD).await? {
        bail!("{ctx} already has {LINKERD_CRD}: a previous test left Linkerd's CRDs behind");
    }
    let manifest = bed
        .run("linkerd", &["install", "--crds", "--context", &ctx], None)?
        .stdout;
    ensure!(
        String::from_utf8_lossy(&manifest).contains("kind: CustomResourceDefinition"),
        "linkerd install --crds printed no CRDs"
    );
    let applied = bed.run(
        "kubectl",
        &["--context", &ctx, "apply", "-f", "-"],
        Some(&manifest),
    );
    let present = crd_exists(&client, LINKERD_CRD).await;
    let deleted = bed.run(
        "kubectl",
        &["--context", &ctx, "delete", "--ignore-not-found", "-f", "-"],
        Some(&manifest),
    );
    let gone = wait_crd_gone(&client, LINKERD_CRD).await;
    applied?;
    ensure!(
        present?,
        "kubectl apply succeeded but {LINKERD_CRD} is missing"
    );
    deleted?;
    gone
}

#[tokio::test]
async fn load_balancer_service_gets_an_address_from_the_cluster_pool() -> Result<()> {
    let bed = testbed_or_skip!(Ok(()));
    for ctx in bed.contexts() {
        let (first, last) = bed.lb_pool(&ctx)?;
        let ctx2 = ctx.clone();
        in_namespace(&bed, &ctx, "smoke-lb", |ns| async move {
            let r = async {
                let svc: Service = serde_json::from_value(json!({
                    "metadata": { "name": "gateway" },
                    "spec": {
                        "type": "LoadBalancer",
                        "selector": { "app": "gateway" },
                        "ports": [ { "name": "mc-gateway", "port": 4143 }, { "name": "mc-probe", "port": 4191 } ]
                    }
                }))?;
                let api: Api<Service> = ns.api();
                api.create(&PostParams::default(), &svc).await?;
                let svc = wait_for(
                    api,
                    "gateway",
                    |s: Option<&Service>| {
                        s.and_then(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref())
                            .is_some_and(|i| !i.is_empty())
                    },
                    TIMEOUT,
                )
                .await
                .with_context(|| format!("{ctx2}: the MetalLB stand-in gave the Service no address"))?
                .context("Service vanished")?;
                let ip: Ipv4Addr = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| {
                    l.ingress.as_ref()?.first()?.ip.as_deref()?.parse().ok()
                })
                .context("ingress[0].ip is not an IPv4 address")?;
                ensure!(
                    (u32::from(first)..=u32::from(last)).contains(&u32::from(ip)),
                    "{ctx2}: {ip} is outside the pool {first}-{last}"
                );
                Ok(())
            }
            .await;
            (ns, r)
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn clusters_are_independent() -> Result<()> {
    let bed = testbed_or_skip!(Ok(()));
    let contexts = bed.contexts();
    ensure!(contexts.len() >= 2, "need two clusters, got {contexts:?}");
    let one = bed.client(&contexts[0]).await?;
    let two = bed.client(&contexts[1]).await?;

    // distinct etcds: kube-system was created separately in each
    let uid = |ns: Namespace| ns.metadata.uid.unwrap_or_default();
    let uid1 = uid(Api::<Namespace>::all(one.clone())
        .get("kube-system")
        .await?);
    let uid2 = uid(Api::<Namespace>::all(two.clone())
        .get("kube-system")
        .await?);
    ensure!(
        uid1 != uid2,
        "both contexts reach the same cluster (kube-system uid {uid1})"
    );

    let name = unique_name("smoke-indep");
    let cm: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": name }, "data": { "k": "v" } }))?;
    let api1: Api<ConfigMap> = Api::namespaced(one, "default");
    let api2: Api<ConfigMap> = Api::namespaced(two, "default");
    api1.create(&PostParams::default(), &cm).await?;
    let seen_in_two = api2.get_opt(&name).await;
    let seen_in_one = api1.get_opt(&name).await;
    api1.delete(&name, &DeleteParams::default()).await?;
    ensure!(seen_in_one?.is_some(), "{name} missing in {}", contexts[0]);
    ensure!(
        seen_in_two?.is_none(),
        "{name} created in {} shows up in {}",
        contexts[0],
        contexts[1]
    );
    Ok(())
}
