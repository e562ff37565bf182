//! Authorization rules (SPEC 2.2) end to end: groups from the rest
//! directory's `groups` column into the session, `X-Ferrygate-Groups`, the
//! longest matching rule, 403 `forbidden` in browser and JSON mode, sign-in
//! first without a session, and canonical matching of rule paths.

use ferrygate_testkit as common;

use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

struct Setup {
    gw: Gateway,
    _mock: Mock,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let mock = Mock::start(200, "{}", Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.csv"),
        "email,user_id,external_id,org_id,groups\n\
         alice@corp.example,1,,7,admins;staff\n\
         bob@corp.example,2,,7,staff\n\
         carol@corp.example,3,,7,auditors\n\
         odd@corp.example,4,,7,\"ad\u{7}mins;a,b;staff\"\n",
    )
    .unwrap();
    let config = format!(
        r#"
[sessions]
secret = "{SECRET}"
cookie_secure = false

[providers.corp]
kind = "rest"
url = "http://{mock}/check"
users = "users.csv"

[[sites]]
name = "corp"
upstream = "http://{upstream}"
provider = "corp"

[sites.login]
path = "/login"

[sites.portal]
default_destination = "/"
allowed_destinations = ["/"]

[[sites.authorize]]
paths = ["/admin", "/billing"]
groups = ["admins"]

[[sites.authorize]]
paths = ["/admin/reports"]
groups = ["auditors"]
"#,
        mock = mock.addr,
    );
    let gw = gateway_in(&config, dir.path()).await;
    Setup { gw, _mock: mock, _dir: dir }
}

async fn sign_in(gw: &Gateway, email: &str) -> String {
    let res = post_form(&gw.url("/login"), &[("email", email), ("password", "pw")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{email}");
    cookie_pair(&res)
}

#[tokio::test]
async fn rules_admit_by_group_the_longest_path_winning() {
    let s = setup().await;
    let (alice, bob, carol) = (
        sign_in(&s.gw, "alice@corp.example").await,
        sign_in(&s.gw, "bob@corp.example").await,
        sign_in(&s.gw, "carol@corp.example").await,
    );

    // Alice (admins) reaches /admin, with her groups as a header.
    let res = get_with_cookie(&s.gw.url("/admin/users"), &alice).await;
    assert_eq!(res.status, StatusCode::OK);
    let echo = res.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["alice@corp.example"]);
    assert_eq!(echoed(&echo, "x-ferrygate-groups"), vec!["admins,staff"]);
    assert_eq!(get_with_cookie(&s.gw.url("/billing"), &alice).await.status, StatusCode::OK);

    // Bob (staff) is signed in but not admitted: 403 forbidden, nothing reaches the site.
    for path in ["/admin", "/admin/users", "/billing/x", "/ADMIN", "//admin;x", "/%61dmin/"] {
        let res = get_with_cookie(&s.gw.url(path), &bob).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(res.text().trim(), "forbidden", "{path}");
    }
    // Not under a rule: Bob is fine there.
    assert_eq!(get_with_cookie(&s.gw.url("/administrator"), &bob).await.status, StatusCode::OK);

    // The longest matching rule wins: /admin/reports is for auditors, not admins.
    assert_eq!(get_with_cookie(&s.gw.url("/admin/reports/q3"), &alice).await.status, StatusCode::FORBIDDEN);
    assert_eq!(get_with_cookie(&s.gw.url("/admin/reports/q3"), &carol).await.status, StatusCode::OK);
    assert_eq!(get_with_cookie(&s.gw.url("/admin"), &carol).await.status, StatusCode::FORBIDDEN);

    // JSON mode: the error shape.
    let res = send(
        Request::get(s.gw.url("/admin"))
            .header("cookie", &bob)
            .header("accept", "application/json")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.json()["error"], "forbidden");
}

#[tokio::test]
async fn without_a_session_a_rule_path_is_sign_in_first() {
    let s = setup().await;
    let res = get(&s.gw.url("/admin/users?tab=2")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.header("location"), "/login?destination=%2Fadmin%2Fusers%3Ftab%3D2");
}

#[tokio::test]
async fn group_names_that_cannot_be_a_header_are_dropped() {
    let s = setup().await;
    let odd = sign_in(&s.gw, "odd@corp.example").await;
    let echo = get_with_cookie(&s.gw.url("/page"), &odd).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-groups"), vec!["staff"]);
    // A client cannot claim groups.
    let res =
        send(Request::get(s.gw.url("/page")).header("x-ferrygate-groups", "admins").body(Full::default()).unwrap())
            .await;
    assert!(echoed(&res.json(), "x-ferrygate-groups").is_empty());
}

#[tokio::test]
async fn users_of_providers_without_groups_are_shut_out_of_rule_paths() {
    let mock = Mock::start(200, r#"{"access_token":"t","expires_in":600}"#, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let config = qwyk_config(mock.addr, upstream, "", "")
        .replace("[sites.login]", "[[sites.authorize]]\npaths = [\"/admin\"]\ngroups = [\"admins\"]\n\n[sites.login]");
    let gw = gateway(&config).await;
    let cookie = sign_in(&gw, "qwyk-user@x.example").await;
    assert_eq!(get_with_cookie(&gw.url("/admin"), &cookie).await.status, StatusCode::FORBIDDEN);
    assert_eq!(get_with_cookie(&gw.url("/other"), &cookie).await.status, StatusCode::OK);
}
