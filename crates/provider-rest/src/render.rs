//! Rendering `{{PLACEHOLDER}}` templates, escaped for where each lands: URL
//! (percent-encoded as a component), header (refused if it would carry CR, LF
//! or NUL), JSON (serde), form (form-urlencoded), XML (quick-xml's writer).
//! No value can add structure: a password full of `"&<>=%+` stays one value.

use crate::template::{Part, Placeholder, Template};
use ferrygate_core::{query, LoginError};
use http::HeaderValue;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};

/// Longest value any placeholder may carry, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;

/// What the placeholders stand for in one request.
#[derive(Default)]
pub struct Values<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    pub external_id: &'a str,
    pub org_id: &'a str,
    pub device_os: &'a str,
    pub device_name: &'a str,
    pub device_ip: &'a str,
}

impl std::fmt::Debug for Values<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Values").field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

impl Values<'_> {
    fn get(&self, p: Placeholder) -> &str {
        match p {
            Placeholder::UserId => self.user_id,
            Placeholder::UserEmail => self.email,
            Placeholder::UserPassword => self.password,
            Placeholder::UserExternalId => self.external_id,
            Placeholder::OrgId => self.org_id,
            Placeholder::DeviceOs => self.device_os,
            Placeholder::DeviceName => self.device_name,
            Placeholder::DeviceIp => self.device_ip,
        }
    }

    /// Every value within [`MAX_VALUE_BYTES`], else `invalid_input`.
    pub fn check(&self) -> Result<(), LoginError> {
        let all = [
            self.user_id,
            self.email,
            self.password,
            self.external_id,
            self.org_id,
            self.device_os,
            self.device_name,
            self.device_ip,
        ];
        if all.iter().any(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(LoginError::InvalidInput);
        }
        Ok(())
    }
}

fn render(t: &Template, v: &Values<'_>, mut escape: impl FnMut(&str) -> String) -> String {
    let mut out = String::new();
    for part in t.parts() {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Value(p) => out.push_str(&escape(v.get(*p))),
        }
    }
    out
}

/// The URL: each value percent-encoded as a component (valid in a path
/// segment and in a query alike).
pub fn url(t: &Template, v: &Values<'_>) -> String {
    render(t, v, query::component)
}

/// A header value: refused (`invalid_input`) if a value would put CR, LF, NUL
/// or any other control character into it.
pub fn header(t: &Template, v: &Values<'_>) -> Result<HeaderValue, LoginError> {
    let mut refused = false;
    let text = render(t, v, |value| {
        refused |= value.chars().any(|c| c.is_control() && c != '\t');
        value.to_owned()
    });
    if refused {
        return Err(LoginError::InvalidInput);
    }
    HeaderValue::from_str(&text).map_err(|_| LoginError::InvalidInput)
}

/// A plain rendering (no escaping): for a value a serializer escapes itself.
pub fn text(t: &Template, v: &Values<'_>) -> String {
    render(t, v, str::to_owned)
}

/// `{"key": "value", …}`: an object of strings.
pub fn json(body: &[(String, Template)], v: &Values<'_>) -> Vec<u8> {
    let object: serde_json::Map<String, serde_json::Value> =
        body.iter().map(|(k, t)| (k.clone(), serde_json::Value::String(text(t, v)))).collect();
    serde_json::to_vec(&object).unwrap_or_default()
}

/// `key=value&…`, form-urlencoded, in table order.
pub fn form(body: &[(String, Template)], v: &Values<'_>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, t) in body {
        out.append_pair(k, &text(t, v));
    }
    out.finish()
}

