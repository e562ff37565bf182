//! `{{PLACEHOLDER}}` templates of the `rest` provider, parsed once at config load.
//!
//! A template is a list of literal text and placeholders; rendering (and the
//! escaping each destination needs) belongs to the provider, so this module only
//! knows the grammar and the closed set of names.

use std::fmt;

/// The values a template may refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    UserId,
    UserEmail,
    UserPassword,
    UserExternalId,
    OrgId,
    DeviceOs,
    DeviceName,
    DeviceIp,
}

impl Placeholder {
    const ALL: [(&'static str, Placeholder); 8] = [
        ("USERID", Placeholder::UserId),
        ("USEREMAIL", Placeholder::UserEmail),
        ("USERPASSWORD", Placeholder::UserPassword),
        ("USEREXTERNALID", Placeholder::UserExternalId),
        ("ORGID", Placeholder::OrgId),
        ("DEVICEOS", Placeholder::DeviceOs),
        ("DEVICENAME", Placeholder::DeviceName),
        ("DEVICEIP", Placeholder::DeviceIp),
    ];

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    /// The name as written between the braces.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, p)| *p == self).map(|(n, _)| *n).unwrap_or("")
    }
}

/// One piece of a parsed template. Literal text may hold a static API key,
/// so `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Value(Placeholder),
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Literal(text) => write!(f, "Literal(<{} bytes>)", text.len()),
            Part::Value(p) => write!(f, "Value({})", p.name()),
        }
    }
}

/// A parsed template: literal text and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    /// Parses `text`, refusing unknown placeholders and unclosed braces.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| TemplateError("unclosed \"{{\"".to_owned()))?;
            let name = &after[..close];
            let placeholder = Placeholder::from_name(name).ok_or_else(|| {
                TemplateError(format!(
                    "unknown placeholder {{{{{name}}}}} (known: {})",
                    Placeholder::ALL.iter().map(|(n, _)| format!("{{{{{n}}}}}")).collect::<Vec<_>>().join(" ")
                ))
            })?;
            parts.push(Part::Value(placeholder));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether the template refers to `placeholder`.
    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.parts.contains(&Part::Value(placeholder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_and_placeholders() {
        let t = Template::parse("https://x/check?user={{USEREMAIL}}&d={{DEVICEOS}}").unwrap();
        assert_eq!(
            t.parts(),
            &[
                Part::Literal("https://x/check?user=".into()),
                Part::Value(Placeholder::UserEmail),
                Part::Literal("&d=".into()),
                Part::Value(Placeholder::DeviceOs),
            ]
        );
        assert!(t.uses(Placeholder::UserEmail));
        assert!(!t.uses(Placeholder::UserPassword));
    }

    #[test]
    fn refuses_unknown_and_unclosed() {
        let err = Template::parse("{{PASSWORD}}").unwrap_err().to_string();
        assert!(err.contains("unknown placeholder {{PASSWORD}}"), "{err}");
        assert!(Template::parse("a {{USERID").is_err());
    }

    #[test]
    fn debug_hides_literal_text() {
        let t = Template::parse("https://x/?key=sk_live_123&u={{USERID}}").unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("sk_live_123") && shown.contains("USERID"), "{shown}");
    }

    #[test]
    fn every_name_round_trips() {
        for (name, p) in Placeholder::ALL {
            assert_eq!(p.name(), name);
            assert_eq!(Template::parse(&format!("{{{{{name}}}}}")).unwrap().parts(), &[Part::Value(p)]);
        }
    }
}
