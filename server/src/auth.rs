//! Who may call what. A request carries `Authorization: Bearer TOKEN`; the
//! token is either one of ours (its sha256 is in the tokens file, which holds
//! hashes only, never a token) or a JWT signed by an identity provider whose
//! public keys are in a JWKS file (RS256 or ES256). Either way it grants
//! scopes: `read` (features, catalog, API document), `push` and `admin`
//! (metrics and everything else; it implies the other two). `/health` is open.
//!
//! Refusals use RFC 6750's codes: 401 `invalid_token` (missing, unknown,
//! expired or badly signed) and 403 `insufficient_scope`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `/get-online-features`, `/v1/catalog`, `/openapi.json`.
    Read,
    /// `/push`.
    Push,
    /// `/metrics` and the rest; implies `read` and `push`.
    Admin,
}

impl Scope {
    /// `read`, `push` or `admin`.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "push" => Some(Scope::Push),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// The scope a route needs; `None` for the open ones.
    pub(crate) fn for_route(path: &str) -> Option<Scope> {
        match path {
            // The UI's page and assets hold no data; its overview does.
            "/health" | "/ui" | "/ui/app.js" | "/ui/style.css" => None,
            "/get-online-features"
            | "/search"
            | "/retrieve-online-documents"
            | "/v1/catalog"
            | "/openapi.json"
            | "/ui/api/overview" => Some(Scope::Read),
            "/push" | "/write-to-online-store" => Some(Scope::Push),
            _ => Some(Scope::Admin),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Read => "read",
            Scope::Push => "push",
            Scope::Admin => "admin",
        })
    }
}

/// Where the server's credentials come from (`[server.auth]` in
/// `skewless.toml`, or `skewless serve --tokens/--jwks`).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// The tokens file (TOML: `[tokens.NAME] sha256 = "..." scopes = [...]`).
    pub tokens: Option<PathBuf>,
    /// A JWKS file with the identity provider's public keys.
    pub jwks: Option<PathBuf>,
    /// The JWT claim holding scopes: a space-separated string or a list.
    pub scopes_claim: String,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
}

/// The tokens file, as written by `skewless token add`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// Token name -> its hash and scopes.
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenEntry>,
}

/// One token, by hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Lowercase hex sha256 of the token.
    pub sha256: String,
    /// What it grants.
    pub scopes: Vec<Scope>,
}

/// The credentials cannot be loaded; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// Why a request was refused.
#[derive(Debug)]
pub(crate) enum Denied {
    /// 401: no token, or one that is not valid.
    Unauthenticated(String),
    /// 403: a valid token without the scope.
    Forbidden(String),
}

/// A token's hash; tokens are 256-bit random strings, so a fast hash is
/// enough, and comparing hashes leaks nothing about the token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

struct JwtKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The loaded credentials; [`Auth::none`] lets every request through.
#[derive(Default)]
pub struct Auth {
    /// Hash -> (name, scopes).
    tokens: HashMap<String, (String, Vec<Scope>)>,
    jwt_keys: Vec<JwtKey>,
    scopes_claim: String,
    issuer: Option<String>,
    audience: Option<String>,
    /// JWTs already verified, by token hash, until they expire: a client
    /// sends the same JWT with every request, and an RS256 check costs
    /// tens of microseconds, more than a whole read.
    verified: Mutex<HashMap<String, Verified>>,
}

/// A verified JWT: who, what it grants, and until when (Unix seconds).
#[derive(Clone)]
struct Verified {
    who: String,
    scopes: Vec<Scope>,
    expires: u64,
}

/// Clock skew allowed between the identity provider and this server when
/// checking `exp` (as jsonwebtoken's default). A cached JWT is honoured
/// only until its `exp` itself.
const JWT_LEEWAY_SECS: u64 = 60;

/// Verified JWTs kept at most; the cache starts over when full.
const MAX_VERIFIED_JWTS: usize = 10_000;

impl Auth {
    /// No authentication: for loopback, or `--insecure-no-auth`.
    pub fn none() -> Auth {
        Auth::default()
    }

