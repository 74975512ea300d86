//! JWT verification: HS256 with a shared secret, or RS256 / ES256 / EdDSA public
//! keys (PEM files named `<kid>.pem`, several at once for rotation, picked by `kid`).
//! `exp` is required (with a small leeway), `iss` and `aud` are checked when
//! configured, and `sub` is the user id.

use std::{collections::HashMap, path::Path};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use super::AuthSetupError;
use crate::config::JwtSettings;

/// Verified claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user_id: i64,
    scopes: Vec<String>,
}

impl Claims {
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes.iter().any(|s| s == wanted)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    S(String),
    N(i64),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeList {
    Space(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    sub: StringOrNumber,
    #[serde(default)]
    scope: Option<ScopeList>,
    #[serde(default)]
    scp: Option<ScopeList>,
}

fn scopes(list: Option<ScopeList>) -> Vec<String> {
    match list {
        Some(ScopeList::Space(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(ScopeList::List(v)) => v,
        None => Vec::new(),
    }
}

/// Checks tokens against the configured keys.
pub struct JwtVerifier {
    shared: Option<DecodingKey>,
    public: HashMap<String, (DecodingKey, Algorithm)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("shared", &self.shared.is_some())
            .field("kids", &self.public.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A public key in PEM: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA).
pub fn public_key(pem: &[u8]) -> Option<(DecodingKey, Algorithm)> {
    DecodingKey::from_rsa_pem(pem)
        .map(|k| (k, Algorithm::RS256))
        .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| (k, Algorithm::ES256)))
        .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| (k, Algorithm::EdDSA)))
        .ok()
}

fn load_dir(dir: &Path) -> Result<HashMap<String, (DecodingKey, Algorithm)>, AuthSetupError> {
    let bad = |m: String| AuthSetupError::Jwt(m);
    let entries =
        std::fs::read_dir(dir).map_err(|e| bad(format!("public_keys_dir {}: {e}", dir.display())))?;
    let mut keys = HashMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        // Kubernetes Secret mounts also hold `..data` links: only `<kid>.pem` files count.
        if path.extension().is_none_or(|e| e != "pem") || !path.is_file() {
            continue;
        }
        let kid = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let pem = std::fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let key = public_key(&pem).ok_or_else(|| {
            bad(format!(
                "{}: not an RSA, EC P-256 or Ed25519 public key",
                path.display()
            ))
        })?;
        keys.insert(kid, key);
    }
    if keys.is_empty() {
        return Err(bad(format!(
            "public_keys_dir {} holds no <kid>.pem files",
            dir.display()
        )));
    }
    Ok(keys)
}

impl JwtVerifier {
    pub fn from_settings(s: &JwtSettings) -> Result<Self, AuthSetupError> {
        let secret = match (&s.hs256_secret, &s.hs256_secret_file) {
            (Some(secret), _) => Some(secret.trim().as_bytes().to_vec()),
            (None, Some(path)) => {
                let raw = std::fs::read_to_string(path)
                    .map_err(|e| AuthSetupError::Jwt(format!("hs256_secret_file {}: {e}", path.display())))?;
                Some(raw.trim().as_bytes().to_vec())
            }
            (None, None) => None,
        };
        if secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(AuthSetupError::Jwt(
                "the HS256 secret must be at least 32 bytes".into(),
            ));
        }
        let public = match &s.public_keys_dir {
            Some(dir) => load_dir(dir)?,
            None => HashMap::new(),
        };
        Ok(Self {
            shared: secret.map(|s| DecodingKey::from_secret(&s)),
            public,
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
            leeway: s.leeway_secs,
        })
    }

    /// The verified claims of `token`, or why not (for debug logs only).
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = decode_header(token).map_err(|e| e.to_string())?;
        let (key, alg) = if header.alg == Algorithm::HS256 {
            (
                self.shared.as_ref().ok_or("HS256 is not configured")?,
                Algorithm::HS256,
            )
        } else {
            let entry = match &header.kid {
                Some(kid) => self.public.get(kid),
                None if self.public.len() == 1 => self.public.values().next(),
                None => None,
            };
            let (key, alg) = entry.ok_or("unknown or missing kid")?;
            (key, *alg)
        };
        if header.alg != alg {
            return Err(format!("alg {:?} does not match the key ({alg:?})", header.alg));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = decode::<RawClaims>(token, key, &validation).map_err(|e| e.to_string())?;
        let user_id = match data.claims.sub {
            StringOrNumber::N(n) => n,
            StringOrNumber::S(s) => s.parse().map_err(|_| "sub is not an integer user id")?,
        };
        if user_id < 1 {
            return Err("sub is not a positive user id".into());
        }
        let mut all = scopes(data.claims.scope);
        all.extend(scopes(data.claims.scp));
        Ok(Claims { user_id, scopes: all })
    }
}

#[cfg(test)]
mod tests {
    use super::{super::has_scope, *};

    #[test]
    fn scopes_come_from_a_space_separated_string_or_a_list() {
        assert_eq!(scopes(Some(ScopeList::Space("a b".into()))), vec!["a", "b"]);
        assert_eq!(scopes(Some(ScopeList::List(vec!["c".into()]))), vec!["c"]);
        assert!(has_scope("read sessions:admin", "sessions:admin"));
        assert!(!has_scope("sessions:administrator", "sessions:admin"));
    }
}
