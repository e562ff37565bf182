//! `${NAME}` in string values: replaced by the environment variable NAME
//! before the configuration is parsed.

use crate::check::Check;

/// `$NAME` or `$NAME_2` as a whole value (upper case, as environment
/// variables are written): a `${NAME}` whose braces were forgotten.
fn looks_like_shell_variable(s: &str) -> bool {
    s.strip_prefix('$').is_some_and(|name| {
        name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Where environment variables are read from (the process's, or a test's).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces `${NAME}` in every string value by the environment variable NAME.
pub(crate) fn substitute(value: &mut toml::Value, key: String, env: Env<'_>, check: &mut Check<'_>) {
    if let toml::Value::String(s) = value {
        if looks_like_shell_variable(s) {
            // Not quoted: a password may start with `$`. When the variable it
            // names is set, it is surely a `${NAME}` without its braces.
            let message =
                "looks like $NAME, which is taken as written: only ${NAME} is replaced by the environment variable NAME";
            if env(&s[1..]).is_some() {
                check.err(&key, message);
            } else {
                check.warn(&key, message);
            }
        }
    }
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
