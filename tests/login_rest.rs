//! End to end: the rest adapter against a recording mock web service.

use ferrygate_testkit as common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

const HOSTILE: &str = "p\"a\\s&s<w>o'r+d%2=x y\n😀";
const EMAIL: &str = "ann+test@corp.example";
const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

struct Setup {
    mock: Mock,
    gw: Gateway,
    _dir: tempfile::TempDir,
}

/// A rest site in front of an echo upstream and a mock web service;
/// `provider_extra(mock address)` goes into the provider table.
async fn setup(status: u16, delay: Duration, provider_extra: impl Fn(&str) -> String) -> Setup {
    let mock = Mock::start(status, "{}", delay).await;
    let provider_extra = provider_extra(&mock.addr.to_string());
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.csv"),
        format!("email,user_id,external_id,org_id\n{EMAIL},1001,ext-9,77\n\"Bob@Corp.example\",1002,,78\n"),
    )
    .unwrap();
    let config = format!(
        r#"
[sessions]
secret = "{SECRET}"
cookie_secure = false

[providers.corp]
kind = "rest"
users = "users.csv"
timeout = "400ms"
session_ttl = "1h"
forgot_password_url = "http://{mock}/forgot?email={{{{USEREMAIL}}}}&id={{{{USERID}}}}"
{provider_extra}

[[sites]]
name = "corp"
upstream = "http://{upstream}"
provider = "corp"
protected_paths = ["/app"]

[sites.login]
path = "/login"

[sites.portal]
default_destination = "/app/home"
allowed_destinations = ["/app"]

[sites.forgot_password]
path = "/forgot-password"
redirect = "/forgot-password?sent=1"
"#,
        mock = mock.addr,
    );
    let gw = gateway_in(&config, dir.path()).await;
    Setup { mock, gw, _dir: dir }
}

fn with_url(mock: &str, rest: &str) -> String {
    format!("url = \"http://{mock}{rest}\"")
}

async fn login_as(gw: &Gateway, email: &str, password: &str) -> Answer {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("email", email), ("password", password)])
        .finish();
    send(
        Request::post(gw.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", CHROME)
            .body(Full::new(Bytes::from(body)))
            .unwrap(),
    )
    .await
}

const BODY: &str = r#"body = { login = "{{USEREMAIL}}", password = "{{USERPASSWORD}}", org = "{{ORGID}}", os = "{{DEVICEOS}}", device = "{{DEVICENAME}}", ip = "{{DEVICEIP}}" }"#;

fn expected_fields() -> Vec<(String, String)> {
    [
        ("login", EMAIL),
        ("password", HOSTILE),
        ("org", "77"),
        ("os", "Windows"),
        ("device", "Chrome 131"),
        ("ip", "127.0.0.1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn setup_with(status: u16, rest_of_provider: impl Fn(&str) -> String) -> Setup {
    setup(status, Duration::ZERO, rest_of_provider).await
}

#[tokio::test]
async fn json_bodies_carry_hostile_values_intact() {
    let s = setup_with(200, |m| format!("{}\nbody_format = \"json\"\n{BODY}", with_url(m, "/auth"))).await;
    let res = login_as(&s.gw, EMAIL, HOSTILE).await;
    assert_eq!(res.header("location"), "/app/home");
    let seen = s.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].headers["content-type"], "application/json");
    let body: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&seen[0].body).unwrap();
    let mut got: Vec<(String, String)> = body.into_iter().map(|(k, v)| (k, v.as_str().unwrap().to_owned())).collect();
    let mut want = expected_fields();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn form_bodies_carry_hostile_values_intact() {
    let s = setup_with(200, |m| format!("{}\nmethod = \"PUT\"\nbody_format = \"form\"\n{BODY}", with_url(m, "/auth")))
        .await;
    assert_eq!(login_as(&s.gw, EMAIL, HOSTILE).await.header("location"), "/app/home");
    let seen = s.mock.requests();
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].headers["content-type"], "application/x-www-form-urlencoded");
    let got: Vec<(String, String)> = form_urlencoded::parse(&seen[0].body).into_owned().collect();
    assert_eq!(got, expected_fields(), "form fields in table order");
}

