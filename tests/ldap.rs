//! The `ldap` provider against a real OpenLDAP `slapd` (Debian's package),
//! started here as a plain process on free loopback ports: a generated
//! `cn=config` (mdb backend, the memberof overlay, a generated CA and server
//! certificate for `ldaps://` and StartTLS), people and groups added over
//! LDAP so the overlay keeps `memberOf`. Needs `slapd` and `ldap-utils`;
//! without them the tests fail with a message (`scripts/test` installs them).
//!
//! Longer than 400 lines on purpose: the `ldap` kind against a real slapd,
//! the directory tree it loads included.

use ferrygate_testkit as common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

const ROOT_DN: &str = "cn=admin,dc=corp,dc=example";
const ROOT_PW: &str = "root-secret-for-tests";
const SERVICE_DN: &str = "cn=ferrygate,ou=services,dc=corp,dc=example";
const SERVICE_PW: &str = "service-secret-for-tests";
const ALICE_PW: &str = "alice-secret-pw";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running slapd; killed when dropped.
struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    ldap: u16,
    ldaps: u16,
}

impl Slapd {
    fn start() -> Self {
        for tool in ["slapd", "slapadd", "ldapadd"] {
            let found = ["/usr/sbin", "/usr/bin"].iter().any(|d| Path::new(d).join(tool).exists());
            assert!(found, "{tool} is not installed: run scripts/test (it installs slapd and ldap-utils)");
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A CA and a server certificate for localhost / 127.0.0.1 signed by it.
        write_test_pki(d);
        std::fs::create_dir(d.join("conf")).unwrap();
        std::fs::create_dir(d.join("db")).unwrap();
        let dd = d.display();
        std::fs::write(
            d.join("config.ldif"),
            format!(
                "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\
                 olcTLSCACertificateFile: {dd}/ca.pem\nolcTLSCertificateFile: {dd}/server.pem\n\
                 olcTLSCertificateKeyFile: {dd}/server.key\n\n\
                 dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
                 olcModulePath: /usr/lib/ldap\nolcModuleLoad: back_mdb\nolcModuleLoad: memberof\n\n\
                 dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n\
                 include: file:///etc/ldap/schema/core.ldif\n\n\
                 include: file:///etc/ldap/schema/cosine.ldif\n\n\
                 include: file:///etc/ldap/schema/inetorgperson.ldif\n\n\
                 dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n\
                 olcDatabase: {{1}}mdb\nolcSuffix: dc=corp,dc=example\nolcRootDN: {ROOT_DN}\nolcRootPW: {ROOT_PW}\n\
                 olcDbDirectory: {dd}/db\n\
                 olcAccess: {{0}}to attrs=userPassword by self read by anonymous auth by * none\n\
                 olcAccess: {{1}}to * by users read by * none\n\n\
                 dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config\nobjectClass: olcOverlayConfig\n\
                 objectClass: olcMemberOf\nolcOverlay: {{0}}memberof\n"
            ),
        )
        .unwrap();
        let out = Command::new("slapadd")
            .args(["-n0", "-F"])
            .arg(d.join("conf"))
            .arg("-l")
            .arg(d.join("config.ldif"))
            .output()
            .unwrap();
        assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));
        let mut slapd = Self { child: None, dir, ldap: free_port(), ldaps: free_port() };
        slapd.run();
        slapd.add(&people());
        slapd
    }

    /// Starts (or restarts) slapd on its ports and waits until it answers.
    fn run(&mut self) {
        let urls = format!("ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/", self.ldap, self.ldaps);
        let child = Command::new("/usr/sbin/slapd")
            .arg("-F")
            .arg(self.dir.path().join("conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.ldap)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn add(&self, ldif: &str) {
        let path = self.dir.path().join("add.ldif");
        std::fs::write(&path, ldif).unwrap();
        // slapd accepts connections a moment before it serves them: retry, bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ldapadd")
                .args(["-x", "-D", ROOT_DN, "-w", ROOT_PW, "-H", &format!("ldap://127.0.0.1:{}", self.ldap), "-f"])
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                return;
            }
            assert!(stderr.contains("Can't contact LDAP server") && Instant::now() < deadline, "ldapadd: {stderr}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn people() -> String {
    let entry = |dn: &str, lines: &str| format!("dn: {dn}\n{lines}\n");
    [
        entry("dc=corp,dc=example", "objectClass: dcObject\nobjectClass: organization\ndc: corp\no: Corp"),
        entry("ou=people,dc=corp,dc=example", "objectClass: organizationalUnit\nou: people"),
        entry("ou=groups,dc=corp,dc=example", "objectClass: organizationalUnit\nou: groups"),
        entry("ou=services,dc=corp,dc=example", "objectClass: organizationalUnit\nou: services"),
        entry(SERVICE_DN, &format!("objectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: ferrygate\nuserPassword: {SERVICE_PW}")),
        entry(
            "uid=alice,ou=people,dc=corp,dc=example",
            &format!("objectClass: inetOrgPerson\nuid: alice\ncn: Alice\nsn: Jansen\nmail: alice@corp.example\nuserPassword: {ALICE_PW}"),
        ),
        entry(
            "uid=bob,ou=people,dc=corp,dc=example",
            "objectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: Vries\nmail: bob@corp.example\nuserPassword: bob-secret-pw",
        ),
        entry(
            "uid=carol,ou=people,dc=corp,dc=example",
            "objectClass: inetOrgPerson\nuid: carol\ncn: Carol\nsn: Smit\nuserPassword: carol-secret-pw",
        ),
        entry("uid=twin1,ou=people,dc=corp,dc=example", "objectClass: inetOrgPerson\nuid: twin1\ncn: T\nsn: One\nmail: twins@corp.example\nuserPassword: twin-pw"),
        entry("uid=twin2,ou=people,dc=corp,dc=example", "objectClass: inetOrgPerson\nuid: twin2\ncn: T\nsn: Two\nmail: twins@corp.example\nuserPassword: twin-pw"),
        entry("cn=admins,ou=groups,dc=corp,dc=example", "objectClass: groupOfNames\ncn: admins\ndescription: Administrators\nmember: uid=alice,ou=people,dc=corp,dc=example"),
        entry(
            "cn=staff,ou=groups,dc=corp,dc=example",
            "objectClass: groupOfNames\ncn: staff\ndescription: Staff\nmember: uid=alice,ou=people,dc=corp,dc=example\nmember: uid=bob,ou=people,dc=corp,dc=example",
        ),
    ]
    .join("\n")
}

/// A gateway with one ldap site; `provider` is the provider table's body.
async fn gateway_for(provider: &str, ca: Option<&Path>) -> (Gateway, tempfile::TempDir) {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca.map(|p| format!("[upstream_tls]\nca_file = \"{}\"\n", p.display())).unwrap_or_default();
    let table = format!(
        "kind = \"ldap\"\nbind_dn = \"{SERVICE_DN}\"\nbind_password = \"{SERVICE_PW}\"\n\
         base_dn = \"ou=people,dc=corp,dc=example\"\n\
         user_filter = \"(&(objectClass=inetOrgPerson)(|(mail={{username}})(uid={{username}})))\"\n\
         timeout = \"2s\"\n{provider}"
    );
    let config = staff_config(&ca, "", &table, upstream);
    (gateway_in(&config, dir.path()).await, dir)
}

fn plain(slapd: &Slapd) -> String {
    format!(
        "url = \"ldap://127.0.0.1:{}\"\nallow_insecure = true\ngroups_base_dn = \"ou=groups,dc=corp,dc=example\"\ngroup_filter = \"(&(objectClass=groupOfNames)(member={{dn}}))\"",
        slapd.ldap
    )
}

async fn login(gw: &Gateway, user: &str, password: &str) -> Answer {
    post_json(&gw.url("/login"), serde_json::json!({"email": user, "password": password})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sign_in_by_email_or_uid_with_identity_and_groups() {
    let slapd = Slapd::start();
    for groups in [
        plain(&slapd),
        format!("url = \"ldap://127.0.0.1:{}\"\nallow_insecure = true\ngroups_attribute = \"memberOf\"", slapd.ldap),
    ] {
        let (gw, _dir) = gateway_for(&groups, None).await;
        for typed in ["alice@corp.example", "alice", "ALICE@corp.example"] {
            let res = login(&gw, typed, ALICE_PW).await;
            assert_eq!(res.status, StatusCode::OK, "{typed}: {}", res.text());
            assert_eq!(res.json()["redirect"], "/app");
        }
        let res = login(&gw, "alice", ALICE_PW).await;
        let cookie = cookie_pair(&res);
        let echo = get_with_cookie(&gw.url("/app"), &cookie).await.json();
        assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["alice@corp.example"]);
        assert_eq!(echoed(&echo, "x-ferrygate-user-id"), vec!["alice"]);
        let mut groups: Vec<String> = echoed(&echo, "x-ferrygate-groups")[0].split(',').map(str::to_owned).collect();
        groups.sort();
        assert_eq!(groups, vec!["admins", "staff"]);
        assert_eq!(get_with_cookie(&gw.url("/admin"), &cookie).await.status, StatusCode::OK);
        // Bob is staff only: the admin rule shuts him out.
        let bob = cookie_pair(&login(&gw, "bob", "bob-secret-pw").await);
        assert_eq!(get_with_cookie(&gw.url("/admin"), &bob).await.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_and_group_names_come_from_the_configured_attributes() {
    let slapd = Slapd::start();
    let attributes = "\nemail_attribute = \"cn\"\nid_attribute = \"sn\"\ngroup_name_attribute = \"description\"";
    let (gw, _dir) = gateway_for(&format!("{}{attributes}", plain(&slapd)), None).await;
    let res = login(&gw, "alice@corp.example", ALICE_PW).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let cookie = cookie_pair(&res);
    let echo = get_with_cookie(&gw.url("/app"), &cookie).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["Alice"]);
    assert_eq!(echoed(&echo, "x-ferrygate-user-id"), vec!["Jansen"]);
    let mut groups: Vec<String> = echoed(&echo, "x-ferrygate-groups")[0].split(',').map(str::to_owned).collect();
    groups.sort();
    assert_eq!(groups, vec!["Administrators", "Staff"]);
    // The rule names `admins`: a group's name is what the attribute says, nothing else.
    assert_eq!(get_with_cookie(&gw.url("/admin"), &cookie).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_the_email_attribute_is_named_as_typed() {
    let slapd = Slapd::start();
    let (gw, _dir) = gateway_for(&plain(&slapd), None).await;
    let res = login(&gw, "carol", "carol-secret-pw").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let echo = get_with_cookie(&gw.url("/app"), &cookie_pair(&res)).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["carol"]);
    assert_eq!(echoed(&echo, "x-ferrygate-user-id"), vec!["carol"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_wrong_passwords_and_injections_look_the_same() {
    let slapd = Slapd::start();
    let (gw, _dir) = gateway_for(&plain(&slapd), None).await;
    let wrong = login(&gw, "alice", "not-her-password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["error"], "invalid_credentials");
    // A form post goes back to the form with where the user was going.
    let res =
        post_form(&gw.url("/login"), &[("email", "alice"), ("password", "nope"), ("destination", "/admin")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(param(&res.location(), "error").as_deref(), Some("invalid_credentials"));
    assert_eq!(param(&res.location(), "destination").as_deref(), Some("/admin"));
    for typed in
        ["nobody@corp.example", "twins@corp.example", "*", "*)(uid=*", "alice)(|(uid=*", "al*", "\\2a", "alice\\29"]
    {
        let res = login(&gw, typed, ALICE_PW).await;
        assert_eq!((res.status, res.body.clone()), (wrong.status, wrong.body.clone()), "{typed:?}");
    }
    // Similar time: medians of the two kinds of refusal.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..15 {
        let t = Instant::now();
        login(&gw, "alice", &format!("wrong-{i}")).await;
        known.push(t.elapsed());
        let t = Instant::now();
        login(&gw, &format!("ghost{i}@corp.example"), "wrong").await;
        unknown.push(t.elapsed());
    }
    known.sort();
    unknown.sort();
    let ratio = unknown[7].as_secs_f64() / known[7].as_secs_f64();
    assert!((0.5..2.0).contains(&ratio), "median unknown/known = {ratio:.2} ({:?} vs {:?})", unknown[7], known[7]);
    // An empty password never reaches a bind.
    let empty = login(&gw, "alice", "").await;
    assert_eq!(empty.json()["error"], "missing_credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_and_start_tls_verify_the_server_certificate() {
    let slapd = Slapd::start();
    let groups = "groups_attribute = \"memberOf\"";
    let ldaps = format!("url = \"ldaps://localhost:{}\"\n{groups}", slapd.ldaps);
    let (gw, _dir) = gateway_for(&ldaps, Some(&slapd.ca())).await;
    assert_eq!(login(&gw, "alice", ALICE_PW).await.status, StatusCode::OK);
    let starttls = format!("url = \"ldap://localhost:{}\"\nstart_tls = true\n{groups}", slapd.ldap);
    let (gw, _dir) = gateway_for(&starttls, Some(&slapd.ca())).await;
    assert_eq!(login(&gw, "alice", ALICE_PW).await.status, StatusCode::OK);
    // Another CA: the server is not trusted, nothing is sent.
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = other.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap().cert.pem())
        .unwrap();
    // With either kind of TLS: StartTLS verifies the certificate too (slapd
    // would take a plain bind, so only a TLS refusal makes this a 502).
    for url in [&ldaps, &starttls] {
        let (gw, _dir) = gateway_for(url, Some(&wrong_ca)).await;
        let res = login(&gw, "alice", ALICE_PW).await;
        assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{url}");
        assert_eq!(res.json()["error"], "provider_unavailable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_502_and_is_used_again_when_back() {
    let mut slapd = Slapd::start();
    let (gw, _dir) = gateway_for(&plain(&slapd), None).await;
    assert_eq!(login(&gw, "alice", ALICE_PW).await.status, StatusCode::OK);
    slapd.stop();
    let t = Instant::now();
    let res = login(&gw, "alice", ALICE_PW).await;
    // A stopped server refuses the connection: unavailable, at once (a timeout would hide a hang).
    assert_eq!((res.status, res.json()["error"].as_str()), (StatusCode::BAD_GATEWAY, Some("provider_unavailable")));
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
    slapd.run();
    let res = login(&gw, "alice", ALICE_PW).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[test]
fn check_refuses_a_password_over_plain_ldap() {
    let config = format!(
        "[sessions]\nsecret = \"{SECRET}\"\n[providers.corp]\nkind = \"ldap\"\nurl = \"ldap://ldap.corp.example\"\n\
         base_dn = \"dc=corp\"\nbind_dn = \"cn=x\"\nbind_password = \"s3rvice-pw\"\n\
         [[sites]]\nname = \"s\"\nupstream = \"http://127.0.0.1:9\"\nprovider = \"corp\"\n[sites.login]\npath = \"/login\"\n"
    );
    let err = ferrygate::from_toml(&config, ".".as_ref()).unwrap_err().to_string();
    assert!(err.contains("providers.corp.allow_insecure"), "{err}");
    assert!(!err.contains("s3rvice-pw"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_reaches_the_log_at_trace() {
    let mut slapd = Slapd::start();
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrygate.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
listen = ["127.0.0.1:0"]
[sessions]
secret = "{SECRET}"
cookie_secure = false
[providers.corp]
kind = "ldap"
bind_dn = "{SERVICE_DN}"
bind_password = "{SERVICE_PW}"
base_dn = "ou=people,dc=corp,dc=example"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
timeout = "2s"
{plain}
[[sites]]
name = "corp"
upstream = "http://{upstream}"
provider = "corp"
[sites.login]
path = "/login"
[sites.portal]
default_destination = "/app"
allowed_destinations = ["/app"]
"#,
            plain = plain(&slapd)
        ),
    )
    .unwrap();
    let mut bin = start_logged(&["serve", "--log-format", "json", "--config"], &path, "trace");
    let url = |p: &str| format!("http://{}{p}", bin.addr);
    let form = |user: &str, pw: &str| [("email", user.to_owned()), ("password", pw.to_owned())];
    for (user, pw) in [("alice", ALICE_PW), ("alice", "wrong-Pw-123"), ("ghost", ALICE_PW)] {
        let f = form(user, pw);
        post_form(&url("/login"), &[(f[0].0, f[0].1.as_str()), (f[1].0, f[1].1.as_str())]).await;
    }
    slapd.stop();
    post_form(&url("/login"), &[("email", "alice"), ("password", ALICE_PW)]).await;
    // Read the log up to the outage's line (bounded): everything before it is in.
    let mut log = bin.early.join("\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.contains("ldap server unavailable") {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = bin.lines.recv_timeout(left).unwrap_or_else(|_| panic!("the outage was not logged:\n{log}"));
        log.push('\n');
        log.push_str(&line);
    }
    let _ = bin.child.kill();
    let _ = bin.child.wait();
    for secret in [ALICE_PW, "wrong-Pw-123", SERVICE_PW, SECRET] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
}

/// A directory that accepts the connection and never answers: 504
/// `provider_timeout` after `timeout`, not a hung login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_504_after_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().unwrap().push(socket); // read nothing, answer nothing
        }
    });
    let provider = format!("url = \"ldap://127.0.0.1:{port}\"\nallow_insecure = true");
    let (gw, _dir) = gateway_for(&provider, None).await;
    let t = Instant::now();
    let res = login(&gw, "alice", ALICE_PW).await;
    let took = t.elapsed();
    assert_eq!((res.status, res.json()["error"].as_str()), (StatusCode::GATEWAY_TIMEOUT, Some("provider_timeout")));
    // `timeout = "2s"` in the table: answered after it, and well before the client gives up.
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(5), "took {took:?}");
    assert!(!held.lock().unwrap().is_empty(), "the login reached the silent server");
}

/// The session lasts `session_ttl`: a remembered login's cookie says so
/// (Max-Age), a plain one ends with the browser session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_lasts_session_ttl() {
    let slapd = Slapd::start();
    let (gw, _dir) = gateway_for(&format!("{}\nsession_ttl = \"2h\"", plain(&slapd)), None).await;
    let remembered =
        post_form(&gw.url("/login"), &[("email", "alice"), ("password", ALICE_PW), ("remember", "on")]).await;
    assert_eq!(remembered.status, StatusCode::SEE_OTHER);
    let max_age = remembered.max_age();
    assert!((7190..=7200).contains(&max_age), "{max_age}");
    let plain_login = post_form(&gw.url("/login"), &[("email", "alice"), ("password", ALICE_PW)]).await;
    assert!(!plain_login.header("set-cookie").contains("Max-Age"), "{}", plain_login.header("set-cookie"));
}

/// A service account whose bind is refused (a rotated `bind_password`) is the
/// operator's problem: 502 `provider_unavailable` for everyone, never every
/// user's "wrong password" (which would also count against their limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_service_bind_is_502_not_a_wrong_password() {
    let slapd = Slapd::start();
    let table = format!(
        "kind = \"ldap\"\nbind_dn = \"{SERVICE_DN}\"\nbind_password = \"not-the-service-pw\"\n\
         base_dn = \"ou=people,dc=corp,dc=example\"\ntimeout = \"2s\"\n{}",
        plain(&slapd)
    );
    let gw = gateway(&staff_config("", "", &table, echo_upstream().await)).await;
    let res = login(&gw, "alice", ALICE_PW).await;
    assert_eq!((res.status, res.json()["error"].as_str()), (StatusCode::BAD_GATEWAY, Some("provider_unavailable")));
}
