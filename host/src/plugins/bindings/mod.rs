//! The bindings layer: the only code that knows a WIT version. One module per frozen version
//! (`v0_1_0.rs` for `wit/v0.1.0`), one table of the versions this host runs ([`SUPPORTED`]), and
//! one enum over them ([`Pre`], [`Bindings`]) whose calls take and give the host's own types —
//! so the sandbox (`runtime.rs`) never names a version, as in Zed's `extension_host`.
//!
//! A new WIT version adds a module here, a row to [`SUPPORTED`] and an arm to each match below;
//! the old ones stay as they are, so plugins built against them keep working.

mod v0_1_0;

use wasmtime::component::{InstancePre, ResourceAny};
use wasmtime::{Engine, Store};

use super::runtime::PluginError;
use super::types::{
    ChatRequest, Completion, HttpRequest, HttpResponse, Manifest, ProviderError, SseEvent,
    StreamDelta,
};

/// One WIT API version this host runs.
pub struct Api {
    /// `major.minor` (for 0.x versions the minor is the breaking part), as people read it…
    pub version: &'static str,
    /// …and as numbers.
    pub major_minor: (u64, u64),
}

/// The WIT API versions this host runs, oldest first.
pub const SUPPORTED: &[Api] = &[Api {
    version: "0.1",
    major_minor: (0, 1),
}];

