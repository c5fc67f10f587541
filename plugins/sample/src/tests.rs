//! The sample stage driven with facts the way the host answers them.

use super::*;
use kpaas_mesh_kit::testkit::{self, World, converse};

fn request(op: Operation, n: usize, extra: Value) -> StageRequest {
    let mut r = testkit::request(op, n);
    r.options = extra;
    r
}

/// The plan against a world where nothing the stage asks about exists yet.
fn plan(r: &StageRequest) -> Plan {
    converse(&Sample, r.clone(), &World::new()).unwrap()
}

fn applied(p: &Plan) -> Vec<(String, String, String)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply {
                cluster, manifest, ..
            } => Some((
                cluster.clone(),
                manifest["kind"].as_str().unwrap().to_string(),
                manifest["metadata"]["name"].as_str().unwrap().to_string(),
            )),
            _ => None,
        })
        .collect()
}

fn manifest<'a>(p: &'a Plan, cluster: &str, kind: &str, name: &str) -> &'a Value {
    p.actions
        .iter()
        .find_map(|a| match a {
            Action::Apply {
                cluster: c,
                manifest,
                ..
            } if c == cluster
                && manifest["kind"] == kind
                && manifest["metadata"]["name"] == name =>
            {
                Some(manifest)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {kind} {name} on {cluster}"))
}

#[test]
fn up_lays_out_the_guide_sample() {
    let p = plan(&request(Operation::Up, 2, Value::Null));
    let objs = applied(&p);
    let on = |c: &str| {
        objs.iter()
            .filter(|o| o.0 == c)
            .map(|o| format!("{}/{}", o.1, o.2))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        on("cluster1"),
        [
            "Namespace/sample",
            "Service/helloworld",
            "Deployment/helloworld-v1"
        ]
    );
    assert_eq!(
        on("cluster2"),
        [
            "Namespace/sample",
            "Service/helloworld",
            "Deployment/helloworld-v2",
            "ServiceAccount/sleep",
            "Service/sleep",
            "Deployment/sleep",
            "TrafficSplit/helloworld"
        ]
    );
    let ns = manifest(&p, "cluster1", "Namespace", "sample");
    assert_eq!(
        ns["metadata"]["annotations"]["linkerd.io/inject"],
        "enabled"
    );
    // Exported where it is remote, not on the client.
    assert_eq!(
        manifest(&p, "cluster1", "Service", "helloworld")["metadata"]["labels"]["mirror.linkerd.io/exported"],
        "true"
    );
    assert!(manifest(&p, "cluster2", "Service", "helloworld")["metadata"]["labels"]["mirror.linkerd.io/exported"].is_null());
    let d = manifest(&p, "cluster1", "Deployment", "helloworld-v1");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/istio/examples-helloworld-v1:1.0"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        5000
    );
    let ts = manifest(&p, "cluster2", "TrafficSplit", "helloworld");
    assert_eq!(ts["apiVersion"], "split.smi-spec.io/v1alpha1");
    assert_eq!(
        ts["spec"],
        json!({"service": "helloworld", "backends": [
            {"service": "helloworld-cluster1", "weight": 50}, {"service": "helloworld", "weight": 50}]})
    );
    assert!(
        matches!(&p.actions.last().unwrap(), Action::Wait { condition: WaitCondition::DeploymentsAvailable { names, .. }, .. } if names == &["helloworld-v2", "sleep"])
    );
}

#[test]
fn weights_client_registry_and_three_clusters() {
    let p = plan(&request(
        Operation::Up,
        3,
        json!({"client": "cluster1", "weights": {"cluster1": 20, "cluster2": "30", "cluster3": 50}}),
    ));
    let ts = manifest(&p, "cluster1", "TrafficSplit", "helloworld");
    assert_eq!(
        ts["spec"]["backends"],
        json!([{"service": "helloworld", "weight": 20}, {"service": "helloworld-cluster2", "weight": 30}, {"service": "helloworld-cluster3", "weight": 50}])
    );
    let d3 = manifest(&p, "cluster3", "Deployment", "helloworld-v3");
    assert_eq!(
        d3["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "v3"
    );

    let mut r = request(Operation::Up, 2, Value::Null);
    r.settings["registry"] = json!("harbor.k-paas.example/mirror");
    let p = plan(&r);
    assert_eq!(
        manifest(&p, "cluster2", "Deployment", "sleep")["spec"]["template"]["spec"]["containers"]
            [0]["image"],
        "harbor.k-paas.example/mirror/curl:8.5.0"
    );
    assert_eq!(
        manifest(&p, "cluster1", "Deployment", "helloworld-v1")["spec"]["template"]["spec"]["containers"]
            [0]["image"],
        "harbor.k-paas.example/mirror/examples-helloworld-v1:1.0"
    );

    for (extra, err) in [
        (
            json!({"weights": {"cluster9": 1}}),
            "no cluster named cluster9",
        ),
        (
            json!({"weights": {"cluster1": 0, "cluster2": 0}}),
            "at least one weight",
        ),
        (json!({"weights": {"cluster1": "x"}}), "not a number"),
        (json!({"client": "nope"}), "--sample-client nope"),
    ] {
        let e = Sample.run(request(Operation::Up, 2, extra)).unwrap_err();
        assert!(e.message.contains(err), "{}", e.message);
    }
}

#[test]
fn linkerd_2_15_and_later_get_an_httproute() {
    let split_of = |v: &str| kpaas_mesh_kit::linkerd::release(v).unwrap().traffic_split;
    assert_eq!(split_of("stable-2.14.10"), TrafficSplit::TrafficSplit);
    assert_eq!(split_of("2.18"), TrafficSplit::HttpRoute);
    assert_eq!(split_of("edge-26.6.3"), TrafficSplit::HttpRoute);
    let s = Settings {
        client: "cluster2".into(),
        weights: vec![("cluster1".into(), 50), ("cluster2".into(), 50)],
        registry: None,
        traffic_split: TrafficSplit::HttpRoute,
    };
    let r = split(&s);
    assert_eq!(r["kind"], "HTTPRoute");
    assert_eq!(r["spec"]["parentRefs"][0]["name"], "helloworld");
    assert_eq!(
        r["spec"]["rules"][0]["backendRefs"][0],
        json!({"name": "helloworld-cluster1", "port": 5000, "weight": 50})
    );
}

#[test]
fn an_upgrade_from_smi_replaces_the_trafficsplit_with_the_httproute() {
    let mut r = request(Operation::Up, 2, Value::Null);
    r.settings = serde_json::to_value(MeshSettings {
        linkerd_version: "2.15".into(),
        ..MeshSettings::default()
    })
    .unwrap();
    // cluster2 (the client) still has 2.14's TrafficSplit
    let world = World::from_fn(|q| match q {
        FactQuery::Object { cluster, kind, .. } if kind == "TrafficSplit" => {
            Some(FactAnswer::Object {
                object: (cluster == "cluster2")
                    .then(|| json!({"metadata": {"name": "helloworld"}})),
            })
        }
        _ => None,
    });
    let p = converse(&Sample, r.clone(), &world).unwrap();
    let route_at = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::Apply { cluster, manifest, .. } if cluster == "cluster2" && manifest["kind"] == "HTTPRoute"))
        .expect("the HTTPRoute on the client");
    let deletes: Vec<(usize, String, String)> = p
        .actions
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Action::Delete { cluster, kind, .. } => Some((i, cluster.clone(), kind.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(
        (deletes[0].1.as_str(), deletes[0].2.as_str()),
        ("cluster2", "TrafficSplit")
    );
    assert!(route_at < deletes[0].0);
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("replaced by the HTTPRoute"))
    );
    // no TrafficSplit left: nothing deleted; 2.14 does not even ask
    let p = converse(&Sample, r, &World::new()).unwrap();
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Delete { .. })));
    let p = plan(&request(Operation::Up, 2, Value::Null));
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Delete { .. })));
}

