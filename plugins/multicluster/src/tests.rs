//! The multicluster stage driven with facts shaped like a real 2.14 install, the way the host
//! answers them.

use super::*;
use kpaas_mesh_kit::GatewayRoute;
use kpaas_mesh_kit::testkit::{World, converse, request};
use kpaas_mesh_plugin_api::CheckStatus;
use serde_json::json;

fn run(r: &StageRequest) -> Result<StageResponse, String> {
    Multicluster.run(r.clone()).map_err(|e| e.message)
}

/// Answers like a cluster with Linkerd and the multicluster extension installed.
fn installed(q: &FactQuery) -> FactAnswer {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    match q {
        FactQuery::Object {
            cluster,
            kind,
            name,
            ..
        } => FactAnswer::Object {
            object: match (kind.as_str(), name.as_str()) {
                ("ConfigMap", "linkerd-config") => Some(
                    json!({"data": {"values": "clusterDomain: cluster.local\nidentityTrustDomain: cluster.local\n"}}),
                ),
                ("ServiceAccount", _) => Some(json!({"metadata": {"name": REMOTE_SA}})),
                ("Service", "linkerd-gateway") => {
                    let i = cluster.trim_start_matches("cluster");
                    Some(json!({
                        "metadata": {"annotations": {
                            "mirror.linkerd.io/gateway-identity": "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
                            "mirror.linkerd.io/probe-path": "/ready",
                            "mirror.linkerd.io/probe-period": "3"}},
                        "spec": {"type": "LoadBalancer", "ports": [{"name": "mc-gateway", "port": 4143}, {"name": "mc-probe", "port": 4191}]},
                        "status": {"loadBalancer": {"ingress": [{"ip": format!("192.168.1{i}.1")}]}}
                    }))
                }
                _ => None,
            },
        },
        FactQuery::Objects { kind, .. } if kind == "Secret" => FactAnswer::Objects {
            items: vec![
                json!({"type": "Opaque", "data": {"token": b64("nope")}}),
                json!({"type": "kubernetes.io/service-account-token",
                       "metadata": {"annotations": {"kubernetes.io/service-account.name": REMOTE_SA}},
                       "data": {"token": b64("the-token")}}),
            ],
        },
        FactQuery::Objects { .. } => FactAnswer::Objects { items: vec![] },
        FactQuery::KubeconfigCluster { cluster } => FactAnswer::KubeconfigCluster {
            name: format!("kwok-{cluster}"),
            cluster: json!({"server": "https://127.0.0.1:6443"}),
        },
        other => FactAnswer::Error {
            message: format!("not in this test: {other:?}"),
        },
    }
}

/// Runs to a plan, answering with `answer` as the host would.
fn plan_with(
    r: StageRequest,
    answer: impl Fn(&FactQuery) -> FactAnswer + Send + Sync + 'static,
) -> Result<Plan, String> {
    converse(&Multicluster, r, &World::from_fn(move |q| Some(answer(q))))
}

#[test]
fn up_installs_and_waits_for_gateway_address_and_token() {
    let p = plan_with(request(Operation::Up, 2), installed).unwrap();
    assert_eq!(p.actions.len(), 8);
    let Action::HelmRelease(h) = &p.actions[0] else {
        panic!()
    };
    assert_eq!(
        (h.release.as_str(), h.namespace.as_str(), h.create_namespace),
        ("linkerd-multicluster", "linkerd-multicluster", true)
    );
    assert_eq!(h.chart.version, "30.11.11");
    let Action::Wait {
        condition: WaitCondition::ServiceAddress { hint, .. },
        ..
    } = &p.actions[2]
    else {
        panic!()
    };
    assert!(hint.contains("is MetalLB running?"));
    assert!(
        matches!(&p.actions[3], Action::Wait { condition: WaitCondition::SecretHasKey { name, .. }, .. } if name == "linkerd-service-mirror-remote-access-default-token")
    );
}

