//! ID token verification, with tokens this test signs itself: a generated
//! RSA key (tests/keys, made by `openssl genrsa`) and EC keys generated at
//! start. Every refusal of SPEC 1.4 has its case.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ferrygate_provider_oidc::verify::{self, IdTokenRefused};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.example/oauth2/default";
const CLIENT: &str = "client-1";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The test's signing keys and the JWKS that publishes them.
struct Keys {
    rsa: EncodingKey,
    rsa_public: Vec<u8>,
    p256: EncodingKey,
    p384: EncodingKey,
    jwks: JwkSet,
}

fn keys() -> Keys {
    let pem = include_str!("keys/rsa-2048.pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
    let pair = RsaKeyPair::from_der(&der).unwrap();
    let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    let rng = SystemRandom::new();
    let ec = |alg| {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let point = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap().public_key().as_ref().to_vec();
        (EncodingKey::from_ec_der(pkcs8.as_ref()), point)
    };
    let (p256, p256_point) = ec(&ECDSA_P256_SHA256_FIXED_SIGNING);
    let (p384, p384_point) = ec(&ECDSA_P384_SHA384_FIXED_SIGNING);
    let xy = |point: &[u8]| {
        let half = (point.len() - 1) / 2;
        (b64(&point[1..=half]), b64(&point[1 + half..]))
    };
    let (x256, y256) = xy(&p256_point);
    let (x384, y384) = xy(&p384_point);
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": b64(&parts.n), "e": b64(&parts.e)},
        {"kty": "EC", "kid": "p256-1", "crv": "P-256", "x": x256, "y": y256},
        {"kty": "EC", "kid": "p384-1", "crv": "P-384", "x": x384, "y": y384, "alg": "ES384"},
        {"kty": "RSA", "kid": "rsa-enc", "use": "enc", "n": b64(&parts.n), "e": b64(&parts.e)},
    ]});
    Keys {
        rsa: EncodingKey::from_rsa_der(&der),
        rsa_public: pair.public().as_ref().to_vec(),
        p256,
        p384,
        jwks: serde_json::from_value(jwks).unwrap(),
    }
}

fn claims() -> Value {
    let t = now();
    json!({"iss": ISSUER, "aud": CLIENT, "sub": "u-alice", "email": "alice@corp.test", "iat": t, "exp": t + 300})
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let header = Header { kid: Some(kid.to_owned()), ..Header::new(alg) };
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn check(keys: &Keys, token: &str) -> Result<verify::Claims, IdTokenRefused> {
    verify::verify(token, &keys.jwks, ISSUER, CLIENT, now())
}

fn with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

#[test]
fn every_allowed_algorithm_verifies() {
    let k = keys();
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-1", &k.rsa),
        (Algorithm::RS384, "rsa-1", &k.rsa),
        (Algorithm::RS512, "rsa-1", &k.rsa),
        (Algorithm::PS256, "rsa-1", &k.rsa),
        (Algorithm::ES256, "p256-1", &k.p256),
        (Algorithm::ES384, "p384-1", &k.p384),
    ] {
        let got = check(&k, &sign(alg, kid, key, &claims())).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(got["sub"], "u-alice", "{alg:?}");
        assert_eq!(got["email"], "alice@corp.test", "{alg:?}");
    }
}

#[test]
fn alg_none_is_refused() {
    let k = keys();
    let header = b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    let token = format!("{header}.{}.", b64(claims().to_string().as_bytes()));
    assert_eq!(check(&k, &token).unwrap_err(), IdTokenRefused::Algorithm("none".into()));
}

#[test]
fn hmac_is_refused_even_signed_with_the_client_secret_or_the_public_key() {
    let k = keys();
    for secret in [b"the-client-secret".as_slice(), k.rsa_public.as_slice()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(alg, "rsa-1", &EncodingKey::from_secret(secret), &claims());
            assert!(matches!(check(&k, &token), Err(IdTokenRefused::Algorithm(_))), "{alg:?}");
        }
    }
}

#[test]
fn other_asymmetric_algorithms_are_refused() {
    let k = keys();
    // PS384/PS512 are not on the list, though the RSA key could verify them.
    for alg in [Algorithm::PS384, Algorithm::PS512] {
        assert!(
            matches!(check(&k, &sign(alg, "rsa-1", &k.rsa, &claims())), Err(IdTokenRefused::Algorithm(_))),
            "{alg:?}"
        );
    }
}

#[test]
fn the_key_must_fit_the_algorithm_and_be_for_signing() {
    let k = keys();
    // An RSA signature naming the EC key, an ES256 signature naming the P-384 key.
    assert_eq!(
        check(&k, &sign(Algorithm::RS256, "p256-1", &k.rsa, &claims())).unwrap_err(),
        IdTokenRefused::KeyMismatch
    );
    assert_eq!(
        check(&k, &sign(Algorithm::ES256, "p384-1", &k.p256, &claims())).unwrap_err(),
        IdTokenRefused::KeyMismatch
    );
    // The JWK says "use": "enc".
    assert_eq!(
        check(&k, &sign(Algorithm::RS256, "rsa-enc", &k.rsa, &claims())).unwrap_err(),
        IdTokenRefused::KeyMismatch
    );
}

