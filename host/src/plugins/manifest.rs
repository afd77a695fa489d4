//! Checks a plugin's manifest before the host trusts it.

use super::types::{KeyPlacement, Manifest};

/// `Ok` when the manifest is usable; otherwise every problem found, joined by `; `.
pub fn validate(m: &Manifest) -> Result<(), String> {
    let mut problems = Vec::new();
    if !is_identifier(&m.id) {
        problems.push(format!(
            "id {:?} must match [a-z0-9][a-z0-9-]{{0,63}}",
            m.id
        ));
    }
    if m.name.trim().is_empty() {
        problems.push("name is empty".to_string());
    }
    if !is_semver(&m.version) {
        problems.push(format!(
            "version {:?} is not semver (x.y.z, with pre-release and build parts of [0-9A-Za-z.-] only)",
            m.version
        ));
    }
    if !super::bindings::runs(&m.api_version) {
        problems.push(format!(
            "built against pods:provider@{}, but this host speaks {}",
            m.api_version,
            super::bindings::supported()
        ));
    }
    for host in &m.allowed_hosts {
        if let Err(why) = check_host(host) {
            problems.push(format!("allowed host {host:?} {why}"));
        }
    }
    if !m.default_base_url.is_empty() {
        match url::Url::parse(&m.default_base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                let host = u.host_str().unwrap_or_default();
                if !m.allowed_hosts.iter().any(|h| h == host) {
                    problems.push(format!(
                        "default base URL host {host:?} is not among the allowed hosts"
                    ));
                }
            }
            _ => problems.push(format!(
                "default base URL {:?} is not an http(s) URL",
                m.default_base_url
            )),
        }
    }
    match &m.key_placement {
        KeyPlacement::Bearer => {}
        KeyPlacement::Header(name) => {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(format!("key header {name:?} is not a valid header name"));
            }
        }
        KeyPlacement::Query(name) => {
            if name.is_empty() || name.contains(['&', '=', '#']) {
                problems.push(format!("key query parameter {name:?} is not valid"));
            }
        }
    }
    if m.models.iter().any(|model| model.id.trim().is_empty()) {
        problems.push("a model has an empty id".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn is_identifier(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Semantic versioning, strictly: `MAJOR.MINOR.PATCH`, then an optional pre-release and build
/// made of `[0-9A-Za-z-]` identifiers separated by dots — so a version can name a file safely.
pub(super) fn is_semver(s: &str) -> bool {
    s.len() <= 64 && semver::Version::parse(s).is_ok()
}

/// A bare host name or IP: no scheme, port, path, user info or wildcard.
pub(super) fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("is empty");
    }
    if host.contains('*') {
        return Err("is a wildcard; name each host");
    }
    if host.contains(['/', ':', '@', '?', '#', ' ']) && !host.starts_with('[') {
        return Err("must be a bare host name (no scheme, port or path)");
    }
    let parsed = url::Url::parse(&format!("http://{host}/")).map_err(|_| "is not a valid host")?;
    if parsed.host_str() != Some(host) {
        return Err("is not in canonical form (lowercase, no trailing dot)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            kind: Default::default(),
            id: "acme".into(),
            name: "Acme".into(),
            version: "1.2.3".into(),
            api_version: "0.1.0".into(),
            default_base_url: "https://api.acme.test/v1".into(),
            allowed_hosts: vec!["api.acme.test".into()],
            key_placement: KeyPlacement::Header("x-api-key".into()),
            models: vec![],
        }
    }

    #[test]
    fn a_sane_manifest_passes() {
        assert_eq!(validate(&manifest()), Ok(()));
    }

    #[test]
    fn wildcards_schemes_and_ports_are_refused() {
        for host in [
            "*.acme.test",
            "https://api.acme.test",
            "api.acme.test:443",
            "API.acme.test",
            "",
        ] {
            let mut m = manifest();
            m.allowed_hosts.push(host.into());
            assert!(validate(&m).is_err(), "{host:?} should be refused");
        }
    }

    #[test]
    fn other_api_versions_and_bad_ids_are_refused() {
        let mut m = manifest();
        m.api_version = "0.2.0".into();
        let err = validate(&m).expect_err("0.2 is not 0.1");
        assert!(err.contains("speaks 0.1.x"), "{err}");
        let mut m = manifest();
        m.id = "Acme AI".into();
        assert!(validate(&m).is_err());
    }

    #[test]
    fn versions_are_strict_semver_and_can_name_a_file() {
        for good in [
            "0.1.0",
            "1.2.3-beta.1",
            "1.2.3+build.5",
            "10.0.0-rc-1+sha.abc",
        ] {
            assert!(is_semver(good), "{good}");
        }
        for bad in [
            "6.6.7-x/../../../../elsewhere/pwned",
            "1.2.3+a/b",
            "1.2.3-a\\b",
            "1.2",
            "01.2.3",
            "1.2.3-",
            "1.2.3-é",
            "1.2.3 ",
            &format!("1.2.3-{}", "a".repeat(64)),
        ] {
            assert!(!is_semver(bad), "{bad:?}");
        }
    }

    #[test]
    fn default_base_url_must_be_an_allowed_host() {
        let mut m = manifest();
        m.default_base_url = "https://elsewhere.test".into();
        let err = validate(&m).expect_err("host not allowed");
        assert!(err.contains("not among the allowed hosts"), "{err}");
    }
}
