//! `version` and `version -o json`: the tool, its plugin ABI, each plugin found, and the
//! Linkerd releases of the release data, as scripts read them.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn version_lists_plugins_abi_and_linkerd_releases() {
    let home = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&[&cert_plugin()]);
    let dir = plugins.path().to_str().unwrap();
    let out = host(&["--plugin-dir", dir, "version", "-o", "json"], home.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["abi"], kpaas_mesh_plugin_api::ABI_VERSION);
    let plugins = doc["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 1, "{doc}");
    assert_eq!(
        (plugins[0]["name"].as_str(), plugins[0]["stage"].as_str()),
        (Some("cert"), Some("cert"))
    );
    assert_eq!(plugins[0]["abi"], kpaas_mesh_plugin_api::ABI_VERSION);
    let minors: Vec<&str> = doc["linkerd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["minor"].as_str().unwrap())
        .collect();
    assert_eq!(
        minors,
        ["2.14", "2.15", "2.16", "2.17", "2.18", "2.19", "2.20"]
    );
    let default: Vec<&str> = doc["linkerd"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["default"] == true)
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(default, ["stable-2.14.10"]);
    let r218 = &doc["linkerd"][4];
    assert_eq!(r218["minor"], "2.18");
    assert_eq!(r218["links"], "link-gen");
    assert_eq!(r218["charts"]["linkerd-multicluster"], "2025.4.4");
    assert_eq!(doc["linkerd"][3]["links"], "link");

    let out = host(&["--plugin-dir", dir, "version"], home.path());
    let text = stdout(&out);
    assert!(
        text.contains("plugin cert 0.1.0 (stage cert, ABI"),
        "{text}"
    );
    assert!(text.contains("linkerd 2.18 = edge-25.4.4"), "{text}");
    assert!(
        text.contains("linkerd 2.14 = stable-2.14.10 (default)"),
        "{text}"
    );
}
