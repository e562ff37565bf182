//! The demo's fourth site: Fabrikam's staff portal (`sso.localhost`), whose
//! users sign in through the `oidc` kind against an OpenID issuer embedded
//! here. The issuer signs ES256 ID tokens with a key generated at start and
//! serves discovery, its JWKS, and a token endpoint with the password and
//! refresh grants (client_secret_basic), so the real adapter is exercised
//! over loopback HTTP: discovery, the key lookup, the signature and claim
//! checks, and the renewal of short-lived access tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::http::{Method, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::distr::{Alphanumeric, SampleString};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use crate::http::{form, header, html, json, query, Parts, Reply};
use crate::{demo_user, load_user, pages, State, USERS};

/// The demo's OpenID client.
pub const CLIENT_ID: &str = "demo-fabrikam";
pub(crate) const CLIENT_SECRET: &str = "demo-fabrikam-secret";
/// Access tokens live five minutes: a demo session sees them renewed.
pub const ACCESS_TOKEN_SECS: u64 = 300;

/// How long a refresh token renews: the demo site's `session_ttl` (8 h).
const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);
const KID: &str = "demo-es256";

/// The embedded issuer: its signing key, URL and refresh tokens.
pub(crate) struct Issuer {
    key: EncodingKey,
    /// The public point, as a JWK.
    jwk: serde_json::Value,
    pub(crate) url: OnceLock<String>,
    /// Refresh token → the account it renews, and when it was issued.
    refresh: Mutex<HashMap<String, (&'static str, Instant)>>,
}

impl Default for Issuer {
    /// A fresh P-256 key (ring's generator); a failure would be the system RNG's.
    fn default() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("system RNG");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("own key");
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        Self { key: EncodingKey::from_ec_der(pkcs8.as_ref()), jwk, url: OnceLock::new(), refresh: Mutex::default() }
    }
}

/// Alice administers (the portal and the intranet); Bob and the load-test
/// accounts are staff.
pub(crate) fn groups(email: &str) -> &'static [&'static str] {
    if email == USERS[0].email {
        &["admins", "staff"]
    } else {
        &["staff"]
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether `Authorization: Basic` names the demo client (RFC 6749 2.3.1: each
/// part form-urlencoded, then Base64).
fn client_ok(parts: &Parts) -> bool {
    let header = parts.headers.get(::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else { return false };
    let Some(pair) = base64::engine::general_purpose::STANDARD.decode(encoded).ok() else { return false };
    let Some((id, secret)) = std::str::from_utf8(&pair).ok().and_then(|p| p.split_once(':')) else { return false };
    let decode = |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    decode(id).as_deref() == Some(CLIENT_ID) && decode(secret).as_deref() == Some(CLIENT_SECRET)
}

fn error(status: StatusCode, code: &str) -> Reply {
    json(status, json!({ "error": code }))
}

/// The issuer: discovery, JWKS, token endpoint.
pub(crate) fn issuer(state: Arc<State>, parts: Parts, body: Bytes) -> Reply {
    let me = &state.issuer;
    let url = me.url.get().cloned().unwrap_or_default();
    match (parts.method.clone(), parts.uri.path()) {
        (Method::GET, "/.well-known/openid-configuration") => json(
            StatusCode::OK,
            json!({
                "issuer": url,
                "token_endpoint": format!("{url}/token"),
                "jwks_uri": format!("{url}/jwks"),
                "grant_types_supported": ["password", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "id_token_signing_alg_values_supported": ["ES256"],
            }),
        ),
        (Method::GET, "/jwks") => json(StatusCode::OK, json!({ "keys": [me.jwk] })),
        (Method::POST, "/token") => token(me, &url, &parts, &body),
        _ => error(StatusCode::NOT_FOUND, "not_found"),
    }
}

fn token(me: &Issuer, url: &str, parts: &Parts, body: &Bytes) -> Reply {
    if !client_ok(parts) {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let form = form(body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let email = match field("grant_type") {
        "password" => {
            let typed = field("username").trim();
            match demo_user(typed, field("password")).or_else(|| load_user(typed, field("password"))) {
                Some(user) => user.email,
                None => return error(StatusCode::BAD_REQUEST, "invalid_grant"),
            }
        }
        "refresh_token" => {
            // One use each: the answer carries the next one.
            match me.refresh.lock().ok().and_then(|mut r| r.remove(field("refresh_token"))) {
                Some((email, _)) => email,
                None => return error(StatusCode::BAD_REQUEST, "invalid_grant"),
            }
        }
        _ => return error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    let name = USERS.iter().find(|u| u.email == email).map_or("Load Tester", |u| u.name);
    let t = now();
    let claims = json!({
        "iss": url, "aud": CLIENT_ID, "sub": format!("fab-{}", email.split('@').next().unwrap_or(email)),
        "email": email, "name": name, "groups": groups(email), "iat": t, "exp": t + ACCESS_TOKEN_SECS,
    });
    let header = Header { kid: Some(KID.to_owned()), ..Header::new(Algorithm::ES256) };
    let Ok(id_token) = jsonwebtoken::encode(&header, &claims, &me.key) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    let mut answer = json!({
        "access_token": Alphanumeric.sample_string(&mut rand::rng(), 40),
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECS,
        "id_token": id_token,
    });
    // The demo accounts get refresh tokens; the load harness's many accounts
    // do not (their sessions last the token), so the table stays small.
    if USERS.iter().any(|u| u.email == email) {
        let refresh_token = Alphanumeric.sample_string(&mut rand::rng(), 40);
        if let Ok(mut r) = me.refresh.lock() {
            // Tokens older than the demo site's session_ttl renew no live session:
            // dropped, so a demo signed into again and again keeps a small table.
            r.retain(|_, (_, issued)| issued.elapsed() < REFRESH_TOKEN_LIFETIME);
            r.insert(refresh_token.clone(), (email, Instant::now()));
        }
        answer["refresh_token"] = refresh_token.into();
    }
    json(StatusCode::OK, answer)
}

/// The staff portal: a public front page, its sign-in form, the workspace
/// (signed-in staff) and the administration page (the `admins` group).
pub(crate) fn staff(_state: Arc<State>, parts: Parts, _body: Bytes) -> Reply {
    let header = |name: &str| header(&parts, name);
    let who = header("x-ferrygate-user");
    match parts.uri.path() {
        "/" => html(StatusCode::OK, pages::staff_landing(&who)),
        "/login" => html(
            StatusCode::OK,
            pages::staff_login(query(&parts, "error").as_deref(), query(&parts, "destination").as_deref(), &who),
        ),
        p if p == "/workspace" || p.starts_with("/workspace/") => {
            let bearer = header("authorization");
            let token = bearer.strip_prefix("Bearer ").map_or(0, str::len);
            html(StatusCode::OK, pages::staff_workspace(&who, &header("x-ferrygate-groups"), token, &who))
        }
        p if p == "/admin" || p.starts_with("/admin/") => html(StatusCode::OK, pages::staff_admin(&who, &who)),
        _ => html(StatusCode::NOT_FOUND, pages::not_found()),
    }
}