#[test]
fn down_removes_the_namespace_everywhere() {
    let p = plan(&request(Operation::Down, 2, Value::Null));
    let deleted: Vec<String> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { cluster, name, .. } => Some(format!("{cluster}/{name}")),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["cluster1/sample", "cluster2/sample"]);
}

#[test]
fn check_reports_missing_objects_and_mirrors() {
    let r = request(Operation::Check, 2, Value::Null);
    let world = World::from_fn(|q| {
        let FactQuery::Object { name, .. } = q else {
            return None;
        };
        Some(FactAnswer::Object {
            object: (name != "helloworld-cluster1")
                .then(|| json!({"status": {"availableReplicas": 1}})),
        })
    });
    let p = converse(&Sample, r, &world).unwrap();
    assert_eq!(p.checks[0].status, CheckStatus::Ok);
    assert_eq!(p.checks[1].status, CheckStatus::Warn);
    assert!(
        p.checks[1]
            .detail
            .starts_with("helloworld-cluster1 missing on cluster2"),
        "{}",
        p.checks[1].detail
    );
}

fn verify_with(stdout: &str) -> Plan {
    let mut r = request(Operation::Check, 2, json!({}));
    r.settings["verify"] = json!({"requests": 4});
    let StageResponse::NeedFacts { queries } = Sample.run(r.clone()).unwrap() else {
        panic!()
    };
    let FactQuery::Exec {
        cluster,
        label_selector,
        container,
        command,
        ..
    } = &queries[0]
    else {
        panic!()
    };
    assert_eq!(
        (
            cluster.as_str(),
            label_selector.as_str(),
            container.as_str()
        ),
        ("cluster2", "app=sleep", "sleep")
    );
    assert!(command[2].contains("http://helloworld.sample.svc:5000/hello"));
    let mut world = World::new();
    world.add_exec(
        queries[0].clone(),
        FactAnswer::Exec {
            pod: "sleep-1".into(),
            stdout: stdout.into(),
            stderr: String::new(),
            exit_code: Some(0),
        },
    );
    converse(&Sample, r, &world).unwrap()
}

