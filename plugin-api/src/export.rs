//! The plugin side of the ABI: implement [`StagePlugin`] with plain Rust types and export it
//! with [`export_stage_plugin!`]. The adapter decodes the JSON request, calls the plugin,
//! encodes the response and turns panics into errors, so plugin authors never write FFI code.

use crate::ffi::StageObject;
use crate::messages::{ExecuteRequest, ExecuteResponse, StageRequest, StageResponse};
use abi_stable::std_types::{RErr, ROk, RResult, RStr, RString};
use std::cell::RefCell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

/// A stage's error: one line a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub message: String,
}

impl PluginError {
    pub fn new(message: impl Into<String>) -> Self {
        PluginError {
            message: message.into(),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<String> for PluginError {
    fn from(message: String) -> Self {
        PluginError { message }
    }
}

impl From<&str> for PluginError {
    fn from(message: &str) -> Self {
        PluginError::new(message)
    }
}

/// What a stage plugin implements: a pure function from request to response, and, for a
/// plugin whose plans hold [`crate::Action::Plugin`] actions, their execution.
pub trait StagePlugin: Send + Sync + 'static {
    fn run(&self, request: StageRequest) -> Result<StageResponse, PluginError>;

    /// Carries out one of this plugin's own planned actions. The default refuses: a plugin
    /// that plans none never gets called here.
    fn execute(&self, request: ExecuteRequest) -> Result<ExecuteResponse, PluginError> {
        let _ = request;
        Err(PluginError::new("this plugin plans no plugin actions"))
    }
}

/// Adapts a [`StagePlugin`] to the ABI's [`StageObject`]. Used by [`export_stage_plugin!`].
pub struct StageAdapter<P: StagePlugin>(pub P);

impl<P: StagePlugin> StageObject for StageAdapter<P> {
    fn call(&self, request: RStr<'_>) -> RResult<RString, RString> {
        match guard(|| call_json(&self.0, request.as_str())) {
            Ok(json) => ROk(json.into()),
            Err(message) => RErr(message.into()),
        }
    }

    fn execute(&self, request: RStr<'_>) -> RResult<RString, RString> {
        match guard(|| execute_json(&self.0, request.as_str())) {
            Ok(json) => ROk(json.into()),
            Err(message) => RErr(message.into()),
        }
    }
}

/// Decodes, executes and encodes one plugin action, as the host's `execute` call does.
pub fn execute_json(plugin: &impl StagePlugin, request: &str) -> Result<String, String> {
    let request: ExecuteRequest =
        serde_json::from_str(request).map_err(|e| format!("cannot decode the action: {e}"))?;
    let response = plugin.execute(request).map_err(|e| e.message)?;
    serde_json::to_string(&response).map_err(|e| format!("cannot encode the result: {e}"))
}

/// Decodes, runs and encodes one call. Public so plugin tests can drive the exact JSON path
/// the host uses without loading a library.
pub fn call_json(plugin: &impl StagePlugin, request: &str) -> Result<String, String> {
    let request: StageRequest =
        serde_json::from_str(request).map_err(|e| format!("cannot decode the request: {e}"))?;
    let response = plugin.run(request).map_err(|e| e.message)?;
    serde_json::to_string(&response).map_err(|e| format!("cannot encode the response: {e}"))
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into `Err("plugin panicked: <message> at <file:line>")`.
///
/// The plugin's copy of std gets a panic hook that records the message instead of printing
/// it, so the host shows one clean error line.
pub fn guard<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
        }));
    });
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => {
            let what = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(format!("plugin panicked: {what}"))
        }
    }
}