#[test]
fn an_unknown_kid_is_reported_as_such() {
    let k = keys();
    let token = sign(Algorithm::RS256, "rotated-2", &k.rsa, &claims());
    assert_eq!(check(&k, &token).unwrap_err(), IdTokenRefused::UnknownKey(Some("rotated-2".into())));
}

#[test]
fn a_forged_signature_is_refused() {
    let k = keys();
    let token = sign(Algorithm::RS256, "rsa-1", &k.rsa, &claims());
    let (head, _) = token.rsplit_once('.').unwrap();
    let other = sign(Algorithm::RS256, "rsa-1", &k.rsa, &with(json!({"sub": "u-mallory"})));
    let (_, signature) = other.rsplit_once('.').unwrap();
    assert!(matches!(check(&k, &format!("{head}.{signature}")), Err(IdTokenRefused::Invalid(_))));
    // Claims swapped under a valid signature.
    let (h, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let swapped = format!("{h}.{}.{sig}", b64(with(json!({"sub": "u-mallory"})).to_string().as_bytes()));
    assert!(matches!(check(&k, &swapped), Err(IdTokenRefused::Invalid(_))));
}

#[test]
fn issuer_audience_and_times_are_checked_with_60s_of_skew() {
    let k = keys();
    let t = now();
    let refused = [
        ("another issuer", with(json!({"iss": "https://idp.example/oauth2/other"}))),
        ("issuer with a trailing slash", with(json!({"iss": format!("{ISSUER}/")}))),
        ("no issuer", with(json!({"iss": null}))),
        ("the issuer inside an array", with(json!({"iss": [ISSUER]}))),
        ("another audience", with(json!({"aud": "client-2"}))),
        ("no audience", with(json!({"aud": null}))),
        ("several audiences, no azp", with(json!({"aud": [CLIENT, "client-2"]}))),
        ("several audiences, azp another", with(json!({"aud": [CLIENT, "client-2"], "azp": "client-2"}))),
        ("expired beyond the skew", with(json!({"exp": t - 90}))),
        ("no exp", with(json!({"exp": null}))),
        ("nbf beyond the skew", with(json!({"nbf": t + 90}))),
        ("iat beyond the skew", with(json!({"iat": t + 90}))),
        ("no sub", with(json!({"sub": null}))),
        ("empty sub", with(json!({"sub": ""}))),
    ];
    for (what, claims) in refused {
        let token = sign(Algorithm::RS256, "rsa-1", &k.rsa, &claims);
        assert!(
            matches!(check(&k, &token), Err(IdTokenRefused::Claims(_) | IdTokenRefused::Invalid(_))),
            "{what} was accepted"
        );
    }
    let accepted = [
        ("expired within the skew", with(json!({"exp": t - 30}))),
        ("nbf within the skew", with(json!({"nbf": t + 30}))),
        ("iat within the skew", with(json!({"iat": t + 30}))),
        ("audience in an array", with(json!({"aud": [CLIENT]}))),
        ("several audiences, azp us", with(json!({"aud": ["client-2", CLIENT], "azp": CLIENT}))),
    ];
    for (what, claims) in accepted {
        let token = sign(Algorithm::RS256, "rsa-1", &k.rsa, &claims);
        assert!(check(&k, &token).is_ok(), "{what} was refused: {:?}", check(&k, &token));
    }
}

#[test]
fn without_a_kid_the_only_fitting_key_is_used() {
    let k = keys();
    let header = Header::new(Algorithm::ES384);
    let token = jsonwebtoken::encode(&header, &claims(), &k.p384).unwrap();
    assert!(check(&k, &token).is_ok());
    // Two RSA keys fit RS256 (one of them is for encryption, so one fits): accepted;
    // with no fitting key at all, refused.
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &k.rsa).unwrap();
    assert!(check(&k, &token).is_ok());
    let empty: JwkSet = serde_json::from_value(json!({"keys": []})).unwrap();
    assert_eq!(verify::verify(&token, &empty, ISSUER, CLIENT, now()).unwrap_err(), IdTokenRefused::UnknownKey(None));
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let k = keys();
    for token in ["", ".", "..", "a.b.c", "not a token at all"] {
        assert!(matches!(check(&k, token), Err(IdTokenRefused::Malformed(_))), "{token:?}: {:?}", check(&k, token));
    }
    // A readable header with nothing signed after it: the signature check refuses it.
    assert!(matches!(check(&k, "eyJhbGciOiJSUzI1NiJ9.."), Err(IdTokenRefused::Invalid(_))));
}
