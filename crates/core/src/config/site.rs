//! `[[sites]]`: hosts, upstream, the routes a site owns (matched on the
//! canonical path), destinations, and which sections apply to the site's
//! provider kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::Uri;

use super::raw::*;
use super::*;
use crate::check::Check;
use crate::destination;
use crate::kind::{Kinds, ProviderEntry, SiteRules};
use crate::site::{AuthorizeRule, ForwardAuth};
use crate::telemetry::SiteMetrics;

impl Check<'_> {
    pub(crate) fn site(
        &mut self,
        key: &str,
        raw: RawSite,
        providers: &BTreeMap<String, ProviderEntry>,
        kinds: &Kinds,
    ) -> Option<Site> {
        let (provider_kind, rules, passes_access_token) = match providers.get(&raw.provider) {
            Some(p) => (p.kind, p.rules, p.provider.passes_access_token()),
            None if self.unbuilt.contains(&raw.provider) => return None,
            None => {
                self.err(&format!("{key}.provider"), format!("no provider named {:?} in [providers]", raw.provider));
                return None;
            }
        };
        let hosts = raw
            .hosts
            .iter()
            .enumerate()
            .map(|(j, h)| {
                // The parser requests are routed by: a host that parses to
                // something else would never be matched.
                match crate::authority::parse(h.trim()) {
                    Ok(a) if a.host() == a.full => a.host().to_owned(),
                    Ok(_) => {
                        self.err(
                            &format!("{key}.hosts[{j}]"),
                            "a host name without a port: sites are matched by host alone",
                        );
                        String::new()
                    }
                    Err(e) => {
                        self.err(&format!("{key}.hosts[{j}]"), format!("{h:?} is not a host name ({})", e.0));
                        String::new()
                    }
                }
            })
            .collect();
        // Optional in the format: a Tower layer has none (the app is the site);
        // `check`, `serve` and the server refuse a site without one.
        let upstream_uri = match &raw.upstream {
            None => Some((None, String::new())),
            Some(upstream) => self.http_url(&format!("{key}.upstream"), upstream).and_then(|u| {
                let origin: Uri =
                    format!("{}://{}", u.scheme(), &u[url::Position::BeforeHost..url::Position::AfterPort])
                        .parse()
                        .ok()?;
                Some((Some(origin), u.path().trim_end_matches('/').to_owned()))
            }),
        };
        let rewrite_location = raw
            .rewrite_location
            .into_iter()
            .enumerate()
            .filter_map(|(j, r)| {
                if r.from.is_empty() {
                    self.err(&format!("{key}.rewrite_location[{j}].from"), "must not be empty");
                    return None;
                }
                Some(Rewrite { from: r.from, to: r.to })
            })
            .collect();
        let allowed_origins = raw
            .allowed_origins
            .iter()
            .enumerate()
            .filter_map(|(j, o)| {
                let k = format!("{key}.allowed_origins[{j}]");
                let u = self.http_url(&k, o)?;
                if u.path() != "/" || u.query().is_some() {
                    self.err(&k, format!("{o:?} is not an origin; write \"https://host[:port]\""));
                }
                Some(u.origin().ascii_serialization())
            })
            .collect();
        let protected_paths = raw
            .protected_paths
            .iter()
            .enumerate()
            .map(|(j, p)| {
                self.route_path(&format!("{key}.protected_paths[{j}]"), p);
                crate::path::canonical(p).into_owned()
            })
            .collect();

        let mut authorize: Vec<AuthorizeRule> = Vec::new();
        // Canonical path -> the rules that named it before: their key and methods.
        let mut named: HashMap<String, Vec<(String, Vec<http::Method>)>> = HashMap::new();
        for (i, rule) in raw.authorize.iter().enumerate() {
            let rule_key = format!("{key}.authorize[{i}]");
            if rule.paths.is_empty() {
                self.err(&format!("{rule_key}.paths"), "at least one path");
            }
            let groups = rule.groups.clone().unwrap_or_default();
            if rule.groups.as_ref().is_some_and(|g| g.is_empty()) || groups.iter().any(|g| g.trim().is_empty()) {
                self.err(&format!("{rule_key}.groups"), "at least one group when given, and no empty group name");
            }
            if rule.public && (rule.groups.is_some() || !rule.networks.is_empty()) {
                // A public rule is no decision at all: groups and networks would be ignored.
                self.err(
                    &format!("{rule_key}.public"),
                    "a public rule needs no session: it cannot name groups or networks",
                );
            }
            let methods = self.rule_methods(&rule_key, &rule.methods);
            let networks = self.rule_networks(&rule_key, &rule.networks);
            for (j, p) in rule.paths.iter().enumerate() {
                self.route_path(&format!("{rule_key}.paths[{j}]"), p);
                let path = crate::path::canonical(p).into_owned();
                let here = format!("{rule_key}.paths[{j}]");
                let earlier = named.entry(path.clone()).or_default();
                // The first rule wins a tie: a later one whose methods an earlier
                // one on the same path covers never applies. Say so.
                // (A rule naming GET covers HEAD too.)
                let names = |e: &[http::Method], x: &http::Method| {
                    e.contains(x) || (*x == http::Method::HEAD && e.contains(&http::Method::GET))
                };
                let covered = |m: &[http::Method]| {
                    earlier.iter().find(|(_, e)| e.is_empty() || (!m.is_empty() && m.iter().all(|x| names(e, x))))
                };
                if let Some((first, _)) = covered(&methods) {
                    self.warn(&here, format!("names the same path as {first} (canonical {path}) for the same methods; only {first} applies"));
                }
                earlier.push((here, methods.clone()));
                let mut built = AuthorizeRule::new(path, groups.clone());
                built.methods.clone_from(&methods);
                built.networks.clone_from(&networks);
                built.public = rule.public;
                authorize.push(built);
            }
        }
        // The longest matching path wins: look the longest up first.
        authorize.sort_by_key(|r| std::cmp::Reverse(r.path.len()));

        let forward_auth = raw.forward_auth.map(|f| {
            let path = f.path.unwrap_or_else(|| "/_ferrygate/auth".to_owned());
            self.route_path(&format!("{key}.forward_auth.path"), &path);
            ForwardAuth { path: crate::path::canonical(&path).into_owned(), redirect: f.redirect, style: f.style }
        });

        let l = raw.login;
        let login_path = self.route_path(&format!("{key}.login.path"), &l.path);
        let failure_redirect = l.failure_redirect.unwrap_or_else(|| login_path.clone());
        self.redirect_target(&format!("{key}.login.failure_redirect"), &failure_redirect, true);
        let login = LoginRoute {
            failure_redirect,
            path: login_path,
            username_field: l.username_field.unwrap_or_else(|| "email".to_owned()),
            password_field: l.password_field.unwrap_or_else(|| "password".to_owned()),
            remember_field: l.remember_field.unwrap_or_else(|| "remember".to_owned()),
            destination_field: l.destination_field.unwrap_or_else(|| "destination".to_owned()),
        };

        let portal = self.portal(key, raw.portal.unwrap_or_default(), rules);
        let redirect_route = |c: &mut Self, name: &str, r: Option<RawRedirectRoute>| {
            r.map(|r| {
                c.redirect_target(&format!("{key}.{name}.redirect"), &r.redirect, false);
                RedirectRoute {
                    paths: r
                        .paths
                        .iter()
                        .enumerate()
                        .map(|(j, p)| c.route_path(&format!("{key}.{name}.paths[{j}]"), p))
                        .collect(),
                    redirect: r.redirect,
                }
            })
        };
        let home = redirect_route(self, "home", raw.home);
        let logout = redirect_route(self, "logout", raw.logout);
        let wizard = raw.wizard.map(|w| {
            let path = self.route_path(&format!("{key}.wizard.path"), &w.path);
            let destination = match destination::validate(&w.destination, &portal.allowed_destinations) {
                Ok(d) => d,
                Err(why) => {
                    self.err(
                        &format!("{key}.wizard.destination"),
                        format!("{:?} is refused: {why} (see portal.allowed_destinations)", w.destination),
                    );
                    w.destination
                }
            };
            Wizard { path, destination, params: w.params }
        });
        let forgot_password = raw.forgot_password.map(|f| {
            self.redirect_target(&format!("{key}.forgot_password.redirect"), &f.redirect, false);
            ForgotPassword {
                path: self.route_path(&format!("{key}.forgot_password.path"), &f.path),
                redirect: f.redirect,
            }
        });
        let callback =
            raw.callback.map(|c| Callback { path: self.route_path(&format!("{key}.callback.path"), &c.path) });

        // A section the provider's kind does not answer is warned about and owns no route.
        let applies = [
            ("wizard", wizard.is_some(), rules.wizard, (|r: &SiteRules| r.wizard) as fn(&SiteRules) -> bool),
            ("callback", callback.is_some(), rules.callback, |r: &SiteRules| r.callback),
            ("forgot_password", forgot_password.is_some(), rules.forgot_password, |r: &SiteRules| r.forgot_password),
        ];
        for (section, present, answered, answers) in applies {
            if present && !answered {
                let by: Vec<&str> =
                    kinds.names().filter(|n| kinds.get(n).is_some_and(|k| answers(&k.site_rules()))).collect();
                self.warn(
                    &format!("{key}.{section}"),
                    format!(
                        "applies to {} providers only; provider {:?} is {}, so it is ignored",
                        if by.is_empty() { "other".to_owned() } else { by.join(" and ") },
                        raw.provider,
                        provider_kind
                    ),
                );
            }
        }

        // Every owned path once: two routes on one path would silently shadow each other.
        let mut owned: Vec<(String, &str, OwnedRoute)> = vec![(login.path.clone(), "login.path", OwnedRoute::Login)];
        if rules.wizard {
            owned.extend(wizard.iter().map(|w| (w.path.clone(), "wizard.path", OwnedRoute::Wizard)));
        }
        owned.extend(home.iter().flat_map(|h| h.paths.iter().map(|p| (p.clone(), "home.paths", OwnedRoute::Home))));
        owned.extend(
            logout.iter().flat_map(|h| h.paths.iter().map(|p| (p.clone(), "logout.paths", OwnedRoute::Logout))),
        );
        if rules.forgot_password {
            owned.extend(
                forgot_password.iter().map(|f| (f.path.clone(), "forgot_password.path", OwnedRoute::ForgotPassword)),
            );
        }
        if rules.callback {
            owned.extend(callback.iter().map(|c| (c.path.clone(), "callback.path", OwnedRoute::Callback)));
        }
        owned.extend(forward_auth.iter().map(|f| (f.path.clone(), "forward_auth.path", OwnedRoute::ForwardAuth)));
        // Keyed by the canonical path, as requests are matched.
        let mut routes = HashMap::new();
        for (path, name, route) in owned {
            if routes.insert(crate::path::canonical(&path).into_owned(), route).is_some() {
                self.err(&format!("{key}.{name}"), format!("path {path:?} is owned by two routes"));
            }
        }

        let error_stylesheet = raw.error_stylesheet.filter(|s| {
            let ok =
                (s.starts_with('/') && !s.starts_with("//")) || url::Url::parse(s).is_ok_and(|u| u.scheme() == "https");
            if !ok {
                self.err(
                    &format!("{key}.error_stylesheet"),
                    "must be a path on the site (/css/x.css) or an https:// URL",
                );
            }
            ok
        });
        let (origin, base_path) = upstream_uri?;
        let metrics = Arc::new(SiteMetrics::new(&raw.name, &raw.provider));
        Some(Site {
            name: raw.name,
            hosts,
            upstream: Arc::new(Upstream { metrics, origin, base_path, rewrite_location }),
            provider: raw.provider,
            passes_access_token,
            allowed_origins,
            protected_paths,
            login,
            portal,
            home,
            logout,
            wizard,
            forgot_password,
            callback,
            forward_auth,
            authorize,
            error_stylesheet,
            routes,
        })
    }

    fn portal(&mut self, key: &str, raw: RawPortal, rules: SiteRules) -> Portal {
        if let Some(u) = &raw.url {
            if self.http_url(&format!("{key}.portal.url"), u).is_some() {
                self.redirect_target(&format!("{key}.portal.url"), u, true);
            }
        } else if rules.portal_url {
            self.err(
                &format!("{key}.portal.url"),
                "required for this site's provider: the portal's external-authentication address",
            );
        }
        let default_destination = raw.default_destination.unwrap_or_else(|| rules.default_destination.to_owned());
        let allowed_destinations: Vec<String> = match raw.allowed_destinations {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(j, p)| self.route_path(&format!("{key}.portal.allowed_destinations[{j}]"), p))
                .collect(),
            None => vec![default_destination.split('?').next().unwrap_or("/").to_owned()],
        };
        let default_destination = match destination::validate(&default_destination, &allowed_destinations) {
            Ok(d) => d,
            Err(why) => {
                self.err(
                    &format!("{key}.portal.default_destination"),
                    format!("{default_destination:?} is refused: {why} (see portal.allowed_destinations)"),
                );
                default_destination
            }
        };
        Portal { url: raw.url, default_destination, allowed_destinations }
    }
}