/// `0.1.x, …`: the supported versions as people read them.
pub fn supported() -> String {
    SUPPORTED
        .iter()
        .map(|api| format!("{}.x", api.version))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a manifest's `api-version` (`x.y.z`) is one this host runs.
pub fn runs(api_version: &str) -> bool {
    let mut parts = api_version.split('.');
    let (Some(major), Some(minor), Some(patch), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let number = |p: &str| p.parse::<u64>().ok();
    match (number(major), number(minor), number(patch)) {
        (Some(major), Some(minor), Some(_)) => SUPPORTED
            .iter()
            .any(|api| api.major_minor == (major, minor)),
        _ => false,
    }
}

/// The (major, minor) of the `pods:provider/provider@x.y.z` (or `…/extractor@x.y.z`) interface a
/// component exports.
fn exported_version(exports: &[String]) -> Option<(u64, u64)> {
    exports.iter().find_map(|e| {
        let version = e
            .strip_prefix("pods:provider/provider@")
            .or_else(|| e.strip_prefix("pods:provider/extractor@"))?;
        let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
        Some((parts.next()??, parts.next()??))
    })
}

/// Dispatch on the API version a component exports, before anything is instantiated.
fn check_version(exports: &[String]) -> Result<(u64, u64), PluginError> {
    match exported_version(exports) {
        Some(version) if SUPPORTED.iter().any(|api| api.major_minor == version) => Ok(version),
        Some((major, minor)) => Err(PluginError::Invalid(format!(
            "it is built against pods:provider@{major}.{minor}, which this host does not know; it runs plugins built against {}",
            supported()
        ))),
        None => Err(PluginError::Invalid(format!(
            "it exports [{}], but a plugin exports pods:provider/provider@<version> (the `plugin` world) or pods:provider/extractor@<version> (the `extractor-plugin` world); this host runs {}",
            exports.join(", "),
            supported()
        ))),
    }
}

/// A linked component, ready to instantiate: by version and world.
pub enum Pre<T: 'static> {
    V0_1Provider(v0_1_0::PluginPre<T>),
    V0_1Extractor(v0_1_0::extractor_only::ExtractorPluginPre<T>),
}

impl<T: Send + 'static> Pre<T> {
    /// Reads the version and world from the component's exports and types the linked component
    /// with that version's bindings.
    pub fn new(pre: InstancePre<T>, exports: &[String]) -> Result<Self, PluginError> {
        let has = |name: &str| exports.iter().any(|e| e == name);
        let world = |e: wasmtime::Error| PluginError::Invalid(format!("world: {e:#}"));
        match check_version(exports)? {
            (0, 1) if has(v0_1_0::PROVIDER_EXPORT) => Ok(Pre::V0_1Provider(
                v0_1_0::PluginPre::new(pre).map_err(world)?,
            )),
            (0, 1) if has(v0_1_0::EXTRACTOR_EXPORT) => Ok(Pre::V0_1Extractor(
                v0_1_0::extractor_only::ExtractorPluginPre::new(pre).map_err(world)?,
            )),
            (0, 1) => Err(PluginError::Invalid(format!(
                "it exports [{}]; a 0.1 plugin exports {} or {}",
                exports.join(", "),
                v0_1_0::PROVIDER_EXPORT,
                v0_1_0::EXTRACTOR_EXPORT
            ))),
            (major, minor) => Err(PluginError::Invalid(format!(
                "pods:provider@{major}.{minor} is listed as supported but has no bindings"
            ))),
        }
    }

    pub fn engine(&self) -> &Engine {
        match self {
            Pre::V0_1Provider(pre) => pre.engine(),
            Pre::V0_1Extractor(pre) => pre.engine(),
        }
    }

    pub async fn instantiate(&self, store: &mut Store<T>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::V0_1Provider(pre) => Bindings::V0_1Provider(pre.instantiate_async(store).await?),
            Pre::V0_1Extractor(pre) => Bindings::V0_1Extractor(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance's exports: by version and world.
pub enum Bindings {
    V0_1Provider(v0_1_0::Plugin),
    V0_1Extractor(v0_1_0::extractor_only::ExtractorPlugin),
}

/// What a call into a plugin gives back: the guest's answer, or why the call itself failed.
type Call<T> = wasmtime::Result<T>;

/// A call only a provider plugin has, made on an extractor-only one (the runtime checks
/// [`Bindings::is_provider`] first; this is the fallback).
fn no_provider<T>() -> Call<T> {
    Err(wasmtime::Error::msg(
        "an extractor plugin has no provider interface",
    ))
}

impl Bindings {
    /// Whether it has the provider interface (the `plugin` world).
    pub fn is_provider(&self) -> bool {
        match self {
            Bindings::V0_1Provider(_) => true,
            Bindings::V0_1Extractor(_) => false,
        }
    }

    pub async fn describe<T: Send>(&self, store: &mut Store<T>) -> Call<Manifest> {
        match self {
            Bindings::V0_1Provider(b) => b
                .pods_provider_provider()
                .call_describe(store)
                .await
                .map(v0_1_0::manifest),
            Bindings::V0_1Extractor(b) => b
                .call_describe(store)
                .await
                .map(v0_1_0::extractor_only::manifest),
        }
    }

    pub async fn build_request<T: Send>(
        &self,
        store: &mut Store<T>,
        request: &ChatRequest,
        base_url: &str,
    ) -> Call<Result<HttpRequest, ProviderError>> {
        match self {
            Bindings::V0_1Provider(b) => {
                let request = v0_1_0::request(request, base_url);
                let r = b
                    .pods_provider_provider()
                    .call_build_request(store, &request)
                    .await?;
                Ok(r.map(v0_1_0::http_request).map_err(v0_1_0::provider_error))
            }
            Bindings::V0_1Extractor(_) => no_provider(),
        }
    }

    pub async fn parse_response<T: Send>(
        &self,
        store: &mut Store<T>,
        request: &ChatRequest,
        base_url: &str,
        response: &HttpResponse,
    ) -> Call<Result<Completion, ProviderError>> {
        match self {
            Bindings::V0_1Provider(b) => {
                let (request, response) = (
                    v0_1_0::request(request, base_url),
                    v0_1_0::http_response(response),
                );
                let r = b
                    .pods_provider_provider()
                    .call_parse_response(store, &request, &response)
                    .await?;
                Ok(r.map(v0_1_0::completion).map_err(v0_1_0::provider_error))
            }
            Bindings::V0_1Extractor(_) => no_provider(),
        }
    }

    /// A new stream parser for a streamed answer to `request`.
    pub async fn stream_new<T: Send>(
        &self,
        store: &mut Store<T>,
        request: &ChatRequest,
        base_url: &str,
    ) -> Call<ResourceAny> {
        match self {
            Bindings::V0_1Provider(b) => {
                let request = v0_1_0::request(request, base_url);
                b.pods_provider_provider()
                    .stream_parser()
                    .call_constructor(store, &request)
                    .await
            }
            Bindings::V0_1Extractor(_) => no_provider(),
        }
    }

    pub async fn stream_push<T: Send>(
        &self,
        store: &mut Store<T>,
        parser: ResourceAny,
        event: &SseEvent,
    ) -> Call<Result<StreamDelta, ProviderError>> {
        match self {
            Bindings::V0_1Provider(b) => {
                let event = v0_1_0::sse_event(event);
                let r = b
                    .pods_provider_provider()
                    .stream_parser()
                    .call_push(store, parser, &event)
                    .await?;
                Ok(r.map(v0_1_0::stream_delta).map_err(v0_1_0::provider_error))
            }
            Bindings::V0_1Extractor(_) => no_provider(),
        }
    }

    pub async fn stream_finish<T: Send>(
        &self,
        store: &mut Store<T>,
        parser: ResourceAny,
    ) -> Call<Result<Completion, ProviderError>> {
        match self {
            Bindings::V0_1Provider(b) => {
                let r = b
                    .pods_provider_provider()
                    .stream_parser()
                    .call_finish(store, parser)
                    .await?;
                Ok(r.map(v0_1_0::completion).map_err(v0_1_0::provider_error))
            }
            Bindings::V0_1Extractor(_) => no_provider(),
        }
    }

    /// The output extractor on a stored raw response (both worlds have it).
    pub async fn extract<T: Send>(
        &self,
        store: &mut Store<T>,
        raw: &str,
        args: Option<&str>,
    ) -> Call<Result<String, String>> {
        // The same interface in two worlds: two generated types.
        match self {
            Bindings::V0_1Provider(b) => {
                b.pods_provider_extractor()
                    .call_extract(store, raw, args)
                    .await
            }
            Bindings::V0_1Extractor(b) => {
                b.pods_provider_extractor()
                    .call_extract(store, raw, args)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_api_version_is_read_from_the_exports_and_unknown_ones_are_refused_by_name() {
        assert!(check_version(&exports(&["pods:provider/provider@0.1.0"])).is_ok());
        assert!(check_version(&exports(&["pods:provider/provider@0.1.7"])).is_ok());
        assert!(check_version(&exports(&["describe", "pods:provider/extractor@0.1.0"])).is_ok());
        for newer in [
            "pods:provider/provider@0.2.0",
            "pods:provider/provider@1.0.0",
        ] {
            let why = check_version(&exports(&[newer]))
                .expect_err("unknown version")
                .to_string();
            let version = newer.rsplit('@').next().unwrap_or_default();
            let major_minor = version.rsplit_once('.').map_or(version, |(mm, _)| mm);
            assert!(
                why.contains(&format!("pods:provider@{major_minor}")),
                "{why}"
            );
            assert!(why.contains("0.1.x"), "{why}");
        }
        let why = check_version(&exports(&["wasi:cli/run@0.2.0"]))
            .expect_err("not a plugin")
            .to_string();
        assert!(why.contains("wasi:cli/run@0.2.0"), "{why}");
    }

    #[test]
    fn a_manifest_api_version_is_run_only_when_its_major_minor_is_supported() {
        assert!(runs("0.1.0") && runs("0.1.12"));
        for other in ["0.2.0", "1.1.0", "0.1", "0.1.0.0", "0.1.x", "", "v0.1.0"] {
            assert!(!runs(other), "{other:?}");
        }
        assert_eq!(supported(), "0.1.x");
    }
}
