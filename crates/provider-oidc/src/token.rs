//! The token request (SPEC 1.4): `POST {token_endpoint}` with the client
//! authenticated by `client_secret_basic` or `client_secret_post`, the
//! answer read (`expires_in` as a number or a string), and a refusal mapped
//! to its login outcome.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use ferrygate_core::client::Answer;
use ferrygate_core::provider::Token;
use ferrygate_core::{ExposeSecret, LoginError, SecretString};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::Value;

use crate::discovery::Endpoints;
use crate::{ClientAuth, Oidc, DEFAULT_TOKEN_LIFETIME};

const FORM: &str = "application/x-www-form-urlencoded";

#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub(crate) access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "seconds")]
    expires_in: Option<u64>,
    pub(crate) id_token: Option<String>,
    pub(crate) refresh_token: Option<String>,
}

/// `expires_in` as a number, or a string of digits (Entra ID's v1 endpoint).
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B).
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `Basic base64(urlencode(id):urlencode(secret))`, RFC 6749 2.3.1.
pub fn basic_credentials(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

impl Oidc {
    /// `POST {token_endpoint}` with `params` and the client's authentication.
    pub(crate) async fn token_request(
        &self,
        endpoints: &Endpoints,
        params: &[(&str, &str)],
    ) -> Result<TokenAnswer, LoginError> {
        let c = &self.config;
        let post = c.client_auth == ClientAuth::ClientSecretPost;
        let body = {
            let mut body = form_urlencoded::Serializer::new(String::new());
            body.extend_pairs(params);
            if post {
                body.append_pair("client_id", &c.client_id);
                body.append_pair("client_secret", c.client_secret.expose_secret());
            }
            body.finish()
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&endpoints.token)
            .header(CONTENT_TYPE, FORM)
            .header(ACCEPT, "application/json");
        if !post {
            req = req.header(AUTHORIZATION, self.basic.clone().ok_or(LoginError::ProviderUnavailable)?);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|_| LoginError::ProviderUnavailable)?;
        let answer = self.send(req, "token request").await?;
        if answer.status == StatusCode::OK {
            return serde_json::from_slice::<TokenAnswer>(&answer.body)
                .ok()
                .filter(|t| !t.access_token.is_empty())
                .ok_or_else(|| {
                    tracing::warn!(provider = %self.name, "the token answer holds no access token");
                    LoginError::ProviderUnavailable
                });
        }
        Err(self.refusal(&answer))
    }

    /// What a token endpoint's refusal means (SPEC 1.4), logged.
    fn refusal(&self, answer: &Answer) -> LoginError {
        let status = answer.status.as_u16();
        let code = serde_json::from_slice::<ErrorAnswer>(&answer.body).ok().map(|e| e.error);
        // Error codes are the provider's words, not the user's: logged when plain.
        let code = code.filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()));
        match (answer.status, code.as_deref()) {
            (_, Some("invalid_grant")) => LoginError::InvalidCredentials,
            (_, Some(c @ ("invalid_client" | "unauthorized_client" | "unsupported_grant_type" | "invalid_scope"))) => {
                tracing::error!(provider = %self.name, status, code = c,
                    "the identity provider refused this client: check client_id, client_secret, client_auth, \
                     scope and that the password grant is enabled");
                LoginError::ProviderUnavailable
            }
            // Busy, not refusing: never a reason to end a session.
            (StatusCode::TOO_MANY_REQUESTS, _) | (_, Some("temporarily_unavailable" | "slow_down")) => {
                tracing::warn!(provider = %self.name, status, "the token endpoint is busy");
                LoginError::ProviderUnavailable
            }
            (s, _) if s.is_server_error() => {
                tracing::warn!(provider = %self.name, status, "the token endpoint failed");
                LoginError::ProviderUnavailable
            }
            (StatusCode::UNAUTHORIZED, None) => {
                tracing::error!(provider = %self.name, status, "the token endpoint refused the client");
                LoginError::ProviderUnavailable
            }
            (_, Some(c)) => {
                tracing::warn!(provider = %self.name, status, code = c, "the identity provider refused the login");
                LoginError::ProviderRejected
            }
            (_, None) => {
                tracing::warn!(provider = %self.name, status, "the token endpoint answered no error code");
                LoginError::ProviderUnavailable
            }
        }
    }

    pub(crate) fn token(&self, answer: &TokenAnswer) -> Token {
        Token::new(
            SecretString::from(answer.access_token.clone()),
            answer.token_type.clone().unwrap_or_else(|| "Bearer".to_owned()),
            answer.expires_in.map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_may_be_a_number_or_a_string() {
        for (answer, want) in [
            (r#"{"access_token":"a","expires_in":300}"#, Some(300)),
            (r#"{"access_token":"a","expires_in":"3599"}"#, Some(3599)),
            (r#"{"access_token":"a"}"#, None),
            (r#"{"access_token":"a","expires_in":"soon"}"#, None),
        ] {
            let t: TokenAnswer = serde_json::from_str(answer).unwrap();
            assert_eq!(t.expires_in, want, "{answer}");
        }
    }

    #[test]
    fn basic_credentials_form_encode_before_base64() {
        // RFC 6749 2.3.1 / Appendix B: space is '+', ':' and '%' are escaped.
        let value = basic_credentials("my client", "s3cr:t%");
        let decoded = base64::engine::general_purpose::STANDARD.decode(value.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "my+client:s3cr%3At%25");
    }
}
