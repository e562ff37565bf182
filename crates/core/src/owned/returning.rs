//! A returning user (spec section 2): `login.path` or `wizard.path` opened
//! with a live session of this site goes (303) straight to the portal with
//! the cached token and its REMAINING `expires_in`, without calling the
//! provider. A provider with no such redirect (or no session) leaves the
//! page to the site.

use http::Request;

use super::form::Fields;
use super::login::{allowed_destination, asked_in_query, wizard_destination};
use super::Decision;
use crate::access::LiveSession;
use crate::gate::Gate;
use crate::respond;
use crate::site::{OwnedRoute, Site};

pub(crate) fn resume<B>(gate: &Gate, site: &Site, route: OwnedRoute, req: Request<B>) -> Decision<B> {
    let Some(LiveSession(session)) = req.extensions().get::<LiveSession>() else {
        return Decision::Pass(req, Vec::new());
    };
    if session.provider != site.provider {
        return Decision::Pass(req, Vec::new());
    }
    let fields = Fields::from_query(req.uri().query().unwrap_or(""));
    let destination = match route {
        OwnedRoute::Wizard => wizard_destination(site, &fields),
        _ => allowed_destination(site, asked_in_query(&fields)),
    };
    let provider = gate.config.providers.get(&site.provider).map(|p| &p.provider);
    match provider.and_then(|p| p.resume(site, session, &destination)) {
        Some(target) => {
            metrics::counter!("ferrygate_returning_user_redirects_total").increment(1);
            Decision::Answer(respond::see_other(&target, &[]))
        }
        None => Decision::Pass(req, Vec::new()),
    }
}
