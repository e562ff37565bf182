//! The user's claims (SPEC 1.4): the verified ID token's, or userinfo's
//! when the ID token is optional and absent; the user name (an unverified
//! `email` is none), the user id and the groups they give.

use ferrygate_core::client::credential_header;
use ferrygate_core::provider::UserInfo;
use ferrygate_core::LoginError;
use http::header::{ACCEPT, AUTHORIZATION};
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use crate::discovery::Endpoints;
use crate::token::TokenAnswer;
use crate::verify::{Claims, IdTokenRefused};
use crate::{Failure, IdToken, Oidc};

impl Oidc {
    /// The user's claims: the verified ID token's, or (optional and absent) userinfo's.
    pub(crate) async fn claims(&self, endpoints: &Endpoints, answer: &TokenAnswer) -> Result<Option<Claims>, Failure> {
        if let Some(id_token) = &answer.id_token {
            return self.verified(endpoints, id_token).await.map(Some);
        }
        if self.config.id_token == IdToken::Required {
            return Err(Failure::IdToken(IdTokenRefused::Claims("no id_token in the token answer")));
        }
        Ok(None)
    }

    pub(crate) async fn userinfo(&self, endpoints: &Endpoints, access_token: &str) -> Result<Claims, LoginError> {
        let Some(url) = &endpoints.userinfo else {
            tracing::error!(provider = %self.name, "id_token = \"optional\" needs a userinfo_endpoint");
            return Err(LoginError::ProviderUnavailable);
        };
        let bearer = credential_header(&format!("Bearer {access_token}")).ok_or(LoginError::ProviderUnavailable)?;
        let req = Request::builder()
            .uri(url)
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, bearer)
            .body(Full::default())
            .map_err(|_| LoginError::ProviderUnavailable)?;
        let answer = self.send(req, "userinfo request").await?;
        let claims = (answer.status == StatusCode::OK)
            .then(|| serde_json::from_slice::<Claims>(&answer.body).ok())
            .flatten()
            .filter(|c| c.get("sub").and_then(Value::as_str).is_some_and(|s| !s.is_empty()));
        claims.ok_or_else(|| {
            tracing::warn!(provider = %self.name, status = answer.status.as_u16(), "userinfo gave no claims with a sub");
            LoginError::ProviderUnavailable
        })
    }

    /// Who the claims say the user is.
    pub(crate) fn user(&self, claims: &Claims) -> UserInfo {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
        let sub = text("sub");
        let name = self.username(claims).or_else(|| text("preferred_username")).or(sub);
        let groups = self.groups(claims).unwrap_or_default();
        UserInfo::default().with_email(name.map(str::to_owned)).with_user_id(sub.map(str::to_owned)).with_groups(groups)
    }

    /// The `username_claim`'s value; an `email` the provider says is not
    /// verified is none (anyone could have typed it into their profile).
    pub(crate) fn username<'c>(&self, claims: &'c Claims) -> Option<&'c str> {
        let claim = self.config.username_claim.as_str();
        // Verified only as the JSON value `true`, or when the claim is absent
        // (`0`, `"0"`, `"no"`, `"true"` are no verification).
        let unverified = !matches!(claims.get("email_verified"), None | Some(Value::Bool(true)));
        if claim == "email" && unverified {
            tracing::info!(provider = %self.name, "the email claim is not verified: not used as the user name");
            return None;
        }
        claims.get(claim).and_then(Value::as_str).filter(|v| !v.is_empty())
    }

    /// The groups claim: a string or an array of strings; `None` when absent.
    pub(crate) fn groups(&self, claims: &Claims) -> Option<Vec<String>> {
        match claims.get(&self.config.groups_claim)? {
            Value::String(g) => Some(vec![g.clone()]),
            Value::Array(all) => Some(all.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect()),
            _ => None,
        }
    }
}