/// Exports a [`StagePlugin`] as this library's root module.
///
/// ```ignore
/// kpaas_mesh_plugin_api::export_stage_plugin! {
///     name: "cert",
///     description: "Trust anchor and issuer certificates (guide 3.1)",
///     descriptor: || Descriptor::new("cert", &[Operation::Up, Operation::Status]),
///     constructor: || Ok(CertStage::default()),
/// }
/// ```
///
/// The plugin crate must list `abi_stable` as a dependency (same version as plugin-api's):
/// abi_stable's export attribute names it by absolute path. Nothing else of it is needed.
#[macro_export]
macro_rules! export_stage_plugin {
    (
        name: $name:expr,
        description: $description:expr,
        descriptor: $descriptor:expr,
        constructor: $constructor:expr $(,)?
    ) => {
        #[::abi_stable::export_root_module]
        pub fn kpaas_mesh_root_module() -> $crate::ffi::PluginModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::ffi::PluginMod {
                info: __kpaas_mesh_info,
                new_stage: __kpaas_mesh_new_stage,
            }
            .leak_into_prefix()
        }

        extern "C" fn __kpaas_mesh_info() -> $crate::ffi::PluginInfo {
            // A descriptor that panics or cannot be encoded reads as an empty string, which
            // the host reports as a broken plugin.
            let descriptor = $crate::export::guard(|| {
                let make = $descriptor;
                let d: $crate::Descriptor = make();
                $crate::serde_json::to_string(&d).map_err(|e| e.to_string())
            })
            .unwrap_or_default();
            $crate::ffi::PluginInfo {
                abi_version: $crate::ABI_VERSION.into(),
                name: ($name).into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: ($description).into(),
                descriptor: descriptor.into(),
            }
        }

        extern "C" fn __kpaas_mesh_new_stage() -> $crate::abi_stable::std_types::RResult<
            $crate::ffi::StageBox,
            $crate::abi_stable::std_types::RString,
        > {
            use $crate::abi_stable::std_types::{RErr, ROk};
            let built = $crate::export::guard(|| {
                let ctor = $constructor;
                let plugin = ctor().map_err(|e: $crate::PluginError| e.message)?;
                Ok($crate::ffi::StageObject_TO::from_value(
                    $crate::export::StageAdapter(plugin),
                    $crate::abi_stable::sabi_trait::TD_Opaque,
                ))
            });
            match built {
                Ok(stage) => ROk(stage),
                Err(message) => RErr(message.into()),
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Operation, Plan};

    struct Echo;
    impl StagePlugin for Echo {
        fn run(&self, request: StageRequest) -> Result<StageResponse, PluginError> {
            match request.operation {
                Operation::Up => Ok(StageResponse::Plan(Plan {
                    notes: vec![format!("{} clusters", request.clusters.len())],
                    ..Plan::default()
                })),
                Operation::Down => Err(PluginError::new("down is not supported")),
                _ => panic!("boom in {:?}", request.operation),
            }
        }
    }

    fn request(op: Operation) -> String {
        serde_json::to_string(&StageRequest::new(op, vec![])).unwrap()
    }

    #[test]
    fn adapter_round_trips_json() {
        let out = StageAdapter(Echo).call(request(Operation::Up).as_str().into());
        let json = out.into_result().unwrap();
        let resp: StageResponse = serde_json::from_str(&json).unwrap();
        match resp {
            StageResponse::Plan(p) => assert_eq!(p.notes, ["0 clusters"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn adapter_passes_plugin_errors_through() {
        let out = StageAdapter(Echo).call(request(Operation::Down).as_str().into());
        assert_eq!(
            out.into_result().unwrap_err().as_str(),
            "down is not supported"
        );
    }

    #[test]
    fn adapter_turns_panics_into_errors() {
        let out = StageAdapter(Echo).call(request(Operation::Status).as_str().into());
        let err = out.into_result().unwrap_err();
        assert!(
            err.starts_with("plugin panicked: boom in Status at "),
            "{err}"
        );
        assert!(err.contains("export.rs"), "{err}");
    }

    #[test]
    fn adapter_rejects_garbage_requests() {
        let out = StageAdapter(Echo).call("{not json".into());
        let err = out.into_result().unwrap_err();
        assert!(err.starts_with("cannot decode the request:"), "{err}");
    }
}
