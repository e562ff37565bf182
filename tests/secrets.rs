//! Secrets never reach a log line (at TRACE, every crate), an error body or a
//! `Debug` output: passwords, tokens, the session secret, client secrets.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const PASSWORD: &str = "Pw-9f3k2-unique-Password";
const TOKEN: &str = "Tk-77aa1-unique-Token";
const CLIENT_SECRET: &str = "Cs-0b1d2-unique-ClientSecret";

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
    for secret in [PASSWORD, TOKEN, CLIENT_SECRET, SECRET] {
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

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logged.contains("\"outcome\":\"success\""), "the audit event is missing:\n{logged}");
    assert!(logged.contains("\"outcome\":\"invalid_credentials\""));
    assert!(!logged.contains("alice@example.com"), "accounts are logged as keyed hashes only");
    assert_clean("the log", &logged);

    // Debug output of the whole configuration, a payway client secret included.
    let config = format!(
        "[server]\nlisten=[\"127.0.0.1:0\"]\n{}\n[providers.pw]\nkind=\"payway\"\nserver=\"https://p.example\"\nclient_id=\"c\"\nclient_secret=\"{CLIENT_SECRET}\"\noid=\"o\"\nredirect_uri=\"https://x.example/landing\"\n",
        qwyk_config(ok.addr, upstream, "", "")
    );
    let loaded = ferrygate::Config::from_toml(&config, ".".as_ref()).unwrap();
    assert_clean("Debug of the config", &format!("{:?}", loaded.config));
    let token = ferrygate::core::Token {
        value: TOKEN.to_owned().into(),
        token_type: "bearer".into(),
        expires_in: Duration::ZERO,
    };
    assert_clean("Debug of a token", &format!("{token:?}"));
    let grant = ferrygate::core::Grant {
        token: Some(token),
        ..ferrygate::core::Grant::redirect(format!("https://p.example/?token={TOKEN}"))
    };
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
