//! Bearer tokens: HS256 JWTs whose `sub` is a user id. The secret comes from `PODS_JWT_SECRET`
//! (or a generated file in the data folder); `pods token --user …` mints one for local use.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid or expired token")]
    Invalid,
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A token for `user_id`, valid for `ttl`.
    pub fn mint(&self, user_id: &str, ttl: std::time::Duration) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + ttl.as_secs(),
        };
        // HS256 signing of a small JSON document cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The user id of a valid token.
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims.sub)
            .map_err(|_| AuthError::Invalid)
    }

    /// The user id from an `Authorization: Bearer …` header value.
    pub fn verify_header(&self, header: Option<&str>) -> Result<String, AuthError> {
        let value = header.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Invalid)?;
        self.verify(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn minted_tokens_verify_and_carry_the_user() {
        let tokens = Tokens::new(b"test-secret-of-enough-length-000");
        let t = tokens.mint("user-1", Duration::from_secs(60));
        assert_eq!(tokens.verify(&t), Ok("user-1".into()));
        assert_eq!(
            tokens.verify_header(Some(&format!("Bearer {t}"))),
            Ok("user-1".into())
        );
    }

    #[test]
    fn wrong_secret_expired_missing_and_malformed_tokens_fail() {
        let tokens = Tokens::new(b"secret-a");
        let other = Tokens::new(b"secret-b");
        let t = other.mint("user-1", Duration::from_secs(60));
        assert_eq!(tokens.verify(&t), Err(AuthError::Invalid));
        let expired = tokens.mint("user-1", Duration::ZERO);
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
}