#[test]
fn verify_judges_the_answers_from_sleep() {
    let hello = |v: &str| {
        format!(
            "Hello version: {v}, instance: helloworld-{v}-x\n200\n{} 0\n",
            verify::MARK
        )
    };
    let p = verify_with(&[hello("v1"), hello("v2"), hello("v1"), hello("v2")].concat());
    assert_eq!(p.checks[0].status, CheckStatus::Ok, "{:?}", p.checks[0]);
    assert_eq!(
        p.tables[0].rows[0][..4],
        ["v1", "cluster1", "helloworld-v1-x", "2"].map(String::from)
    );
    let p = verify_with(&[hello("v2"), hello("v2"), hello("v2"), hello("v2")].concat());
    assert_eq!(p.checks[0].status, CheckStatus::Fail);
    assert!(
        p.checks[0].detail.contains(
            "no answer from cluster1 (v1): is the mirror service helloworld-cluster1 present?"
        ),
        "{}",
        p.checks[0].detail
    );
}

#[test]
fn every_schema_option_is_read_and_others_are_refused() {
    use kpaas_mesh_plugin_api::OptionKind;
    for o in descriptor().options {
        let v = match o.kind {
            OptionKind::String => json!("cluster1"),
            OptionKind::Map => json!({"cluster1": "50"}),
            other => panic!("no test value for {other:?}"),
        };
        SampleOptions::parse(&json!({ o.name.clone(): v })).unwrap();
    }
    assert_eq!(
        SampleOptions::parse(&json!({"clinet": "cluster1"})).unwrap_err(),
        "sample: option 'clinet' is unknown (options: client, weights)"
    );
    let e = SampleOptions::parse(&json!({"weights": ["a"]})).unwrap_err();
    assert!(e.starts_with("sample: option weights: "), "{e}");
}
