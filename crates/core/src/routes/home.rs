//! `home.paths` (303 to `home.redirect`) and `logout.paths` (the session
//! ended in the store, the cookie expired, 303 to `logout.redirect`;
//! idempotent; a store that cannot end it: 503 `session_store_unavailable`,
//! the cookie expired all the same). A cross-site POST to either is
//! `origin_rejected`.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;

use crate::error::LoginError;
use crate::respond::{self, AnswerMode};
use crate::site::Site;
use crate::state::Shared;

pub(crate) fn home<B>(shared: &Shared, site: &Site, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() == Method::POST && !shared.same_origin(site, req.uri(), req.headers(), req.extensions()) {
        return respond::login_failure(LoginError::OriginRejected, AnswerMode::of(req.headers()), "/");
    }
    respond::see_other(site.home.as_ref().map_or("/", |h| h.redirect.as_str()), &[])
}

pub(crate) async fn logout<B>(shared: &Shared, site: &Site, req: Request<B>) -> Response<Full<Bytes>> {
    let (req, _body) = req.into_parts();
    if req.method == Method::POST && !shared.same_origin(site, &req.uri, &req.headers, &req.extensions) {
        return respond::login_failure(LoginError::OriginRejected, AnswerMode::of(&req.headers), "/");
    }
    if let Some(id) = shared.sessions.session_id(&req.headers) {
        if let Err(e) = shared.sessions.end(&id).await {
            // Never a success the store did not do: the session still lives
            // (on every replica) until its TTL. The browser's cookie goes anyway.
            tracing::warn!(site = %site.name, error = %e, "could not remove the session from the store");
            let mut res = match AnswerMode::of(&req.headers) {
                // A browser too gets the 503, not the login form's redirect.
                AnswerMode::Browser => respond::store_unavailable(),
                json => respond::login_failure(LoginError::SessionStoreUnavailable, json, "/"),
            };
            res.headers_mut().append(http::header::SET_COOKIE, shared.sessions.expired_cookie());
            return res;
        }
    }
    let target = site.logout.as_ref().map_or("/", |l| l.redirect.as_str());
    respond::see_other(target, &[shared.sessions.expired_cookie()])
}
