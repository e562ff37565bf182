//! The access decision (spec 2, 2.1): whether a request may reach a path,
//! from what the path asks ([`Guard`]) and the request's session as
//! resolved once ([`Resolved`]). The session layer, the owned routes and
//! the forward-auth check all ask [`decide`]; nothing else decides.

use crate::session::{Session, SessionId};
use crate::site::AuthorizeRule;

/// The request's session on its site, resolved once: cookie → store. The
/// owned routes find it among the request's extensions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Resolved {
    /// No signed session cookie.
    Anonymous,
    /// A signed cookie whose session is no longer live on this site (ended,
    /// expired, or created on another site).
    Ended,
    /// A live session of this site.
    Live(SessionId, Box<Session>),
    /// The store could not say (never read as "no session" where that matters).
    Unavailable,
}

impl Resolved {
    /// The live session, if any.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Resolved::Live(_, session) => Some(session),
            _ => None,
        }
    }
}

/// What a path asks of a request before it may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Guard<'a> {
    /// Anyone; with the user's identity when signed in, without it when the
    /// store cannot say.
    Public,
    /// Anyone, but the answer depends on the session (a returning user's
    /// login or wizard page): a store that cannot say is a 503, never the form.
    Returning,
    /// A signed-in user (`protected_paths`), in one of the rule's groups
    /// when the path is under an authorization rule.
    Protected(Option<&'a AuthorizeRule>),
}

/// Whether a request may reach a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
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
pub fn decide(guard: Guard<'_>, resolved: &Resolved) -> Verdict {
    match (guard, resolved) {
        (Guard::Public, _) => Verdict::Allow,
        (_, Resolved::Unavailable) => Verdict::Unavailable,
        (Guard::Returning, _) => Verdict::Allow,
        (Guard::Protected(_), Resolved::Anonymous | Resolved::Ended) => Verdict::SignIn,
        (Guard::Protected(Some(rule)), Resolved::Live(_, s)) if !rule.admits(&s.groups) => Verdict::Forbidden,
        (Guard::Protected(_), Resolved::Live(..)) => Verdict::Allow,
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
        Resolved::Live(SessionId::random(), Box::new(session))
    }

    #[test]
    fn one_decision_for_sessions_protected_paths_and_rules() {
        let admins = AuthorizeRule { path: "/admin".into(), groups: vec!["admins".into(), "root".into()] };
        let (anonymous, ended) = (Resolved::Anonymous, Resolved::Ended);
        assert_eq!(decide(Guard::Public, &anonymous), Verdict::Allow);
        assert_eq!(decide(Guard::Protected(None), &anonymous), Verdict::SignIn);
        assert_eq!(decide(Guard::Protected(None), &ended), Verdict::SignIn);
        assert_eq!(decide(Guard::Protected(Some(&admins)), &anonymous), Verdict::SignIn);
        assert_eq!(decide(Guard::Protected(None), &live(&[])), Verdict::Allow);
        assert_eq!(decide(Guard::Protected(Some(&admins)), &live(&["staff"])), Verdict::Forbidden);
        assert_eq!(decide(Guard::Protected(Some(&admins)), &live(&[])), Verdict::Forbidden);
        assert_eq!(decide(Guard::Protected(Some(&admins)), &live(&["staff", "root"])), Verdict::Allow);
        assert_eq!(decide(Guard::Returning, &anonymous), Verdict::Allow);
    }

    #[test]
    fn a_store_that_cannot_answer_is_unavailable_only_where_it_matters() {
        let down = Resolved::Unavailable;
        assert_eq!(decide(Guard::Public, &down), Verdict::Allow);
        assert_eq!(decide(Guard::Returning, &down), Verdict::Unavailable);
        assert_eq!(decide(Guard::Protected(None), &down), Verdict::Unavailable);
    }
}
