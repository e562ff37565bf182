//! `callback.path` (spec 1.2): the OAuth2 `state` checked against the
//! browser's state cookie and consumed (single use, across replicas with a
//! shared store) before the request reaches the site, with the destination
//! the state was bound to as `X-Ferrygate-Destination`.

use http::Request;

use super::form::Fields;
use super::Decision;
use crate::error::LoginError;
use crate::gate::Gate;
use crate::identity::CallbackDestination;
use crate::respond::{self, AnswerMode};
use crate::session::{Carried, StateRefused};
use crate::site::Site;

pub(crate) async fn check<B>(gate: &Gate, site: &Site, mut req: Request<B>) -> Decision<B> {
    let offered = Fields::from_query(req.uri().query().unwrap_or(""));
    let carried = req.extensions_mut().remove::<Carried>().unwrap_or_default();
    match gate.sessions.take_state(&carried, offered.get("state")).await {
        Ok(destination) => {
            req.extensions_mut().insert(CallbackDestination(destination));
            Decision::Pass(req, vec![gate.sessions.cookies().expired_state_cookie()])
        }
        Err(StateRefused::StoreUnavailable) => Decision::Answer(respond::login_failure(
            LoginError::SessionStoreUnavailable,
            AnswerMode::of(req.headers()),
            &site.login.failure_redirect,
        )),
        Err(why) => {
            tracing::warn!(site = %site.name, reason = ?why, "callback refused: state_mismatch");
            Decision::Answer(respond::login_failure(LoginError::StateMismatch, AnswerMode::of(req.headers()), "/"))
        }
    }
}
