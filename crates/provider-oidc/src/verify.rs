//! ID token verification (SPEC 1.4): a JWS signed by a key of the provider's
//! JWKS, named by its `kid`, with an asymmetric algorithm only.
//!
//! Refused before any key is touched: `none` (not an algorithm the JOSE
//! crate parses), HS* (the classic confusion of an HMAC "signed" with a
//! public key or the client secret), and any algorithm not listed in
//! [`ALGORITHMS`]. The key must be of the algorithm's family (RSA for RS*/PS*,
//! EC on the matching curve for ES*) and, when the JWK says, meant for
//! signatures and for that algorithm.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// The signature algorithms an ID token may use.
pub const ALGORITHMS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];

/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const SKEW_SECS: u64 = 60;

/// Why an ID token was refused (logged; never holds the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenRefused {
    /// Not a JWS (jsonwebtoken's reason).
    #[error("not a JWS with a known header ({0:?})")]
    Malformed(jsonwebtoken::errors::ErrorKind),
    /// A `crit` header: an extension Ferrygate does not understand.
    #[error("a crit header (an extension not understood)")]
    Critical,
    /// The algorithm the token names (a short plain name, as it named it).
    #[error("algorithm {0} is not allowed")]
    Algorithm(String),
    /// No key of the JWKS has this `kid` (re-fetching the JWKS may help).
    #[error("no key with kid {0:?}")]
    UnknownKey(Option<String>),
    #[error("the key named by kid does not fit the algorithm")]
    KeyMismatch,
    /// The signature or a registered claim failed jsonwebtoken's checks.
    #[error("{0:?}")]
    Invalid(jsonwebtoken::errors::ErrorKind),
    /// A claim Ferrygate checks itself is wrong (which, and how).
    #[error("{0}")]
    Claims(&'static str),
}

/// The validated claims of an ID token.
pub type Claims = Map<String, Value>;

/// The key of `keys` that verifies a token with `alg` and `kid`: the one with
/// that `kid`, or, when the token names none, the only key that fits.
pub fn key_for<'k>(keys: &'k JwkSet, alg: Algorithm, kid: Option<&str>) -> Result<&'k Jwk, IdTokenRefused> {
    let fits = |k: &&Jwk| fits(k, alg);
    match kid {
        Some(kid) => {
            let key = keys
                .keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid))
                .ok_or_else(|| IdTokenRefused::UnknownKey(Some(kid.to_owned())))?;
            Some(key).filter(fits).ok_or(IdTokenRefused::KeyMismatch)
        }
        None => {
            let mut candidates = keys.keys.iter().filter(fits);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => Ok(only),
                _ => Err(IdTokenRefused::UnknownKey(None)),
            }
        }
    }
}

/// Whether `key` may verify `alg`: its family and curve, its `use` and `alg` when given.
fn fits(key: &Jwk, alg: Algorithm) -> bool {
    let family = match (&key.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256) => {
            true
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => ec.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => ec.curve == EllipticCurve::P384,
        _ => false,
    };
    let for_signing = !matches!(key.common.public_key_use, Some(PublicKeyUse::Encryption));
    let same_alg = key.common.key_algorithm.is_none_or(|a| key_alg(a) == Some(alg));
    family && for_signing && same_alg
}

fn key_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

/// The token's header: its algorithm (one of [`ALGORITHMS`]) and `kid`.
pub fn header(token: &str) -> Result<(Algorithm, Option<String>), IdTokenRefused> {
    // `alg: none` and unknown algorithms fail to parse; say which it was.
    let header = jsonwebtoken::decode_header(token).map_err(|e| match alg_of(token) {
        Some(alg) => IdTokenRefused::Algorithm(alg),
        None => IdTokenRefused::Malformed(e.into_kind()),
    })?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(IdTokenRefused::Algorithm(format!("{:?}", header.alg)));
    }
    // RFC 7515 4.1.11: extensions named in `crit` must be understood, and
    // Ferrygate understands none (jsonwebtoken's header does not read it).
    if header_json(token).is_none_or(|h| h.contains_key("crit")) {
        return Err(IdTokenRefused::Critical);
    }
    Ok((header.alg, header.kid))
}

/// The token's header as JSON.
fn header_json(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine as _;
    let first = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(first).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `alg` a header names, for the log, when it is a short plain name.
fn alg_of(token: &str) -> Option<String> {
    let header = header_json(token)?;
    let alg = header.get("alg")?.as_str()?;
    (alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| alg.to_owned())
}

/// Verifies `token` against `keys`: signature, `iss`, `aud`/`azp`, `exp`,
/// `nbf`, `iat` (60 s of skew), and a `sub`. `now` in seconds since the epoch.
pub fn verify(token: &str, keys: &JwkSet, issuer: &str, client_id: &str, now: u64) -> Result<Claims, IdTokenRefused> {
    let (alg, kid) = header(token)?;
    let jwk = key_for(keys, alg, kid.as_deref())?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| IdTokenRefused::KeyMismatch)?;
    let mut validation = Validation::new(alg);
    validation.leeway = SKEW_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data =
        jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| IdTokenRefused::Invalid(e.into_kind()))?;
    let claims = data.claims;
    // jsonwebtoken also takes an array holding the issuer; the spec wants it exactly.
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(IdTokenRefused::Claims("iss is not the issuer"));
    }
    // NumericDates, checked here whatever their JSON form (jsonwebtoken
    // skips an `nbf` it cannot read as an integer).
    let date = |name: &str, not_a_number: &'static str| match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(IdTokenRefused::Claims(not_a_number)),
    };
    let (now, skew) = (now as f64, SKEW_SECS as f64);
    if date("exp", "exp is not a number")?.is_none_or(|exp| exp <= now - skew) {
        return Err(IdTokenRefused::Claims("exp is past"));
    }
    if date("nbf", "nbf is not a number")?.is_some_and(|nbf| nbf > now + skew) {
        return Err(IdTokenRefused::Claims("nbf is in the future"));
    }
    if date("iat", "iat is not a number")?.is_some_and(|iat| iat > now + skew) {
        return Err(IdTokenRefused::Claims("iat is in the future"));
    }
    // Several audiences: the token must have been issued to us (`azp`).
    if let Some(Value::Array(audiences)) = claims.get("aud") {
        if audiences.len() > 1 && claims.get("azp").and_then(Value::as_str) != Some(client_id) {
            return Err(IdTokenRefused::Claims("several audiences and azp is not the client"));
        }
    }
    if claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(IdTokenRefused::Claims("no sub"));
    }
    Ok(claims)
}
