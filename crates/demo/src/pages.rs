//! The demo's HTML: one stylesheet, a few small pages.

use std::time::Duration;

use crate::http::esc;
use crate::USERS;

const STYLE: &str = r#"
:root { --ink:#0f172a; --muted:#64748b; --brand:#0e7490; --brand-dark:#155e75; --bg:#f1f5f9; --card:#fff; --bad:#b91c1c; }
* { box-sizing:border-box; }
body { margin:0; font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink); background:var(--bg); }
header { background:var(--ink); color:#fff; padding:14px 32px; display:flex; align-items:center; justify-content:space-between; }
header a { color:#cbd5e1; text-decoration:none; margin-left:20px; }
header .who { color:#fff; margin-left:20px; font-size:.9em; opacity:.85; }
header .logo { font-weight:700; letter-spacing:.02em; color:#fff; margin:0; }
header.portal { background:var(--brand-dark); }
header.news { background:#7c2d12; }
header.intranet { background:#3730a3; }
header.staff { background:#166534; }
main { max-width:980px; margin:40px auto; padding:0 24px; }
.hero { display:grid; grid-template-columns:1.2fr 1fr; gap:32px; align-items:center; }
.hero h1 { font-size:40px; line-height:1.15; margin:0 0 12px; }
.hero p { color:var(--muted); font-size:18px; }
.card { background:var(--card); border-radius:14px; padding:28px; box-shadow:0 10px 30px rgba(15,23,42,.08); }
.narrow { max-width:440px; margin:0 auto; }
label { display:block; font-weight:600; font-size:14px; margin:14px 0 6px; }
input, select { width:100%; padding:10px 12px; border:1px solid #cbd5e1; border-radius:8px; font:inherit; }
input:focus, select:focus { outline:2px solid var(--brand); border-color:transparent; }
.row { display:grid; grid-template-columns:1fr 1fr; gap:12px; }
.check { display:flex; gap:8px; align-items:center; font-weight:400; }
.check input { width:auto; }
button, .button { display:inline-block; margin-top:20px; width:100%; padding:12px; border:0; border-radius:8px; background:var(--brand); color:#fff; font:600 16px system-ui,sans-serif; cursor:pointer; text-align:center; text-decoration:none; }
button:hover, .button:hover { background:var(--brand-dark); }
.button.secondary { background:#e2e8f0; color:var(--ink); }
.error { background:#fef2f2; color:var(--bad); border:1px solid #fecaca; padding:10px 12px; border-radius:8px; margin:12px 0 0; }
.hint { color:var(--muted); font-size:14px; margin-top:18px; }
code { background:#e2e8f0; padding:1px 6px; border-radius:4px; font-size:14px; }
dl { display:grid; grid-template-columns:auto 1fr; gap:8px 20px; margin:20px 0; }
dt { color:var(--muted); } dd { margin:0; font-weight:600; word-break:break-all; }
.actions { display:flex; gap:12px; } .actions .button { width:auto; padding:10px 18px; }
.badge { display:inline-block; background:#ecfeff; color:var(--brand-dark); border-radius:999px; padding:2px 10px; font-size:13px; font-weight:600; }
"#;

fn layout(title: &str, header_class: &str, brand: &str, nav: &str, body: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{STYLE}</style></head>
<body><header class="{header_class}"><p class="logo">{brand}</p><nav>{nav}</nav></header><main>{body}</main></body></html>"#,
        title = esc(title),
    )
}

fn site_page(title: &str, body: &str) -> String {
    layout(
        title,
        "",
        "&#9875; Northwind Freight",
        r#"<a href="/">Home</a><a href="/book">Get a quote</a><a href="/login">Customer portal</a>"#,
        body,
    )
}

fn users_hint() -> String {
    let users: Vec<String> = USERS.iter().map(|u| format!("<code>{}</code>", esc(u.email))).collect();
    format!(
        r#"<p class="hint">Demo accounts: {} &middot; password <code>{}</code></p>"#,
        users.join(" "),
        esc(USERS[0].password)
    )
}

fn error_text(code: &str) -> &'static str {
    match code {
        "invalid_credentials" => "That email address and password do not match an account. Please try again.",
        "missing_credentials" => "Please enter your email address and password.",
        "provider_unavailable" | "provider_timeout" => {
            "The portal is not reachable right now. Please try again in a moment."
        }
        "rate_limited" => "Too many attempts. Please wait a minute and try again.",
        _ => "Signing in did not work. Please try again.",
    }
}

fn error_box(error: Option<&str>) -> String {
    error.map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, error_text(e))).unwrap_or_default()
}

pub(crate) fn landing() -> String {
    site_page(
        "Northwind Freight",
        r#"<section class="hero"><div><span class="badge">Ocean &middot; Air &middot; Road</span>
<h1>Freight forwarding, booked in minutes.</h1>
<p>Quote, book and track your shipments in the Northwind customer portal. Sign in here, on our own site, and we take you straight in.</p>
<div class="actions"><a class="button" href="/login">Sign in to the portal</a><a class="button secondary" href="/book">Start a quotation</a></div></div>
<div class="card"><h3>How this demo works</h3><p>This page is the company's existing site. Ferrygate stands in front of it, intercepts the sign-in form, logs in to the portal provider server to server, and sends you into the portal already signed in.</p></div></section>"#,
    )
}

/// The sign-in card of every demo site: its heading and email label, an
/// optional "remember me" box, the destination carried through, an optional
/// line under the form.
struct SignIn<'a> {
    heading: &'a str,
    email_label: &'a str,
    remember: Option<&'a str>,
    below: &'a str,
}

impl SignIn<'_> {
    fn card(&self, error: Option<&str>, destination: Option<&str>) -> String {
        let remember = self
            .remember
            .map(|label| {
                format!(r#"<label class="check"><input type="checkbox" name="remember" value="true"> {label}</label>"#)
            })
            .unwrap_or_default();
        let destination = destination
            .map(|d| format!(r#"<input type="hidden" name="destination" value="{}">"#, esc(d)))
            .unwrap_or_default();
        format!(
            r#"<div class="card narrow"><h2>{heading}</h2>{error}
<form method="post" action="/login">
<label for="email">{email_label}</label><input id="email" name="email" type="email" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" value="" required>
{remember}{destination}
<button type="submit">Sign in</button></form>{below}{users}</div>"#,
            heading = self.heading,
            email_label = self.email_label,
            error = error_box(error),
            below = self.below,
            users = users_hint(),
        )
    }
}

pub(crate) fn login(error: Option<&str>, destination: Option<&str>) -> String {
    let form = SignIn {
        heading: "Sign in to your customer portal",
        email_label: "Email address",
        remember: Some("Keep me signed in"),
        below: "",
    };
    site_page("Sign in — Northwind Freight", &form.card(error, destination))
}

pub(crate) fn wizard(error: Option<&str>) -> String {
    site_page(
        "Get a quote — Northwind Freight",
        &format!(
            r#"<div class="card narrow"><h2>Start a quotation</h2><p class="hint">Tell us the route; you continue in the portal's booking wizard, signed in.</p>{error}
<form method="post" action="/book">
<div class="row"><div><label for="origin">Origin port</label><input id="origin" name="origin" value="NLRTM"></div>
<div><label for="destination_port">Destination port</label><input id="destination_port" name="destination_port" value="USNYC"></div></div>
<div class="row"><div><label for="cargo_type">Cargo</label><select id="cargo_type" name="cargo_type"><option value="general">General</option><option value="reefer">Reefer</option><option value="dangerous">Dangerous goods</option></select></div>
<div><label for="product">Product</label><select id="product" name="product"><option value="fcl">Full container (FCL)</option><option value="lcl">Less than container (LCL)</option><option value="air">Air freight</option></select></div></div>
<label for="wemail">Email address</label><input id="wemail" name="email" type="email" autocomplete="username" required>
<label for="wpassword">Password</label><input id="wpassword" name="password" type="password" autocomplete="current-password" value="" required>
<button type="submit">Continue to booking</button></form>{users}</div>"#,
            error = error_box(error),
            users = users_hint(),
        ),
    )
}

pub(crate) fn goodbye() -> String {
    site_page(
        "Signed out — Northwind Freight",
        r#"<div class="card narrow"><h2>You are signed out</h2><p>Your portal session has ended. Thank you for shipping with Northwind.</p><a class="button" href="/login">Sign in again</a></div>"#,
    )
}

pub(crate) fn not_found() -> String {
    site_page(
        "Not found",
        r#"<div class="card narrow"><h2>Page not found</h2><a class="button" href="/">Back home</a></div>"#,
    )
}

/// What the portal shows a signed-in user.
pub(crate) struct PortalPage<'a> {
    pub(crate) name: &'a str,
    pub(crate) email: &'a str,
    pub(crate) token_type: &'a str,
    pub(crate) expires_in: &'a str,
    pub(crate) remaining: Duration,
    pub(crate) destination: &'a str,
    pub(crate) gateway: &'a str,
}

fn portal_nav(gateway: &str) -> String {
    format!(r#"<a href="{g}/portal-home">Home</a><a href="{g}/portal-logout">Logout</a>"#, g = esc(gateway))
}

pub(crate) fn portal(p: &PortalPage<'_>) -> String {
    let mins = p.remaining.as_secs() / 60;
    layout(
        "Portal — Northwind Freight",
        "portal",
        "Northwind Customer Portal",
        &portal_nav(p.gateway),
        &format!(
            r#"<div class="card"><span class="badge">Signed in through Ferrygate</span><h2 id="signed-in">Signed in as {name}</h2>
<dl><dt>Account</dt><dd id="account">{email}</dd>
<dt>Token</dt><dd>{token_type}, expires in <span id="expires">{h}h {m:02}m</span> (<code>expires_in={expires_in}</code>)</dd>
<dt>Destination</dt><dd id="destination">{destination}</dd></dl>
<div class="actions"><a class="button secondary" href="{g}/portal-home">Home</a><a class="button" href="{g}/portal-logout">Logout</a></div></div>"#,
            name = esc(p.name),
            email = esc(p.email),
            token_type = esc(p.token_type),
            expires_in = esc(p.expires_in),
            destination = esc(p.destination),
            h = mins / 60,
            m = mins % 60,
            g = esc(p.gateway),
        ),
    )
}

pub(crate) fn portal_refused(gateway: &str) -> String {
    layout(
        "Portal — not signed in",
        "portal",
        "Northwind Customer Portal",
        &portal_nav(gateway),
        r#"<div class="card narrow"><h2>Not signed in</h2><p>This link carries no valid token.</p></div>"#,
    )
}

// ----- The Daily Courant: the payway demo site -----

/// A site's navigation: its links, then who is signed in and a way out, or
/// a way in (`who` is the `X-Ferrygate-User` the page was served with).
fn nav(links: &str, who: &str, sign_in: &str) -> String {
    if who.is_empty() {
        format!(r#"{links}<a href="/login">{sign_in}</a>"#)
    } else {
        format!(r#"{links}<span class="who" id="who">{}</span><a href="/logout">Sign out</a>"#, esc(who))
    }
}

fn news_page(title: &str, body: &str, who: &str) -> String {
    layout(title, "news", "The Daily Courant", &nav(r#"<a href="/">Front page</a>"#, who, "Subscriber login"), body)
}

pub(crate) fn news_landing(who: &str) -> String {
    news_page(
        "The Daily Courant",
        r#"<section class="hero"><div><span class="badge">Subscribers</span>
<h1>Harbour expansion approved after late-night vote</h1>
<p>Read every story, every edition. Subscribers sign in here, on our own page; Ferrygate checks the login with Payway and hands you to Payway's authorization, already signed in.</p>
<div class="actions"><a class="button" href="/login">Subscriber login</a></div></div>
<div class="card"><h3>This is the payway demo</h3><p>The login handle flow: a service token, the login call, then the OAuth2 authorization redirect with a <code>state</code> that Ferrygate checks when you come back.</p></div></section>"#,
        who,
    )
}

pub(crate) fn news_login(error: Option<&str>, who: &str) -> String {
    let form =
        SignIn { heading: "Subscriber login", email_label: "Email address", remember: Some("Remember me"), below: "" };
    news_page("Subscriber login — The Daily Courant", &form.card(error, None), who)
}

/// The site's OAuth2 landing page, reached after Ferrygate checked `state`.
pub(crate) fn news_landing_page(code: &str, state: &str, destination: &str, who: &str) -> String {
    news_page(
        "Welcome back — The Daily Courant",
        &format!(
            r#"<div class="card narrow"><span class="badge">Signed in through Ferrygate</span><h2 id="welcome">Welcome back, {name}</h2>
<dl><dt>Authorization code</dt><dd id="code">{code}</dd><dt>State</dt><dd id="state">{state} (verified by Ferrygate)</dd>
<dt>Destination</dt><dd id="destination">{destination}</dd></dl><a class="button" href="/">Read the paper</a></div>"#,
            code = esc(code),
            state = esc(state),
            destination = esc(destination),
            name = if who.is_empty() { "subscriber".to_owned() } else { esc(who) },
        ),
        who,
    )
}

// ----- Contoso intranet: the rest demo site -----

fn intranet_page(title: &str, body: &str, who: &str) -> String {
    layout(
        title,
        "intranet",
        "Contoso Intranet",
        &nav(r#"<a href="/">Home</a><a href="/app">My workspace</a>"#, who, "Sign in"),
        body,
    )
}

pub(crate) fn intranet_landing(who: &str) -> String {
    intranet_page(
        "Contoso Intranet",
        r#"<section class="hero"><div><span class="badge">Staff only</span>
<h1>Everything you need for work, in one place.</h1>
<p>Your workspace is protected by Ferrygate: it checks your password against Contoso's own identity web service, finds you in the staff directory, and tells the workspace who you are.</p>
<div class="actions"><a class="button" href="/app">Open my workspace</a></div></div>
<div class="card"><h3>This is the rest demo</h3><p>Credential pass-through with placeholders: <code>{{USEREMAIL}}</code>, <code>{{USERPASSWORD}}</code>, <code>{{DEVICEOS}}</code>… rendered into the identity service's request, escaped for where each lands.</p></div></section>"#,
        who,
    )
}

pub(crate) fn intranet_login(error: Option<&str>, destination: Option<&str>, who: &str) -> String {
    let form = SignIn {
        heading: "Staff sign-in",
        email_label: "Work email",
        remember: None,
        below: r#"
<p class="hint"><a href="/forgot-password">Forgot your password?</a></p>"#,
    };
    intranet_page("Sign in — Contoso Intranet", &form.card(error, destination), who)
}

/// The protected workspace: shows the identity Ferrygate passed on.
pub(crate) fn intranet_app(user: &str, user_id: &str, org_id: &str, groups: &str, provider: &str, who: &str) -> String {
    intranet_page(
        "My workspace — Contoso Intranet",
        &format!(
            r#"<div class="card"><span class="badge">Identity from Ferrygate</span><h2 id="signed-in">Hello, {user}</h2>
<dl><dt>X-Ferrygate-User</dt><dd id="user">{user}</dd><dt>X-Ferrygate-User-Id</dt><dd id="user-id">{user_id}</dd>
<dt>X-Ferrygate-Org-Id</dt><dd id="org-id">{org_id}</dd><dt>X-Ferrygate-Groups</dt><dd id="groups">{groups}</dd>
<dt>X-Ferrygate-Provider</dt><dd>{provider}</dd></dl>
<div class="actions"><a class="button" href="/admin">Administration</a> <a class="button" href="/logout">Sign out</a></div></div>"#,
            user = esc(user),
            user_id = esc(user_id),
            org_id = esc(org_id),
            groups = esc(groups),
            provider = esc(provider),
        ),
        who,
    )
}

pub(crate) fn intranet_admin(user: &str, groups: &str, who: &str) -> String {
    intranet_page(
        "Administration — Contoso Intranet",
        &format!(
            r#"<div class="card"><span class="badge">Admins only</span><h2 id="admin">Administration</h2>
<p>Signed in as {user}; groups: <span id="groups">{groups}</span>. Ferrygate let you in because the rule for
<code>/admin</code> admits the group <code>admins</code>.</p>
<div class="actions"><a class="button" href="/app">My workspace</a></div></div>"#,
            user = esc(user),
            groups = esc(groups),
        ),
        who,
    )
}

pub(crate) fn intranet_forgot(sent: bool, who: &str) -> String {
    let body = if sent {
        r#"<div class="card narrow"><h2>Check your inbox</h2><p id="forgot-sent">If that address belongs to a Contoso account, we have sent it a link to reset the password.</p><a class="button" href="/login">Back to sign-in</a></div>"#.to_owned()
    } else {
        r#"<div class="card narrow"><h2>Forgot your password?</h2>
<form method="post" action="/forgot-password"><label for="email">Work email</label><input id="email" name="email" type="email" required>
<button type="submit">Send me a reset link</button></form></div>"#
            .to_owned()
    };
    intranet_page("Forgot password — Contoso Intranet", &body, who)
}

// ----- Fabrikam staff portal: the oidc demo site -----

fn staff_page(title: &str, body: &str, who: &str) -> String {
    layout(
        title,
        "staff",
        "Fabrikam Staff Portal",
        &nav(r#"<a href="/">Home</a><a href="/workspace">Workspace</a>"#, who, "Sign in"),
        body,
    )
}

pub(crate) fn staff_landing(who: &str) -> String {
    staff_page(
        "Fabrikam Staff Portal",
        r#"<section class="hero"><div><span class="badge">Single sign-on</span>
<h1>One company login, on Fabrikam's own page.</h1>
<p>Staff accounts live in Fabrikam's identity provider. Ferrygate signs you in with it server to server (the OpenID Connect password grant), checks the signed ID token, and keeps your access token fresh for the workspace.</p>
<div class="actions"><a class="button" href="/workspace">Open the workspace</a></div></div>
<div class="card"><h3>This is the oidc demo</h3><p>The identity provider is embedded in the demo: it publishes discovery and an ES256 key, and issues five-minute access tokens that Ferrygate renews with refresh tokens.</p></div></section>"#,
        who,
    )
}

pub(crate) fn staff_login(error: Option<&str>, destination: Option<&str>, who: &str) -> String {
    let form =
        SignIn { heading: "Sign in with your Fabrikam account", email_label: "Work email", remember: None, below: "" };
    staff_page("Sign in — Fabrikam Staff Portal", &form.card(error, destination), who)
}

pub(crate) fn staff_workspace(user: &str, groups: &str, token_chars: usize, who: &str) -> String {
    let token = if token_chars > 0 {
        format!("received ({token_chars} characters, renewed before it ends)")
    } else {
        "none".to_owned()
    };
    staff_page(
        "Workspace — Fabrikam Staff Portal",
        &format!(
            r#"<div class="card"><span class="badge">Identity from Ferrygate</span><h2 id="signed-in">Hello, {user}</h2>
<dl><dt>X-Ferrygate-User</dt><dd id="user">{user}</dd><dt>X-Ferrygate-Groups</dt><dd id="groups">{groups}</dd>
<dt>Authorization: Bearer</dt><dd id="bearer">{token}</dd></dl>
<div class="actions"><a class="button" href="/admin">Administration</a> <a class="button" href="/logout">Sign out</a></div></div>"#,
            user = esc(user),
            groups = esc(groups),
            token = esc(&token),
        ),
        who,
    )
}

pub(crate) fn staff_admin(user: &str, who: &str) -> String {
    staff_page(
        "Administration — Fabrikam Staff Portal",
        &format!(
            r#"<div class="card"><h2 id="admin">Administration</h2><p>Signed in as {}: a member of <code>admins</code>, so Ferrygate let you in.</p></div>"#,
            esc(user)
        ),
        who,
    )
}
