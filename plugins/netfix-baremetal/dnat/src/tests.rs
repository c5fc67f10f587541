//! Unit tests of the pure DNAT functions on their own: mapping text, checksum, plan functions as another netfix
//! plugin calls them. The stage conversation (facts in, plans out) is tested in the netfix-baremetal plugin.

use super::*;
use crate::mapping::checksum;
use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::testkit::clusters;
use serde_json::json;

#[test]
fn checksum_is_stable_and_separates_parts() {
    assert_eq!(checksum(&[]), "cbf29ce484222325");
    assert_eq!(checksum(&["a"]), checksum(&["a"]));
    assert_ne!(checksum(&["ab", "c"]), checksum(&["a", "bc"]));
    assert_ne!(checksum(&["x"]), checksum(&["y"]));
}

#[test]
fn down_functions_for_other_plugins_skip_clusters_without_the_agent() {
    let cl = clusters(2);
    let mut states = BTreeMap::new();
    states.insert("cluster1".to_string(), AgentState::default());
    states.insert(
        "cluster2".to_string(),
        AgentState {
            namespace: Some(json!({})),
            daemonset: None,
            configmap: None,
        },
    );
    let actions = dnat_down_actions(&cl, &states, &AgentOptions::new(&MeshSettings::default()));
    assert!(actions.iter().all(|a| matches!(a, Action::Delete { cluster, .. } | Action::Wait { cluster, .. } if cluster == "cluster2")));
    assert_eq!(actions.len(), 5);
    let err = dnat_up_actions(
        &cl,
        &DnatTargets::new(),
        &AgentOptions::new(&MeshSettings::default()),
    )
    .unwrap_err();
    assert_eq!(err, "no DNAT target for cluster cluster1");
}

#[test]
fn mapping_text_round_trips_and_bad_lines_are_named() {
    let targets: DnatTargets = [
        ("a", vec!["172.21.0.10", "172.21.0.11"], "203.0.113.1"),
        ("b", vec!["172.22.0.10"], "203.0.113.2"),
    ]
    .into_iter()
    .map(|(n, p, pub_)| {
        (
            n.to_string(),
            DnatTarget {
                private: p.into_iter().map(|s| s.parse().unwrap()).collect(),
                public: pub_.parse().unwrap(),
            },
        )
    })
    .collect();
    let rules = rules_for("b", &targets, true);
    assert_eq!(rules.len(), 4);
    assert!(rules.iter().all(|r| r.peer == "a"));
    let text = render_mapping("b", &rules);
    assert!(text.starts_with("# kpaas-mesh netfix DNAT mapping for the nodes of b"));
    assert_eq!(parse_mapping(&text).unwrap(), rules);
    assert!(render_mapping("b", &[]).contains("empty"));
    assert!(parse_mapping(&render_mapping("b", &[])).unwrap().is_empty());
    for (bad, want) in [
        (
            "PREROUTING a 1.2.3.4",
            "mapping line 1: want 'CHAIN PEER PRIVATE PUBLIC'",
        ),
        (
            "# x\nINPUT a 1.2.3.4 5.6.7.8",
            "mapping line 2: chain must be PREROUTING or OUTPUT",
        ),
        (
            "OUTPUT a 1.2.3.4 5.6.7.x",
            "mapping line 1: \"5.6.7.x\" is not an IPv4 address",
        ),
    ] {
        let err = parse_mapping(bad).unwrap_err();
        assert!(err.starts_with(want), "{bad}: {err}");
    }
    let routes = routes(&clusters(0), &targets);
    assert!(routes.routes.is_empty());
    let two = vec![
        ClusterRef {
            name: "a".into(),
            context: "a".into(),
        },
        ClusterRef {
            name: "b".into(),
            context: "b".into(),
        },
    ];
    assert_eq!(routes_addr(&two, &targets), "172.21.0.10,172.21.0.11");
}

fn routes_addr(cl: &[ClusterRef], t: &DnatTargets) -> String {
    routes(cl, t).route("b", "a").unwrap().address.clone()
}