/// The keys of a `[[sites.authorize]]` rule that are not paths (spec 2.2).
impl Check<'_> {
    /// A rule's `methods`: HTTP tokens, compared case-sensitively (a
    /// lower-case name is likely a mistake: warned).
    fn rule_methods(&mut self, rule_key: &str, raw: &[String]) -> Vec<http::Method> {
        let mut out = Vec::new();
        for (k, m) in raw.iter().enumerate() {
            let here = format!("{rule_key}.methods[{k}]");
            // `from_bytes` takes exactly HTTP's token characters, and no empty name.
            match http::Method::from_bytes(m.as_bytes()) {
                Ok(method) => {
                    if m.bytes().any(|b| b.is_ascii_lowercase()) {
                        self.warn(
                            &here,
                            format!(
                                "{m:?} is not upper-case: methods compare case-sensitively, so it matches only {m:?}"
                            ),
                        );
                    }
                    out.push(method);
                }
                _ => self.err(&here, "not an HTTP method name (a token such as \"POST\")"),
            }
        }
        out
    }

    /// A rule's `networks`: CIDR blocks.
    fn rule_networks(&mut self, rule_key: &str, raw: &[String]) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for (k, n) in raw.iter().enumerate() {
            match n.trim().parse::<ipnet::IpNet>() {
                Ok(net) => out.push(net.trunc()),
                Err(_) => {
                    self.err(&format!("{rule_key}.networks[{k}]"), "not a network in CIDR form (e.g. \"10.0.0.0/8\")")
                }
            }
        }
        out
    }
}
