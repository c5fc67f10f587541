//! Finds and loads stage plugins.
//!
//! Discovery order (first match of a plugin name wins only if names are unique; two plugins
//! with one name are an error): every `--plugin-dir`, then `$KPAAS_MESH_PLUGIN_PATH`
//! (colon-separated), then `~/.kpaas-mesh/plugins`, then `../lib/kpaas-mesh/plugins` next to
//! the binary (release archives and krew).
//!
//! Loading goes through abi_stable's `lib_header_from_path` + `init_root_module`, never the
//! per-type cached `RootModule::load_from*`, so every plugin of the one root-module type
//! loads. abi_stable never unloads a library. A library that fails to load is reported with
//! its path and the reason in one line; the host keeps going and tells the user when a stage
//! it needs has no usable plugin.

use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use abi_stable::std_types::RResult;
use kpaas_mesh_kit::stages::NETFIX;
use kpaas_mesh_plugin_api::ffi::{PluginModRef, StageBox};
use kpaas_mesh_plugin_api::{ABI_VERSION, Descriptor};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A loaded plugin, ready to build stage objects.
pub struct Plugin {
    pub info: PluginMeta,
    module: PluginModRef,
}

/// What `plugins list` prints about a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PluginMeta {
    pub name: String,
    /// The stage it provides (from its descriptor).
    pub stage: String,
    pub version: String,
    pub abi_version: String,
    pub description: String,
    pub path: PathBuf,
    /// Where the stage goes, what it answers, its options.
    pub descriptor: Descriptor,
}

impl Plugin {
    /// A new stage object; a constructor error or panic comes back as an error line.
    pub fn new_stage(&self) -> Result<StageBox, String> {
        match (self.module.new_stage())() {
            RResult::ROk(stage) => Ok(stage),
            RResult::RErr(e) => Err(format!(
                "plugin {} ({}) failed to start: {e}",
                self.info.name,
                self.info.path.display()
            )),
        }
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).finish()
    }
}

/// Where a search directory came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchDir {
    pub path: PathBuf,
    pub origin: &'static str,
}

/// The directories to search, in order. Missing directories are kept (and skipped when
/// scanning) so error messages can say where the host looked.
pub fn search_dirs(
    flag_dirs: &[PathBuf],
    env_path: Option<&str>,
    home: Option<&Path>,
    exe: Option<&Path>,
) -> Vec<SearchDir> {
    let mut dirs: Vec<SearchDir> = flag_dirs
        .iter()
        .map(|p| SearchDir {
            path: p.clone(),
            origin: "--plugin-dir",
        })
        .collect();
    for p in env_path.unwrap_or("").split(':').filter(|p| !p.is_empty()) {
        dirs.push(SearchDir {
            path: PathBuf::from(p),
            origin: "KPAAS_MESH_PLUGIN_PATH",
        });
    }
    if let Some(home) = home {
        dirs.push(SearchDir {
            path: home.join(".kpaas-mesh/plugins"),
            origin: "home",
        });
    }
    if let Some(bin_dir) = exe.and_then(Path::parent) {
        dirs.push(SearchDir {
            path: bin_dir.join("../lib/kpaas-mesh/plugins"),
            origin: "next to the binary",
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    dirs.retain(|d| seen.insert(d.path.canonicalize().unwrap_or_else(|_| d.path.clone())));
    dirs
}

/// The default search directories for this process.
pub fn default_search_dirs(flag_dirs: &[PathBuf]) -> Vec<SearchDir> {
    let env = std::env::var("KPAAS_MESH_PLUGIN_PATH").ok();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let exe = std::env::current_exe().ok();
    search_dirs(flag_dirs, env.as_deref(), home.as_deref(), exe.as_deref())
}

/// True for file names that can be plugin libraries on this platform.
fn is_library_name(name: &str) -> bool {
    let ext = std::env::consts::DLL_EXTENSION;
    name.ends_with(&format!(".{ext}")) && !name.starts_with('.')
}

/// Refuses a file that someone other than its owner (root or us) could have replaced.
pub fn check_permissions(file: &Path) -> Result<(), String> {
    let me = unsafe_geteuid();
    let dir = file.parent().unwrap_or(Path::new("."));
    for (what, path) in [("directory", dir), ("file", file)] {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot stat {what} {}: {e}", path.display()))?;
        let mode = meta.mode();
        if mode & 0o002 != 0 {
            return Err(format!(
                "refusing plugin {}: its {what} {} is world-writable (mode {:04o}); \
                 anyone could replace the plugin",
                file.display(),
                path.display(),
                mode & 0o7777
            ));
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "refusing plugin {}: its {what} {} is owned by uid {}, not by you (uid {me}) or root",
                file.display(),
                path.display(),
                meta.uid()
            ));
        }
        if mode & 0o020 != 0 && meta.gid() != 0 && meta.uid() != 0 {
            return Err(format!(
                "refusing plugin {}: its {what} {} is group-writable (mode {:04o}); \
                 other users could replace the plugin",
                file.display(),
                path.display(),
                mode & 0o7777
            ));
        }
    }
    Ok(())
}

fn unsafe_geteuid() -> u32 {
    // The owner of /proc/self is the effective uid; avoids a libc dependency.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// Loads one library and reads its metadata. Every failure names the file.
pub fn load_file(path: &Path) -> Result<Plugin, String> {
    check_permissions(path)?;
    let header = lib_header_from_path(path).map_err(|e| describe(path, None, &e))?;
    let plugin_abi = header.version_strings();
    let module = header
        .init_root_module::<PluginModRef>()
        .map_err(|e| describe(path, Some(plugin_abi.version.as_str()), &e))?;
    let raw = (module.info())();
    let descriptor: Descriptor = serde_json::from_str(raw.descriptor.as_str()).map_err(|e| {
        format!(
            "{}: plugin {} has an unreadable descriptor ({e})",
            path.display(),
            raw.name
        )
    })?;
    if descriptor.stage.is_empty()
        || !descriptor
            .stage
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "{}: plugin {} declares the stage name '{}' (want lowercase letters, digits and '-')",
            path.display(),
            raw.name,
            descriptor.stage
        ));
    }
    Ok(Plugin {
        info: PluginMeta {
            name: raw.name.into_string(),
            stage: descriptor.stage.clone(),
            version: raw.version.into_string(),
            abi_version: raw.abi_version.into_string(),
            description: raw.description.into_string(),
            path: path.to_path_buf(),
            descriptor,
        },
        module,
    })
}

