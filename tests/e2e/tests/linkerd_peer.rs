//! The peer baseline: the real `linkerd` CLI (stable-2.14.10) sets up Linkerd multi-cluster on the test bed the
//! way the Linkerd guide does (`install --crds`, `install`, `multicluster install` on both clusters, then
//! `multicluster link` from cluster1 applied to cluster2), and everything is uninstalled again. It proves the bed
//! can host what kpaas-mesh must reproduce, and shows the shape of a parity test against the peer.
//! Skips (loudly) without a bed; leaves the clusters as it found them.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kpaas_mesh_e2e::{TestBed, testbed_or_skip, wait_for};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};

const TIMEOUT: Duration = Duration::from_secs(120);
const NAMESPACES: [&str; 2] = ["linkerd", "linkerd-multicluster"];

fn is_available(d: Option<&Deployment>) -> bool {
    d.and_then(|d| d.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
        })
}

/// Waits until every Deployment in `namespace` is Available.
async fn all_available(client: &Client, namespace: &str) -> Result<usize> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    ensure!(!names.is_empty(), "no Deployments in {namespace}");
    for name in &names {
        wait_for(api.clone(), name, is_available, TIMEOUT)
            .await
            .with_context(|| format!("Deployment {namespace}/{name} did not become Available"))?;
    }
    Ok(names.len())
}

/// `linkerd ARGS | kubectl --context CTX VERB -f -`
fn linkerd_pipe(bed: &TestBed, ctx: &str, linkerd_args: &[&str], verb: &[&str]) -> Result<String> {
    let manifest = bed.run("linkerd", linkerd_args, None)?.stdout;
    let mut args = vec!["--context", ctx];
    args.extend_from_slice(verb);
    args.extend_from_slice(&["-f", "-"]);
    bed.run("kubectl", &args, Some(&manifest))?;
    Ok(String::from_utf8_lossy(&manifest).into_owned())
}

async fn install(bed: &TestBed, ctx: &str) -> Result<()> {
    let client = bed.client(ctx).await?;
    linkerd_pipe(
        bed,
        ctx,
        &["install", "--crds", "--context", ctx],
        &["apply"],
    )?;
    linkerd_pipe(bed, ctx, &["install", "--context", ctx], &["apply"])?;
    all_available(&client, "linkerd").await?;
    linkerd_pipe(
        bed,
        ctx,
        &["multicluster", "install", "--context", ctx],
        &["apply"],
    )?;
    all_available(&client, "linkerd-multicluster").await?;
    // what `multicluster link` reads on the target: the service account's token, filled by the controller-manager
    let secrets: Api<Secret> = Api::namespaced(client, "linkerd-multicluster");
    wait_for(
        secrets,
        "linkerd-service-mirror-remote-access-default-token",
        |s: Option<&Secret>| {
            s.and_then(|s| s.data.as_ref())
                .is_some_and(|d| d.contains_key("token"))
        },
        TIMEOUT,
    )
    .await
    .context("remote-access token Secret not filled")?;
    Ok(())
}

async fn link(bed: &TestBed, target: &str, source: &str) -> Result<()> {
    let manifest = linkerd_pipe(
        bed,
        source,
        &[
            "multicluster",
            "link",
            "--context",
            target,
            "--cluster-name",
            target,
        ],
        &["apply"],
    )?;
    ensure!(manifest.contains("kind: Link"), "link printed no Link");
    let client = bed.client(source).await?;
    let gvk = GroupVersionKind::gvk("multicluster.linkerd.io", "v1alpha1", "Link");
    let links: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "linkerd-multicluster",
        &ApiResource::from_gvk(&gvk),
    );
    let link = links.get(target).await.context("Link object")?;
    let gateway = link.data["spec"]["gatewayAddress"]
        .as_str()
        .context("Link has no gatewayAddress")?
        .to_string();
    let (first, last) = bed.lb_pool(target)?;
    let ip: std::net::Ipv4Addr = gateway
        .parse()
        .with_context(|| format!("gatewayAddress {gateway}"))?;
    ensure!(
        (u32::from(first)..=u32::from(last)).contains(&u32::from(ip)),
        "gatewayAddress {ip} is not from {target}'s pool {first}-{last}"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "linkerd-multicluster");
    secrets
        .get(&format!("cluster-credentials-{target}"))
        .await
        .context("credentials Secret")?;
    let deployments: Api<Deployment> = Api::namespaced(client, "linkerd-multicluster");
    wait_for(
        deployments,
        &format!("linkerd-service-mirror-{target}"),
        is_available,
        TIMEOUT,
    )
    .await
    .context("service mirror Deployment not Available")?;
    Ok(())
}

