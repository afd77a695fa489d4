//! The key vault: provider API keys encrypted at rest with AES-256-GCM.
//!
//! Each encryption uses a fresh random 96-bit nonce, and binds the workspace, provider and key id
//! as associated data, so a ciphertext copied to another row does not decrypt. Master keys carry
//! an id: rows record which master key sealed them, so `pods keys rotate` can re-seal everything
//! under a new one while the old ones are still configured. Any mismatch fails closed.

use std::collections::HashMap;
use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Keys shorter than this get no tail in their hint.
pub const HINT_MIN_CHARS: usize = 12;

/// What one sealed provider secret holds: the key and, when its base URL carries a query string
/// (Azure's `?api-version=…`, a gateway's token), that whole URL. Sealed together as
/// `key\nurl` — a key is one line, so the split is unambiguous; a key alone has no newline.
pub struct Secret {
    pub key: ApiKey,
    pub base_url: Option<String>,
}

impl Secret {
    /// The plaintext to seal.
    pub fn joined(key: &str, base_url: Option<&str>) -> String {
        match base_url {
            Some(url) => format!("{key}\n{url}"),
            None => key.to_string(),
        }
    }

    /// The parts of an opened plaintext.
    pub fn split(opened: ApiKey) -> Secret {
        match opened.0.split_once('\n') {
            Some((key, url)) => Secret {
                key: ApiKey::new(key),
                base_url: Some(url.to_string()),
            },
            None => Secret {
                key: opened,
                base_url: None,
            },
        }
    }
}

/// A URL as it may be shown: scheme, host, port and path — no user, query or fragment.
pub fn redacted_url(url: &url::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path().trim_end_matches('/'));
    shown
}

/// A provider API key. It is never printed: `Debug` shows only its last four characters.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// `…a1b2`: enough for a person to tell keys apart, never enough to use one. A key shorter
    /// than [`HINT_MIN_CHARS`] shows nothing (`…`): its tail would be too much of it.
    pub fn hint(&self) -> String {
        if self.0.chars().count() < HINT_MIN_CHARS {
            return "…".into();
        }
        let tail: String = self
            .0
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }

    /// The key itself: only for attaching it to a provider request, or re-sealing it under a
    /// new master key. Never log or return it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({})", self.hint())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("master key {0:?} is not configured")]
    UnknownMasterKey(String),
    #[error("the stored key does not decrypt (tampered, or sealed for another row)")]
    Tampered,
    #[error("invalid master key: {0}")]
    BadMasterKey(String),
}

/// What a key is bound to.
pub struct Binding<'a> {
    pub workspace_id: &'a str,
    pub provider: &'a str,
    pub key_id: &'a str,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "pods/provider-key/v1\0{}\0{}\0{}",
            self.workspace_id, self.provider, self.key_id
        )
        .into_bytes()
    }
}

/// An encrypted key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub ciphertext: String,
    pub nonce: String,
    pub master_key_id: String,
}

/// The master keys: one current (seals), any number of previous ones (only open).
#[derive(Clone)]
pub struct Vault {
    current: String,
    keys: HashMap<String, Key<Aes256Gcm>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Vault(current: {}, {} key(s))",
            self.current,
            self.keys.len()
        )
    }
}

impl Vault {
    /// `keys` is `[(id, base64 of 32 bytes)]`, the current key first.
    pub fn new(keys: &[(String, String)]) -> Result<Self, VaultError> {
        let Some((current, _)) = keys.first() else {
            return Err(VaultError::BadMasterKey("no master key".into()));
        };
        let mut map = HashMap::new();
        for (id, b64) in keys {
            let bytes = B64
                .decode(b64.trim())
                .map_err(|e| VaultError::BadMasterKey(format!("{id}: {e}")))?;
            if bytes.len() != 32 {
                return Err(VaultError::BadMasterKey(format!(
                    "{id}: {} bytes, need 32",
                    bytes.len()
                )));
            }
            if id.is_empty() || id.contains([':', ',', '\n']) {
                return Err(VaultError::BadMasterKey(format!("key id {id:?}")));
            }
            map.insert(id.clone(), *Key::<Aes256Gcm>::from_slice(&bytes));
        }
        Ok(Vault {
            current: current.clone(),
            keys: map,
        })
    }

