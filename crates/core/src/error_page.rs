//! Ferrygate's own refusals as a small HTML page, for a browser that asks
//! for one (`Accept: text/html`): a title, one sentence of what happened and
//! what to do, a way back to the site, the site's `error_stylesheet` linked.
//! Other clients keep the short text (or JSON) of SPEC 3.
//!
//! An answer is Ferrygate's own refusal when it carries an [`OwnError`]
//! extension (`respond` and the proxy put it there); the site's own answers
//! never do, so a site's 403 or 502 page is passed on as the site made it.
//! The page is made in one place, the site router, for every layer below.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::site::Site;

pub use crate::respond::OwnError;

/// Whether the client asks for HTML (a browser's navigation): `Accept`
/// names `text/html` with a non-zero weight and does not prefer JSON.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()) else { return false };
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok());
        (media.eq_ignore_ascii_case("text/html") || media.eq_ignore_ascii_case("application/xhtml+xml"))
            && q.is_none_or(|q| q > 0.0)
    }) && crate::respond::AnswerMode::of(headers) == crate::respond::AnswerMode::Browser
}

/// What a refusal says to a person: a title and what to do.
fn wording(code: &str, status: StatusCode) -> (&'static str, &'static str) {
    match code {
        "forbidden" => (
            "You do not have access to this page",
            "You are signed in, but your account is not allowed here. Go back, or sign in with another account.",
        ),
        "unauthenticated" => ("Please sign in", "This page is for signed-in users."),
        "origin_rejected" => (
            "This form came from another site",
            "For your safety the sign-in was not sent. Sign in on this site's own page.",
        ),
        "https_required" => ("A secure connection is needed", "Open this site with https:// and sign in again."),
        "state_mismatch" => (
            "This sign-in has expired",
            "The link you came back with was already used or is too old. Please sign in again.",
        ),
        "payload_too_large" | "unsupported_media_type" => {
            ("This form could not be read", "Go back to the sign-in page and try again.")
        }
        "session_store_unavailable" => {
            ("Sign-in is unavailable for a moment", "Nothing was changed. Please try again in a minute.")
        }
        "provider_unavailable" | "provider_timeout" => {
            ("Sign-in is unavailable for a moment", "The sign-in service did not answer. Please try again in a minute.")
        }
        "bad_gateway" => ("The site is not answering", "Please try again in a moment."),
        "gateway_timeout" => ("The site took too long to answer", "Please try again in a moment."),
        "misdirected" => ("This site is not served here", "Check the address you opened."),
        "bad_request" | "malformed_host" | "bad_path" => {
            ("This address is not valid", "Check the address you opened, or start again from the home page.")
        }
        _ if status.is_server_error() => ("Something went wrong", "Please try again in a moment."),
        _ => ("This request was refused", "Go back to the home page and try again."),
    }
}

/// Minimal HTML escaping for attribute values and text.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The page for `code` at `status` on `site` (none: an unknown host).
pub(crate) fn page(status: StatusCode, code: &str, site: Option<&Site>) -> String {
    let (title, what) = wording(code, status);
    let stylesheet = site
        .and_then(|s| s.error_stylesheet.as_deref())
        .map(|href| format!("\n  <link rel=\"stylesheet\" href=\"{}\">", escape(href)))
        .unwrap_or_default();
    let mut links = String::from("<a href=\"/\">Back to the home page</a>");
    if let Some(site) = site {
        if matches!(status.as_u16(), 401 | 403) {
            links.push_str(&format!(" · <a href=\"{}\">Sign in</a>", escape(&site.login.path)));
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  \
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n  <title>{title}</title>\n  \
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;\
         line-height:1.5;color:#1a1a1a}}h1{{font-size:1.5rem}}.code{{color:#555;font-size:.875rem}}</style>{stylesheet}\n\
         </head>\n<body class=\"ferrygate-error\" data-error=\"{code}\">\n<main>\n  <h1>{title}</h1>\n  <p>{what}</p>\n  \
         <p>{links}</p>\n  <p class=\"code\">{status_code} · <code>{code}</code></p>\n</main>\n</body>\n</html>\n",
        code = escape(code),
        status_code = status.as_u16(),
    )
}

/// `res` as the HTML page when it is Ferrygate's own refusal; as it is
/// otherwise. Its status and headers (cookies, `Retry-After`, HSTS) are kept.
pub(crate) fn render<B>(res: Response<B>, site: Option<&Site>) -> Result<Response<Full<Bytes>>, Response<B>> {
    let Some(OwnError(code)) = res.extensions().get::<OwnError>().copied() else { return Err(res) };
    let (mut parts, _) = res.into_parts();
    let html = page(parts.status, code, site);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    parts.headers.remove(CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Full::new(Bytes::from(html))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn browsers_get_html_and_other_clients_do_not() {
        assert!(wants_html(&accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("application/json, text/html;q=0.5")));
        assert!(!wants_html(&accept("text/html;q=0")));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn the_page_names_the_code_and_escapes_what_it_is_given() {
        let page = page(StatusCode::FORBIDDEN, "forbidden", None);
        assert!(page.contains("<title>You do not have access to this page</title>"), "{page}");
        assert!(page.contains("<code>forbidden</code>") && page.contains("lang=\"en\""));
        assert!(escape("\"><script>") == "&quot;&gt;&lt;script&gt;");
    }

    #[test]
    fn only_own_refusals_are_rendered() {
        let mut own = Response::new("forbidden\n");
        *own.status_mut() = StatusCode::FORBIDDEN;
        own.extensions_mut().insert(OwnError("forbidden"));
        own.headers_mut().insert("set-cookie", HeaderValue::from_static("a=; Max-Age=0"));
        let page = render(own, None).unwrap_or_else(|_| panic!("not rendered"));
        assert_eq!(page.status(), StatusCode::FORBIDDEN);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(page.headers()["set-cookie"], "a=; Max-Age=0", "headers are kept");
        let mut site = Response::new("the site's own 403 page");
        *site.status_mut() = StatusCode::FORBIDDEN;
        assert!(render(site, None).is_err(), "the site's answer is passed on as made");
    }
}
