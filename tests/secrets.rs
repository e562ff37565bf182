//! Secrets never reach a log line (at TRACE, every crate), an error body or a
//! `Debug` output: passwords, tokens, the session secret, client secrets.

use ferrygate_testkit as common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const PASSWORD: &str = "Pw-9f3k2-unique-Password";
const TOKEN: &str = "Tk-77aa1-unique-Token";
const CLIENT_SECRET: &str = "Cs-0b1d2-unique-ClientSecret";
const SERVICE_TOKEN: &str = "St-5e6f7-unique-ServiceToken";
const LOGIN_HANDLE: &str = "Lh-8a9b0-unique-LoginHandle";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, TOKEN, CLIENT_SECRET, SECRET, SERVICE_TOKEN, LOGIN_HANDLE] {
        assert!(!text.contains(secret), "{what} contains a secret ({secret}):\n{text}");
    }
}

#[tokio::test]
async fn no_secret_in_logs_answers_or_debug_output() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .json()
        .init();

    let body: &'static str =
        Box::leak(format!(r#"{{"access_token":"{TOKEN}","token_type":"bearer","expires_in":60}}"#).into_boxed_str());
    let ok = Mock::start(200, body, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw = gateway(&qwyk_config(ok.addr, upstream, "", "")).await;
    let success = post_form(&gw.url("/login"), &[("email", "alice@example.com"), ("password", PASSWORD)]).await;
    assert!(success.header("location").contains(TOKEN), "the portal redirect must carry the token");

    // Failures of every kind, including a provider that echoes the password back.
    let echo_body: &'static str = Box::leak(format!(r#"{{"error":"bad password {PASSWORD}"}}"#).into_boxed_str());
    for (status, reply) in [(401, echo_body), (500, echo_body), (200, echo_body)] {
        let mock = Mock::start(status, reply, Duration::ZERO).await;
        let gw = gateway(&qwyk_config(mock.addr, upstream, "", "")).await;
        let res =
            post_json(&gw.url("/login"), serde_json::json!({"email": "alice@example.com", "password": PASSWORD})).await;
        assert_clean("an error answer", &res.text());
        let res = post_form(&gw.url("/login"), &[("email", "alice@example.com"), ("password", PASSWORD)]).await;
        assert_clean("an error redirect", res.header("location"));
    }
    let slow = Mock::start(200, body, Duration::from_secs(2)).await;
    let gw = gateway(&qwyk_config(slow.addr, upstream, "", "")).await;
    let res =
        post_json(&gw.url("/login"), serde_json::json!({"email": "alice@example.com", "password": PASSWORD})).await;
    assert_eq!(res.json()["error"], "provider_timeout");

    let session_ids = vec![cookie_pair(&success).split_once('=').unwrap().1.to_owned()];

    // payway: the client secret, the service token and the login handle.
    let payway = serve(|req: http::Request<hyper::body::Incoming>| async move {
        let body = match req.uri().path() {
            "/oauth2/token" => format!(r#"{{"access_token":"{SERVICE_TOKEN}","expires_in":600}}"#),
            _ if req.headers()["authorization"] != format!("OAuth {SERVICE_TOKEN}").as_str() => {
                r#"{"error":"bad token"}"#.to_owned()
            }
            _ => format!(r#"{{"status":"ok","result":"{LOGIN_HANDLE}"}}"#),
        };
        http::Response::builder().header("content-type", "application/json").body(full(body)).unwrap()
    })
    .await;
    let payway_config = format!(
        "[sessions]\nsecret = \"{SECRET}\"\n[providers.pw]\nkind = \"payway\"\nserver = \"http://{payway}\"\nclient_id = \"c\"\n\
         client_secret = \"{CLIENT_SECRET}\"\noid = \"o\"\nredirect_uri = \"https://x.example/landing\"\n[[sites]]\nname = \"n\"\n\
         upstream = \"http://{upstream}\"\nprovider = \"pw\"\n[sites.login]\npath = \"/login\"\n[sites.callback]\npath = \"/landing\"\n"
    );
    let gw = gateway(&payway_config).await;
    let res = post_form(&gw.url("/login"), &[("email", "reader@news.example"), ("password", PASSWORD)]).await;
    assert!(res.header("location").contains(LOGIN_HANDLE), "the flow must have run: {}", res.header("location"));
    let res =
        post_json(&gw.url("/login"), serde_json::json!({"email": "reader@news.example", "password": PASSWORD})).await;
    assert_clean("a payway answer", &res.text().replace(LOGIN_HANDLE, ""));

    // rest: the password rendered into a body and a header, with a failing service.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), "email,user_id,external_id,org_id\nann@corp.example,1,e,7\n").unwrap();
    for status in [200u16, 401, 500] {
        let mock = Mock::start(status, "{}", Duration::ZERO).await;
        let rest_config = format!(
            "[sessions]\nsecret = \"{SECRET}\"\n[providers.r]\nkind = \"rest\"\nurl = \"http://{}/auth?p={{{{USERPASSWORD}}}}\"\n\
             users = \"users.csv\"\nbody = {{ p = \"{{{{USERPASSWORD}}}}\" }}\nheaders = {{ \"X-P\" = \"{{{{USERPASSWORD}}}}\" }}\n\
             [[sites]]\nname = \"c\"\nupstream = \"http://{upstream}\"\nprovider = \"r\"\n[sites.login]\npath = \"/login\"\n",
            mock.addr
        );
        let gw = gateway_in(&rest_config, dir.path()).await;
        let res =
            post_json(&gw.url("/login"), serde_json::json!({"email": "ann@corp.example", "password": PASSWORD})).await;
        assert_clean("a rest answer", &res.text());
        if status == 200 {
            assert_eq!(mock.requests().len(), 1);
        }
    }

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    for id in &session_ids {
        assert!(!logged.contains(id.as_str()), "a session cookie value reached the log");
    }
    assert!(logged.contains("\"outcome\":\"success\""), "the audit event is missing:\n{logged}");
    assert!(logged.contains("\"outcome\":\"invalid_credentials\""));
    assert!(!logged.contains("alice@example.com"), "accounts are logged as keyed hashes only");
    assert_clean("the log", &logged);

    // Debug output of the whole configuration, a payway client secret included.
    let config = format!(
        "[server]\nlisten=[\"127.0.0.1:0\"]\n{}\n[providers.pw]\nkind=\"payway\"\nserver=\"https://p.example\"\nclient_id=\"c\"\nclient_secret=\"{CLIENT_SECRET}\"\noid=\"o\"\nredirect_uri=\"https://x.example/landing\"\n",
        qwyk_config(ok.addr, upstream, "", "")
    );
    let loaded = ferrygate::from_toml(&config, ".".as_ref()).unwrap();
    assert_clean("Debug of the config", &format!("{:?}", loaded.config));
    let token = ferrygate::core::Token::new(TOKEN.to_owned().into(), "bearer", Duration::ZERO);
    assert_clean("Debug of a token", &format!("{token:?}"));
    let grant = ferrygate::core::Grant::redirect(format!("https://p.example/?token={TOKEN}")).with_token(token);
    assert_clean("Debug of a grant", &format!("{grant:?}"));
    let password = ferrygate::core::SecretString::from(PASSWORD.to_owned());
    let attempt = ferrygate::core::LoginAttempt {
        site: &loaded.config.sites[0],
        username: "alice@example.com",
        password: &password,
        remember: false,
        destination: "/my-portal",
        client_ip: None,
        user_agent: "",
        state: "state",
    };
    assert_clean("Debug of a login attempt", &format!("{attempt:?}"));
}
