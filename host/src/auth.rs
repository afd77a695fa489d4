//! Bearer tokens: HS256 JWTs whose `sub` is a user id. The secret comes from `PODS_JWT_SECRET`
//! (or a generated file in the data folder); `pods token --user …` mints one for local use.
//!
//! A token passes when its signature is right, it is not expired, not before its `nbf`, not
//! issued in the future (`iat`), and it does not live longer than the server's token lifetime
//! (`PODS_TOKEN_TTL_HOURS`, 24 by default) — each with [`LEEWAY_SECS`] of clock skew. That its
//! user exists and is not disabled is checked by the API, against the store, on every request.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// Clock skew allowed between the node that minted a token and the one checking it.
pub const LEEWAY_SECS: u64 = 5;

/// The default (and longest) token lifetime.
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid or expired token")]
    Invalid,
    #[error("the token lives longer than this server allows ({0} h); mint a new one")]
    TooLong(u64),
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// The longest lifetime (`exp - iat`) minted or accepted.
    max_ttl: std::time::Duration,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tokens {
    /// Tokens signed with `secret`, living at most `max_ttl`.
    pub fn new(secret: &[u8], max_ttl: std::time::Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            max_ttl,
        }
    }

    /// The longest lifetime a token may have here.
    pub fn max_ttl(&self) -> std::time::Duration {
        self.max_ttl
    }

    /// A token for `user_id`, valid for `ttl` (at most [`Self::max_ttl`]).
    pub fn mint(&self, user_id: &str, ttl: std::time::Duration) -> Result<String, AuthError> {
        if ttl > self.max_ttl {
            return Err(AuthError::TooLong(self.max_ttl.as_secs() / 3600));
        }
        let now = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + ttl.as_secs(),
            nbf: None,
        };
        // HS256 signing of a small JSON document cannot fail.
        Ok(
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .unwrap_or_default(),
        )
    }

    /// The user id of a valid token (whether that user may still act is the store's to say).
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::Invalid)?
            .claims;
        if claims.iat > now_secs() + LEEWAY_SECS {
            return Err(AuthError::Invalid);
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_ttl.as_secs() + LEEWAY_SECS {
            return Err(AuthError::TooLong(self.max_ttl.as_secs() / 3600));
        }
        Ok(claims.sub)
    }

    /// The user id from an `Authorization: Bearer …` header value.
    pub fn verify_header(&self, header: Option<&str>) -> Result<String, AuthError> {
        self.verify(bearer(header)?)
    }
}

/// The credential of an `Authorization: Bearer …` header value: a token or an API key.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let credential = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthError::Invalid)?;
    Ok(credential.trim())
}

/// Every workspace API key starts so: a credential with it is looked up as a key, not read as
/// a token (and secret scanners can tell it apart).
pub const API_KEY_PREFIX: &str = "pods_";

/// A new workspace API key: `pods_` and 256 random bits (base64url), the SHA-256 it is stored
/// and looked up by, and a hint to tell it apart (its last four characters).
pub struct NewApiKey {
    pub secret: String,
    pub hash: String,
    pub hint: String,
}

