//! The access decision (spec 2, 2.1): whether a request may reach a path,
//! from what the path asks ([`Guard`]) and the request's session as
//! resolved once ([`Resolved`]). The session layer, the owned routes and
//! the forward-auth check all ask [`decide`]; nothing else decides.

use crate::session::Session;
use crate::site::AuthorizeRule;

/// The request's session on its site, resolved once: cookie → store.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// No live session of this site: no signed cookie, or one whose session
    /// ended, expired or was created on another site.
    Anonymous,
    /// A live session of this site.
    Live(Box<Session>),
    /// The store could not say (never read as "no session" where that matters).
    Unavailable,
}

/// What a path asks of a request before it may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard<'a> {
    /// Anyone; with the user's identity when signed in, without it when the
    /// store cannot say.
    Public,
    /// Anyone, but the answer depends on the session (a returning user's
    /// login or wizard page): a store that cannot say is a 503, never the form.
    Returning,
    /// A signed-in user (`protected_paths`, or a rule that is not public);
    /// under a rule, a client in one of its networks and a user in one of
    /// its groups (`client`: the client's address, after `trusted_proxies`).
    Protected { rule: Option<&'a AuthorizeRule>, client: Option<std::net::IpAddr> },
}

/// Whether a request may reach a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Pass (with the user's identity, if signed in).
    Allow,
    /// A protected path without a live session: sign in first.
    SignIn,
    /// Signed in, but the path's authorization rule admits none of the user's groups.
    Forbidden,
    /// The session store cannot answer, and the answer matters: 503
    /// `session_store_unavailable` (spec 4).
    Unavailable,
}

/// The one access decision.
pub(crate) fn decide(guard: Guard<'_>, resolved: &Resolved) -> Verdict {
    match (guard, resolved) {
        (Guard::Public, _) => Verdict::Allow,
        (_, Resolved::Unavailable) => Verdict::Unavailable,
        (Guard::Returning, _) => Verdict::Allow,
        (Guard::Protected { .. }, Resolved::Anonymous) => Verdict::SignIn,
        // Then the client's network, then the user's groups (spec 2.2).
        (Guard::Protected { rule: Some(rule), client }, Resolved::Live(s))
            if !rule.admits_client(client) || !rule.admits(&s.groups) =>
        {
            Verdict::Forbidden
        }
        (Guard::Protected { .. }, Resolved::Live(..)) => Verdict::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn live(groups: &[&str]) -> Resolved {
        let session = Session {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Session::for_test("u", Duration::from_secs(3600))
        };
        Resolved::Live(Box::new(session))
    }

    #[test]
    fn one_decision_for_sessions_protected_paths_and_rules() {
        let admins = AuthorizeRule::new("/admin", vec!["admins".into(), "root".into()]);
        let protected = |rule| Guard::Protected { rule, client: None };
        let anonymous = Resolved::Anonymous;
        assert_eq!(decide(Guard::Public, &anonymous), Verdict::Allow);
        assert_eq!(decide(protected(None), &anonymous), Verdict::SignIn);
        assert_eq!(decide(protected(Some(&admins)), &anonymous), Verdict::SignIn);
        assert_eq!(decide(protected(None), &live(&[])), Verdict::Allow);
        assert_eq!(decide(protected(Some(&admins)), &live(&["staff"])), Verdict::Forbidden);
        assert_eq!(decide(protected(Some(&admins)), &live(&[])), Verdict::Forbidden);
        assert_eq!(decide(protected(Some(&admins)), &live(&["staff", "root"])), Verdict::Allow);
        assert_eq!(decide(Guard::Returning, &anonymous), Verdict::Allow);
    }

    #[test]
    fn networks_come_before_groups_and_an_unknown_client_is_outside_every_network() {
        let mut office = AuthorizeRule::new("/admin", vec!["admins".into()]);
        office.networks = vec!["10.0.0.0/8".parse().unwrap()];
        let at = |ip: Option<&str>| Guard::Protected { rule: Some(&office), client: ip.map(|i| i.parse().unwrap()) };
        assert_eq!(decide(at(Some("10.1.2.3")), &live(&["admins"])), Verdict::Allow);
        assert_eq!(decide(at(Some("::ffff:10.1.2.3")), &live(&["admins"])), Verdict::Allow);
        assert_eq!(decide(at(Some("192.0.2.1")), &live(&["admins"])), Verdict::Forbidden);
        assert_eq!(decide(at(None), &live(&["admins"])), Verdict::Forbidden);
        assert_eq!(decide(at(Some("10.1.2.3")), &live(&["staff"])), Verdict::Forbidden);
        // No session: sign in first, wherever the client is.
        assert_eq!(decide(at(Some("192.0.2.1")), &Resolved::Anonymous), Verdict::SignIn);
        // A rule without groups admits any signed-in user.
        let any = AuthorizeRule::new("/app", Vec::new());
        assert_eq!(decide(Guard::Protected { rule: Some(&any), client: None }, &live(&[])), Verdict::Allow);
    }

    #[test]
    fn a_store_that_cannot_answer_is_unavailable_only_where_it_matters() {
        let down = Resolved::Unavailable;
        assert_eq!(decide(Guard::Public, &down), Verdict::Allow);
        assert_eq!(decide(Guard::Returning, &down), Verdict::Unavailable);
        assert_eq!(decide(Guard::Protected { rule: None, client: None }, &down), Verdict::Unavailable);
    }
}
