//! The routes a site owns, named once: the router matches them, the
//! metrics label them.

/// The routes a site owns (spec section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedRoute {
    Login,
    Wizard,
    Home,
    Logout,
    ForgotPassword,
    Callback,
    /// `forward_auth.path` (and below it): the authorization check for a proxy in front.
    ForwardAuth,
}

impl OwnedRoute {
    /// How many there are: the variants count from 0, and the last is `ForwardAuth`.
    pub(crate) const COUNT: usize = OwnedRoute::ForwardAuth as usize + 1;

    /// The `route` label of `ferrygate_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            OwnedRoute::Login => "login",
            OwnedRoute::Wizard => "wizard",
            OwnedRoute::Home => "home",
            OwnedRoute::Logout => "logout",
            OwnedRoute::ForgotPassword => "forgot_password",
            OwnedRoute::Callback => "callback",
            OwnedRoute::ForwardAuth => "forward_auth",
        }
    }
}
