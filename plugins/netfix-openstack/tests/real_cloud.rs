//! netfix-openstack against a REAL Keystone 30.0.0 and Neutron 29.0.0 (from PyPI, run on
//! 127.0.0.1 by tests/openstack/cloud.py; venvs from tests/openstack/setup.sh). The plugin is
//! driven as the host drives it; the assertions read both its plans and Neutron's own state.
//!
//! - `gateway_address_lifecycle`: dry run changes nothing; `up` makes the gateway port, pairs and
//!   floating IPs (password auth); a second `up` and `link` change nothing; `check` and `status`;
//!   drift is repaired; a moved MetalLB address is followed; `down` (dry, then real) removes
//!   exactly what was made and leaves an operator's own pair alone.
//! - `errors_and_auth`: a taken IP, a missing external network, a wrong password, a project
//!   without a role, a region without Neutron: one clear line each and nothing changed; then the
//!   whole cycle with application-credential auth, and `down` with OS_* variables alone (a child
//!   process). No output or error shows a secret.
//! - `dnat_mode`: floating IPs feed netfix-baremetal's DNAT agent; links keep the private IPs.

mod support;

use kpaas_mesh_kit::NetfixOutputs;
use kpaas_mesh_plugin_api::{CheckStatus, Operation};
use serde_json::{Value, json};
use support::*;

fn opts(clouds_yaml: &str, cloud: &str) -> Value {
    json!({"os_cloud": cloud, "clouds_yaml": clouds_yaml})
}

fn routes(p: &kpaas_mesh_plugin_api::Plan) -> NetfixOutputs {
    serde_json::from_value(p.outputs.clone()).unwrap()
}