/// One line for a load error, without abi_stable's multi-line dumps.
fn describe(path: &Path, plugin_abi: Option<&str>, err: &LibraryError) -> String {
    let file = path.display();
    let host = ABI_VERSION;
    match err {
        LibraryError::OpenError { err, .. } => {
            format!("{file}: not a loadable library ({err})")
        }
        LibraryError::GetSymbolError { .. } => format!(
            "{file}: not a kpaas-mesh plugin library (it exports no abi_stable root module)"
        ),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "{file}: plugin ABI mismatch: the plugin was built for plugin-api {actual_version}, \
             this kubectl-kpaas_mesh speaks plugin-api {expected_version}; rebuild the plugin \
             against plugin-api {expected_version}"
        ),
        LibraryError::AbiInstability(_) if plugin_abi.is_some_and(|v| v != host) => format!(
            "{file}: plugin ABI mismatch: the plugin was built for plugin-api {}, this \
             kubectl-kpaas_mesh speaks plugin-api {host}, and their layouts differ; rebuild the \
             plugin against plugin-api {host}",
            plugin_abi.unwrap_or("?")
        ),
        LibraryError::AbiInstability(_) => format!(
            "{file}: plugin interface mismatch: the plugin (plugin-api {}) has a different \
             binary layout than this host (plugin-api {host}); rebuild it against plugin-api {host}",
            plugin_abi.unwrap_or("?")
        ),
        LibraryError::InvalidAbiHeader(h) => format!(
            "{file}: built with an incompatible abi_stable (header {}.{}); rebuild it against \
             plugin-api {host}",
            h.abi_major, h.abi_minor
        ),
        LibraryError::RootModule { err, .. } => {
            format!("{file}: the plugin's root module failed to initialise: {err}")
        }
        other => {
            let text = other.to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            format!("{file}: cannot load plugin: {first}")
        }
    }
}

/// Everything discovery found: usable plugins, and files that could not be loaded.
#[derive(Debug, Default)]
pub struct Registry {
    pub plugins: Vec<Plugin>,
    pub errors: Vec<String>,
    pub searched: Vec<SearchDir>,
}

