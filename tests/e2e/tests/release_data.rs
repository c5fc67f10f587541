//! kpaas-mesh's Linkerd release data (plugin-kit/src/linkerd-releases.yaml) read again from
//! each release's own source tree: the 2.14.10 Go module (in the Go module cache) and the
//! snapshots in ../shared/peers as tests/testbed/build.sh unpacked them (`<cache>/src`), with
//! the charts it built from them. Needs no cluster; skipped when build.sh has not run, failed
//! when it has (or inside the test bed) and a tree is missing.

use kpaas_mesh_kit::linkerd::{LinkStyle, RELEASES, TrafficSplit};
use std::path::{Path, PathBuf};
use std::process::Command;

const STABLE_MODULE: &str = "github.com/linkerd/linkerd2@v0.5.1-0.20240220173600-1ea6b271718f";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bed's cache directory (`build.sh --print-dir`), if build.sh has made it.
fn cache_dir() -> Option<PathBuf> {
    let out = Command::new(repo_root().join("tests/testbed/build.sh"))
        .arg("--print-dir")
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.join("stamps").is_dir().then_some(dir)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The value of `key: value` on its own line of a YAML file (first match).
fn yaml_scalar(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// How an edge release's charts got their published versions, as its tree's release scripts say.
#[derive(Debug, PartialEq)]
enum EdgeChartRule {
    /// bin/helm-bump-edge (later bin/compute-edge-version), run by the release workflow before
    /// packaging: the tag's date with a four-digit year (edge-25.4.4 -> 2025.4.4).
    Date,
    /// Up to edge-24.2.4: bin/helm-bump-edge only bumps the patch of `-edge` versions during
    /// development, and the release workflow (.github/actions/helm-publish) runs only
    /// `bin/helm-build package`: the versions committed in the tree's Chart.yaml files.
    Tree,
}

fn edge_chart_rule(tree: &Path) -> EdgeChartRule {
    let script = |name: &str| std::fs::read_to_string(tree.join(name)).unwrap_or_default();
    let bump = script("bin/helm-bump-edge");
    let publish = script(".github/actions/helm-publish/action.yml");
    if bump.contains(r#"new_version="$yyyy.$new_mm.$new_xx""#)
        || script("bin/compute-edge-version").contains(r#"new_version="$yyyy.$new_mm.$new_xx""#)
    {
        EdgeChartRule::Date
    } else if bump.contains(r#"new_version="$major.$minor.$((patch + 1))-edge""#)
        && publish.contains("bin/helm-build package")
        && !publish.contains("helm-bump-edge")
    {
        EdgeChartRule::Tree
    } else {
        panic!(
            "{}: neither chart version rule (bin/helm-bump-edge, bin/compute-edge-version, \
             .github/actions/helm-publish/action.yml)",
            tree.display()
        )
    }
}

/// The rows of `linkerd multicluster check`: the `NewChecker("...")` names in order.
fn check_rows(check_go: &str) -> Vec<String> {
    check_go
        .split("NewChecker(\"")
        .skip(1)
        .filter_map(|s| s.split_once('"').map(|(name, _)| name.to_string()))
        .collect()
}

/// The Link API version the CLI writes (`LinkAPIGroupVersion` in pkg/k8s/k8s.go).
fn link_api(tree: &Path) -> String {
    let text = read(&tree.join("pkg/k8s/k8s.go"));
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("LinkAPIGroupVersion")
                .and_then(|r| r.split('"').nth(1))
        })
        .expect("LinkAPIGroupVersion in pkg/k8s/k8s.go")
        .to_string()
}

#[test]
fn release_data_matches_each_release_tree() {
    let Some(cache) = cache_dir() else {
        assert!(
            std::env::var_os("KPAAS_MESH_TESTBED").is_none(),
            "inside the test bed, build.sh must have run"
        );
        eprintln!("SKIP release_data: tests/testbed/build.sh has not run");
        return;
    };
    let gomodcache = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("go env GOMODCACHE");
    let mut checked = vec![];
    for rel in RELEASES.iter() {
        let (tree, charts) = match rel.version.strip_prefix("edge-") {
            Some(_) => (
                cache.join(format!("src/linkerd2-{}", rel.version)),
                cache.join(format!("charts/{}", rel.version)),
            ),
            None => (
                PathBuf::from(&gomodcache).join(STABLE_MODULE),
                cache.join("charts"),
            ),
        };
        assert!(
            tree.is_dir(),
            "{}: no tree at {}",
            rel.version,
            tree.display()
        );
        let v = &rel.version;

        // chart versions: the charts as built (stable and edge releases of the `-edge` rule: as in
        // the tree; other edge releases: the date rule of bin/helm-bump-edge /
        // bin/compute-edge-version), and the rule itself, from the tree's release scripts
        for (chart, want) in [
            ("linkerd-crds", &rel.charts.crds),
            ("linkerd-control-plane", &rel.charts.control_plane),
            ("linkerd-multicluster", &rel.charts.multicluster),
        ] {
            let got = yaml_scalar(&read(&charts.join(chart).join("Chart.yaml")), "version");
            assert_eq!(got.as_deref(), Some(want.as_str()), "{v}: {chart}");
        }
        let rule = rel.version.strip_prefix("edge-").map(|date| {
            let rule = edge_chart_rule(&tree);
            if rule == EdgeChartRule::Date {
                let want = format!("20{date}");
                for (chart, got) in [
                    ("crds", &rel.charts.crds),
                    ("control_plane", &rel.charts.control_plane),
                    ("multicluster", &rel.charts.multicluster),
                ] {
                    assert_eq!(got, &want, "{v}: {chart} (the date rule)");
                }
            }
            rule
        });
        if rule.is_none_or(|r| r == EdgeChartRule::Tree) {
            for (chart, want) in [
                ("charts/linkerd-crds", &rel.charts.crds),
                ("charts/linkerd-control-plane", &rel.charts.control_plane),
                (
                    "multicluster/charts/linkerd-multicluster",
                    &rel.charts.multicluster,
                ),
            ] {
                let got = yaml_scalar(&read(&tree.join(chart).join("Chart.yaml")), "version");
                assert_eq!(
                    got.as_deref(),
                    Some(want.as_str()),
                    "{v}: {chart} in the tree"
                );
            }
        }

        // link style and the Link version
        let link_gen = tree.join("multicluster/cmd/link-gen.go").is_file();
        assert_eq!(
            rel.links == LinkStyle::LinkGen,
            link_gen,
            "{v}: link-gen.go"
        );
        assert_eq!(rel.link_api, link_api(&tree), "{v}");
        if link_gen {
            // the chart declares the service mirrors
            let values = read(&tree.join("multicluster/charts/linkerd-multicluster/values.yaml"));
            assert!(
                values.lines().any(|l| l == "controllers: []"),
                "{v}: controllers value"
            );
        }

        // linkerd-crds' installGatewayAPI default
        let crds_values = read(&tree.join("charts/linkerd-crds/values.yaml"));
        let gateway_api = yaml_scalar(&crds_values, "installGatewayAPI").map(|s| s == "true");
        assert_eq!(rel.gateway_api, gateway_api, "{v}: installGatewayAPI");
        // ... and the Gateway API CRDs its templates hold, kept by helm on uninstall where the
        // chart has installGatewayAPI
        let mut crds: Vec<String> = std::fs::read_dir(tree.join("charts/linkerd-crds/templates"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                let plural = name
                    .strip_prefix("gateway.networking.k8s.io_")?
                    .strip_suffix(".yaml")?;
                let text = read(&tree.join("charts/linkerd-crds/templates").join(&name));
                assert_eq!(
                    text.contains("helm.sh/resource-policy: keep"),
                    rel.gateway_api.is_some(),
                    "{v}: {name}"
                );
                Some(plural.to_string())
            })
            .collect();
        crds.sort();
        assert_eq!(rel.gateway_api_crds, crds, "{v}: Gateway API CRDs");

        // HTTPRoute releases: linkerd-crds serves policy.linkerd.io v1beta3 HTTPRoute
        if rel.traffic_split == TrafficSplit::HttpRoute {
            let route = read(&tree.join("charts/linkerd-crds/templates/policy/httproute.yaml"));
            assert!(route.contains("name: v1beta3"), "{v}: HTTPRoute v1beta3");
        }

        // the rows of `linkerd multicluster check`, in its order
        let rows = check_rows(&read(&tree.join("multicluster/cmd/check.go")));
        assert_eq!(rel.multicluster_check, rows, "{v}: multicluster check rows");

        // the Events the identity controller records when it reloads its issuer, and on what
        let service = read(&tree.join("pkg/identity/service.go"));
        let main = read(&tree.join("controller/cmd/identity/main.go"));
        let ev = &rel.issuer_events;
        let go_const = |name: &str| {
            service.lines().find_map(|l| {
                let (lhs, rhs) = l.split_once('=')?;
                (lhs.trim() == name).then(|| rhs.trim().trim_matches('"').to_string())
            })
        };
        assert_eq!(
            go_const("eventTypeUpdated").as_deref(),
            Some(ev.updated.as_str()),
            "{v}"
        );
        assert_eq!(
            go_const("eventTypeSkipped").as_deref(),
            Some(ev.skipped.as_str()),
            "{v}"
        );
        assert!(
            main.contains(&format!("componentName := \"{}\"", ev.deployment))
                && main
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>()
                        == ["Kind:", "\"Deployment\","]),
            "{v}: identity events are recorded on Deployment {}",
            ev.deployment
        );

        // linkerd-smi from its snapshot
        if let Some(smi) = &rel.smi {
            let chart = read(&cache.join("charts/linkerd-smi/Chart.yaml"));
            assert_eq!(
                yaml_scalar(&chart, "version").as_deref(),
                Some(smi.chart.as_str()),
                "{v}"
            );
            let values = read(&cache.join("charts/linkerd-smi/values.yaml"));
            assert!(
                values.contains(&format!("tag: {}", smi.app)),
                "{v}: smi adaptor tag"
            );
        }
        checked.push(v.clone());
    }
    eprintln!("release data checked against the trees of {checked:?}");
}
