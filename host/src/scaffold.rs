//! `pods plugin new`: writes a ready-to-build provider plugin crate from the template in
//! `plugins/template/`. The crate is self-contained — the WIT, a copy of the Rust SDK, the OpenAI
//! plugin's translation (most new providers speak OpenAI's format) and three conformance vectors —
//! so it builds anywhere with a Rust toolchain and the wasm32-wasip2 target.

use std::path::{Path, PathBuf};

/// What the new plugin is.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// Provider id: `[a-z0-9][a-z0-9-]*`.
    pub id: String,
    pub name: String,
    /// `https://host/path` the provider serves `…/chat/completions` under.
    pub base_url: String,
    pub models: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists; pick another folder")]
    Exists(PathBuf),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// (path in the new crate, template text)
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../plugins/template/Cargo.toml.in"),
    ),
    (
        "README.md",
        include_str!("../../plugins/template/README.md.in"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../plugins/template/cargo-config.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../plugins/template/lib.rs.in"),
    ),
    (
        "src/request.rs",
        include_str!("../../plugins/openai/src/request.rs"),
    ),
    (
        "src/response.rs",
        include_str!("../../plugins/openai/src/response.rs"),
    ),
    (
        "src/stream.rs",
        include_str!("../../plugins/openai/src/stream.rs"),
    ),
    (
        "wit/v0.1.0/provider.wit",
        include_str!("../../wit/v0.1.0/provider.wit"),
    ),
    (
        "vendor/pods-plugin-sdk/Cargo.toml",
        include_str!("../../plugins/template/sdk.Cargo.toml.in"),
    ),
    (
        "vendor/pods-plugin-sdk/src/lib.rs",
        include_str!("../../plugins/sdk/src/lib.rs"),
    ),
    (
        "vectors/plain.json",
        include_str!("../../plugins/openai/vectors/plain.json"),
    ),
    (
        "vectors/plain.body",
        include_str!("../../plugins/openai/vectors/plain.body"),
    ),
    (
        "vectors/stream_plain.json",
        include_str!("../../plugins/openai/vectors/stream_plain.json"),
    ),
    (
        "vectors/stream_plain.body",
        include_str!("../../plugins/openai/vectors/stream_plain.body"),
    ),
    (
        "vectors/error_429_rate_limit.json",
        include_str!("../../plugins/openai/vectors/error_429_rate_limit.json"),
    ),
    (
        "vectors/error_429_rate_limit.body",
        include_str!("../../plugins/openai/vectors/error_429_rate_limit.body"),
    ),
];

/// Writes the crate into `dir` (which must not exist yet). Returns the files written.
pub fn write(plugin: &NewPlugin, dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    let url = url::Url::parse(&plugin.base_url)
        .ok()
        .filter(|u| u.scheme() == "https" && u.host_str().is_some())
        .ok_or_else(|| {
            ScaffoldError::Invalid(format!(
                "base URL {:?} must be an https URL, e.g. https://api.mistral.ai/v1",
                plugin.base_url
            ))
        })?;
    let valid_id = !plugin.id.is_empty()
        && plugin.id.len() <= 64
        && !plugin.id.starts_with('-')
        && plugin
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_id {
        return Err(ScaffoldError::Invalid(format!(
            "id {:?} must match [a-z0-9][a-z0-9-]* (it names the provider in pods)",
            plugin.id
        )));
    }
    if plugin.models.is_empty() {
        return Err(ScaffoldError::Invalid("name at least one model".into()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let base_path = url.path().trim_end_matches('/').to_string();
    let models: Vec<String> = plugin
        .models
        .iter()
        .map(|m| format!("({m:?}, 128_000, false)"))
        .collect();
    let fill = |text: &str| {
        text.replace("{{id}}", &plugin.id)
            .replace("{{crate}}", &plugin.id.replace('-', "_"))
            .replace("{{name}}", &plugin.name)
            .replace("{{base_url}}", plugin.base_url.trim_end_matches('/'))
            .replace("{{host}}", url.host_str().unwrap_or_default())
            .replace("{{models}}", &models.join(", "))
            // The vectors were recorded against OpenAI's `/v1`; serve them under this base path.
            .replace(
                "\"path\": \"/v1/chat/completions\"",
                &format!("\"path\": \"{base_path}/chat/completions\""),
            )
    };
    let mut written = Vec::new();
    for (name, text) in FILES {
        let path = dir.join(name);
        let io = |error| ScaffoldError::Io {
            path: path.clone(),
            error,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // Vector bodies are the provider's bytes: never templated.
        let text = if name.ends_with(".body") {
            text.to_string()
        } else {
            fill(text)
        };
        std::fs::write(&path, text).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mistral() -> NewPlugin {
        NewPlugin {
            id: "mistral".into(),
            name: "Mistral".into(),
            base_url: "https://api.mistral.ai/v1".into(),
            models: vec!["mistral-small-latest".into()],
        }
    }

    #[test]
    fn fills_every_placeholder() {
        let dir = std::env::temp_dir().join(format!("pods-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = write(&mistral(), &dir).expect("written");
        for file in files
            .iter()
            .filter(|f| f.extension().is_none_or(|x| x != "body"))
        {
            let text = std::fs::read_to_string(file).expect("read");
            assert!(
                !text.contains("{{"),
                "{} keeps a placeholder",
                file.display()
            );
        }
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
        assert!(
            lib.contains(r#"const HOSTS: &[&str] = &["api.mistral.ai"];"#),
            "{lib}"
        );
        assert!(
            lib.contains(r#"("mistral-small-latest", 128_000, false)"#),
            "{lib}"
        );
        assert!(matches!(
            write(&mistral(), &dir),
            Err(ScaffoldError::Exists(_))
        ));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn refuses_bad_ids_and_plain_http() {
        let mut p = mistral();
        p.id = "Mistral AI".into();
        assert!(matches!(
            write(&p, Path::new("/nonexistent")),
            Err(ScaffoldError::Invalid(_))
        ));
        let mut p = mistral();
        p.base_url = "http://api.mistral.ai/v1".into();
        assert!(matches!(
            write(&p, Path::new("/nonexistent")),
            Err(ScaffoldError::Invalid(_))
        ));
    }
}
