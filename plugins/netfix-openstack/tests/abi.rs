//! The shipped library, loaded the way the host's loader loads it (abi_stable's
//! `lib_header_from_path` + `init_root_module`): it exports its own root module (not the one of
//! a library it links, such as netfix-baremetal's), says it is `netfix-openstack` for stage
//! `netfix`, and answers through the FFI.

use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_plugin_api::abi_stable::library::lib_header_from_path;
use kpaas_mesh_plugin_api::ffi::PluginModRef;
use kpaas_mesh_plugin_api::{ClusterRef, Operation, StageRequest, StageResponse};
use std::path::PathBuf;

/// The cdylib cargo built next to this test binary.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let name = "libkpaas_mesh_netfix_openstack.so";
    [deps.join(name), deps.parent().unwrap().join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not built next to {}", exe.display()))
}

#[test]
fn the_cdylib_is_the_netfix_openstack_plugin() {
    let header = lib_header_from_path(&library()).expect("a kpaas-mesh plugin library");
    let module = header
        .init_root_module::<PluginModRef>()
        .expect("its root module loads");
    let info = (module.info())();
    assert_eq!(info.name.as_str(), "netfix-openstack");
    let d: kpaas_mesh_plugin_api::Descriptor =
        serde_json::from_str(info.descriptor.as_str()).unwrap();
    assert_eq!(d.stage, "netfix");
    assert!(d.find_option("mode").is_some() && d.find_option("image").is_some());
    assert_eq!(
        info.abi_version.as_str(),
        kpaas_mesh_plugin_api::ABI_VERSION
    );
    let stage = (module.new_stage())().into_result().expect("stage object");

    let mut req = StageRequest::new(
        Operation::Up,
        ["cluster1", "cluster2"]
            .map(|n| ClusterRef {
                name: n.into(),
                context: n.into(),
            })
            .to_vec(),
    );
    req.settings = serde_json::to_value(MeshSettings::default()).unwrap();
    let reply = stage
        .call(serde_json::to_string(&req).unwrap().as_str().into())
        .into_result()
        .expect("a response");
    let StageResponse::NeedFacts { queries } = serde_json::from_str(&reply).unwrap() else {
        panic!("up first asks for the gateways and nodes: {reply}")
    };
    assert_eq!(queries.len(), 4);

    // A down with credentials that are not there: one error line through the FFI, no panic.
    let mut down = StageRequest::new(Operation::Down, req.clusters.clone());
    down.settings = serde_json::to_value(MeshSettings::default()).unwrap();
    down.options = serde_json::json!({"os_cloud": "x", "clouds_yaml": "/nonexistent/clouds.yaml"});
    let reply = stage
        .call(serde_json::to_string(&down).unwrap().as_str().into())
        .into_result()
        .unwrap();
    let StageResponse::NeedFacts { queries } = serde_json::from_str(&reply).unwrap() else {
        panic!("down first asks whether a DNAT agent is there: {reply}")
    };
    for query in queries {
        down.facts.push(kpaas_mesh_plugin_api::Fact {
            query,
            answer: kpaas_mesh_plugin_api::FactAnswer::Object { object: None },
        });
    }
    let err = stage
        .call(serde_json::to_string(&down).unwrap().as_str().into())
        .into_result()
        .unwrap_err();
    assert_eq!(
        err.as_str(),
        "cloud 'x': no clouds.yaml found (looked at /nonexistent/clouds.yaml)"
    );
}