impl Registry {
    /// Scans `dirs` in order and loads every library in them.
    pub fn discover(dirs: Vec<SearchDir>) -> Registry {
        let mut reg = Registry {
            searched: dirs.clone(),
            ..Registry::default()
        };
        let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
        for dir in &dirs {
            let Ok(entries) = std::fs::read_dir(&dir.path) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
                .filter(|e| is_library_name(&e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect();
            files.sort();
            for file in files {
                tracing::debug!(file = %file.display(), "loading plugin");
                match load_file(&file) {
                    Ok(plugin) => {
                        if let Some(first) = by_name.get(&plugin.info.name) {
                            // The same file reached twice (e.g. a symlinked dir) is fine.
                            if same_file(first, &file) {
                                continue;
                            }
                            reg.errors.push(format!(
                                "{}: a second plugin named '{}' (the first is {}); remove one",
                                file.display(),
                                plugin.info.name,
                                first.display()
                            ));
                            continue;
                        }
                        by_name.insert(plugin.info.name.clone(), file.clone());
                        reg.plugins.push(plugin);
                    }
                    Err(e) => reg.errors.push(e),
                }
            }
        }
        reg
    }

    /// The plugin for `stage`. Netfix has several: `netfix_choice` picks `netfix-<choice>`.
    pub fn for_stage(&self, stage: &str, netfix_choice: &str) -> Result<&Plugin, String> {
        let found = if stage == NETFIX {
            let want = format!("netfix-{netfix_choice}");
            self.plugins.iter().find(|p| {
                p.info.stage == stage && (p.info.name == want || p.info.name == netfix_choice)
            })
        } else {
            let mut of_stage = self.plugins.iter().filter(|p| p.info.stage == stage);
            let first = of_stage.next();
            if let (Some(a), Some(b)) = (first, of_stage.next()) {
                return Err(format!(
                    "two plugins provide stage {stage}: {} ({}) and {} ({}); remove one",
                    a.info.name,
                    a.info.path.display(),
                    b.info.name,
                    b.info.path.display()
                ));
            }
            first
        };
        found.ok_or_else(|| self.not_installed(stage, netfix_choice))
    }

    /// Every stage some installed plugin provides, each once, in name order.
    pub fn stages(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&str> =
            self.plugins.iter().map(|p| p.info.stage.as_str()).collect();
        set.into_iter().map(String::from).collect()
    }

    /// The plugin named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.info.name == name)
    }

    fn not_installed(&self, stage: &str, netfix_choice: &str) -> String {
        let what = if stage == NETFIX {
            format!("the netfix plugin 'netfix-{netfix_choice}' is not installed")
        } else {
            format!("the {stage} stage plugin is not installed")
        };
        let dirs: Vec<String> = self
            .searched
            .iter()
            .map(|d| d.path.display().to_string())
            .collect();
        let mut msg = format!("{what} (looked in: {})", dirs.join(", "));
        if !self.errors.is_empty() {
            msg.push_str(&format!(
                "; {} plugin file(s) failed to load, see `kubectl kpaas-mesh plugins list`",
                self.errors.len()
            ));
        }
        msg
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The root-module type's version, for `version`.
pub fn host_abi_version() -> String {
    PluginModRef::VERSION_STRINGS.version.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn search_order_is_flags_env_home_exe() {
        let dirs = search_dirs(
            &[PathBuf::from("/f1"), PathBuf::from("/f2")],
            Some("/e1::/e2"),
            Some(Path::new("/home/u")),
            Some(Path::new("/opt/kpaas/bin/kubectl-kpaas_mesh")),
        );
        let paths: Vec<_> = dirs.iter().map(|d| d.path.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/f1",
                "/f2",
                "/e1",
                "/e2",
                "/home/u/.kpaas-mesh/plugins",
                "/opt/kpaas/bin/../lib/kpaas-mesh/plugins"
            ]
        );
        assert_eq!(dirs[2].origin, "KPAAS_MESH_PLUGIN_PATH");
        let dup = search_dirs(
            &[PathBuf::from("/x"), PathBuf::from("/x")],
            None,
            None,
            None,
        );
        assert_eq!(dup.len(), 1);
    }

    #[test]
    fn library_names() {
        assert!(is_library_name("libkpaas_mesh_cert.so"));
        assert!(!is_library_name("libkpaas_mesh_cert.rlib"));
        assert!(!is_library_name(".hidden.so"));
        assert!(!is_library_name("README"));
    }

    #[test]
    fn world_writable_places_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("libx.so");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_permissions(&file).unwrap();

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = check_permissions(&file).unwrap_err();
        assert!(err.contains("is world-writable (mode 0666)"), "{err}");

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_permissions(&file).unwrap_err();
        assert!(err.contains("its directory"), "{err}");
        assert!(err.contains("world-writable"), "{err}");
    }

    #[test]
    fn garbage_files_give_one_line_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("libgarbage.so");
        std::fs::write(&file, b"this is not an ELF file").unwrap();
        let err = load_file(&file).unwrap_err();
        assert!(err.starts_with(&file.display().to_string()), "{err}");
        assert!(err.contains("not a loadable library"), "{err}");
        assert!(!err.contains('\n'), "{err}");

        let reg = Registry::discover(vec![SearchDir {
            path: tmp.path().to_path_buf(),
            origin: "test",
        }]);
        assert!(reg.plugins.is_empty());
        assert_eq!(reg.errors.len(), 1);
        let err = reg.for_stage("cert", "none").unwrap_err();
        assert!(
            err.starts_with("the cert stage plugin is not installed (looked in: "),
            "{err}"
        );
        assert!(err.contains("1 plugin file(s) failed to load"), "{err}");
        let err = reg.for_stage("netfix", "openstack").unwrap_err();
        assert!(
            err.starts_with("the netfix plugin 'netfix-openstack' is not installed"),
            "{err}"
        );
    }
}
