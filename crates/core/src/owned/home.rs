//! `home.paths` (303 to `home.redirect`) and `logout.paths` (the session
//! ended in the store, the cookie expired, 303 to `logout.redirect`;
//! idempotent; a store that cannot end it: 503 `session_store_unavailable`,
//! the cookie expired all the same). A cross-site POST to either is
//! `origin_rejected`.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;

use crate::error::LoginError;
use crate::gate::Gate;
use crate::respond::{self, AnswerMode};
use crate::session::Carried;
use crate::site::Site;

pub(crate) fn home<B>(gate: &Gate, site: &Site, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() == Method::POST && !gate.same_origin(site, req.uri(), req.headers(), req.extensions()) {
        return respond::login_failure(LoginError::OriginRejected, AnswerMode::of(req.headers()), "/");
    }
    respond::see_other(site.home.as_ref().map_or("/", |h| h.redirect.as_str()), &[])
}

pub(crate) async fn logout<B>(gate: &Gate, site: &Site, req: Request<B>) -> Response<Full<Bytes>> {
    let (req, _body) = req.into_parts();
    if req.method == Method::POST && !gate.same_origin(site, &req.uri, &req.headers, &req.extensions) {
        return respond::login_failure(LoginError::OriginRejected, AnswerMode::of(&req.headers), "/");
    }
    let carried = req.extensions.get::<Carried>();
    if let Some(id) = carried.and_then(|c| gate.sessions.cookies().session_id(c)) {
        if let Err(e) = gate.sessions.end(&id).await {
            // Never a success the store did not do: the session still lives
            // (on every replica) until its TTL. The browser's cookie goes anyway.
            tracing::warn!(site = %site.name, error = %e, "could not remove the session from the store");
            let mut res = match AnswerMode::of(&req.headers) {
                // A browser too gets the 503, not the login form's redirect.
                AnswerMode::Browser => respond::store_unavailable(),
                json => respond::login_failure(LoginError::SessionStoreUnavailable, json, "/"),
            };
            res.headers_mut().append(http::header::SET_COOKIE, gate.sessions.cookies().expired_session_cookie());
            return res;
        }
    }
    let target = site.logout.as_ref().map_or("/", |l| l.redirect.as_str());
    respond::see_other(target, &[gate.sessions.cookies().expired_session_cookie()])
}