/// Removes everything Linkerd from `ctx`; returns the first error but tries every step. The order matters:
/// `linkerd uninstall` prints nothing while an extension's namespace still exists.
async fn uninstall(bed: &TestBed, ctx: &str, unlink: Option<&str>) -> Result<()> {
    let client = bed.client(ctx).await?;
    let namespace_gone = |ns: &'static str| {
        let api = Api::<Namespace>::all(client.clone());
        async move {
            wait_for(api, ns, |n: Option<&Namespace>| n.is_none(), TIMEOUT)
                .await
                .map(|_| String::new())
                .with_context(|| format!("{ctx}: namespace {ns} not removed"))
        }
    };
    let mut errors: Vec<anyhow::Error> = Vec::new();
    let mut note = |r: Result<String>| {
        if let Err(e) = r {
            errors.push(e);
        }
    };
    let del = ["delete", "--ignore-not-found"];
    if let Some(target) = unlink {
        note(linkerd_pipe(
            bed,
            ctx,
            &[
                "multicluster",
                "unlink",
                "--cluster-name",
                target,
                "--context",
                ctx,
            ],
            &del,
        ));
    }
    note(linkerd_pipe(
        bed,
        ctx,
        &["multicluster", "uninstall", "--context", ctx],
        &del,
    ));
    note(namespace_gone("linkerd-multicluster").await);
    note(linkerd_pipe(
        bed,
        ctx,
        &["uninstall", "--context", ctx],
        &del,
    ));
    note(namespace_gone("linkerd").await);
    // in case `linkerd uninstall` could not run: the CRDs by their own manifest
    note(linkerd_pipe(
        bed,
        ctx,
        &["install", "--crds", "--context", ctx],
        &del,
    ));
    let crds = Api::<CustomResourceDefinition>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let left: Vec<String> = crds
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.ends_with("linkerd.io"))
        .collect();
    if !left.is_empty() {
        note(Err(anyhow::anyhow!("{ctx}: Linkerd CRDs left: {left:?}")));
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[tokio::test]
async fn linkerd_cli_sets_up_and_removes_multicluster_on_the_bed() -> Result<()> {
    let bed = testbed_or_skip!(Ok(()));
    let contexts = bed.contexts();
    ensure!(contexts.len() >= 2, "need two clusters, got {contexts:?}");
    let (target, source) = (contexts[0].clone(), contexts[1].clone());
    for ctx in [&target, &source] {
        let client = bed.client(ctx).await?;
        for ns in NAMESPACES {
            if Api::<Namespace>::all(client.clone())
                .get_opt(ns)
                .await?
                .is_some()
            {
                bail!("{ctx} already has namespace {ns}: an earlier test left Linkerd installed");
            }
        }
    }
    let result = async {
        install(&bed, &target).await?;
        install(&bed, &source).await?;
        link(&bed, &target, &source).await
    }
    .await;
    let cleanup_source = uninstall(&bed, &source, Some(&target)).await;
    let cleanup_target = uninstall(&bed, &target, None).await;
    result.and(cleanup_source).and(cleanup_target)
}
