//! The fields of a login-like form: a form or JSON body of bounded size,
//! read within a bounded time, or a query string; first value of each name.

use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body::Body;
use http_body_util::{BodyExt, Limited};

use crate::error::{BoxError, LoginError};
use crate::respond::media_type;

/// How long a login body may take to arrive.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) const FORM: &str = "application/x-www-form-urlencoded";
pub(crate) const JSON: &str = "application/json";

/// Whether a checkbox-like value is on.
pub(crate) fn truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes")
}

/// The login form's fields, first value of each name.
#[derive(Default)]
pub(crate) struct Fields(Vec<(String, String)>);

/// Names only: the values hold passwords and states.
impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| name)).finish()
    }
}

impl Fields {
    /// The fields of a query string.
    pub(crate) fn from_query(query: &str) -> Self {
        Fields(form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads a form or JSON body of at most `limit` bytes.
pub(crate) async fn read_fields<B>(headers: &http::HeaderMap, body: B, limit: usize) -> Result<Fields, LoginError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(media_type).unwrap_or("");
    let json = if content_type.eq_ignore_ascii_case(FORM) {
        false
    } else if content_type.eq_ignore_ascii_case(JSON) {
        true
    } else {
        return Err(LoginError::UnsupportedMediaType);
    };
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(LoginError::PayloadTooLarge);
    }
    // A client dribbling its form must not hold a task and a socket for ever.
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect());
    let bytes = read.await.map_err(|_| LoginError::InvalidInput)?.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            LoginError::PayloadTooLarge
        } else {
            LoginError::InvalidInput
        }
    })?;
    let bytes = bytes.to_bytes();
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|_| LoginError::InvalidInput)?;
        Ok(Fields(
            map.into_iter()
                .filter_map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Bool(b) => b.to_string(),
                        serde_json::Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((k, v))
                })
                .collect(),
        ))
    } else {
        Ok(Fields(form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;

    #[test]
    fn debug_shows_the_field_names_and_no_value() {
        let fields = Fields::from_query("email=alice%40example.com&password=hunter2-secret&state=st-8f3a");
        let shown = format!("{fields:?}");
        assert_eq!(shown, r#"["email", "password", "state"]"#);
        for value in ["alice", "hunter2-secret", "st-8f3a"] {
            assert!(!shown.contains(value), "{shown}");
        }
    }

    fn headers(content_type: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    async fn parse(content_type: &str, body: Vec<u8>) -> Result<Fields, LoginError> {
        read_fields(&headers(content_type), Full::new(Bytes::from(body)), 256).await
    }

    #[tokio::test]
    async fn reads_form_and_json_fields() {
        let f = parse(FORM, b"email=a%40b.example&password=p%26w&email=second".to_vec()).await.unwrap();
        assert_eq!((f.get("email"), f.get("password")), (Some("a@b.example"), Some("p&w")));
        let f = parse("application/json; charset=utf-8", br#"{"email":"x","remember":true,"n":3,"o":{}}"#.to_vec())
            .await
            .unwrap();
        assert_eq!((f.get("remember"), f.get("n"), f.get("o")), (Some("true"), Some("3"), None));
        assert_eq!(parse(JSON, b"[1,2]".to_vec()).await.err(), Some(LoginError::InvalidInput));
        assert_eq!(parse("text/plain", vec![]).await.err(), Some(LoginError::UnsupportedMediaType));
        assert_eq!(parse(FORM, vec![b'a'; 300]).await.err(), Some(LoginError::PayloadTooLarge));
    }

    proptest::proptest! {
        #[test]
        fn any_body_parses_or_is_refused_cleanly(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), json in proptest::prelude::any::<bool>()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let result = rt.block_on(parse(if json { JSON } else { FORM }, body.clone()));
            match result {
                Ok(_) => proptest::prop_assert!(body.len() <= 256),
                Err(e) => proptest::prop_assert!(matches!(e, LoginError::InvalidInput | LoginError::PayloadTooLarge), "{:?}", e),
            }
        }
    }
}
