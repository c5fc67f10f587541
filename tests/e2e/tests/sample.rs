//! End-to-end tests of the sample stage and `kubectl kpaas-mesh verify` on the test bed.
//!
//! The objects are real (applied to real API servers, Deployments made Available by the
//! controller-manager over kwok nodes). The traffic is SIMULATED: there is no data plane on
//! the bed, so kwok runs `verify`'s exec into the sleep pod locally against the responder in
//! tests/testbed/responder, which answers like helloworld v1/v2 in the ratio this test writes.

mod common;

use common::*;
use kpaas_mesh_e2e::testbed_or_skip;
use serde_json::Value;

fn responder(bed: &kpaas_mesh_e2e::TestBed, conf: &str) {
    let path = bed
        .env()
        .get("KPAAS_MESH_RESPONDER_CONF")
        .expect("the bed names its responder config");
    std::fs::write(path, conf).unwrap();
}

fn verify(tool: &Tool, clusters: &[&str]) -> (i32, Value, String) {
    let out = tool.run("verify", clusters, &["--requests", "200", "-o", "json"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {text}{err}"));
    (out.status.code().unwrap_or(-1), doc, err)
}

#[tokio::test]
async fn sample_objects_and_verify_verdicts() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    let all = "cert,control-plane,multicluster,netfix,smi,sample";
    let _ = tool.run("down", &clusters, &["--only", all]);
    tool.ok("up", &clusters, &["--only", all]);

    // The guide's layout: v1 on cluster1 (exported), v2 + sleep + the split on cluster2.
    let dep = |c: &'static str, n: &'static str| {
        let bed = bed.clone();
        async move {
            get(&bed, c, "apps/v1", "Deployment", Some("sample"), n)
                .await
                .unwrap()
        }
    };
    assert!(dep("cluster1", "helloworld-v1").await.is_some());
    assert!(dep("cluster1", "helloworld-v2").await.is_none());
    assert!(dep("cluster2", "helloworld-v2").await.is_some());
    assert!(dep("cluster2", "sleep").await.is_some());
    assert!(dep("cluster1", "sleep").await.is_none());
    let ns = get(&bed, "cluster1", "v1", "Namespace", None, "sample")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ns["metadata"]["annotations"]["linkerd.io/inject"],
        "enabled"
    );
    let svc1 = get(
        &bed,
        "cluster1",
        "v1",
        "Service",
        Some("sample"),
        "helloworld",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        svc1["metadata"]["labels"]["mirror.linkerd.io/exported"],
        "true"
    );
    assert_eq!(svc1["spec"]["ports"][0]["port"], 5000);
    let ts = get(
        &bed,
        "cluster2",
        "split.smi-spec.io/v1alpha1",
        "TrafficSplit",
        Some("sample"),
        "helloworld",
    )
    .await
    .unwrap()
    .unwrap();
    let backends: Vec<&str> = ts["spec"]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["service"].as_str().unwrap())
        .collect();
    assert_eq!(backends, ["helloworld-cluster1", "helloworld"]);
    assert_eq!(ts["spec"]["service"], "helloworld");
    let available = |d: Option<Value>| {
        d.unwrap()["status"]["availableReplicas"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(available(dep("cluster2", "sleep").await), 1);

    // 50/50: passes.
    responder(
        &bed,
        "v1 50 helloworld-v1-6f8d9-x1\nv2 50 helloworld-v2-5c7b4-y2\n",
    );
    let (code, doc, err) = verify(&tool, &clusters);
    assert_eq!(code, 0, "{doc}{err}");
    let check = &doc["checks"][0];
    assert_eq!(check["status"], "ok", "{check}");
    let rows = doc["tables"][0]["rows"].as_array().unwrap();
    assert_eq!(rows[0]["version"], "v1");
    assert_eq!(rows[0]["cluster"], "cluster1");
    assert_eq!(rows[0]["instance"], "helloworld-v1-6f8d9-x1");

    // 100/0: fails and names the silent backend.
    responder(
        &bed,
        "v1 100 helloworld-v1-6f8d9-x1\nv2 0 helloworld-v2-5c7b4-y2\n",
    );
    let (code, doc, _) = verify(&tool, &clusters);
    assert_eq!(code, 1);
    let detail = doc["checks"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("no answer from cluster2 (v2)"), "{detail}");
    assert!(
        detail.contains("cluster1 (v1) got 100.0% of the answers, expected 50.0%"),
        "{detail}"
    );

    // A responder that errors: every request counted as failed, and the run fails.
    responder(&bed, "status 503\n");
    let (code, doc, _) = verify(&tool, &clusters);
    assert_eq!(code, 1);
    let detail = doc["checks"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("200 of 200 requests failed (200 non-2xx"),
        "{detail}"
    );

    responder(&bed, "timeout\n");
    let (code, doc, _) = verify(&tool, &clusters);
    assert_eq!(code, 1);
    assert!(
        doc["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("200 timeouts"),
        "{doc}"
    );

    responder(&bed, "v1 50 helloworld-v1\nv2 50 helloworld-v2\n");
    tool.ok("down", &clusters, &["--only", all]);
    assert!(
        get(&bed, "cluster2", "v1", "Namespace", None, "sample")
            .await
            .unwrap()
            .is_none()
    );
}
