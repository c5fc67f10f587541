//! End-to-end test of `link --rotate-credentials` on two linked clusters with Linkerd's REAL service mirrors
//! (run by the bed's pod runner) and the real token controller and authenticator of each API server:
//! - after the rotation each cluster has one token Secret of the remote-access ServiceAccount, kpaas-mesh's, whose
//!   token every peer's credentials carry; the API server rejects the old token (TokenReview) and accepts the new;
//! - the mirrors stayed in place (same uid), and the restarted real service mirror mirrors a newly exported
//!   service with the new credentials (the old token no longer works, so it cannot be using it);
//! - `check` passes, `up` afterwards changes nothing;
//! - a rotation that stopped after its first round (a newer token Secret already made) is resumed, not restarted;
//! - the chart's token Secret made again (as a later helm upgrade does) is removed by the next `up`.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kpaas_mesh_e2e::{testbed_or_skip, wait_for};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const ALL: &str = "cert,control-plane,multicluster,netfix,smi,sample";
const MC: &str = "linkerd-multicluster";
const SA: &str = "linkerd-service-mirror-remote-access-default";
const GENERATION: &str = "kpaas-mesh.io/link-token-generation";
const TIMEOUT: Duration = Duration::from_secs(90);
const CREDS_ROW: &str = "remote cluster access credentials are valid";

/// The remote-access ServiceAccount's token Secrets on a cluster: (name, generation label, token).
async fn token_secrets(client: &kube::Client) -> Vec<(String, Option<String>, String)> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), MC);
    let list = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/service-account-token"))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .is_some_and(|n| n == SA)
        })
        .map(|s| {
            let token = s
                .data
                .as_ref()
                .and_then(|d| d.get("token"))
                .map(|t| String::from_utf8(t.0.clone()).unwrap())
                .unwrap_or_default();
            let generation = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(GENERATION))
                .cloned();
            (s.metadata.name.unwrap(), generation, token)
        })
        .collect()
}

/// The token the credentials Secret for `target` on `client`'s cluster carries.
async fn credentials_token(client: &kube::Client, target: &str) -> String {
    let secret: Api<Secret> = Api::namespaced(client.clone(), MC);
    let s = secret
        .get(&format!("cluster-credentials-{target}"))
        .await
        .unwrap();
    let kc = decode_kubeconfig(&serde_json::to_value(&s).unwrap());
    kc["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Whether `client`'s API server authenticates `token` (its own TokenReview verdict).
async fn authenticated(client: &kube::Client, token: &str) -> bool {
    let review: TokenReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token}
    }))
    .unwrap();
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.and_then(|s| s.authenticated).unwrap_or(false)
}

