//! The binary interface: the root module every plugin library exports and the stage object
//! it constructs. Everything here is `#[repr(C)]` + `StableAbi`, checked by abi_stable when a
//! library is loaded. Keep it small: messages travel as JSON (see [`crate::messages`]).

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString},
};

/// Who a plugin is. Returned by [`PluginMod::info`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin-api version the plugin was built against ([`crate::ABI_VERSION`]).
    pub abi_version: RString,
    /// Unique plugin name, e.g. `cert` or `netfix-openstack`.
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// One line for `plugins list`.
    pub description: RString,
    /// The plugin's [`crate::Descriptor`] as JSON: its stage, ordering constraints,
    /// operations and option schema.
    pub descriptor: RString,
}

/// The root module of a plugin library.
///
/// Fields may be added after the last prefix field in later 0.2.x versions of this crate;
/// a host reading an older plugin then sees them as absent.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Describes the plugin; never fails.
    pub info: extern "C" fn() -> PluginInfo,
    /// Constructs the stage object. An error is a one-line message.
    #[sabi(last_prefix_field)]
    pub new_stage: extern "C" fn() -> RResult<StageBox, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "kpaas_mesh_plugin";
    const NAME: &'static str = "kpaas-mesh stage plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// A stage implementation behind the ABI.
#[sabi_trait]
pub trait StageObject: Send + Sync {
    /// Takes a JSON [`crate::messages::StageRequest`] and returns a JSON
    /// [`crate::messages::StageResponse`], or a one-line error message. Pure: reads only
    /// what it was given (and, for a plugin that talks to an outside API, reads of that API).
    fn call(&self, request: RStr<'_>) -> RResult<RString, RString>;

    /// Carries out one [`crate::messages::Action::Plugin`] of a plan this stage returned:
    /// takes a JSON [`crate::messages::ExecuteRequest`] and returns a JSON
    /// [`crate::messages::ExecuteResponse`], or a one-line error. The only place a plugin
    /// may write to an outside system; the host calls it in plan order, never in a dry run.
    #[sabi(last_prefix_field)]
    fn execute(&self, request: RStr<'_>) -> RResult<RString, RString>;
}

/// The owned, type-erased stage object a plugin hands to the host.
pub type StageBox = StageObject_TO<'static, RBox<()>>;