#[tokio::test]
async fn xml_bodies_carry_hostile_values_intact() {
    let s = setup_with(200, |m| {
        format!("{}\nbody_format = \"xml\"\nxml_root = \"credentials\"\n{BODY}", with_url(m, "/auth"))
    })
    .await;
    assert_eq!(login_as(&s.gw, EMAIL, HOSTILE).await.header("location"), "/app/home");
    let seen = s.mock.requests();
    assert_eq!(seen[0].headers["content-type"], "application/xml");
    let xml = String::from_utf8(seen[0].body.to_vec()).unwrap();
    assert!(xml.starts_with("<credentials><login>"), "{xml}");
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut depth = 0;
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(e) => {
                depth += 1;
                if depth == 2 {
                    fields.push((String::from_utf8(e.name().as_ref().to_vec()).unwrap(), String::new()));
                }
            }
            quick_xml::events::Event::Text(t) => fields.last_mut().unwrap().1.push_str(&t.decode().unwrap()),
            quick_xml::events::Event::GeneralRef(r) => {
                let c = match &r[..] {
                    b"amp" => "&",
                    b"lt" => "<",
                    b"gt" => ">",
                    b"quot" => "\"",
                    b"apos" => "'",
                    other => panic!("unexpected entity {other:?}"),
                };
                fields.last_mut().unwrap().1.push_str(c);
            }
            quick_xml::events::Event::End(_) => depth -= 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(fields, expected_fields(), "one element per key, in table order");
}

#[tokio::test]
async fn url_placeholders_in_path_and_query_and_basic_auth() {
    let s = setup_with(200, |m| {
        format!(
            "{}\nmethod = \"GET\"\nauth = \"basic\"\n",
            with_url(m, "/users/{{USEREMAIL}}/check?id={{USERID}}&p={{USERPASSWORD}}")
        )
    })
    .await;
    let res = login_as(&s.gw, EMAIL, HOSTILE).await;
    assert_eq!(res.header("location"), "/app/home");
    let seen = &s.mock.requests()[0];
    assert_eq!(seen.method, "GET");
    assert!(seen.body.is_empty(), "GET sends no body");
    let url = url::Url::parse(&format!("http://x{}?{}", seen.path, seen.query.as_deref().unwrap())).unwrap();
    let segments: Vec<String> = url.path_segments().unwrap().map(percent_decode).collect();
    assert_eq!(segments, vec!["users", EMAIL, "check"]);
    assert_eq!(query(&url), vec![("id".into(), "1001".into()), ("p".into(), HOSTILE.into())]);
    let basic = seen.headers["authorization"].to_str().unwrap().strip_prefix("Basic ").unwrap().to_owned();
    let decoded = String::from_utf8(base64_decode(&basic)).unwrap();
    assert_eq!(decoded, format!("{EMAIL}:{HOSTILE}"));
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes()).next().unwrap().1.into_owned()
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        bits = (bits << 6) | ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[tokio::test]
async fn header_injection_is_refused_and_nothing_is_sent() {
    let s = setup_with(200, |m| {
        format!("{}\nheaders = {{ \"X-Pass\" = \"{{{{USERPASSWORD}}}}\" }}\n", with_url(m, "/auth"))
    })
    .await;
    for evil in ["x\r\nX-Admin: yes", "x\nX-Admin: yes", "x\u{0}y"] {
        // The same refusal for an account that does not exist: no enumeration through it.
        for email in [EMAIL, "nobody@corp.example"] {
            let res = post_json(&s.gw.url("/login"), serde_json::json!({"email": email, "password": evil})).await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{email} {evil:?}");
            assert_eq!(res.json()["error"], "invalid_input");
        }
    }
    let res = post_json(&s.gw.url("/login"), serde_json::json!({"email": EMAIL, "password": "x".repeat(1100)})).await;
    assert_eq!(res.json()["error"], "invalid_input");
    assert!(s.mock.requests().is_empty());
}