/// The API server caches token authentications for about 10 s: wait for its verdict to be `want`.
async fn wait_authenticated(client: &kube::Client, token: &str, want: bool) {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while authenticated(client, token).await != want {
        assert!(
            std::time::Instant::now() < until,
            "the API server still says authenticated = {} after 60 s",
            !want
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn export(client: &kube::Client, name: &str) {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "sample",
                     "labels": {"mirror.linkerd.io/exported": "true"}},
        "spec": {"ports": [{"port": 5000, "name": "http"}], "selector": {"app": "helloworld"}}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "sample")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
}

/// `check`'s credentials row (with the run's `--linkerd-version`).
fn creds_row(tool: &Tool, clusters: &[&str], version: &[&str]) -> serde_json::Value {
    let out = tool.run(
        "check",
        clusters,
        &[&["--only", ALL, "-o", "json"][..], version].concat(),
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == CREDS_ROW)
        .unwrap_or_else(|| panic!("no check row {CREDS_ROW:?}: {doc}"))
        .clone()
}

fn changes(out: &str) -> &str {
    out.lines()
        .rev()
        .find(|l| l.contains("change(s)"))
        .unwrap_or_default()
}

#[tokio::test]
async fn link_credentials_rotate_with_the_mirrors_in_place_and_the_old_token_revoked() {
    rotation(&[]).await;
}

/// The same with 2.20's links (credentials from `link-gen`, service mirrors declared in the release's
/// `controllers`) and 2.20's own service mirror.
#[tokio::test]
async fn linkerd_2_20_link_credentials_rotate_the_same_way() {
    rotation(&["--linkerd-version", "2.20"]).await;
}

async fn rotation(version: &[&str]) {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    let all = [&["--only", ALL][..], version].concat();
    let all = all.as_slice();
    let rotate = [&["--rotate-credentials"][..], version].concat();
    let rotate = rotate.as_slice();
    let _ = tool.run("down", &clusters, all);
    tool.ok("up", &clusters, all);
    let c1 = bed.client("cluster1").await.unwrap();
    let c2 = bed.client("cluster2").await.unwrap();
    let sample2: Api<Service> = Api::namespaced(c2.clone(), "sample");
    let mirror = wait_for(
        sample2.clone(),
        "helloworld-cluster1",
        |s: Option<&Service>| s.is_some(),
        TIMEOUT,
    )
    .await
    .unwrap();
    // (a service mirror that just started may make the mirror twice: 2.20's deletes its Service again when the
    // Endpoints it creates next exist already, and retries; take the uid once it held for 5 s)
    let mut mirror_uid = mirror.unwrap().metadata.uid.unwrap();
    let mut held = 0;
    while held < 5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sample2.get_opt("helloworld-cluster1").await.unwrap();
        match now.and_then(|s| s.metadata.uid) {
            Some(uid) if uid == mirror_uid => held += 1,
            Some(uid) => {
                mirror_uid = uid;
                held = 0;
            }
            None => held = 0,
        }
    }
    let before = token_secrets(&c1).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let old1 = before[0].2.clone();
    assert_eq!(credentials_token(&c2, "cluster1").await, old1);
    let old2 = token_secrets(&c2).await[0].2.clone();

    // The dry run shows the first round and changes nothing.
    let dry = tool.ok_words(&["link"], &clusters, &[rotate, &["--dry-run"]].concat());
    assert!(dry.contains(&format!("{SA}-token-")), "{dry}");
    assert_eq!(token_secrets(&c1).await.len(), 1);

    let out = tool.ok_words(&["link"], &clusters, rotate);
    assert!(
        out.contains("link --rotate-credentials done on cluster1, cluster2"),
        "{out}"
    );
    for (client, peer, name, old) in [(&c1, &c2, "cluster1", &old1), (&c2, &c1, "cluster2", &old2)]
    {
        let now = token_secrets(client).await;
        assert_eq!(now.len(), 1, "{name}: {now:?}");
        let (secret, generation, new) = &now[0];
        assert!(
            secret.starts_with(&format!("{SA}-token-")) && generation.is_some(),
            "{name}: {now:?}"
        );
        assert_ne!(new, old, "{name}: the token did not change");
        assert_eq!(&credentials_token(peer, name).await, new, "{name}");
        wait_authenticated(client, old, false).await;
        assert!(
            authenticated(client, new).await,
            "{name}: new token rejected"
        );
    }
    // The mirror stayed. Its service mirror, started afresh now that the old token is dead (a running one keeps
    // the watches it opened), connects with the new credentials: it mirrors a service exported after that.
    let still = sample2.get("helloworld-cluster1").await.unwrap();
    assert_eq!(still.metadata.uid.as_deref(), Some(mirror_uid.as_str()));
    let selector = "mirror.linkerd.io/cluster-name=cluster1";
    let sm = wait_pod(&c2, MC, selector, None).await;
    Api::<Pod>::namespaced(c2.clone(), MC)
        .delete(&sm, &DeleteParams::default())
        .await
        .unwrap();
    wait_pod(&c2, MC, selector, Some(&sm)).await;
    export(&c1, "hello-rotated").await;
    wait_for(
        sample2.clone(),
        "hello-rotated-cluster1",
        |s: Option<&Service>| s.is_some(),
        TIMEOUT,
    )
    .await
    .unwrap();
    let row = creds_row(&tool, &clusters, version);
    assert_eq!(row["status"], "ok", "{row}");
    let again = tool.ok("up", &clusters, all);
    assert!(changes(&again).contains(": 0 change(s)"), "{again}");

    // A rotation stopped after its first round on cluster1: a newer token Secret is there already. The next run
    // finishes that one on cluster1 (no third Secret) and rotates cluster2.
    let current1 = token_secrets(&c1).await[0].clone();
    let newer: u64 = current1.1.as_ref().unwrap().parse::<u64>().unwrap() + 1000;
    let pending: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{SA}-token-{newer}"), "namespace": MC,
                     "labels": {GENERATION: newer.to_string()},
                     "annotations": {"kubernetes.io/service-account.name": SA}},
        "type": "kubernetes.io/service-account-token"
    }))
    .unwrap();
    Api::<Secret>::namespaced(c1.clone(), MC)
        .create(&PostParams::default(), &pending)
        .await
        .unwrap();
    let current2 = token_secrets(&c2).await[0].clone();
    let out = tool.ok_words(&["link"], &clusters, rotate);
    assert!(out.contains("done"), "{out}");
    let now1 = token_secrets(&c1).await;
    assert_eq!(now1.len(), 1, "{now1:?}");
    assert_eq!(now1[0].0, format!("{SA}-token-{newer}"));
    assert_eq!(credentials_token(&c2, "cluster1").await, now1[0].2);
    let now2 = token_secrets(&c2).await;
    assert_eq!(now2.len(), 1, "{now2:?}");
    assert_ne!(now2[0].0, current2.0);
    assert_eq!(credentials_token(&c1, "cluster2").await, now2[0].2);
    wait_authenticated(&c1, &current1.2, false).await;
    wait_authenticated(&c2, &current2.2, false).await;

    // The chart's token Secret made again, as a helm upgrade of linkerd-multicluster does: the next `up` removes
    // it, so no token but the rotated one authenticates as the ServiceAccount.
    let chart: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{SA}-token"), "namespace": MC,
                     "annotations": {"kubernetes.io/service-account.name": SA}},
        "type": "kubernetes.io/service-account-token"
    }))
    .unwrap();
    Api::<Secret>::namespaced(c1.clone(), MC)
        .create(&PostParams::default(), &chart)
        .await
        .unwrap();
    let remade = loop {
        let t = token_secrets(&c1).await;
        if let Some((_, _, tok)) = t
            .iter()
            .find(|(n, _, tok)| n == &format!("{SA}-token") && !tok.is_empty())
        {
            break tok.clone();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "the re-made chart Secret's token is {} the first one",
        if remade == old1 {
            "the same as"
        } else {
            "different from"
        }
    );
    let out = tool.ok("up", &clusters, all);
    assert!(changes(&out).contains(": 1 change(s)"), "{out}");
    assert_eq!(token_secrets(&c1).await.len(), 1);
    wait_authenticated(&c1, &remade, false).await;
    let row = creds_row(&tool, &clusters, version);
    assert_eq!(row["status"], "ok", "{row}");

    Api::<Service>::namespaced(c1.clone(), "sample")
        .delete("hello-rotated", &DeleteParams::default())
        .await
        .unwrap();
    tool.ok("down", &clusters, all);
}
