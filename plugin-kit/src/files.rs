//! How the host reads a local file for a stage ([`kpaas_mesh_plugin_api::FactQuery::File`]):
//! one definition shared by the host and the plugin test kit, so a fake world reads disk files
//! exactly as the host does.

use kpaas_mesh_plugin_api::FactAnswer;

/// A local file as the host reads it: contents and permission bits; `None` when absent.
pub fn read_file(path: &str) -> FactAnswer {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => FactAnswer::File {
                contents: Some(text),
                mode: std::fs::metadata(path)
                    .ok()
                    .map(|m| m.permissions().mode() & 0o7777),
            },
            Err(_) => FactAnswer::Error {
                message: format!("{path} is not UTF-8 text"),
            },
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FactAnswer::File {
            contents: None,
            mode: None,
        },
        Err(e) => FactAnswer::Error {
            message: format!("cannot read {path}: {e}"),
        },
    }
}
