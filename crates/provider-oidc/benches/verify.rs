//! criterion: what an `oidc` login spends on its ID token — the signature
//! and claim checks (RS256 with a 2048-bit key, ES256) and the JWKS key
//! lookup by `kid`. `cargo bench -p ferrygate-provider-oidc`.

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use ferrygate_provider_oidc::verify;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

const ISSUER: &str = "https://idp.example";
const CLIENT: &str = "client-1";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn bench(c: &mut Criterion) {
    let pem = include_str!("../tests/keys/rsa-2048.pem");
    let der = base64::engine::general_purpose::STANDARD
        .decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
        .unwrap();
    let rsa = RsaKeyPair::from_der(&der).unwrap();
    let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public());
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let point = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    // Six keys of other kids before the two that sign, as after a few rotations.
    let mut keys: Vec<_> = (0..6)
        .map(|i| json!({"kty": "RSA", "kid": format!("old-{i}"), "n": b64(&parts.n), "e": b64(&parts.e)}))
        .collect();
    keys.push(json!({"kty": "RSA", "kid": "rsa", "n": b64(&parts.n), "e": b64(&parts.e)}));
    keys.push(json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}));
    let jwks: JwkSet = serde_json::from_value(json!({ "keys": keys })).unwrap();
    let t = now();
    let claims = json!({"iss": ISSUER, "aud": CLIENT, "sub": "u-1", "email": "a@corp.test", "groups": ["staff"],
        "iat": t, "exp": t + 3600});
    let sign = |alg, kid: &str, key: &EncodingKey| {
        jsonwebtoken::encode(&Header { kid: Some(kid.into()), ..Header::new(alg) }, &claims, key).unwrap()
    };
    let rs256 = sign(Algorithm::RS256, "rsa", &EncodingKey::from_rsa_der(&der));
    let es256 = sign(Algorithm::ES256, "ec", &EncodingKey::from_ec_der(pkcs8.as_ref()));
    c.bench_function("oidc: verify an RS256 ID token (2048-bit)", |b| {
        b.iter(|| black_box(verify::verify(black_box(&rs256), &jwks, ISSUER, CLIENT, t).unwrap()))
    });
    c.bench_function("oidc: verify an ES256 ID token (P-256)", |b| {
        b.iter(|| black_box(verify::verify(black_box(&es256), &jwks, ISSUER, CLIENT, t).unwrap()))
    });
    c.bench_function("oidc: JWKS lookup by kid (8 keys)", |b| {
        b.iter(|| black_box(verify::key_for(&jwks, Algorithm::ES256, Some(black_box("ec"))).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
