//! End-to-end tests that break one piece of a link at a time and watch Linkerd's REAL service mirror (run by
//! the bed's pod runner, tests/e2e/src/bin/pods.rs) fail on it, then `kubectl kpaas-mesh check` name it
//! (issue 15, item 5; the wrong gateway address is in controllers.rs):
//! - a verb taken out of the service mirror's ClusterRole: the controller's create of a new mirror is refused by
//!   the API server (RBAC is the real one: the runner gives the controller a token of its own ServiceAccount),
//!   and check names the ClusterRole, the verb and the resource; `up` puts the rule back;
//! - the credentials token revoked on the target (its token Secret deleted): the restarted service mirror cannot
//!   reach the target's API server (Unauthorized), and check names the link and the answer.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kpaas_mesh_e2e::{testbed_or_skip, wait_for};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const ALL: &str = "cert,control-plane,multicluster,netfix,smi,sample";
const MC: &str = "linkerd-multicluster";
const TIMEOUT: Duration = Duration::from_secs(90);
const RBAC_ROW: &str = "service mirror controller has required permissions";
const CREDS_ROW: &str = "remote cluster access credentials are valid";

/// The service mirror pod of `target`'s link other than `not`.
async fn service_mirror_pod(client: &kube::Client, target: &str, not: Option<&str>) -> String {
    let selector =
        format!("component=linkerd-service-mirror,mirror.linkerd.io/cluster-name={target}");
    wait_pod(client, MC, &selector, not).await
}

#[tokio::test]
async fn a_missing_rbac_verb_and_a_revoked_token_fail_the_real_service_mirror_and_check_names_them()
{
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    let _ = tool.run("down", &clusters, &["--only", ALL]);
    tool.ok("up", &clusters, &["--only", ALL]);
    let c1 = bed.client("cluster1").await.unwrap();
    let c2 = bed.client("cluster2").await.unwrap();
    let sample2: Api<Service> = Api::namespaced(c2.clone(), "sample");
    wait_for(
        sample2.clone(),
        "helloworld-cluster1",
        |s: Option<&Service>| s.is_some(),
        TIMEOUT,
    )
    .await
    .unwrap();
    let row = check_row(&tool, &clusters, ALL, RBAC_ROW);
    assert_eq!(row["status"], "ok", "{row}");

    // 1. `create` on services taken out of the ClusterRole of cluster2's link to cluster1.
    let role_name = "linkerd-service-mirror-access-local-resources-cluster1";
    let roles: Api<ClusterRole> = Api::all(c2.clone());
    let mut role = roles.get(role_name).await.unwrap();
    for rule in role.rules.iter_mut().flatten() {
        if rule.resources.iter().flatten().any(|r| r == "services") {
            rule.verbs.retain(|v| v != "create");
        }
    }
    role.metadata.managed_fields = None;
    roles
        .replace(role_name, &PostParams::default(), &role)
        .await
        .unwrap();
    // A service newly exported on cluster1: Linkerd's service mirror tries to mirror it and the API server
    // refuses, in the controller's log; no mirror appears.
    let hello1: Api<Service> = Api::namespaced(c1.clone(), "sample");
    let extra: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hello-rbac", "namespace": "sample",
                     "labels": {"mirror.linkerd.io/exported": "true"}},
        "spec": {"ports": [{"port": 5000, "name": "http"}], "selector": {"app": "helloworld"}}
    }))
    .unwrap();
    hello1.create(&PostParams::default(), &extra).await.unwrap();
    let sm = service_mirror_pod(&c2, "cluster1", None).await;
    wait_log(&bed, "cluster2", MC, &sm, "cannot create resource");
    assert!(
        sample2
            .get_opt("hello-rbac-cluster1")
            .await
            .unwrap()
            .is_none()
    );
    let row = check_row(&tool, &clusters, ALL, RBAC_ROW);
    assert_eq!(row["status"], "fail", "{row}");
    assert!(
        row["detail"].as_str().unwrap().contains(&format!(
            "cluster2 → cluster1: ClusterRole {role_name} lacks create on services"
        )),
        "{row}"
    );
    // `up` again puts the chart's rule back (server-side apply of the link's objects): check passes.
    tool.ok("up", &clusters, &["--only", ALL]);
    let row = check_row(&tool, &clusters, ALL, RBAC_ROW);
    assert_eq!(row["status"], "ok", "{row}");
    hello1
        .delete("hello-rbac", &DeleteParams::default())
        .await
        .unwrap();

    // 2. The credentials token revoked on cluster1: its token Secret deleted, so the API server no longer
    //    accepts the token cluster2's credentials carry.
    let row = check_row(&tool, &clusters, ALL, CREDS_ROW);
    assert_eq!(row["status"], "ok", "{row}");
    Api::<Secret>::namespaced(c1.clone(), MC)
        .delete(
            "linkerd-service-mirror-remote-access-default-token",
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    // check names the link as soon as the API server stops accepting the token (it caches an authentication for
    // about 10 s).
    let row = wait_check_row(&tool, &clusters, ALL, CREDS_ROW, |r| r["status"] == "fail");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("cluster2 → cluster1: ") && detail.contains("Unauthorized"),
        "{row}"
    );
    // The running controller's watches were authenticated when they started and stay open; restarted (as on a
    // node drain), Linkerd's service mirror can no longer reach cluster1.
    Api::<Pod>::namespaced(c2.clone(), MC)
        .delete(&sm, &DeleteParams::default())
        .await
        .unwrap();
    let new_sm = service_mirror_pod(&c2, "cluster1", Some(&sm)).await;
    // (client-go's words for HTTP 401)
    wait_log(
        &bed,
        "cluster2",
        MC,
        &new_sm,
        "unable to create cluster watcher: cannot connect to api for target cluster remote: \
         the server has asked for the client to provide credentials",
    );

    tool.ok("down", &clusters, &["--only", ALL]);
}