    /// Parses `id:base64,id:base64` (current first).
    pub fn parse_keyring(text: &str) -> Result<Vec<(String, String)>, VaultError> {
        text.split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|entry| {
                entry
                    .split_once(':')
                    .map(|(id, key)| (id.trim().to_string(), key.trim().to_string()))
                    .ok_or_else(|| VaultError::BadMasterKey("expected id:base64".into()))
            })
            .collect()
    }

    /// The keyring in `path`, created with one fresh key if the file does not exist (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<Self, VaultError> {
        if !path.exists() {
            let key = Aes256Gcm::generate_key(OsRng);
            write_private(path, &format!("k1:{}\n", B64.encode(key)))
                .map_err(|e| VaultError::BadMasterKey(format!("{}: {e}", path.display())))?;
            tracing::warn!(path = %path.display(), "no PODS_MASTER_KEY set: generated a master key file; back it up");
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| VaultError::BadMasterKey(format!("{}: {e}", path.display())))?;
        Vault::new(&Vault::parse_keyring(&text)?)
    }

    /// A fresh random master key, base64.
    pub fn generate_key() -> String {
        B64.encode(Aes256Gcm::generate_key(OsRng))
    }

    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    pub fn seal(&self, binding: &Binding<'_>, secret: &str) -> Sealed {
        let cipher = Aes256Gcm::new(&self.keys[&self.current]);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = binding.aad();
        // Encryption with a valid key and nonce cannot fail for inputs this small.
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        Sealed {
            ciphertext: B64.encode(ciphertext),
            nonce: B64.encode(nonce),
            master_key_id: self.current.clone(),
        }
    }

    pub fn open(&self, binding: &Binding<'_>, sealed: &Sealed) -> Result<ApiKey, VaultError> {
        let key = self
            .keys
            .get(&sealed.master_key_id)
            .ok_or_else(|| VaultError::UnknownMasterKey(sealed.master_key_id.clone()))?;
        let nonce = B64
            .decode(&sealed.nonce)
            .map_err(|_| VaultError::Tampered)?;
        let ciphertext = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| VaultError::Tampered)?;
        if nonce.len() != 12 {
            return Err(VaultError::Tampered);
        }
        let aad = binding.aad();
        let plain = Aes256Gcm::new(key)
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Tampered)?;
        String::from_utf8(plain)
            .map(ApiKey::new)
            .map_err(|_| VaultError::Tampered)
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(ids: &[&str]) -> Vault {
        let keys: Vec<(String, String)> = ids
            .iter()
            .map(|id| (id.to_string(), Vault::generate_key()))
            .collect();
        Vault::new(&keys).expect("vault")
    }

    const BIND: Binding<'static> = Binding {
        workspace_id: "ws1",
        provider: "openai",
        key_id: "key1",
    };

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let v = vault(&["k1"]);
        let a = v.seal(&BIND, "sk-top-secret");
        let b = v.seal(&BIND, "sk-top-secret");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(!a.ciphertext.contains("secret"));
        assert_eq!(v.open(&BIND, &a).expect("opens").hint(), "…cret");
    }

    #[test]
    fn a_ciphertext_fails_closed_when_tampered_or_moved() {
        let v = vault(&["k1"]);
        let sealed = v.seal(&BIND, "sk-secret");
        let mut bytes = B64.decode(&sealed.ciphertext).expect("b64");
        bytes[0] ^= 1;
        let tampered = Sealed {
            ciphertext: B64.encode(bytes),
            ..sealed.clone()
        };
        assert_eq!(v.open(&BIND, &tampered).err(), Some(VaultError::Tampered));
        let other_ws = Binding {
            workspace_id: "ws2",
            ..BIND
        };
        assert_eq!(v.open(&other_ws, &sealed).err(), Some(VaultError::Tampered));
        let other_provider = Binding {
            provider: "anthropic",
            ..BIND
        };
        assert_eq!(
            v.open(&other_provider, &sealed).err(),
            Some(VaultError::Tampered)
        );
    }

    #[test]
    fn previous_master_keys_open_and_unknown_ones_fail() {
        let old_key = Vault::generate_key();
        let old = Vault::new(&[("k1".into(), old_key.clone())]).expect("vault");
        let sealed = old.seal(&BIND, "sk-top-secret");
        let rotated = Vault::new(&[("k2".into(), Vault::generate_key()), ("k1".into(), old_key)])
            .expect("vault");
        assert_eq!(
            rotated.open(&BIND, &sealed).expect("old key opens").hint(),
            "…cret"
        );
        assert_eq!(rotated.seal(&BIND, "x").master_key_id, "k2");
        let without_old = vault(&["k2"]);
        assert_eq!(
            without_old.open(&BIND, &sealed).err(),
            Some(VaultError::UnknownMasterKey("k1".into()))
        );
    }

    #[test]
    fn keyrings_parse_and_bad_keys_are_refused() {
        let ring = Vault::parse_keyring("k2:AAAA, k1:BBBB").expect("parses");
        assert_eq!(ring[0], ("k2".to_string(), "AAAA".to_string()));
        assert!(
            Vault::new(&[("k1".into(), "c2hvcnQ=".into())]).is_err(),
            "5 bytes is not a key"
        );
    }

    #[test]
    fn short_keys_show_no_tail_and_a_secret_url_travels_with_its_key() {
        assert_eq!(ApiKey::new("abcd").hint(), "…");
        assert_eq!(ApiKey::new("sk-123456789").hint(), "…6789");
        let v = vault(&["k1"]);
        let url = "https://gw.example.com/openai?api-version=2024-10-21&sig=s3cr3t";
        let sealed = v.seal(&BIND, &Secret::joined("sk-key", Some(url)));
        let secret = Secret::split(v.open(&BIND, &sealed).expect("opens"));
        assert_eq!(secret.key.expose(), "sk-key");
        assert_eq!(secret.base_url.as_deref(), Some(url));
        let plain = Secret::split(ApiKey::new("sk-key"));
        assert_eq!((plain.key.expose(), plain.base_url), ("sk-key", None));
        let parsed = url::Url::parse(url).expect("url");
        assert_eq!(redacted_url(&parsed), "https://gw.example.com/openai");
        let with_port = url::Url::parse("http://h.example:8080/v1/?q=1#f").expect("url");
        assert_eq!(redacted_url(&with_port), "http://h.example:8080/v1");
    }
}