#[test]
fn link_makes_a_full_mesh() {
    for n in [2usize, 3] {
        let p = plan_with(request(Operation::Link, n), installed).unwrap();
        assert_eq!(p.actions.len(), n * (n - 1) * 10, "{n} clusters");
        let links: Vec<(String, String, String)> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Apply {
                    cluster, manifest, ..
                } if manifest["kind"] == "Link" => Some((
                    cluster.clone(),
                    manifest["metadata"]["name"].as_str().unwrap().to_string(),
                    manifest["spec"]["gatewayAddress"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(links.len(), n * (n - 1));
        assert!(links.contains(&("cluster1".into(), "cluster2".into(), "192.168.12.1".into())));
        assert!(links.contains(&("cluster2".into(), "cluster1".into(), "192.168.11.1".into())));
    }
}

#[test]
fn link_uses_the_netfix_route_and_marks_secrets() {
    let mut r = request(Operation::Link, 2);
    let routes = NetfixOutputs {
        routes: vec![GatewayRoute {
            source: "cluster1".into(),
            target: "cluster2".into(),
            address: "203.0.113.7".into(),
            port: Some(14143),
        }],
    };
    r.inputs
        .insert("netfix".into(), serde_json::to_value(routes).unwrap());
    let p = plan_with(r, installed).unwrap();
    let link = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Apply {
                cluster, manifest, ..
            } if cluster == "cluster1" && manifest["kind"] == "Link" => Some(manifest.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(link["spec"]["gatewayAddress"], "203.0.113.7");
    assert_eq!(link["spec"]["gatewayPort"], "14143");
    assert!(p.actions.iter().all(|a| match a {
        Action::Apply {
            manifest, secret, ..
        } => *secret == (manifest["kind"] == "Secret"),
        _ => false,
    }));
    // The token is the SA's, decoded, inside the credentials.
    let Action::Apply { manifest, .. } = &p.actions[0] else {
        panic!()
    };
    use base64::Engine;
    let kc = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(manifest["data"]["kubeconfig"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(kc.contains("token: the-token"), "{kc}");
    assert!(kc.contains("current-context: ctx2"), "{kc}");
}

#[test]
fn link_before_install_fails_clearly_or_notes_in_dry_run() {
    let nothing = |q: &FactQuery| match q {
        FactQuery::Objects { .. } => FactAnswer::Objects { items: vec![] },
        FactQuery::KubeconfigCluster { .. } => FactAnswer::KubeconfigCluster {
            name: "c".into(),
            cluster: json!({}),
        },
        _ => FactAnswer::Object { object: None },
    };
    let err = plan_with(request(Operation::Link, 2), nothing).unwrap_err();
    assert_eq!(
        err,
        "cannot link cluster1 to cluster2: cluster cluster2: linkerd is not installed (no linkerd/linkerd-config)"
    );
    let mut r = request(Operation::Link, 2);
    r.dry_run = true;
    let p = plan_with(r, nothing).unwrap();
    assert!(p.actions.is_empty());
    assert_eq!(p.notes.len(), 2);
    assert!(
        p.notes[0].starts_with("link cluster1 → cluster2 is planned once"),
        "{}",
        p.notes[0]
    );
}

#[test]
fn a_gateway_without_address_is_an_error_naming_metallb() {
    let no_lb = |q: &FactQuery| {
        let mut a = installed(q);
        if let FactAnswer::Object { object: Some(o) } = &mut a
            && o["status"].is_object()
        {
            o["status"] = json!({"loadBalancer": {}});
        }
        a
    };
    let err = plan_with(request(Operation::Link, 2), no_lb).unwrap_err();
    assert!(
        err.contains("has no ingress addresses — is MetalLB running?"),
        "{err}"
    );
}

#[test]
fn unlink_from_one_cluster_touches_only_those_links() {
    let mut r = request(Operation::Unlink, 3);
    let mut opts = MeshSettings {
        unlink_from: Some("cluster2".into()),
        ..MeshSettings::default()
    };
    r.settings = serde_json::to_value(&opts).unwrap();
    let mirror = |q: &FactQuery| match q {
        FactQuery::Objects { cluster, .. } if cluster == "cluster1" => FactAnswer::Objects {
            items: vec![
                json!({"metadata": {"name": "helloworld-cluster2", "namespace": "sample"}}),
            ],
        },
        _ => FactAnswer::Objects { items: vec![] },
    };
    let p = plan_with(r, mirror).unwrap();
    let deletes: Vec<(String, String, String)> = p
        .actions
        .iter()
        .map(|a| match a {
            Action::Delete {
                cluster,
                kind,
                name,
                ..
            } => (cluster.clone(), kind.clone(), name.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(deletes.len(), 10 + 1 + 10);
    assert!(deletes.iter().all(|(c, _, _)| c != "cluster2"));
    assert!(deletes.contains(&(
        "cluster1".into(),
        "Service".into(),
        "helloworld-cluster2".into()
    )));
    assert!(deletes.contains(&("cluster3".into(), "Link".into(), "cluster2".into())));
    assert!(
        !deletes
            .iter()
            .any(|(_, k, n)| k == "Link" && n != "cluster2")
    );

    // `--from` may name a cluster that is not given: only the sources are touched.
    opts.unlink_from = Some("cluster9".into());
    let mut r = request(Operation::Unlink, 1);
    r.settings = serde_json::to_value(&opts).unwrap();
    let p = plan_with(r, mirror).unwrap();
    assert!(
        p.actions
            .iter()
            .all(|a| matches!(a, Action::Delete { cluster, .. } if cluster == "cluster1"))
    );
    assert!(p.actions.iter().any(
        |a| matches!(a, Action::Delete { kind, name, .. } if kind == "Link" && name == "cluster9")
    ));
    opts.unlink_from = Some("cluster1".into());
    let mut r = request(Operation::Unlink, 1);
    r.settings = serde_json::to_value(&opts).unwrap();
    assert!(run(&r).unwrap_err().contains("no link to remove"));
}

fn meshed(q: &FactQuery) -> FactAnswer {
    match q {
        FactQuery::Objects { cluster, kind, .. } if kind == "Link" => {
            let other = if cluster == "cluster1" {
                "cluster2"
            } else {
                "cluster1"
            };
            FactAnswer::Objects {
                items: vec![json!({"metadata": {"name": other}, "spec": {
                "targetClusterName": other, "targetClusterDomain": "cluster.local",
                "clusterCredentialsSecret": format!("cluster-credentials-{other}"),
                "gatewayAddress": "192.168.11.1", "gatewayPort": "4143", "gatewayIdentity": "gw"}})],
            }
        }
        FactQuery::Objects { .. } => FactAnswer::Objects { items: vec![] },
        FactQuery::RemoteAccess { .. } => FactAnswer::RemoteAccess {
            server_version: Some("v1.33.13".into()),
            error: None,
        },
        FactQuery::HelmRelease { .. } => FactAnswer::HelmRelease { release: None },
        FactQuery::Object { kind, name, .. } => FactAnswer::Object {
            object: match kind.as_str() {
                "CustomResourceDefinition" => Some(json!({})),
                "ConfigMap" => Some(json!({"data": {"ca-bundle.crt": "ANCHOR\n"}})),
                "Deployment" => Some(json!({"status": {"availableReplicas": 1}})),
                "ClusterRole" => Some(
                    link::link_objects(
                        &link::tests::target("x"),
                        &MirrorSettings::new(
                            kpaas_mesh_kit::linkerd::release("2.14").unwrap(),
                            None,
                        ),
                    )[3]
                    .clone(),
                ),
                "Role" => Some(
                    link::link_objects(
                        &link::tests::target("x"),
                        &MirrorSettings::new(
                            kpaas_mesh_kit::linkerd::release("2.14").unwrap(),
                            None,
                        ),
                    )[5]
                    .clone(),
                ),
                _ => {
                    let _ = name;
                    None
                }
            },
        },
        other => FactAnswer::Error {
            message: format!("{other:?}"),
        },
    }
}

#[test]
fn check_passes_what_needs_no_data_plane_and_says_so_for_the_rest() {
    let p = plan_with(request(Operation::Check, 2), meshed).unwrap();
    let by_name = |n: &str| {
        p.checks
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("no check {n}"))
    };
    for ok in [
        "Link CRD exists",
        "Link resources are valid",
        "every cluster is linked to every other cluster",
        "remote cluster access credentials are valid",
        "clusters share trust anchors",
        "service mirror controller has required permissions",
        "service mirror controllers are running",
        "all mirror services have endpoints",
        "all mirror services are part of a Link",
    ] {
        assert_eq!(
            by_name(ok).status,
            CheckStatus::Ok,
            "{ok}: {:?}",
            by_name(ok)
        );
    }
    let probe = by_name("probe services able to communicate with all gateway mirrors");
    assert_eq!(probe.status, CheckStatus::Warn);
    assert!(probe.detail.contains("no data plane"), "{}", probe.detail);
    assert_eq!(
        by_name("multicluster extension proxies are healthy").status,
        CheckStatus::Skipped
    );
    assert_eq!(
        by_name("every cluster is linked to every other cluster").items,
        ["cluster1 → cluster2", "cluster2 → cluster1"]
    );
}

#[test]
fn check_fails_on_missing_links_bad_credentials_and_different_anchors() {
    let broken = |q: &FactQuery| match q {
        FactQuery::Objects { cluster, kind, .. } if kind == "Link" && cluster == "cluster2" => {
            FactAnswer::Objects { items: vec![] }
        }
        FactQuery::RemoteAccess { .. } => FactAnswer::RemoteAccess {
            server_version: None,
            error: Some("connection refused".into()),
        },
        FactQuery::Object { cluster, kind, .. } if kind == "ConfigMap" && cluster == "cluster2" => {
            FactAnswer::Object {
                object: Some(json!({"data": {"ca-bundle.crt": "OTHER"}})),
            }
        }
        other => meshed(other),
    };
    let p = plan_with(request(Operation::Check, 2), broken).unwrap();
    let status = |n: &str| p.checks.iter().find(|c| c.name == n).unwrap().clone();
    let mesh = status("every cluster is linked to every other cluster");
    assert_eq!(mesh.status, CheckStatus::Fail);
    assert_eq!(mesh.detail, "no Link cluster1 on cluster2");
    assert!(
        status("remote cluster access credentials are valid")
            .detail
            .contains("connection refused")
    );
    assert_eq!(
        status("clusters share trust anchors").status,
        CheckStatus::Fail
    );
}

#[test]
fn status_lists_every_link() {
    let p = plan_with(request(Operation::Status, 2), meshed).unwrap();
    let links = &p.tables[1];
    assert_eq!(links.rows.len(), 2);
    assert_eq!(
        links.rows[0][..5],
        ["cluster1", "cluster2", "192.168.11.1", "4143", "available"].map(String::from)
    );
}

/// A meshed pair where the real service mirror ran: its lease, probe endpoints, and a mirror of
/// `helloworld` from the other cluster whose Endpoints are ready or not (`alive`).
fn mirrored(alive: bool) -> impl Fn(&FactQuery) -> FactAnswer {
    move |q: &FactQuery| match q {
        FactQuery::Objects { cluster, kind, .. } if kind == "Service" => {
            let other = if cluster == "cluster1" {
                "cluster2"
            } else {
                "cluster1"
            };
            FactAnswer::Objects {
                items: vec![json!({"metadata": {
                    "name": format!("helloworld-{other}"), "namespace": "sample",
                    "labels": {"mirror.linkerd.io/mirrored-service": "true",
                               "mirror.linkerd.io/cluster-name": other}}})],
            }
        }
        FactQuery::Object { kind, name, .. } if kind == "Lease" => FactAnswer::Object {
            object: Some(json!({"metadata": {"name": name}})),
        },
        FactQuery::Object { kind, name, .. } if kind == "Endpoints" => {
            let field = if name.starts_with("probe-gateway-") || alive {
                "addresses"
            } else {
                "notReadyAddresses"
            };
            FactAnswer::Object {
                object: Some(
                    json!({"subsets": [{field: [{"ip": "172.21.0.10"}], "ports": [{"port": 4143}]}]}),
                ),
            }
        }
        other => meshed(other),
    }
}

#[test]
fn probe_check_reads_the_gateway_liveness_the_service_mirror_wrote() {
    let p = plan_with(request(Operation::Check, 2), mirrored(true)).unwrap();
    let probe = |p: &Plan| {
        p.checks
            .iter()
            .find(|c| c.name == "probe services able to communicate with all gateway mirrors")
            .unwrap()
            .clone()
    };
    let ok = probe(&p);
    assert_eq!(ok.status, CheckStatus::Ok, "{ok:?}");
    assert!(ok.items[0].contains("gateway alive"), "{ok:?}");
    let p = plan_with(request(Operation::Check, 2), mirrored(false)).unwrap();
    let dead = probe(&p);
    assert_eq!(dead.status, CheckStatus::Fail, "{dead:?}");
    assert!(
        dead.detail
            .contains("liveness checks failed for cluster2: the service mirror marked the endpoints of helloworld-cluster2 not ready"),
        "{}",
        dead.detail
    );
}

/// `mirrored(true)` plus what the lease holder's metrics page says (`alive` per target), and no
/// mirror Services: only the gauge can tell the gateway's liveness.
fn metered(gauge: &'static [(&'static str, u8, u32)]) -> impl Fn(&FactQuery) -> FactAnswer {
    move |q: &FactQuery| match q {
        FactQuery::Objects { kind, .. } if kind == "Service" => {
            FactAnswer::Objects { items: vec![] }
        }
        FactQuery::Object { kind, name, .. } if kind == "Lease" => FactAnswer::Object {
            object: Some(json!({"metadata": {"name": name},
                                "spec": {"holderIdentity": format!("{name}-pod")}})),
        },
        FactQuery::Object { kind, name, .. } if kind == "Deployment" => FactAnswer::Object {
            object: Some(json!({"metadata": {"name": name},
                "spec": {"template": {"spec": {"containers": [{"name": "service-mirror",
                    "ports": [{"name": "admin-http", "containerPort": 9999}]}]}}},
                "status": {"availableReplicas": 1}})),
        },
        FactQuery::PodHttp {
            pod, port, path, ..
        } => {
            assert_eq!((*port, path.as_str()), (9999, "/metrics"));
            let target = pod
                .trim_start_matches("service-mirror-write-")
                .trim_end_matches("-pod");
            let body = gauge
                .iter()
                .filter(|(t, _, _)| *t == target)
                .map(|(t, v, n)| {
                    format!(
                        "# TYPE gateway_alive gauge\ngateway_alive{{target_cluster_name=\"{t}\"}} {v}\n\
                         gateway_probes{{probe_successful=\"true\",target_cluster_name=\"{t}\"}} {}\n\
                         gateway_probes{{probe_successful=\"false\",target_cluster_name=\"{t}\"}} {}\n",
                        if *v == 1 { *n } else { 0 },
                        if *v == 1 { 0 } else { *n }
                    )
                })
                .collect::<String>();
            FactAnswer::PodHttp { status: 200, body }
        }
        other => mirrored(true)(other),
    }
}

#[test]
fn probe_check_reads_the_lease_holders_gateway_alive_gauge() {
    let probe = |p: &Plan| {
        p.checks
            .iter()
            .find(|c| c.name == "probe services able to communicate with all gateway mirrors")
            .unwrap()
            .clone()
    };
    let p = plan_with(
        request(Operation::Check, 2),
        metered(&[("cluster1", 1, 3), ("cluster2", 1, 3)]),
    )
    .unwrap();
    let ok = probe(&p);
    assert_eq!(ok.status, CheckStatus::Ok, "{ok:?}");
    assert_eq!(
        ok.items,
        [
            "cluster1 → cluster2: gateway alive (gateway_alive 1)",
            "cluster2 → cluster1: gateway alive (gateway_alive 1)"
        ]
    );
    // A gauge at 0 (wrong gateway address, gateway down): the link and the probed address are named.
    let p = plan_with(
        request(Operation::Check, 2),
        metered(&[("cluster1", 0, 2), ("cluster2", 1, 3)]),
    )
    .unwrap();
    let dead = probe(&p);
    assert_eq!(dead.status, CheckStatus::Fail, "{dead:?}");
    assert!(
        dead.detail.starts_with(
            "cluster2 → cluster1: liveness checks failed for cluster1: gateway_alive is 0 on the service mirror (its probe of 192.168.11.1:"
        ),
        "{}",
        dead.detail
    );
    // A probe worker that has not probed yet (gauge 0, no probe counted): a warning, not a failure.
    let p = plan_with(
        request(Operation::Check, 2),
        metered(&[("cluster1", 0, 0), ("cluster2", 1, 3)]),
    )
    .unwrap();
    let young = probe(&p);
    assert_eq!(young.status, CheckStatus::Warn, "{young:?}");
    assert!(
        young.detail.contains(
            "cluster2 → cluster1: the service mirror has not probed the gateway of cluster1 yet"
        ),
        "{}",
        young.detail
    );
    // No gauge for the target on the page: back to what the mirror Endpoints show (none here).
    let p = plan_with(request(Operation::Check, 2), metered(&[])).unwrap();
    assert_eq!(probe(&p).status, CheckStatus::Warn, "{:?}", probe(&p));
}

#[test]
fn rbac_check_names_the_role_the_verb_and_the_resource() {
    let stripped = |q: &FactQuery| match q {
        FactQuery::Object { kind, cluster, .. }
            if kind == "ClusterRole" && cluster == "cluster2" =>
        {
            let mut role = link::link_objects(
                &link::tests::target("x"),
                &MirrorSettings::new(kpaas_mesh_kit::linkerd::release("2.14").unwrap(), None),
            )[3]
            .clone();
            for rule in role["rules"].as_array_mut().unwrap() {
                if rule["resources"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("services"))
                {
                    rule["verbs"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|v| v != "create" && v != "delete");
                }
            }
            FactAnswer::Object { object: Some(role) }
        }
        FactQuery::Object { kind, cluster, .. } if kind == "Role" && cluster == "cluster1" => {
            FactAnswer::Object { object: None }
        }
        other => meshed(other),
    };
    let p = plan_with(request(Operation::Check, 2), stripped).unwrap();
    let row = p
        .checks
        .iter()
        .find(|c| c.name == "service mirror controller has required permissions")
        .unwrap();
    assert_eq!(row.status, CheckStatus::Fail);
    assert_eq!(
        row.detail,
        "cluster1 → cluster2: Role linkerd-service-mirror-read-remote-creds-cluster2 is missing; \
         cluster2 → cluster1: ClusterRole linkerd-service-mirror-access-local-resources-cluster1 lacks create, delete on services, \
         ClusterRole linkerd-service-mirror-access-local-resources-cluster1 lacks create, delete on endpoints"
    );
}

/// A request for Linkerd 2.18 (edge-25.4.4).
fn request_218(op: Operation, n: usize) -> StageRequest {
    let mut r = request(op, n);
    r.settings = serde_json::to_value(MeshSettings {
        linkerd_version: "2.18".into(),
        ..MeshSettings::default()
    })
    .unwrap();
    r
}

fn controllers_of(a: &Action) -> Option<(String, Value)> {
    match a {
        Action::HelmRelease(h) => Some((h.cluster.clone(), h.values["controllers"].clone())),
        _ => None,
    }
}

#[test]
fn linkerd_2_18_declares_the_service_mirrors_in_the_release() {
    // cluster1 already has a Link to cluster9 (made by an earlier run over other clusters):
    // its controller is kept.
    let answer = |q: &FactQuery| match q {
        FactQuery::Objects { cluster, kind, .. } if kind == "Link" && cluster == "cluster1" => {
            FactAnswer::Objects {
                items: vec![json!({"metadata": {"name": "cluster9"}})],
            }
        }
        other => installed(other),
    };
    let p = plan_with(request_218(Operation::Up, 3), answer).unwrap();
    let releases: Vec<(String, Value)> = p.actions.iter().filter_map(controllers_of).collect();
    let refs = |names: &[&str]| {
        Value::Array(
            names
                .iter()
                .map(|n| json!({"link": {"ref": {"name": n}}}))
                .collect(),
        )
    };
    assert_eq!(
        releases,
        [
            (
                "cluster1".into(),
                refs(&["cluster2", "cluster3", "cluster9"])
            ),
            ("cluster2".into(), refs(&["cluster1", "cluster3"])),
            ("cluster3".into(), refs(&["cluster1", "cluster2"])),
        ]
    );
    let Action::HelmRelease(h) = &p.actions[0] else {
        panic!()
    };
    assert_eq!(
        (h.chart.version.as_str(), h.chart.repo.as_deref()),
        ("2025.4.4", Some("https://helm.linkerd.io/edge"))
    );
    // 2.14 has no controllers value
    let p = plan_with(request(Operation::Up, 2), installed).unwrap();
    assert!(
        p.actions
            .iter()
            .filter_map(controllers_of)
            .all(|(_, c)| c.is_null())
    );
}

#[test]
fn linkerd_2_18_links_are_what_link_gen_prints() {
    let p = plan_with(request_218(Operation::Link, 2), installed).unwrap();
    // the releases again (unchanged values are a no-op for the host), then 3 objects per link
    let applied: Vec<(String, String, String, String)> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply {
                cluster, manifest, ..
            } => Some((
                cluster.clone(),
                manifest["kind"].as_str().unwrap().to_string(),
                manifest["metadata"]["namespace"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                manifest["apiVersion"].as_str().unwrap().to_string(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(p.actions.iter().filter_map(controllers_of).count(), 2);
    assert_eq!(applied.len(), 6, "{applied:?}");
    assert!(applied.contains(&(
        "cluster1".into(),
        "Link".into(),
        "linkerd-multicluster".into(),
        "multicluster.linkerd.io/v1alpha3".into()
    )));
    let link = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Apply { manifest, .. } if manifest["kind"] == "Link" => Some(manifest.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        link["metadata"]["annotations"]["linkerd.io/created-by"],
        "linkerd/cli edge-25.4.4"
    );
    assert_eq!(
        link["spec"]["federatedServiceSelector"],
        json!({"matchLabels": {"mirror.linkerd.io/federated": "member"}})
    );
    assert!(link["spec"]["probeSpec"].get("timeout").is_none());
}

#[test]
fn linkerd_2_18_unlink_drops_the_controller_then_the_link() {
    let mut r = request_218(Operation::Unlink, 2);
    let mut opts: MeshSettings = serde_json::from_value(r.settings.clone()).unwrap();
    opts.unlink_from = Some("cluster2".into());
    r.settings = serde_json::to_value(&opts).unwrap();
    let answer = |q: &FactQuery| match q {
        FactQuery::Objects { cluster, kind, .. } if kind == "Link" && cluster == "cluster1" => {
            FactAnswer::Objects {
                items: vec![
                    json!({"metadata": {"name": "cluster2"}}),
                    json!({"metadata": {"name": "cluster3"}}),
                ],
            }
        }
        FactQuery::HelmRelease { cluster, .. } => FactAnswer::HelmRelease {
            release: (cluster == "cluster1").then(|| {
                kpaas_mesh_kit::testkit::deployed("linkerd-multicluster", "2025.4.4", "edge-25.4.4")
            }),
        },
        _ => FactAnswer::Objects { items: vec![] },
    };
    let p = plan_with(r, answer).unwrap();
    // only cluster1 has the release: it keeps the controller for cluster3
    assert_eq!(
        p.actions
            .iter()
            .filter_map(controllers_of)
            .collect::<Vec<_>>(),
        [(
            "cluster1".to_string(),
            json!([{"link": {"ref": {"name": "cluster3"}}}])
        )]
    );
    assert_eq!(
        deletes_of(&p),
        [
            "cluster1:Link/linkerd-multicluster/cluster2",
            "cluster1:Secret/linkerd/cluster-credentials-cluster2",
            "cluster1:Secret/linkerd-multicluster/cluster-credentials-cluster2",
        ]
    );
}

#[test]
fn linkerd_2_18_check_has_its_rows_in_its_order() {
    let answer = |q: &FactQuery| match q {
        FactQuery::Objects { cluster, kind, .. } if kind == "Link" => {
            let other = if cluster == "cluster1" {
                "cluster2"
            } else {
                "cluster1"
            };
            FactAnswer::Objects {
                items: vec![json!({"metadata": {"name": other,
                    "annotations": {"linkerd.io/created-by": if cluster == "cluster1" { "linkerd/cli edge-25.4.4" } else { "linkerd/cli stable-2.14.10" }}},
                    "spec": {"targetClusterName": other, "targetClusterDomain": "cluster.local",
                    "clusterCredentialsSecret": format!("cluster-credentials-{other}"),
                    "gatewayAddress": "192.168.11.1", "gatewayPort": "4143", "gatewayIdentity": "gw"}})],
            }
        }
        // cluster2 still runs the 2.14-style controller for its link to cluster1
        FactQuery::Object {
            cluster,
            kind,
            name,
            ..
        } if kind == "Deployment" && name.starts_with("linkerd-service-mirror-") => {
            FactAnswer::Object {
                object: (cluster == "cluster2")
                    .then(|| json!({"status": {"availableReplicas": 1}})),
            }
        }
        other => meshed(other),
    };
    let p = plan_with(request_218(Operation::Check, 2), answer).unwrap();
    let names: Vec<&str> = p.checks.iter().map(|c| c.name.as_str()).collect();
    let mut want: Vec<&str> = linkerd::release("2.18")
        .unwrap()
        .multicluster_check
        .iter()
        .map(String::as_str)
        .collect();
    want.insert(2, "every cluster is linked to every other cluster");
    assert_eq!(names, want);
    let by_name = |n: &str| p.checks.iter().find(|c| c.name == n).unwrap();
    let versions = by_name("Link and CLI versions match");
    assert_eq!(versions.status, CheckStatus::Warn);
    assert!(
        versions
            .detail
            .contains("cluster2 → cluster1: Link version is 'linkerd/cli stable-2.14.10'"),
        "{}",
        versions.detail
    );
    let managed = by_name("extension is managing controllers");
    assert_eq!(managed.status, CheckStatus::Warn);
    assert!(
        managed
            .detail
            .contains("cluster2 → cluster1: using legacy service mirror controller linkerd-service-mirror-cluster1"),
        "{}",
        managed.detail
    );
}

#[test]
fn link_refuses_clusters_on_another_release() {
    let answer = |q: &FactQuery| match q {
        FactQuery::Object { cluster, name, .. } if name == "linkerd-config" => FactAnswer::Object {
            object: Some(json!({"data": {"values": format!(
                "clusterDomain: cluster.local\nlinkerdVersion: {}\n",
                if cluster == "cluster2" { "stable-2.14.10" } else { "edge-25.4.4" }
            )}})),
        },
        other => installed(other),
    };
    let err = plan_with(request_218(Operation::Link, 3), answer).unwrap_err();
    assert_eq!(
        err,
        "cannot link: cluster2 runs Linkerd stable-2.14.10 (more than one minor apart: Linkerd does not support \
         that skew); this run makes links for edge-25.4.4 (Linkerd 2.18): `up --linkerd-version 2.18` brings every \
         cluster to it first"
    );
    // in an `up`, the control-plane stage of the run moves them first: planned
    let mut r = request_218(Operation::Link, 3);
    r.inputs.insert(
        "control-plane".into(),
        json!({"linkerd_version": "edge-25.4.4"}),
    );
    assert!(plan_with(r, answer).is_ok());
    // the same release everywhere: linked
    let same = |q: &FactQuery| match q {
        FactQuery::Object { name, .. } if name == "linkerd-config" => FactAnswer::Object {
            object: Some(json!({"data": {"values": "linkerdVersion: edge-25.4.4\n"}})),
        },
        other => installed(other),
    };
    assert!(plan_with(request_218(Operation::Link, 3), same).is_ok());
}

/// Answers like `installed`, with the remote-access token rotated to generation 7.
fn rotated(q: &FactQuery) -> FactAnswer {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    match q {
        FactQuery::Objects { kind, .. } if kind == "Secret" => FactAnswer::Objects {
            items: vec![json!({"type": "kubernetes.io/service-account-token",
                "metadata": {"name": format!("{REMOTE_SA}-token-7"),
                    "labels": {credentials::GENERATION_LABEL: "7"},
                    "annotations": {"kubernetes.io/service-account.name": REMOTE_SA}},
                "data": {"token": b64("rotated-token")}})],
        },
        other => installed(other),
    }
}

#[test]
fn after_a_rotation_up_waits_for_the_rotated_token_and_keeps_the_charts_away() {
    let p = plan_with(request(Operation::Up, 2), rotated).unwrap();
    assert!(p.actions.iter().any(|a| matches!(a,
        Action::Wait { condition: WaitCondition::SecretHasKey { name, .. }, .. } if name == &format!("{REMOTE_SA}-token-7"))));
    let deletes: Vec<&Action> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Delete { .. }))
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(deletes.iter().all(|a| matches!(a,
        Action::Delete { kind, name, .. } if kind == "Secret" && name == &credentials::chart_token_secret())));
    // without a rotation: nothing is deleted
    let p = plan_with(request(Operation::Up, 2), installed).unwrap();
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Delete { .. })));
}

#[test]
fn link_rotate_credentials_carries_the_newest_token_and_reports_where_it_stands() {
    let mut r = request(Operation::Link, 2);
    r.settings["rotate_credentials"] = json!(0);
    let p = plan_with(r, rotated).unwrap();
    let creds = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Apply { manifest, .. } if manifest["type"] == link::SECRET_TYPE => {
                Some(manifest.clone())
            }
            _ => None,
        })
        .unwrap();
    use base64::Engine;
    let kc = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(creds["data"]["kubeconfig"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(kc.contains("token: rotated-token"), "{kc}");
    let out: kpaas_mesh_kit::MulticlusterOutputs = serde_json::from_value(p.outputs).unwrap();
    let rotation = out.credentials.unwrap();
    // one token per cluster and nothing to start: complete
    assert!(rotation.complete, "{rotation:?}");
    assert_eq!(rotation.progress.len(), 2);
    // a first round starts a rotation on each cluster
    let mut r = request(Operation::Link, 2);
    r.settings["rotate_credentials"] = json!(42);
    let p = plan_with(r, rotated).unwrap();
    let new: Vec<&Action> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Apply { manifest, .. } if manifest["metadata"]["name"] == format!("{REMOTE_SA}-token-42")))
        .collect();
    assert_eq!(new.len(), 2);
}

/// `Kind/namespace/name` of every Delete in `p`, with its cluster.
fn deletes_of(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete {
                cluster,
                kind,
                namespace,
                name,
                ..
            } => Some(format!(
                "{cluster}:{kind}/{}/{name}",
                namespace.as_deref().unwrap_or("")
            )),
            _ => None,
        })
        .collect()
}

/// Answers like `installed`, with the per-link service mirror of an older release on
/// cluster1 for its link to cluster2.
fn with_legacy_controller(q: &FactQuery) -> FactAnswer {
    match q {
        FactQuery::Object {
            cluster,
            kind,
            name,
            ..
        } if cluster == "cluster1"
            && kind == "Deployment"
            && name == "linkerd-service-mirror-cluster2" =>
        {
            FactAnswer::Object {
                object: Some(json!({"metadata": {"name": name}})),
            }
        }
        other => installed(other),
    }
}

#[test]
fn linkerd_2_18_migrates_an_older_releases_per_link_service_mirror() {
    let p = plan_with(request_218(Operation::Link, 2), with_legacy_controller).unwrap();
    // the new Link first, then the old controller's objects (Deployment first), and only for
    // the link that has them; the Link, its credentials, Lease and mirrors stay
    let link_at = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::Apply { cluster, manifest, .. } if cluster == "cluster1" && manifest["kind"] == "Link"))
        .unwrap();
    let first_delete = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::Delete { .. }))
        .unwrap();
    assert!(link_at < first_delete);
    assert_eq!(
        deletes_of(&p),
        [
            "cluster1:Deployment/linkerd-multicluster/linkerd-service-mirror-cluster2",
            "cluster1:Service/linkerd-multicluster/probe-gateway-cluster2",
            "cluster1:ServiceAccount/linkerd-multicluster/linkerd-service-mirror-cluster2",
            "cluster1:RoleBinding/linkerd-multicluster/linkerd-service-mirror-read-remote-creds-cluster2",
            "cluster1:Role/linkerd-multicluster/linkerd-service-mirror-read-remote-creds-cluster2",
            "cluster1:ClusterRoleBinding//linkerd-service-mirror-access-local-resources-cluster2",
            "cluster1:ClusterRole//linkerd-service-mirror-access-local-resources-cluster2",
        ]
    );
    assert!(
        p.notes.iter().any(|n| n.contains(
            "cluster1 → cluster2: the per-link service mirror of the older release is removed"
        )),
        "{:?}",
        p.notes
    );
    // nothing to migrate: no delete
    let p = plan_with(request_218(Operation::Link, 2), installed).unwrap();
    assert!(deletes_of(&p).is_empty());
    // 2.14 never deletes its own per-link objects in a link run
    let p = plan_with(request(Operation::Link, 2), with_legacy_controller).unwrap();
    assert!(deletes_of(&p).is_empty());
}