/// `<root><key>value</key>…</root>`, in table order. Characters XML 1.0
/// cannot carry (most control characters) are `invalid_input`.
pub fn xml(root: &str, body: &[(String, Template)], v: &Values<'_>) -> Result<Vec<u8>, LoginError> {
    let mut w = quick_xml::Writer::new(Vec::new());
    let io = |_| LoginError::InvalidInput;
    w.write_event(Event::Start(BytesStart::new(root))).map_err(io)?;
    for (k, t) in body {
        let value = text(t, v);
        if !value.chars().all(xml_char) {
            return Err(LoginError::InvalidInput);
        }
        w.write_event(Event::Start(BytesStart::new(k.as_str()))).map_err(io)?;
        w.write_event(Event::Text(BytesText::new(&value))).map_err(io)?;
        w.write_event(Event::End(BytesEnd::new(k.as_str()))).map_err(io)?;
    }
    w.write_event(Event::End(BytesEnd::new(root))).map_err(io)?;
    Ok(w.into_inner())
}

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values<'a>(email: &'a str, password: &'a str) -> Values<'a> {
        Values { email, password, user_id: "42", org_id: "7", ..Values::default() }
    }

    fn body() -> Vec<(String, Template)> {
        vec![
            ("login".to_owned(), Template::parse("{{USEREMAIL}}").unwrap()),
            ("password".to_owned(), Template::parse("{{USERPASSWORD}}").unwrap()),
            ("org".to_owned(), Template::parse("org-{{ORGID}}").unwrap()),
        ]
    }

    #[test]
    fn headers_refuse_line_breaks_and_nul() {
        let t = Template::parse("Bearer {{USERPASSWORD}}").unwrap();
        for evil in ["a\r\nX-Admin: 1", "a\nb", "a\0b", "a\rb"] {
            assert_eq!(header(&t, &values("e", evil)), Err(LoginError::InvalidInput), "{evil:?}");
        }
        assert_eq!(header(&t, &values("e", "fine")).unwrap(), "Bearer fine");
    }

    #[test]
    fn urls_encode_values_in_path_and_query() {
        let t = Template::parse("https://auth.example/u/{{USEREMAIL}}/check?p={{USERPASSWORD}}&o={{ORGID}}").unwrap();
        let rendered = url(&t, &values("a+b/../@x.example", "p&x=1#?"));
        assert_eq!(rendered, "https://auth.example/u/a%2Bb%2F..%2F%40x.example/check?p=p%26x%3D1%23%3F&o=7");
        assert!(rendered.parse::<http::Uri>().is_ok());
    }

    proptest! {
        #[test]
        fn json_round_trips(email in "\\PC*", password in any::<String>()) {
            let out: serde_json::Value = serde_json::from_slice(&json(&body(), &values(&email, &password))).unwrap();
            prop_assert_eq!(out["login"].as_str(), Some(email.as_str()));
            prop_assert_eq!(out["password"].as_str(), Some(password.as_str()));
            prop_assert_eq!(out.as_object().unwrap().len(), 3);
        }

        #[test]
        fn form_round_trips(email in any::<String>(), password in any::<String>()) {
            let rendered = form(&body(), &values(&email, &password));
            let pairs: Vec<(String, String)> = form_urlencoded::parse(rendered.as_bytes()).into_owned().collect();
            prop_assert_eq!(pairs, vec![
                ("login".to_owned(), email.clone()),
                ("password".to_owned(), password.clone()),
                ("org".to_owned(), "org-7".to_owned()),
            ]);
        }

        #[test]
        fn xml_round_trips(email in "[^\\u{0}-\\u{8}\\u{b}\\u{c}\\u{e}-\\u{1f}\\u{fffe}\\u{ffff}]*", password in "[^\\u{0}-\\u{8}\\u{b}\\u{c}\\u{e}-\\u{1f}\\u{fffe}\\u{ffff}]*") {
            let rendered = xml("login", &body(), &values(&email, &password)).unwrap();
            let mut reader = quick_xml::Reader::from_reader(rendered.as_slice());
            let mut texts = std::collections::HashMap::new();
            let mut current = String::new();
            let mut buf = Vec::new();
            loop {
                match reader.read_event_into(&mut buf).unwrap() {
                    Event::Start(e) => current = String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
                    Event::Text(t) => { texts.entry(current.clone()).or_insert_with(String::new).push_str(&t.decode().unwrap()); }
                    Event::GeneralRef(r) => {
                        let name = String::from_utf8(r.to_vec()).unwrap();
                        let ch = match name.as_str() { "amp" => "&".to_owned(), "lt" => "<".to_owned(), "gt" => ">".to_owned(), "quot" => "\"".to_owned(), "apos" => "'".to_owned(), other => {
                            let code = other.strip_prefix("#x").map(|h| u32::from_str_radix(h, 16).unwrap()).or_else(|| other.strip_prefix('#').map(|d| d.parse().unwrap())).unwrap();
                            char::from_u32(code).unwrap().to_string()
                        }};
                        texts.entry(current.clone()).or_insert_with(String::new).push_str(&ch);
                    }
                    Event::Eof => break,
                    _ => {}
                }
                buf.clear();
            }
            prop_assert_eq!(texts.get("login").cloned().unwrap_or_default(), email);
            prop_assert_eq!(texts.get("password").cloned().unwrap_or_default(), password);
        }

        #[test]
        fn url_values_decode_back(password in any::<String>()) {
            let t = Template::parse("https://a.example/x?p={{USERPASSWORD}}").unwrap();
            let rendered = url(&t, &values("e", &password));
            let parsed = url::Url::parse(&rendered).unwrap();
            let got: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
            prop_assert_eq!(got, vec![("p".to_owned(), password.clone())]);
        }
    }

    #[test]
    fn xml_refuses_what_xml_cannot_carry() {
        assert_eq!(xml("login", &body(), &values("a\u{1}b", "x")), Err(LoginError::InvalidInput));
        let ok = String::from_utf8(xml("login", &body(), &values("a&b", "<p'\">")).unwrap()).unwrap();
        assert!(ok.starts_with("<login><login>a&amp;b</login><password>&lt;p"), "{ok}");
    }
}