#[tokio::test]
async fn only_exactly_200_authenticates() {
    for (status, want_status, want_code) in [
        (201, 401, "invalid_credentials"),
        (204, 401, "invalid_credentials"),
        (302, 401, "invalid_credentials"),
        (401, 401, "invalid_credentials"),
        (500, 502, "provider_unavailable"),
    ] {
        let s = setup_with(status, |m| with_url(m, "/auth")).await;
        let res = post_json(&s.gw.url("/login"), serde_json::json!({"email": EMAIL, "password": "pw"})).await;
        assert_eq!((res.status.as_u16(), res.json()["error"].as_str().unwrap()), (want_status, want_code), "{status}");
    }
    let s = setup(200, Duration::from_secs(2), |m| with_url(m, "/auth")).await;
    let res = post_json(&s.gw.url("/login"), serde_json::json!({"email": EMAIL, "password": "pw"})).await;
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.json()["error"], "provider_timeout");
}

#[tokio::test]
async fn a_redirect_from_the_identity_service_is_not_followed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // /auth redirects to /ok, which would answer 200: following it would log the user in.
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = serve(move |req: Request<hyper::body::Incoming>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            match req.uri().path() {
                "/auth" => http::Response::builder().status(302).header("location", "/ok").body(full("")).unwrap(),
                _ => http::Response::new(full("welcome")),
            }
        }
    })
    .await;
    let s = setup_with(200, |_| format!("url = \"http://{service}/auth\"")).await;
    let res = post_json(&s.gw.url("/login"), serde_json::json!({"email": EMAIL, "password": "pw"})).await;
    assert_eq!((res.status, res.json()["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the redirect was followed");
}

#[tokio::test]
async fn an_unknown_email_looks_exactly_like_a_wrong_password() {
    let s = setup_with(401, |m| with_url(m, "/auth")).await;
    let wrong = login_as(&s.gw, EMAIL, "wrong").await;
    assert_eq!(s.mock.requests().len(), 1);
    let unknown = login_as(&s.gw, "nobody@corp.example", "wrong").await;
    assert_eq!(s.mock.requests().len(), 1, "nothing is sent upstream for an unknown email");
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.header("location"), unknown.header("location"));
    let names = |a: &Answer| {
        let mut n: Vec<String> = a.headers.keys().map(|k| k.to_string()).filter(|k| k != "date").collect();
        n.sort();
        n
    };
    assert_eq!(names(&wrong), names(&unknown));
    let j1 = post_json(&s.gw.url("/login"), serde_json::json!({"email": EMAIL, "password": "wrong"})).await;
    let j2 =
        post_json(&s.gw.url("/login"), serde_json::json!({"email": "nobody@corp.example", "password": "wrong"})).await;
    assert_eq!((j1.status, j1.body), (j2.status, j2.body));
}

#[tokio::test]
async fn success_goes_to_the_site_with_the_directory_identity() {
    let s = setup_with(200, |m| with_url(m, "/auth")).await;
    let res = login_as(&s.gw, " ANN+test@Corp.example ", "pw").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.header("location"), "/app/home", "the site's own default destination, not a portal");
    let cookie = cookie_pair(&res);
    let echo = get_with_cookie(&s.gw.url("/app/orders"), &cookie).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec![EMAIL]);
    assert_eq!(echoed(&echo, "x-ferrygate-user-id"), vec!["1001"]);
    assert_eq!(echoed(&echo, "x-ferrygate-org-id"), vec!["77"]);
    assert_eq!(echoed(&echo, "x-ferrygate-provider"), vec!["corp"]);
    // A rest session has no portal token: the login page shows the site's form again.
    assert_eq!(get_with_cookie(&s.gw.url("/login"), &cookie).await.status, StatusCode::OK);
    let res =
        post_form(&s.gw.url("/login"), &[("email", EMAIL), ("password", "pw"), ("destination", "/app/x?y=1")]).await;
    assert_eq!(res.header("location"), "/app/x?y=1");
}