#[test]
fn linkerd_2_18_unlink_also_removes_an_unmigrated_per_link_service_mirror() {
    let mut r = request_218(Operation::Unlink, 2);
    let mut opts: MeshSettings = serde_json::from_value(r.settings.clone()).unwrap();
    opts.unlink_from = Some("cluster2".into());
    r.settings = serde_json::to_value(&opts).unwrap();
    let p = plan_with(r, with_legacy_controller).unwrap();
    let d = deletes_of(&p);
    assert_eq!(d[0], "cluster1:Link/linkerd-multicluster/cluster2");
    assert!(d.contains(
        &"cluster1:Deployment/linkerd-multicluster/linkerd-service-mirror-cluster2".to_string()
    ));
    assert!(d.contains(
        &"cluster1:ClusterRole//linkerd-service-mirror-access-local-resources-cluster2".to_string()
    ));
}

/// The objects a `links: link` release's link step applies on cluster1 for its link to
/// cluster2, by kind.
fn link_objects_of(minor: &str) -> std::collections::BTreeMap<String, Value> {
    let mut r = request(Operation::Link, 2);
    r.settings = serde_json::to_value(MeshSettings {
        linkerd_version: minor.into(),
        ..MeshSettings::default()
    })
    .unwrap();
    let p = plan_with(r, installed).unwrap();
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply {
                cluster, manifest, ..
            } if cluster == "cluster1" => Some((
                format!(
                    "{}/{}",
                    manifest["kind"].as_str().unwrap(),
                    manifest["metadata"]["namespace"].as_str().unwrap_or("")
                ),
                manifest.clone(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn links_of_2_15_to_2_17_follow_each_releases_link_chart() {
    let l214 = link_objects_of("2.14");
    let l215 = link_objects_of("2.15");
    let l216 = link_objects_of("2.16");
    let l217 = link_objects_of("2.17");
    let deploy = |m: &std::collections::BTreeMap<String, Value>| {
        m["Deployment/linkerd-multicluster"].clone()
    };
    // 2.15: as 2.14 but for the image tag
    let mut d = deploy(&l215);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "cr.l5d.io/linkerd/controller:edge-24.2.4"
    );
    d["spec"]["template"]["spec"]["containers"][0]["image"] =
        deploy(&l214)["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(d, deploy(&l214));
    assert_eq!(
        l215["Link/linkerd-multicluster"],
        l214["Link/linkerd-multicluster"]
    );
    // 2.16: revisionHistoryLimit and runAsGroup; the Link still v1alpha1 without annotation
    let d = deploy(&l216);
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsGroup"],
        2103
    );
    assert!(d["spec"]["template"]["spec"].get("volumes").is_none());
    let link = &l216["Link/linkerd-multicluster"];
    assert_eq!(link["apiVersion"], "multicluster.linkerd.io/v1alpha1");
    assert!(link["metadata"].get("annotations").is_none());
    // 2.17: a v1alpha2 Link with created-by and the federated selector; the Role may update
    // links/status; the token as a projected volume
    let link = &l217["Link/linkerd-multicluster"];
    assert_eq!(link["apiVersion"], "multicluster.linkerd.io/v1alpha2");
    assert_eq!(
        link["metadata"]["annotations"]["linkerd.io/created-by"],
        "linkerd/cli edge-24.11.8"
    );
    assert_eq!(
        link["spec"]["federatedServiceSelector"]["matchLabels"]["mirror.linkerd.io/federated"],
        "member"
    );
    let role = &l217["Role/linkerd-multicluster"];
    assert_eq!(
        role["rules"][2],
        json!({"apiGroups": ["multicluster.linkerd.io"], "resources": ["links/status"], "verbs": ["update"]})
    );
    assert_eq!(role["rules"][3]["resources"], json!(["leases"]));
    let pod = &deploy(&l217)["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["volumes"][0]["name"], "kube-api-access");
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
}

#[test]
fn a_registry_moves_every_controller_image_the_release_has() {
    let values = |minor: &str| {
        let opts = MeshSettings {
            linkerd_version: minor.into(),
            registry: Some("harbor.local/l5d".into()),
            ..MeshSettings::default()
        };
        chart_values(&opts, linkerd::release(minor).unwrap(), None)
    };
    let v = values("2.14");
    assert_eq!(v["gateway"]["pauseImage"], "harbor.local/l5d/pause:3.2");
    assert_eq!(
        v["namespaceMetadata"]["image"]["registry"],
        "harbor.local/l5d"
    );
    assert!(v.get("localServiceMirror").is_none() && v.get("controllerDefaults").is_none());
    // 2.17's chart always runs the local service mirror for federated services
    let v = values("2.17");
    assert_eq!(
        v["localServiceMirror"]["image"]["name"],
        "harbor.local/l5d/controller"
    );
    assert!(v.get("controllerDefaults").is_none());
    for minor in ["2.18", "2.20"] {
        let v = values(minor);
        assert_eq!(
            v["localServiceMirror"]["image"]["name"],
            "harbor.local/l5d/controller"
        );
        assert_eq!(
            v["controllerDefaults"]["image"]["name"],
            "harbor.local/l5d/controller"
        );
    }
}