    /// Whether any credential is configured (else every request passes).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.jwt_keys.is_empty()
    }

    /// Loads the files `config` names.
    pub fn load(config: &AuthConfig) -> Result<Auth, AuthError> {
        let mut auth = Auth {
            scopes_claim: config.scopes_claim.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ..Auth::default()
        };
        if let Some(path) = &config.tokens {
            let file = read_tokens(path)?;
            if file.tokens.is_empty() {
                return Err(invalid(
                    path,
                    "no tokens; add one with `skewless token add NAME --scopes read`",
                ));
            }
            for (name, entry) in file.tokens {
                let hash = entry.sha256.to_ascii_lowercase();
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(path, format!("tokens.{name}.sha256 is not 64 hex digits")));
                }
                auth.tokens.insert(hash, (name, entry.scopes));
            }
        }
        if let Some(path) = &config.jwks {
            let text = std::fs::read_to_string(path).map_err(|error| AuthError::Read {
                path: path.clone(),
                error,
            })?;
            let set: JwkSet = serde_json::from_str(&text)
                .map_err(|e| invalid(path, format!("not a JWKS document (RFC 7517): {e}")))?;
            for jwk in &set.keys {
                let (algorithm, key) = match &jwk.algorithm {
                    AlgorithmParameters::RSA(rsa) => {
                        (Algorithm::RS256, DecodingKey::from_rsa_components(&rsa.n, &rsa.e))
                    }
                    // ES256 is P-256; other curves' keys are skipped like other key types.
                    AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                        (Algorithm::ES256, DecodingKey::from_ec_components(&ec.x, &ec.y))
                    }
                    _ => continue,
                };
                let key = key.map_err(|e| invalid(path, format!("key {:?}: {e}", jwk.common.key_id)))?;
                auth.jwt_keys.push(JwtKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                });
            }
            if auth.jwt_keys.is_empty() {
                return Err(invalid(path, "no RSA or P-256 key (RS256 and ES256 are supported)"));
            }
        }
        Ok(auth)
    }

    /// Checks an `Authorization` header value against the scope a route needs.
    pub(crate) fn check(&self, header: Option<&str>, needed: Scope) -> Result<(), Denied> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.check_at(header, needed, now)
    }

    /// As [`Auth::check`] at `now` (Unix seconds): one clock for the cache
    /// of verified JWTs and for their expiry, so a test can move it.
    fn check_at(&self, header: Option<&str>, needed: Scope, now: u64) -> Result<(), Denied> {
        let Some(header) = header else {
            return Err(Denied::Unauthenticated(
                "this server requires `Authorization: Bearer TOKEN`".into(),
            ));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| Denied::Unauthenticated("the Authorization header is not `Bearer TOKEN`".into()))?;
        let hash = token_hash(token);
        let (who, scopes) = match self.tokens.get(&hash) {
            Some((name, scopes)) => (format!("token `{name}`"), scopes.clone()),
            None if token.matches('.').count() == 2 && !self.jwt_keys.is_empty() => {
                let cached = self
                    .verified
                    .lock()
                    .unwrap()
                    .get(&hash)
                    .filter(|v| v.expires > now)
                    .cloned();
                let verified = match cached {
                    Some(verified) => verified,
                    None => {
                        let verified = self.verify_jwt(token, now)?;
                        let mut cache = self.verified.lock().unwrap();
                        if cache.len() >= MAX_VERIFIED_JWTS {
                            cache.clear();
                        }
                        cache.insert(hash, verified.clone());
                        verified
                    }
                };
                (verified.who, verified.scopes)
            }
            None => return Err(Denied::Unauthenticated("unknown token".into())),
        };
        if scopes.contains(&needed) || scopes.contains(&Scope::Admin) {
            Ok(())
        } else {
            let held: Vec<String> = scopes.iter().map(Scope::to_string).collect();
            Err(Denied::Forbidden(format!(
                "{who} has scopes [{}]; this route needs `{needed}`",
                held.join(", ")
            )))
        }
    }

    fn verify_jwt(&self, token: &str, now: u64) -> Result<Verified, Denied> {
        let bad = |why: String| Denied::Unauthenticated(format!("invalid JWT: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        let candidates = self
            .jwt_keys
            .iter()
            .filter(|k| k.algorithm == header.alg && (header.kid.is_none() || k.kid == header.kid));
        let mut last = format!("no key in the JWKS file for alg {:?} kid {:?}", header.alg, header.kid);
        for candidate in candidates {
            let mut validation = Validation::new(candidate.algorithm);
            validation.set_required_spec_claims(&["exp"]);
            // Expiry is checked below against `now`, the clock of the cache too.
            validation.validate_exp = false;
            match &self.audience {
                Some(aud) => validation.set_audience(&[aud]),
                None => validation.validate_aud = false,
            }
            if let Some(iss) = &self.issuer {
                validation.set_issuer(&[iss]);
            }
            match jsonwebtoken::decode::<serde_json::Value>(token, &candidate.key, &validation) {
                Ok(data) => {
                    let subject = data.claims.get("sub").and_then(|s| s.as_str()).unwrap_or("?");
                    let expires = data.claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(0);
                    if expires.saturating_add(JWT_LEEWAY_SECS) <= now {
                        return Err(bad(format!("it expired at {expires} (Unix seconds); get a new one")));
                    }
                    return Ok(Verified {
                        who: format!("JWT subject `{subject}`"),
                        scopes: scopes_of(data.claims.get(&self.scopes_claim)),
                        expires,
                    });
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(bad(last))
    }
}

/// Scopes from a claim: `"read push"` or `["read", "push"]`; unknown ones are ignored
/// (identity providers put their own scopes beside ours).
fn scopes_of(claim: Option<&serde_json::Value>) -> Vec<Scope> {
    match claim {
        Some(serde_json::Value::String(s)) => s.split_whitespace().filter_map(Scope::parse).collect(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .filter_map(Scope::parse)
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads a tokens file; a missing file is an empty one (for `skewless token add`).
pub fn read_tokens(path: &Path) -> Result<TokensFile, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|error| AuthError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    toml::from_str(&text).map_err(|e| invalid(path, e.to_string()))
}

fn invalid(path: &Path, message: impl Into<String>) -> AuthError {
    AuthError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Makes a new token with `scopes`, records its hash as `name` in the tokens
/// file at `path` (created, readable by its owner only), and returns the
/// token: the only time it exists outside the caller's hands.
pub fn add_token(path: &Path, name: &str, scopes: Vec<Scope>) -> Result<String, AuthError> {
    use std::io::{Read, Write};
    let mut file = if path.exists() {
        read_tokens(path)?
    } else {
        TokensFile::default()
    };
    if file.tokens.contains_key(name) {
        return Err(invalid(
            path,
            format!("a token named `{name}` exists; remove its entry first"),
        ));
    }
    let mut secret = [0u8; 32];
    let io = |error| AuthError::Read {
        path: "/dev/urandom".into(),
        error,
    };
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(io)?;
    let token = format!("skw_{}", secret.iter().map(|b| format!("{b:02x}")).collect::<String>());
    file.tokens.insert(
        name.to_string(),
        TokenEntry {
            sha256: token_hash(&token),
            scopes,
        },
    );
    let text = toml::to_string(&file).expect("a tokens file serializes");
    let written = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        out.write_all(b"# Hashes of `skewless serve` bearer tokens; made by `skewless token add`.\n")?;
        out.write_all(text.as_bytes())?;
        out.sync_all()
    })();
    written.map_err(|error| AuthError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    //! The auth policy without a server: token scopes, and JWTs signed with
    //! the test key in `tests/fixtures` (expiry, issuer, audience, scope
    //! claims, and the cache of verified JWTs past their expiry).

    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const PEM: &str = include_str!("../../tests/fixtures/jwt_rs256_test_key.pem");
    const JWKS_KEY: &str = include_str!("../../tests/fixtures/jwt_rs256_test_key.jwk.json");

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    /// Auth over a tokens file holding `reader` (read), `ingest` (push) and
    /// `root` (admin): the tokens, in that order.
    fn with_tokens() -> (Auth, [String; 3], tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let tokens = [("reader", Scope::Read), ("ingest", Scope::Push), ("root", Scope::Admin)]
            .map(|(name, scope)| add_token(&path, name, vec![scope]).unwrap());
        let auth = Auth::load(&AuthConfig {
            tokens: Some(path),
            ..AuthConfig::default()
        })
        .unwrap();
        (auth, tokens, dir)
    }

    /// Auth over the test JWKS, requiring `issuer` and `audience` if given.
    fn with_jwks(issuer: Option<&str>, audience: Option<&str>, scopes_claim: &str) -> (Auth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, format!("{{\"keys\": [{JWKS_KEY}]}}")).unwrap();
        let auth = Auth::load(&AuthConfig {
            jwks: Some(path),
            scopes_claim: scopes_claim.to_string(),
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
            ..AuthConfig::default()
        })
        .unwrap();
        (auth, dir)
    }

    fn jwt(claims: serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some("test-rsa".into());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn unauthenticated(result: Result<(), Denied>) -> String {
        match result {
            Err(Denied::Unauthenticated(why)) => why,
            other => panic!("expected 401, got {other:?}"),
        }
    }

    fn forbidden(result: Result<(), Denied>) -> String {
        match result {
            Err(Denied::Forbidden(why)) => why,
            other => panic!("expected 403, got {other:?}"),
        }
    }

    #[test]
    fn a_token_grants_its_scopes_and_admin_grants_all() {
        let (auth, [reader, ingest, root], _dir) = with_tokens();
        assert!(auth.enabled());
        assert!(auth.check_at(Some(&bearer(&reader)), Scope::Read, NOW).is_ok());
        let why = forbidden(auth.check_at(Some(&bearer(&reader)), Scope::Push, NOW));
        assert_eq!(why, "token `reader` has scopes [read]; this route needs `push`");
        assert!(auth.check_at(Some(&bearer(&ingest)), Scope::Push, NOW).is_ok());
        forbidden(auth.check_at(Some(&bearer(&ingest)), Scope::Read, NOW));
        for scope in [Scope::Read, Scope::Push, Scope::Admin] {
            assert!(auth.check_at(Some(&bearer(&root)), scope, NOW).is_ok());
        }
        forbidden(auth.check_at(Some(&bearer(&reader)), Scope::Admin, NOW));
    }

    #[test]
    fn a_missing_malformed_or_unknown_credential_is_401() {
        let (auth, [reader, ..], _dir) = with_tokens();
        assert!(unauthenticated(auth.check_at(None, Scope::Read, NOW)).contains("Authorization: Bearer TOKEN"));
        assert!(unauthenticated(auth.check_at(Some(&reader), Scope::Read, NOW)).contains("is not `Bearer TOKEN`"));
        // The last character changed (a token may end in `0` already).
        let last = if reader.ends_with('0') { '1' } else { '0' };
        let wrong = format!("{}{last}", &reader[..reader.len() - 1]);
        assert_ne!(wrong, reader);
        assert_eq!(
            unauthenticated(auth.check_at(Some(&bearer(&wrong)), Scope::Read, NOW)),
            "unknown token"
        );
        // No JWKS configured: a JWT is just an unknown token.
        let token = jwt(json!({"sub": "a", "exp": NOW + 60, "scope": "read"}));
        assert_eq!(
            unauthenticated(auth.check_at(Some(&bearer(&token)), Scope::Read, NOW)),
            "unknown token"
        );
    }

    #[test]
    fn no_credentials_configured_is_auth_turned_off() {
        // The router skips the check when auth is off (see routes' tests).
        assert!(!Auth::load(&AuthConfig::default()).unwrap().enabled());
        let (auth, _, _dir) = with_tokens();
        assert!(auth.enabled());
    }

    #[test]
    fn a_tokens_file_with_no_token_or_a_bad_hash_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "").unwrap();
        let config = AuthConfig {
            tokens: Some(path.clone()),
            ..AuthConfig::default()
        };
        let error = Auth::load(&config).err().unwrap().to_string();
        assert!(
            error.contains("tokens.toml: no tokens") && error.contains("skewless token add"),
            "{error}"
        );
        std::fs::write(&path, "[tokens.x]\nsha256 = \"abc\"\nscopes = [\"read\"]\n").unwrap();
        let error = Auth::load(&config).err().unwrap().to_string();
        assert!(error.contains("tokens.x.sha256 is not 64 hex digits"), "{error}");
        assert!(
            add_token(&path, "x", vec![Scope::Read]).is_err(),
            "the bad file is not overwritten"
        );
    }

    #[test]
    fn a_jwt_grants_the_scopes_of_its_claim_as_a_string_or_a_list() {
        let (auth, _dir) = with_jwks(None, None, "scope");
        let token = jwt(json!({"sub": "svc", "exp": NOW + 600, "scope": "openid read"}));
        assert!(auth.check_at(Some(&bearer(&token)), Scope::Read, NOW).is_ok());
        let why = forbidden(auth.check_at(Some(&bearer(&token)), Scope::Push, NOW));
        assert_eq!(why, "JWT subject `svc` has scopes [read]; this route needs `push`");

        let (auth, _dir) = with_jwks(None, None, "permissions");
        let token = jwt(json!({"sub": "svc", "exp": NOW + 600, "permissions": ["push", "other"]}));
        assert!(auth.check_at(Some(&bearer(&token)), Scope::Push, NOW).is_ok());
        forbidden(auth.check_at(Some(&bearer(&token)), Scope::Read, NOW));
    }

    #[test]
    fn an_expired_jwt_is_refused_past_the_leeway() {
        let (auth, _dir) = with_jwks(None, None, "scope");
        let token = jwt(json!({"sub": "svc", "exp": NOW - JWT_LEEWAY_SECS - 1, "scope": "read"}));
        let why = unauthenticated(auth.check_at(Some(&bearer(&token)), Scope::Read, NOW));
        assert!(why.contains("invalid JWT") && why.contains("expired"), "{why}");
        let within = jwt(json!({"sub": "svc", "exp": NOW - 1, "scope": "read"}));
        assert!(auth.check_at(Some(&bearer(&within)), Scope::Read, NOW).is_ok());
        let without = jwt(json!({"sub": "svc", "scope": "read"}));
        assert!(unauthenticated(auth.check_at(Some(&bearer(&without)), Scope::Read, NOW)).contains("exp"));
    }

    #[test]
    fn a_cached_jwt_is_not_honoured_past_its_expiry() {
        let (auth, _dir) = with_jwks(None, None, "scope");
        let exp = NOW + 30;
        let token = jwt(json!({"sub": "svc", "exp": exp, "scope": "read"}));
        assert!(auth.check_at(Some(&bearer(&token)), Scope::Read, NOW).is_ok());
        assert_eq!(auth.verified.lock().unwrap().len(), 1, "verified once, then cached");
        assert!(auth.check_at(Some(&bearer(&token)), Scope::Read, exp - 1).is_ok());
        let why = unauthenticated(auth.check_at(Some(&bearer(&token)), Scope::Read, exp + JWT_LEEWAY_SECS));
        assert!(why.contains("expired"), "{why}");
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() {
        let (auth, _dir) = with_jwks(Some("https://idp.example"), Some("skewless"), "scope");
        let claims =
            |iss: &str, aud: &str| jwt(json!({"sub": "s", "exp": NOW + 60, "scope": "read", "iss": iss, "aud": aud}));
        let good = claims("https://idp.example", "skewless");
        assert!(auth.check_at(Some(&bearer(&good)), Scope::Read, NOW).is_ok());
        let why = unauthenticated(auth.check_at(Some(&bearer(&claims("https://other", "skewless"))), Scope::Read, NOW));
        assert!(why.contains("InvalidIssuer"), "{why}");
        let why =
            unauthenticated(auth.check_at(Some(&bearer(&claims("https://idp.example", "other"))), Scope::Read, NOW));
        assert!(why.contains("InvalidAudience"), "{why}");
    }

    #[test]
    fn a_jwt_signed_by_another_key_is_refused() {
        let (auth, _dir) = with_jwks(None, None, "scope");
        let token = jwt(json!({"sub": "svc", "exp": NOW + 60, "scope": "read"}));
        let (head, rest) = token.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let mut forged: Vec<char> = signature.chars().collect();
        forged[10] = if forged[10] == 'A' { 'B' } else { 'A' };
        let forged = format!("{head}.{payload}.{}", forged.into_iter().collect::<String>());
        let why = unauthenticated(auth.check_at(Some(&bearer(&forged)), Scope::Read, NOW));
        assert!(why.contains("invalid JWT"), "{why}");
    }
}