#[tokio::test]
async fn forgot_password_answers_the_same_for_everyone() {
    let s = setup_with(200, |m| with_url(m, "/auth")).await;
    // A cross-site POST is refused like any owned route's (and sends nothing: counted below).
    let hostile = send(
        Request::post(s.gw.url("/forgot-password"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://evil.example")
            .body(Full::new(Bytes::from("email=bob%40corp.example")))
            .unwrap(),
    )
    .await;
    assert_eq!((hostile.status, hostile.text().trim()), (StatusCode::FORBIDDEN, "origin_rejected"));
    let known = post_form(&s.gw.url("/forgot-password"), &[("email", "bob@corp.example")]).await;
    let unknown = post_form(&s.gw.url("/forgot-password"), &[("email", "nobody@corp.example")]).await;
    for a in [&known, &unknown] {
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        assert_eq!(a.header("location"), "/forgot-password?sent=1");
    }
    let j1 = post_json(&s.gw.url("/forgot-password"), serde_json::json!({"email": "Bob@corp.example "})).await;
    let j2 = post_json(&s.gw.url("/forgot-password"), serde_json::json!({"email": "nobody@corp.example"})).await;
    assert_eq!((j1.status, j1.text()), (StatusCode::ACCEPTED, r#"{"status":"accepted"}"#.to_owned()));
    assert_eq!((j2.status, j2.text()), (j1.status, j1.text()));
    // The GETs happen in the background: wait (bounded) for exactly the two known ones.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.mock.requests().len() < 2 {
        assert!(Instant::now() < deadline, "the forgot-password call was not made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = s.mock.requests();
    assert_eq!(seen.len(), 2, "only known accounts are forwarded");
    for r in &seen {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/forgot"));
        assert_eq!(r.query.as_deref(), Some("email=Bob%40Corp.example&id=1002"));
    }
    // GET shows the site's own form.
    assert_eq!(get(&s.gw.url("/forgot-password")).await.json()["uri"], "/forgot-password");
}

#[tokio::test]
async fn a_malformed_directory_fails_check_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.csv"),
        "email,user_id,external_id,org_id\na@x.example,1,e,7\nb@x.example,2\n",
    )
    .unwrap();
    let config = format!(
        "[sessions]\nsecret = \"{SECRET}\"\n[providers.corp]\nkind = \"rest\"\nurl = \"http://127.0.0.1:9/auth\"\nusers = \"users.csv\"\n[[sites]]\nname = \"c\"\nupstream = \"http://127.0.0.1:9\"\nprovider = \"corp\"\n[sites.login]\npath = \"/login\"\n"
    );
    std::fs::write(dir.path().join("ferrygate.toml"), config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrygate"))
        .args(["check", "--config"])
        .arg(dir.path().join("ferrygate.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("providers.corp.users: line 3:"), "{stderr}");
}

/// A failed rest login (wrong password, unknown user) keeps where the user
/// was going (validated) on the way back to the form.
#[tokio::test]
async fn a_failed_login_keeps_the_destination() {
    let s = setup_with(401, |m| with_url(m, "/auth")).await;
    for email in [EMAIL, "nobody@corp.example"] {
        let res = post_form(
            &s.gw.url("/login"),
            &[("email", email), ("password", "wrong"), ("destination", "/app/reports?q=1")],
        )
        .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert_eq!(res.location().path(), "/login");
        assert_eq!(param(&res.location(), "error").as_deref(), Some("invalid_credentials"), "{email}");
        assert_eq!(param(&res.location(), "destination").as_deref(), Some("/app/reports?q=1"), "{email}");
    }
}