#[test]
fn gateway_address_lifecycle() {
    let Some(cloud) = Cloud::start_or_skip("gateway_address_lifecycle") else {
        return;
    };
    let mut t = Timer::new();
    t.steps.push((
        "cloud start (Keystone + Neutron + fixtures)".into(),
        cloud.started_in,
    ));
    let cy = cloud.clouds_yaml();
    let o = opts(&cy, "member");
    let admin = cloud.admin();
    let clusters = ["cluster1", "cluster2"];
    // cluster2-node-2 has no providerID: its port is found by its InternalIP.
    let mut k8s = K8s::from_cloud(&cloud, &clusters, &["cluster2-node-2"]);
    let mut texts: Vec<String> = Vec::new();

    // The operator's own allowed address pair on a node port: kpaas-mesh must never remove it.
    let n11 = &cloud.nodes("cluster1")[0].3;
    admin
        .put(
            &format!("/ports/{n11}"),
            &json!({"port": {"allowed_address_pairs": [{"ip_address": "172.21.0.99"}]}}),
        )
        .unwrap();
    let initial = snapshot(&admin);
    t.lap("fixture: operator's own pair");

    // 1. Dry run: the plan's Neutron writes say what would happen; Neutron is unchanged.
    let dry = drive(Operation::Up, &clusters, o.clone(), true, &k8s).unwrap();
    texts.push(plan_text(&dry));
    let notes = dry.planned_text();
    assert!(
        notes.contains("cluster1: create port kpaas-mesh-gateway-cluster1 holding 172.21.0.200"),
        "{notes}"
    );
    assert!(
        notes.contains("cluster2: allocate a floating IP on external network public"),
        "{notes}"
    );
    assert_eq!(
        dry.planned
            .iter()
            .filter(|n| n.contains("add allowed address pair"))
            .count(),
        5,
        "{notes}"
    );
    // The guide's 2.2 firewall: one group per cluster, the three ports from every peer
    // address Neutron knows (cluster1's peer cluster2: its router's SNAT address and its two
    // node addresses), on every node port.
    // the fixture router's gateway on `public` (one router for all), as Neutron allocated it
    let routers = admin.get("/routers?name=kpaas-router").unwrap();
    let router_ip =
        routers["routers"][0]["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
            .as_str()
            .expect("the fixture router has a gateway IP on public")
            .to_string();
    assert!(router_ip.starts_with("203.0.113."), "{router_ip}");
    for (c, peer_sources) in [
        (
            "cluster1",
            vec![
                format!("{router_ip}/32"),
                "172.22.0.11/32".into(),
                "172.22.0.12/32".into(),
            ],
        ),
        (
            "cluster2",
            vec![
                format!("{router_ip}/32"),
                "172.21.0.11/32".into(),
                "172.21.0.12/32".into(),
                "172.21.0.13/32".into(),
            ],
        ),
    ] {
        assert!(
            notes.contains(&format!(
                "{c}: create security group kpaas-mesh-{c}, tagged kpaas-mesh"
            )),
            "{notes}"
        );
        for port in [4143, 4191, 5000] {
            for src in &peer_sources {
                assert!(
                    notes.contains(&format!(
                        "{c}: allow TCP {port} from {src} in security group kpaas-mesh-{c}"
                    )),
                    "{c}: no rule {port} from {src}: {notes}"
                );
            }
        }
        assert_eq!(
            dry.planned
                .iter()
                .filter(|n| n.starts_with(&format!("{c}: allow TCP")))
                .count(),
            3 * peer_sources.len(),
            "{notes}"
        );
    }
    assert_eq!(
        dry.planned
            .iter()
            .filter(|n| n.contains("add security group kpaas-mesh-"))
            .count(),
        5,
        "{notes}"
    );
    // Every write is a plugin action the host runs and reports, typed data it can print.
    assert!(dry.actions.iter().all(|a| matches!(a,
        kpaas_mesh_plugin_api::Action::Plugin { cluster: Some(_), op, .. } if op["neutron"].is_string())));
    assert_eq!(snapshot(&admin), initial, "a dry run changed Neutron");
    t.lap("up --dry-run (2 clusters, 5 nodes)");
    // The host's pre-flight of a first `up` comes before MetalLB gave cluster2's gateway an
    // address: planned with a note, not refused.
    let mut early = k8s.clone();
    early.gateways.insert("cluster2".into(), None);
    let pre = drive(Operation::Up, &clusters, o.clone(), true, &early).unwrap();
    assert!(
        pre.notes.iter().any(|n| n.starts_with(
            "cluster2: the Service linkerd-multicluster/linkerd-gateway has no LoadBalancer"
        )),
        "{:?}",
        pre.notes
    );
    assert!(
        pre.planned
            .iter()
            .any(|n| n.starts_with("cluster1: create port")),
        "{:?}",
        pre.planned
    );
    assert_eq!(
        routes(&pre).route("cluster1", "cluster2").unwrap().address,
        "(floating IP of cluster2: allocated by up)"
    );
    assert_eq!(snapshot(&admin), initial, "a dry run changed Neutron");
    let e = drive(Operation::Up, &clusters, o.clone(), false, &early).unwrap_err();
    assert!(
        e.starts_with(
            "cluster2: the Service linkerd-multicluster/linkerd-gateway has no LoadBalancer"
        ),
        "{e}"
    );
    assert_eq!(snapshot(&admin), initial, "a refused up changed Neutron");

    // 2. up.
    let up = drive(Operation::Up, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("up (creates 2 ports, 5 pairs, 2 floating IPs)");
    texts.push(plan_text(&up));
    let after = snapshot(&admin);
    let (ports, fips) = ours(&after);
    assert_eq!(ports.len(), 2, "{after:#}");
    assert_eq!(fips.len(), 2, "{after:#}");
    let mut fip_of = std::collections::BTreeMap::new();
    for c in clusters {
        let ip = k8s.gateways[c].clone().unwrap();
        let gw = ports
            .iter()
            .find(|p| {
                p["tags"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("kpaas-mesh-cluster={c}")))
            })
            .unwrap_or_else(|| panic!("no gateway port of {c}"));
        assert_eq!(gw["name"], format!("kpaas-mesh-gateway-{c}"));
        assert_eq!(gw["fixed_ips"][0]["ip_address"], ip);
        assert_eq!(
            gw["fixed_ips"][0]["subnet_id"],
            cloud.info["clusters"][c]["subnet_id"]
        );
        assert!(gw["description"].as_str().unwrap().contains("kpaas-mesh"));
        let fip = fips
            .iter()
            .find(|f| {
                f["tags"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("kpaas-mesh-cluster={c}")))
            })
            .unwrap_or_else(|| panic!("no floating IP of {c}"));
        assert_eq!(
            fip["port_id"], gw["id"],
            "{c}: floating IP not on the gateway port"
        );
        assert_eq!(fip["fixed_ip_address"], ip);
        let addr = fip["floating_ip_address"].as_str().unwrap().to_string();
        assert!(addr.starts_with("203.0.113."), "{addr}");
        fip_of.insert(c, addr);
        let groups: Vec<Value> = our_groups(&after)
            .into_iter()
            .filter(|g| {
                g["tags"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("kpaas-mesh-cluster={c}")))
            })
            .collect();
        assert_eq!(groups.len(), 1, "{c}: {after:#}");
        let group = &groups[0];
        assert_eq!(group["name"], format!("kpaas-mesh-{c}"));
        let ingress: Vec<&Value> = group["security_group_rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r[0] == "ingress")
            .collect();
        assert_eq!(
            ingress.len(),
            3 * if c == "cluster1" { 3 } else { 4 },
            "{group:#}"
        );
        assert!(ingress.iter().all(|r| r[1] == "tcp"), "{group:#}");
        for (node, _, _, port_id) in cloud.nodes(c) {
            let p = port(&after, &port_id);
            assert!(
                p["security_groups"]
                    .as_array()
                    .unwrap()
                    .contains(&group["id"]),
                "{node}: security group not on its port: {p}"
            );
            assert!(
                p["tags"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("kpaas-mesh-sg={c}"))),
                "{node}: {p}"
            );
            assert!(pairs(p).contains(&ip), "{node}: no pair {ip}: {p}");
            assert!(
                p["tags"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("kpaas-mesh-pair={c}={ip}"))),
                "{node}: {p}"
            );
        }
    }
    assert!(pairs(port(&after, n11)).contains(&"172.21.0.99".to_string()));
    let out = routes(&up);
    assert_eq!(out.routes.len(), 2);
    assert_eq!(
        out.route("cluster1", "cluster2").unwrap().address,
        fip_of["cluster2"]
    );
    assert_eq!(
        out.route("cluster2", "cluster1").unwrap().address,
        fip_of["cluster1"]
    );
    assert_eq!(up.outputs["openstack"]["mode"], "gateway-address");
    assert!(
        up.actions.is_empty(),
        "gateway-address mode touches no node: {:?}",
        up.actions
    );
    // Every planned write ran once and changed Neutron; the re-plan found nothing left.
    assert_eq!(up.done.len(), up.planned.len(), "{:?}", up.done);
    assert_eq!(up.changed(), up.planned.len(), "{:?}", up.done);

    // 3. A second up and a link change nothing.
    let again = drive(Operation::Up, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("up again (no change)");
    texts.push(plan_text(&again));
    assert_eq!(snapshot(&admin), after, "the second up changed Neutron");
    assert_eq!(again.notes.len(), 2, "{:?}", again.notes);
    assert!(
        again.notes.iter().all(|n| n.contains("nothing to change")),
        "{:?}",
        again.notes
    );
    assert_eq!(routes(&again), out);
    let link = drive(Operation::Link, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("link (reads only)");
    assert_eq!(routes(&link), out);
    assert_eq!(snapshot(&admin), after, "link changed Neutron");

    // 4. check and status.
    let check = drive(Operation::Check, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("check");
    texts.push(plan_text(&check));
    assert_eq!(check.checks.len(), 9, "{:#?}", check.checks);
    assert!(
        check.checks.iter().any(|c| c.name
            == "cluster2: security group kpaas-mesh-cluster2 opens TCP 4143,4191,5000 to 4 peer address(es) on every node port"),
        "{:#?}",
        check.checks
    );
    assert!(
        check.checks.iter().all(|c| c.status == CheckStatus::Ok),
        "{:#?}",
        check.checks
    );
    let status = drive(Operation::Status, &clusters, o.clone(), false, &k8s).unwrap();
    texts.push(plan_text(&status));
    let rows = &status.tables[0].rows;
    assert_eq!(rows[0][0], "cluster1");
    assert_eq!(rows[0][3], fip_of["cluster1"]);
    assert_eq!(rows[0][5], "3/3");
    assert_eq!(rows[1][5], "2/2");

    // 5. Drift: someone removes a pair; check fails on it; up repairs exactly that.
    let n21 = &cloud.nodes("cluster2")[0].3;
    admin
        .put(
            &format!("/ports/{n21}"),
            &json!({"port": {"allowed_address_pairs": []}}),
        )
        .unwrap();
    let check = drive(Operation::Check, &clusters, o.clone(), false, &k8s).unwrap();
    let bad: Vec<_> = check
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .collect();
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(
        bad[0]
            .name
            .starts_with("cluster2: 172.22.0.200 is an allowed address pair"),
        "{:?}",
        bad[0]
    );
    let fix = drive(Operation::Up, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("drift repaired by up");
    let fixed: Vec<&String> = fix.planned.iter().collect();
    assert_eq!(fixed.len(), 1, "{:?}", fix.planned);
    assert!(
        fixed[0].contains("add allowed address pair 172.22.0.200 to port cluster2-node-1"),
        "{fixed:?}"
    );
    assert!(pairs(port(&snapshot(&admin), n21)).contains(&"172.22.0.200".into()));

    // Firewall drift: someone deletes one of the rules and takes the group off a port; check
    // names both; up puts back exactly those.
    let snap = snapshot(&admin);
    let g2 = our_groups(&snap)
        .into_iter()
        .find(|g| g["name"] == "kpaas-mesh-cluster2")
        .unwrap();
    let victim = g2["security_group_rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == "ingress" && r[2] == 4191)
        .unwrap()[4]
        .as_str()
        .unwrap()
        .to_string();
    admin
        .delete(&format!("/security-group-rules/{victim}"))
        .unwrap();
    let n22 = &cloud.nodes("cluster2")[1].3;
    let keep: Vec<Value> = port(&snap, n22)["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| **g != g2["id"])
        .cloned()
        .collect();
    admin
        .put(
            &format!("/ports/{n22}"),
            &json!({"port": {"security_groups": keep}}),
        )
        .unwrap();
    let check = drive(Operation::Check, &clusters, o.clone(), false, &k8s).unwrap();
    let bad: Vec<_> = check
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .collect();
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(
        bad[0]
            .name
            .starts_with("cluster2: security group kpaas-mesh-cluster2 opens"),
        "{bad:?}"
    );
    assert_eq!(bad[0].items.len(), 2, "{bad:?}");
    let fix = drive(Operation::Up, &clusters, o.clone(), false, &k8s).unwrap();
    assert_eq!(fix.planned.len(), 2, "{:?}", fix.planned);
    assert!(
        fix.planned[0].starts_with("cluster2: allow TCP 4191 from "),
        "{:?}",
        fix.planned
    );
    assert!(
        fix.planned[1].starts_with(
            "cluster2: add security group kpaas-mesh-cluster2 to port cluster2-node-2"
        ),
        "{:?}",
        fix.planned
    );
    let repaired = snapshot(&admin);
    assert!(
        port(&repaired, n22)["security_groups"]
            .as_array()
            .unwrap()
            .contains(&g2["id"])
    );
    t.lap("firewall drift repaired by up");

    // 6. MetalLB moves cluster1's gateway to .201: new port and pairs, same floating IP.
    k8s.gateways
        .insert("cluster1".into(), Some("172.21.0.201".into()));
    let moved = drive(Operation::Up, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("gateway IP moved (.200 -> .201)");
    texts.push(plan_text(&moved));
    let snap = snapshot(&admin);
    let (ports, fips) = ours(&snap);
    let gw1: Vec<&Value> = ports
        .iter()
        .filter(|p| p["name"] == "kpaas-mesh-gateway-cluster1")
        .collect();
    assert_eq!(gw1.len(), 1, "{ports:#?}");
    assert_eq!(gw1[0]["fixed_ips"][0]["ip_address"], "172.21.0.201");
    let f1 = fips
        .iter()
        .find(|f| f["port_id"] == gw1[0]["id"])
        .expect("floating IP follows");
    assert_eq!(
        f1["floating_ip_address"].as_str().unwrap(),
        fip_of["cluster1"]
    );
    for (_, _, _, pid) in cloud.nodes("cluster1") {
        let ps = pairs(port(&snap, &pid));
        assert!(
            ps.contains(&"172.21.0.201".into()) && !ps.contains(&"172.21.0.200".into()),
            "{ps:?}"
        );
    }
    assert!(pairs(port(&snap, n11)).contains(&"172.21.0.99".into()));

    // 7. down: refused while DNAT agents are on the nodes (they would stay behind); then a dry
    // run (nothing changes), then for real: exactly back to the start.
    k8s.agent_deployed = true;
    let e = drive(Operation::Down, &clusters, o.clone(), false, &k8s).unwrap_err();
    assert!(
        e.contains("run(s) DNAT agents") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(snapshot(&admin), snap, "a refused down changed Neutron");
    k8s.agent_deployed = false;
    let dry_down = drive(Operation::Down, &clusters, o.clone(), true, &k8s).unwrap();
    texts.push(plan_text(&dry_down));
    assert_eq!(snapshot(&admin), snap, "a dry-run down changed Neutron");
    // 5 nodes: security group off, pair removed; 2 clusters: group, floating IP, port.
    assert_eq!(
        dry_down.planned.len(),
        5 + 2 + 2 + 2 + 5,
        "{:?}",
        dry_down.planned
    );
    let down = drive(Operation::Down, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("down");
    texts.push(plan_text(&down));
    let end = snapshot(&admin);
    assert_eq!(ours(&end), (vec![], vec![]), "down left something: {end:#}");
    assert_eq!(
        our_groups(&end),
        Vec::<Value>::new(),
        "down left a group: {end:#}"
    );
    for (a, b) in initial["ports"]
        .as_array()
        .unwrap()
        .iter()
        .zip(end["ports"].as_array().unwrap())
    {
        // Same ports, same pairs and tags as before up (revision numbers moved on).
        assert_eq!(a["id"], b["id"]);
        assert_eq!(
            a["allowed_address_pairs"], b["allowed_address_pairs"],
            "{}",
            a["name"]
        );
        assert_eq!(a["tags"], b["tags"], "{}", a["name"]);
        assert_eq!(a["security_groups"], b["security_groups"], "{}", a["name"]);
    }
    assert_eq!(
        initial["ports"].as_array().unwrap().len(),
        end["ports"].as_array().unwrap().len()
    );
    assert_eq!(pairs(port(&end, n11)), ["172.21.0.99"]);
    let again = drive(Operation::Down, &clusters, o.clone(), false, &k8s).unwrap();
    assert!(
        again
            .notes
            .iter()
            .all(|n| n.contains("nothing of kpaas-mesh's")),
        "{:?}",
        again.notes
    );
    assert_eq!(snapshot(&admin), end);
    t.lap("down again (no change)");

    for (i, text) in texts.iter().enumerate() {
        assert_no_secret(&cloud, &format!("plan {i}"), text);
    }
    t.report("gateway_address_lifecycle");
}

#[test]
fn errors_and_auth() {
    let Some(cloud) = Cloud::start_or_skip("errors_and_auth") else {
        return;
    };
    let mut t = Timer::new();
    t.steps.push((
        "cloud start (Keystone + Neutron + fixtures)".into(),
        cloud.started_in,
    ));
    let cy = cloud.clouds_yaml();
    let admin = cloud.admin();
    let member = cloud.member();
    let clusters = ["cluster3"];
    let k8s = K8s::from_cloud(&cloud, &clusters, &[]);
    let initial = snapshot(&admin);
    let ks = cloud.keystone_url();
    let mut texts: Vec<String> = Vec::new();
    let one_line = |e: &str| assert!(!e.contains('\n'), "not one line: {e}");

    // A taken IP: another port already holds the MetalLB address.
    let net = cloud.info["clusters"]["cluster3"]["network_id"]
        .as_str()
        .unwrap();
    let squatter = member
        .post(
            "/ports",
            &json!({"port": {"network_id": net, "name": "squatter",
                "fixed_ips": [{"ip_address": "172.23.0.200"}]}}),
        )
        .unwrap()["port"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let with_squatter = snapshot(&admin);
    let e = drive(Operation::Up, &clusters, opts(&cy, "member"), false, &k8s).unwrap_err();
    t.lap("taken IP refused");
    texts.push(e.clone());
    one_line(&e);
    assert!(
        e.starts_with("cluster3: the gateway IP 172.23.0.200 is already allocated"),
        "{e}"
    );
    assert!(
        e.contains("IpAddressAlreadyAllocated") && e.contains("squatter"),
        "{e}"
    );
    assert_eq!(
        snapshot(&admin),
        with_squatter,
        "a refused up changed Neutron"
    );
    // A dry run says the same.
    let e = drive(Operation::Up, &clusters, opts(&cy, "member"), true, &k8s).unwrap_err();
    assert!(e.contains("already allocated"), "{e}");
    member.delete(&format!("/ports/{squatter}")).unwrap();
    assert_eq!(snapshot(&admin), initial);

    // A missing external network.
    let mut o = opts(&cy, "member");
    o["external_network"] = json!("internet");
    let e = drive(Operation::Up, &clusters, o, false, &k8s).unwrap_err();
    texts.push(e.clone());
    one_line(&e);
    assert_eq!(
        e,
        "external network 'internet' not found (external networks visible to this project: public)"
    );
    t.lap("missing external network refused");

    // A wrong password, a project without a role, a region without Neutron.
    let e = drive(Operation::Up, &clusters, opts(&cy, "wrongpw"), false, &k8s).unwrap_err();
    texts.push(e.clone());
    one_line(&e);
    assert!(
        e.contains(&format!(
            "authentication failed at {ks} for user 'kpaas' (project 'kpaas-mesh')"
        )),
        "{e}"
    );
    assert!(e.contains("401"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");
    let e = drive(
        Operation::Up,
        &clusters,
        opts(&cy, "otherproject"),
        false,
        &k8s,
    )
    .unwrap_err();
    texts.push(e.clone());
    one_line(&e);
    assert!(
        e.contains(&format!(
            "authentication failed at {ks} for user 'kpaas' (project 'other')"
        )),
        "{e}"
    );
    let e = drive(
        Operation::Up,
        &clusters,
        opts(&cy, "wrongregion"),
        false,
        &k8s,
    )
    .unwrap_err();
    texts.push(e.clone());
    one_line(&e);
    assert!(
        e.contains("no public 'network' endpoint in region RegionTwo"),
        "{e}"
    );
    let e = drive(
        Operation::Up,
        &clusters,
        opts(&cy, "nosuchcloud"),
        false,
        &k8s,
    )
    .unwrap_err();
    assert!(
        e.contains("cloud 'nosuchcloud' is not in") && e.contains("appcred"),
        "{e}"
    );
    // check reports a refused login as a failed check, not an error.
    let check = drive(
        Operation::Check,
        &clusters,
        opts(&cy, "wrongpw"),
        false,
        &k8s,
    )
    .unwrap();
    texts.push(plan_text(&check));
    assert_eq!(check.checks.len(), 1);
    assert_eq!(check.checks[0].status, CheckStatus::Fail);
    assert!(
        check.checks[0].detail.contains("authentication failed"),
        "{:?}",
        check.checks[0]
    );
    assert_eq!(snapshot(&admin), initial, "a refused login changed Neutron");
    t.lap("wrong password / project / region refused");

    // The whole cycle with application-credential auth.
    let o = opts(&cy, "appcred");
    let up = drive(Operation::Up, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("up with application credential");
    texts.push(plan_text(&up));
    let snap = snapshot(&admin);
    let (ports, fips) = ours(&snap);
    assert_eq!((ports.len(), fips.len()), (1, 1), "{snap:#}");
    assert_eq!(fips[0]["port_id"], ports[0]["id"]);
    assert_eq!(fips[0]["fixed_ip_address"], "172.23.0.200");
    let node = &cloud.nodes("cluster3")[0].3;
    assert_eq!(pairs(port(&snap, node)), ["172.23.0.200"]);
    // Made in the member's project (the application credential's), like with password auth.
    let project = cloud.info["member"]["project_id"].as_str().unwrap();
    let gw = admin
        .get(&format!("/ports/{}", ports[0]["id"].as_str().unwrap()))
        .unwrap();
    assert_eq!(gw["port"]["project_id"], project);
    let again = drive(Operation::Up, &clusters, o.clone(), false, &k8s).unwrap();
    assert_eq!(snapshot(&admin), snap, "second up changed Neutron");
    assert!(
        again.notes[0].contains("nothing to change"),
        "{:?}",
        again.notes
    );
    // Password auth sees the same objects (same project): no change either.
    drive(Operation::Up, &clusters, opts(&cy, "member"), false, &k8s).unwrap();
    assert_eq!(
        snapshot(&admin),
        snap,
        "password auth did not find what appcred auth made"
    );
    // `down` with an openrc: OS_* variables only (password auth), in a child process so this
    // process's environment stays as it is.
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "openrc_child", "--nocapture", "--test-threads=1"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KPAAS_MESH_OPENRC_CHILD", "1")
        .env("OS_AUTH_URL", &ks)
        .env(
            "OS_USERNAME",
            cloud.info["member"]["username"].as_str().unwrap(),
        )
        .env("OS_PASSWORD", cloud.member_password())
        .env(
            "OS_PROJECT_NAME",
            cloud.info["member"]["project"].as_str().unwrap(),
        )
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_REGION_NAME", "RegionOne")
        .env("OS_INTERFACE", "public")
        .output()
        .unwrap();
    let child_out = format!(
        "{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(child.status.success(), "{child_out}");
    assert!(
        child_out.contains("openrc down: cluster3: release floating IP"),
        "{child_out}"
    );
    texts.push(child_out);
    t.lap("down with OS_* variables (child process)");
    let end = snapshot(&admin);
    assert_eq!(ours(&end), (vec![], vec![]));
    assert_eq!(pairs(port(&end, node)), Vec::<String>::new());
    assert_eq!(port(&end, node)["tags"], json!([]));
    let down = drive(Operation::Down, &clusters, o, false, &k8s).unwrap();
    assert!(
        down.notes
            .iter()
            .all(|n| n.contains("nothing of kpaas-mesh's")),
        "{:?}",
        down.notes
    );
    texts.push(plan_text(&down));
    assert_eq!(snapshot(&admin), end);

    for (i, text) in texts.iter().enumerate() {
        assert_no_secret(&cloud, &format!("output {i}"), text);
    }
    t.report("errors_and_auth");
}

/// The mapping text in the DNAT agent's ConfigMap applied on `cluster`.
fn mapping_of(p: &kpaas_mesh_plugin_api::Plan, cluster: &str) -> String {
    p.actions
        .iter()
        .find_map(|a| match a {
            kpaas_mesh_plugin_api::Action::Apply {
                cluster: c,
                manifest,
                ..
            } if c == cluster && manifest["kind"] == "ConfigMap" => {
                manifest["data"]["mapping"].as_str().map(String::from)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ConfigMap applied on {cluster}: {:#?}", p.actions))
}

#[test]
fn dnat_mode() {
    let Some(cloud) = Cloud::start_or_skip("dnat_mode") else {
        return;
    };
    let mut t = Timer::new();
    t.steps.push((
        "cloud start (Keystone + Neutron + fixtures)".into(),
        cloud.started_in,
    ));
    let cy = cloud.clouds_yaml();
    let mut o = opts(&cy, "member");
    o["mode"] = json!("dnat");
    o["output_chain"] = json!(true);
    let admin = cloud.admin();
    let clusters = ["cluster1", "cluster2"];
    let mut k8s = K8s::from_cloud(&cloud, &clusters, &[]);
    let initial = snapshot(&admin);

    // Dry run: Neutron unchanged, and no agent planned before the floating IPs exist.
    let dry = drive(Operation::Up, &clusters, o.clone(), true, &k8s).unwrap();
    assert_eq!(snapshot(&admin), initial);
    assert!(
        dry.actions
            .iter()
            .all(|a| matches!(a, kpaas_mesh_plugin_api::Action::Plugin { .. })),
        "{:?}",
        dry.actions
    );
    assert!(
        dry.notes
            .iter()
            .any(|n| n.contains("once the floating IPs exist")),
        "{:?}",
        dry.notes
    );
    assert_eq!(
        routes(&dry).route("cluster1", "cluster2").unwrap().address,
        "172.22.0.200"
    );

    let up = drive(Operation::Up, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("up mode=dnat");
    let snap = snapshot(&admin);
    let (ports, fips) = ours(&snap);
    assert_eq!((ports.len(), fips.len()), (2, 2));
    let fip = |c: &str| -> String {
        fips.iter()
            .find(|f| {
                f["tags"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("kpaas-mesh-cluster={c}")))
            })
            .unwrap()["floating_ip_address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Links keep the private addresses; every node DNATs them to the peer's floating IP.
    let out = routes(&up);
    assert_eq!(
        out.route("cluster1", "cluster2").unwrap().address,
        "172.22.0.200"
    );
    assert_eq!(
        out.route("cluster2", "cluster1").unwrap().address,
        "172.21.0.200"
    );
    assert_eq!(up.outputs["openstack"]["mode"], "dnat");
    let m1 = mapping_of(&up, "cluster1");
    assert!(
        m1.contains(&format!(
            "PREROUTING cluster2 172.22.0.200 {}",
            fip("cluster2")
        )),
        "{m1}"
    );
    assert!(
        m1.contains(&format!("OUTPUT cluster2 172.22.0.200 {}", fip("cluster2"))),
        "{m1}"
    );
    assert!(
        !m1.contains("cluster1 172.21.0.200"),
        "a cluster must not DNAT its own gateway: {m1}"
    );
    let m2 = mapping_of(&up, "cluster2");
    assert!(
        m2.contains(&format!(
            "PREROUTING cluster1 172.21.0.200 {}",
            fip("cluster1")
        )),
        "{m2}"
    );
    for c in clusters {
        assert!(up.actions.iter().any(|a| matches!(a,
            kpaas_mesh_plugin_api::Action::Wait { cluster, condition: kpaas_mesh_plugin_api::WaitCondition::DaemonSetReady { .. }, .. }
            if cluster == c)), "no DaemonSet wait on {c}");
    }

    // Idempotent: Neutron unchanged, the same objects planned.
    let again = drive(Operation::Up, &clusters, o.clone(), false, &k8s).unwrap();
    assert_eq!(snapshot(&admin), snap);
    assert_eq!(again.actions, up.actions);
    t.lap("up mode=dnat again (no change)");

    // check: the Neutron checks pass; the agent's checks come from netfix-baremetal's library.
    let check = drive(Operation::Check, &clusters, o.clone(), false, &k8s).unwrap();
    let openstack: Vec<_> = check
        .checks
        .iter()
        .filter(|c| c.group.contains("openstack"))
        .collect();
    assert_eq!(openstack.len(), 9);
    assert!(
        openstack.iter().all(|c| c.status == CheckStatus::Ok),
        "{openstack:#?}"
    );
    let agent: Vec<_> = check
        .checks
        .iter()
        .filter(|c| !c.group.contains("openstack"))
        .collect();
    assert!(!agent.is_empty(), "{:#?}", check.checks);
    assert!(
        agent
            .iter()
            .any(|c| c.status == CheckStatus::Fail && format!("{c:?}").contains("not deployed")),
        "{agent:#?}"
    );
    t.lap("check mode=dnat");

    // down: Neutron cleaned, and the agent removed where it is deployed.
    k8s.agent_deployed = true;
    let down = drive(Operation::Down, &clusters, o.clone(), false, &k8s).unwrap();
    t.lap("down mode=dnat");
    assert_eq!(ours(&snapshot(&admin)), (vec![], vec![]));
    for c in clusters {
        assert!(down.actions.iter().any(|a| matches!(a,
            kpaas_mesh_plugin_api::Action::Delete { cluster, kind, .. } if cluster == c && kind == "DaemonSet")),
            "{:#?}", down.actions);
        assert!(down.actions.iter().any(|a| matches!(a,
            kpaas_mesh_plugin_api::Action::Delete { cluster, kind, name, .. }
            if cluster == c && kind == "Namespace" && name == "kpaas-mesh-netfix")));
    }
    t.report("dnat_mode");
}

/// Run by `errors_and_auth` in a child process whose only credentials are OS_* variables (an
/// openrc); in a normal test run (no KPAAS_MESH_OPENRC_CHILD) it does nothing.
#[test]
fn openrc_child() {
    if std::env::var("KPAAS_MESH_OPENRC_CHILD").is_err() {
        return;
    }
    let k8s = K8s {
        gateways: Default::default(),
        nodes: Default::default(),
        agent_deployed: false,
    };
    // down needs no cluster facts; no os_cloud, no clouds.yaml: the environment alone.
    let run = drive(Operation::Down, &["cluster3"], json!(null), false, &k8s).unwrap();
    for n in &run.planned {
        println!("openrc down: {n}");
    }
}
