//! `[providers.X]` with `kind = "rest"`: the table as written (serde types the
//! enums), its checks (each naming its dotted key), and the validated
//! [`RestConfig`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferrygate_core::kind::{Build, ProviderKind, SiteRules};
use ferrygate_core::Provider;
use http::{HeaderName, Method};
use serde::Deserialize;

use crate::template::{Placeholder, Template};
use crate::Rest;

/// How the request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    #[default]
    Json,
    Form,
    Xml,
}

/// Whether `Authorization: Basic base64(email:password)` is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestAuth {
    #[default]
    None,
    Basic,
}

/// The request's method: POST, PUT or GET (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
enum RestMethod {
    #[default]
    #[serde(rename = "POST", alias = "post", alias = "Post")]
    Post,
    #[serde(rename = "PUT", alias = "put", alias = "Put")]
    Put,
    #[serde(rename = "GET", alias = "get", alias = "Get")]
    Get,
}

/// A rest provider's configuration, validated.
#[derive(Debug, Clone)]
pub struct RestConfig {
    pub url: Template,
    pub method: Method,
    pub body_format: BodyFormat,
    pub xml_root: String,
    /// In table order.
    pub body: Vec<(String, Template)>,
    pub headers: Vec<(HeaderName, Template)>,
    pub auth: RestAuth,
    pub users: PathBuf,
    pub forgot_password_url: Option<Template>,
    pub session_ttl: Duration,
    pub timeout: Duration,
}

/// The table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    url: String,
    #[serde(default)]
    method: RestMethod,
    #[serde(default)]
    body_format: BodyFormat,
    xml_root: Option<String>,
    // Ordered: the XML body is written in table order.
    body: Option<toml::Table>,
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    auth: RestAuth,
    users: Option<String>,
    forgot_password_url: Option<String>,
    #[serde(default, deserialize_with = "ferrygate_core::config::de::duration")]
    session_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "ferrygate_core::config::de::duration")]
    timeout: Option<Duration>,
}

/// The `rest` kind: `[providers.X]` with `kind = "rest"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestKind;

impl ProviderKind for RestKind {
    fn name(&self) -> &'static str {
        "rest"
    }

    /// Sites send signed-in users to a destination on the site itself and
    /// may have a forgot-password route.
    fn site_rules(&self) -> SiteRules {
        SiteRules { forgot_password: true, ..SiteRules::default() }
    }

    fn build(&self, table: toml::Table, build: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>> {
        let t: Table = build.parse(table)?;
        let config = config(t, build)?;
        match Rest::new(build.name(), &config, build.client()) {
            Ok(rest) => Some(Arc::new(rest)),
            Err(e) => {
                build.error("users", e.to_string());
                None
            }
        }
    }
}

fn config(t: Table, build: &mut Build<'_, '_>) -> Option<RestConfig> {
    let url = template(build, "url", &t.url);
    if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
        build.error("url", "must start with http:// or https://");
    }
    let method = match t.method {
        RestMethod::Post => Method::POST,
        RestMethod::Put => Method::PUT,
        RestMethod::Get => Method::GET,
    };
    let xml_root = t.xml_root.unwrap_or_else(|| "login".to_owned());
    if !is_xml_name(&xml_root) {
        build.error("xml_root", format!("{xml_root:?} is not a valid XML element name"));
    }
    let mut body = Vec::new();
    for (k, v) in t.body.unwrap_or_default() {
        let field = format!("body.{k}");
        match v.as_str() {
            Some(s) => body.push((k.clone(), template(build, &field, s))),
            None => build.error(&field, "must be a string"),
        }
        if t.body_format == BodyFormat::Xml && !is_xml_name(&k) {
            build.error(&field, format!("{k:?} is not a valid XML element name"));
        }
    }
    let mut headers = Vec::new();
    for (k, v) in t.headers.unwrap_or_default() {
        let field = format!("headers.{k}");
        match HeaderName::from_bytes(k.as_bytes()) {
            Ok(name) => headers.push((name, template(build, &field, &v))),
            Err(_) => build.error(&field, format!("{k:?} is not a valid header name")),
        }
    }
    let Some(users) = t.users else {
        build.error("users", "required: the CSV user directory (email,user_id,external_id,org_id)");
        return None;
    };
    let users = build.path(&users);
    if !users.is_file() {
        build.error("users", format!("cannot read the user directory {}", users.display()));
        return None;
    }
    let forgot_password_url = t.forgot_password_url.map(|u| template(build, "forgot_password_url", &u));
    if forgot_password_url.as_ref().is_some_and(|t| t.uses(Placeholder::UserPassword)) {
        build.error("forgot_password_url", "{{USERPASSWORD}} is not available here");
    }
    Some(RestConfig {
        url,
        method,
        body_format: t.body_format,
        xml_root,
        body,
        headers,
        auth: t.auth,
        users,
        forgot_password_url,
        session_ttl: build.duration("session_ttl", t.session_ttl, Duration::from_secs(8 * 3600)),
        timeout: build.duration("timeout", t.timeout, Duration::from_secs(5)),
    })
}

fn template(build: &mut Build<'_, '_>, field: &str, value: &str) -> Template {
    Template::parse(value).unwrap_or_else(|e| {
        build.error(field, e.to_string());
        Template::parse("").unwrap_or_else(|_| unreachable!("the empty template parses"))
    })
}

fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !s.to_ascii_lowercase().starts_with("xml")
}
