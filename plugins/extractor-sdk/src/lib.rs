//! The Rust SDK for Pods extractor-only plugins (world `extractor-plugin` of
//! `pods:provider@0.1.0`). A crate of its own: one crate can export only one world's bindings.
//!
//! ```text
//! struct MyExtractor;
//! impl pods_extractor_sdk::Guest for MyExtractor { fn describe() -> ExtractorManifest { … } }
//! impl pods_extractor_sdk::extractor::Guest for MyExtractor { fn extract(…) { … } }
//! pods_extractor_sdk::export_extractor_plugin!(MyExtractor);
//! ```

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "extractor-plugin",
        pub_export_macro: true,
        export_macro_name: "export_extractor_plugin",
        default_bindings_module: "pods_extractor_sdk::bindings",
    });
}

pub use bindings::Guest;
pub use bindings::export_extractor_plugin;
pub use bindings::exports::pods::provider::extractor;
pub use bindings::pods::provider::types::ExtractorManifest;
pub use serde_json;

/// The WIT package version this SDK builds against.
pub const API_VERSION: &str = "0.1.0";
