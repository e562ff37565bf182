//! `${NAME}` in string values: replaced by the environment variable NAME
//! before the configuration is parsed.

use crate::check::Check;

/// Where environment variables are read from (the process's, or a test's).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces `${NAME}` in every string value by the environment variable NAME.
pub(crate) fn substitute(value: &mut toml::Value, key: String, env: Env<'_>, check: &mut Check<'_>) {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    check.err(&key, "unclosed \"${\"");
                    return;
                };
                let name = &after[..end];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        check.err(&key, format!("environment variable {name} is not set"));
                        return;
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, format!("{key}[{i}]"), env, check);
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                substitute(v, format!("{key}.{k}"), env, check);
            }
        }
        _ => {}
    }
}