impl NewApiKey {
    pub fn generate() -> Self {
        use aes_gcm::aead::rand_core::RngCore;
        use base64::Engine;
        let mut bytes = [0u8; 32];
        aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
        let secret = format!(
            "{API_KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let tail = &secret[secret.len() - 4..];
        NewApiKey {
            hash: api_key_hash(&secret),
            hint: format!("{API_KEY_PREFIX}…{tail}"),
            secret,
        }
    }
}

/// What a key is stored and looked up by. A fast hash is enough: the secret has 256 random
/// bits, so there is nothing to guess that a slow hash would protect.
pub fn api_key_hash(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The shortest and longest password accepted (longer ones would only cost hashing time).
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=1024;

/// Refuses a password too short or too long to set.
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if !PASSWORD_CHARS.contains(&chars) {
        return Err(PasswordError::Length(chars));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("a password has 8 to 1024 characters (this one has {0})")]
    Length(usize),
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// A password as stored: an argon2id PHC string (algorithm, parameters, random salt, hash), with
/// the argon2 crate's defaults (19 MiB, 2 passes) — tens of milliseconds: run it off the async
/// threads.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    check_new_password(password)?;
    let salt = SaltString::generate(&mut aes_gcm::aead::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `stored`. With nothing stored (no such user, or no password set)
/// a hash is still checked, against a fixed one, so an unknown email takes as long to refuse as
/// a wrong password and timing does not tell which emails exist.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    static NOBODY: std::sync::LazyLock<Option<String>> =
        std::sync::LazyLock::new(|| hash_password("no user has this password").ok());
    let (phc, real) = match stored {
        Some(phc) => (phc, true),
        None => (NOBODY.as_deref().unwrap_or_default(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let matches = argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && real
}

/// A single-use ticket that opens one WebSocket: 256 random bits (base64url) and the SHA-256 it
/// is stored by. Browsers cannot set headers on a WebSocket, and a token in the URL would end up
/// in logs and history; a ticket there is worthless once used or after [`WS_TICKET_TTL`].
pub struct NewTicket {
    pub secret: String,
    pub hash: String,
}

/// How long a WebSocket ticket may wait to be used.
pub const WS_TICKET_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl NewTicket {
    pub fn generate() -> Self {
        use aes_gcm::aead::rand_core::RngCore;
        use base64::Engine;
        let mut bytes = [0u8; 32];
        aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        NewTicket {
            hash: api_key_hash(&secret),
            secret,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_password_is_stored_as_a_salted_argon2id_hash_and_checked_against_it() {
        let stored = hash_password("correct horse").expect("hash");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        assert_ne!(
            stored,
            hash_password("correct horse").expect("hash"),
            "salted"
        );
        assert!(verify_password("correct horse", Some(&stored)));
        assert!(!verify_password("correct hors", Some(&stored)));
        assert!(!verify_password("correct horse", None));
        assert!(!verify_password("correct horse", Some("not a hash")));
        assert_eq!(hash_password("short"), Err(PasswordError::Length(5)));
        assert!(check_new_password(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn api_keys_are_long_random_and_stored_only_as_their_hash() {
        let (a, b) = (NewApiKey::generate(), NewApiKey::generate());
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(API_KEY_PREFIX));
        // 32 bytes of base64url without padding.
        assert_eq!(a.secret.len(), API_KEY_PREFIX.len() + 43);
        assert_eq!(a.hash, api_key_hash(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.secret[5..]));
        assert!(a.hint.ends_with(&a.secret[a.secret.len() - 4..]));
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            api_key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_user() {
        let tokens = Tokens::new(b"test-secret-of-enough-length-000", DEFAULT_TTL);
        let t = tokens
            .mint("user-1", Duration::from_secs(60))
            .expect("mint");
        assert_eq!(tokens.verify(&t), Ok("user-1".into()));
        assert_eq!(
            tokens.verify_header(Some(&format!("Bearer {t}"))),
            Ok("user-1".into())
        );
    }

    #[test]
    fn wrong_secret_expired_missing_and_malformed_tokens_fail() {
        let tokens = Tokens::new(b"secret-a", DEFAULT_TTL);
        let other = Tokens::new(b"secret-b", DEFAULT_TTL);
        let t = other.mint("user-1", Duration::from_secs(60)).expect("mint");
        assert_eq!(tokens.verify(&t), Err(AuthError::Invalid));
        let expired = tokens.mint("user-1", Duration::ZERO).expect("mint");
        let mut strict = tokens.clone();
        strict.validation.leeway = 0;
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(strict.verify(&expired), Err(AuthError::Invalid));
        assert_eq!(tokens.verify_header(None), Err(AuthError::Missing));
        assert_eq!(
            tokens.verify_header(Some("Basic abc")),
            Err(AuthError::Invalid)
        );
        assert_eq!(tokens.verify("not.a.jwt"), Err(AuthError::Invalid));
    }

    /// A token signed by us with chosen claims.
    fn signed(tokens: &Tokens, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding)
            .expect("sign")
    }

    #[test]
    fn nbf_iat_and_lifetime_are_checked_with_five_seconds_of_leeway() {
        let tokens = Tokens::new(b"secret-a", Duration::from_secs(3600));
        let now = now_secs();
        let claims = |iat: u64, exp: u64, nbf: Option<u64>| {
            let mut c = serde_json::json!({"sub": "u", "iat": iat, "exp": exp});
            if let Some(nbf) = nbf {
                c["nbf"] = nbf.into();
            }
            signed(&tokens, c)
        };
        assert_eq!(tokens.verify(&claims(now, now + 60, None)), Ok("u".into()));
        // Not before: fine within the leeway, refused past it.
        assert!(tokens.verify(&claims(now, now + 60, Some(now + 3))).is_ok());
        assert_eq!(
            tokens.verify(&claims(now, now + 60, Some(now + 30))),
            Err(AuthError::Invalid)
        );
        // Issued in the future.
        assert!(tokens.verify(&claims(now + 3, now + 60, None)).is_ok());
        assert_eq!(
            tokens.verify(&claims(now + 60, now + 120, None)),
            Err(AuthError::Invalid)
        );
        // Expired more than the leeway ago.
        assert_eq!(
            tokens.verify(&claims(now - 100, now - 10, None)),
            Err(AuthError::Invalid)
        );
        // Living longer than the server allows, however it was signed.
        assert_eq!(
            tokens.verify(&claims(now, now + 7200, None)),
            Err(AuthError::TooLong(1))
        );
        // No iat at all.
        let no_iat = signed(&tokens, serde_json::json!({"sub": "u", "exp": now + 60}));
        assert_eq!(tokens.verify(&no_iat), Err(AuthError::Invalid));
        // Minting past the lifetime is refused.
        assert_eq!(
            tokens.mint("u", Duration::from_secs(7200)),
            Err(AuthError::TooLong(1))
        );
    }
}
