//! `ferrygate check` (and `serve`) on good and bad configurations: every
//! refusal of spec section 6 names its key and exits 1.
//!
//! Longer than 400 lines on purpose: one case per configuration refusal of
//! spec section 6, each naming its key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ferrygate");
const SECRET: &str = "0123456789abcdef0123456789abcdef-long-enough";

/// The spec's full example, with its placeholder files made real in `dir`.
fn spec_example(dir: &Path) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("users.csv"), "email,user_id,external_id,org_id\nalice@corp.example,1,ext-1,7\n").unwrap();
    let d = dir.display();
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
trusted_proxies = ["127.0.0.1/32"]
require_https = false
shutdown_grace = "30s"

[server.tls]
listen = ["127.0.0.1:0"]
cert = "{d}/tls.crt"
key = "tls.key"

[admin]
listen = "127.0.0.1:9090"

[upstream_tls]
ca_file = "{d}/ca.pem"

[sessions]
store = "memory"
redis_url = "redis://127.0.0.1:6379/0"
secret = "${{FERRYGATE_SESSION_SECRET}}"
cookie_name = "ferrygate_session"
cookie_secure = true
max_entries = 1000000
max_ttl = "12h"

[limits]
login_body_bytes = 16384
login_per_ip = "20/min"
login_per_account = "5/min"

[providers.acme-qwyk]
kind = "qwyk"
server = "https://api.qwyk.example"
organization_id = 12
site_id = 34
timeout = "5s"

[providers.news-payway]
kind = "payway"
server = "https://payway.example"
token_url = "https://payway.example/oauth2/token"
token_scope = "/oauth2/login/x"
client_id = "6a98217e95ddeee048023001"
client_secret = "${{PAYWAY_CLIENT_SECRET}}"
oid = "adeprimo"
redirect_uri = "https://www.news.example/landing"
scope = ""
timeout = "5s"

[providers.corp-rest]
kind = "rest"
url = "https://auth.corp.example/check?user={{{{USEREMAIL}}}}"
method = "POST"
body_format = "json"
xml_root = "login"
body = {{ login = "{{{{USEREMAIL}}}}", password = "{{{{USERPASSWORD}}}}", org = "{{{{ORGID}}}}" }}
headers = {{ "X-Device" = "{{{{DEVICENAME}}}}" }}
auth = "none"
users = "users.csv"
forgot_password_url = "https://auth.corp.example/forgot?email={{{{USEREMAIL}}}}"
session_ttl = "8h"
timeout = "5s"

[providers.corp-okta]
kind = "oidc"
issuer = "https://corp.okta.com/oauth2/default"   # discovery: {{issuer}}/.well-known/openid-configuration
client_id = "0oa1b2c3d4"
client_secret = "${{OIDC_CLIENT_SECRET}}"
client_auth = "client_secret_basic"     # client_secret_basic | client_secret_post
scope = "openid email profile groups"
token_endpoint = ""                     # optional overrides of the discovered endpoints
userinfo_endpoint = ""
id_token = "required"                   # required | optional (then userinfo)
username_claim = "email"
groups_claim = "groups"
refresh = false
pass_access_token = false
session_ttl = "8h"                      # with refresh = true
timeout = "5s"

[providers.corp-ldap]
kind = "ldap"
url = "ldaps://ldap.corp.example:636"   # ldap:// or ldaps://
start_tls = false
allow_insecure = false                  # permit a password over plain ldap:// (tests only)
bind_dn = "cn=ferrygate,ou=services,dc=corp,dc=example"
bind_password = "${{LDAP_BIND_PASSWORD}}"
base_dn = "ou=people,dc=corp,dc=example"
user_filter = "(&(objectClass=inetOrgPerson)(|(mail={{username}})(uid={{username}})))"
email_attribute = "mail"
id_attribute = "uid"
groups_base_dn = "ou=groups,dc=corp,dc=example"
group_filter = "(&(objectClass=groupOfNames)(member={{dn}}))"
group_name_attribute = "cn"
groups_attribute = ""                   # "memberOf" reads groups from the user entry instead
session_ttl = "8h"
timeout = "5s"

[[sites]]
name = "acme"
hosts = ["www.acme.example"]
upstream = "http://127.0.0.1:3000"
provider = "acme-qwyk"
allowed_origins = []
protected_paths = []

[sites.login]
path = "/login"
username_field = "email"
password_field = "password"
remember_field = "remember"
destination_field = "destination"
failure_redirect = "/login"

[sites.portal]
url = "https://portal.acme.example/auth/external"
default_destination = "/my-portal"
allowed_destinations = ["/my-portal"]

[sites.home]
paths = ["/portal-home"]
redirect = "https://www.acme.example/"

[sites.logout]
paths = ["/portal-logout"]
redirect = "https://www.acme.example/goodbye"

[sites.wizard]
path = "/book"
destination = "/my-portal/quotations/new"
params = ["origin", "destination_port", "cargo_type", "product"]

[sites.forgot_password]
path = "/forgot-password"
redirect = "/forgot-password?sent=1"

[sites.callback]
path = "/landing"

[[sites.rewrite_location]]
from = "https://portal-internal.acme.example/login"
to = "/login"
"#
    )
}

fn run(args: &[&str], dir: &Path, config: &str) -> Output {
    let path = dir.join("ferrygate.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--config").arg(&path);
    cmd.env("FERRYGATE_SESSION_SECRET", SECRET)
        .env("PAYWAY_CLIENT_SECRET", "payway-secret")
        .env("OIDC_CLIENT_SECRET", "oidc-secret")
        .env("LDAP_BIND_PASSWORD", "ldap-secret")
        .env_remove("FERRYGATE_CONFIG");
    cmd.output().unwrap()
}

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["check"], dir.path(), config);
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs `check` on the spec example after `edit`, expecting exit 1 and `key` named.
fn refused(edit: impl Fn(String) -> String, key: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = edit(spec_example(dir.path()));
    let out = run(&["check"], dir.path(), &config);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected a refusal naming {key}; stderr: {stderr}");
    assert!(stderr.contains(&format!("error: {key}:")), "expected {key} to be named; stderr: {stderr}");
    stderr
}

#[test]
fn the_spec_example_passes_with_warnings_for_sections_that_do_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["check"], dir.path(), &spec_example(dir.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: sites[0] (acme).forgot_password: applies to rest providers only"), "{stderr}");
    assert!(stderr.contains("warning: sites[0] (acme).callback: applies to payway providers only"), "{stderr}");
    assert!(!stderr.contains("warning: sites[0] (acme).wizard"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 site(s), 5 provider(s), 2 warning(s))"));
}

#[test]
fn unknown_keys_are_named() {
    refused(|c| c.replace("require_https = false", "require_https = false\ncolour = \"blue\""), "server.colour");
    refused(|c| c.replace("site_id = 34", "site_id = 34\nsiteid = 35"), "providers.acme-qwyk.siteid");
    refused(
        |c| c.replace("path = \"/login\"", "path = \"/login\"\npassword = \"x\""),
        "sites[0] (acme).login.password",
    );
    refused(|c| format!("nonsense = 1\n{c}"), "nonsense");
}

#[test]
fn a_site_naming_a_missing_provider_is_refused() {
    refused(|c| c.replace("provider = \"acme-qwyk\"", "provider = \"acme-qwyk2\""), "sites[0] (acme).provider");
}

#[test]
fn two_sites_with_the_same_host_are_refused() {
    let stderr = refused(
        |c| {
            let site = c.split("[[sites]]").nth(1).unwrap().to_owned();
            let second = site
                .replace("name = \"acme\"", "name = \"acme2\"")
                .replace("www.acme.example\"]", "WWW.ACME.example\"]");
            format!("{c}\n[[sites]]{second}")
        },
        "sites[1] (acme2).hosts[0]",
    );
    assert!(stderr.contains("already used by site \"acme\""), "{stderr}");
}

#[test]
fn a_short_secret_is_refused() {
    let stderr = refused(|c| c.replace("${FERRYGATE_SESSION_SECRET}", "too-short"), "sessions.secret");
    assert!(stderr.contains("9 bytes"), "{stderr}");
    assert!(!stderr.contains("too-short"), "the secret itself must not be printed: {stderr}");
    refused(|c| c.replace("secret = \"${FERRYGATE_SESSION_SECRET}\"", ""), "sessions.secret");
}

#[test]
fn a_default_destination_outside_the_allowed_prefixes_is_refused() {
    refused(
        |c| c.replace("default_destination = \"/my-portal\"", "default_destination = \"/admin\""),
        "sites[0] (acme).portal.default_destination",
    );
    refused(
        |c| c.replace("default_destination = \"/my-portal\"", "default_destination = \"/my-portalx\""),
        "sites[0] (acme).portal.default_destination",
    );
    refused(
        |c| c.replace("destination = \"/my-portal/quotations/new\"", "destination = \"https://evil.example/\""),
        "sites[0] (acme).wizard.destination",
    );
}

#[test]
fn a_template_with_an_unknown_placeholder_is_refused() {
    let stderr = refused(|c| c.replace("org = \"{{ORGID}}\"", "org = \"{{ORG}}\""), "providers.corp-rest.body.org");
    assert!(stderr.contains("unknown placeholder {{ORG}}"), "{stderr}");
    refused(|c| c.replace("check?user={{USEREMAIL}}", "check?user={{EMAIL}}"), "providers.corp-rest.url");
    refused(
        |c| c.replace("\"X-Device\" = \"{{DEVICENAME}}\"", "\"X-Device\" = \"{{DEVICE}}\""),
        "providers.corp-rest.headers.X-Device",
    );
}

#[test]
fn tls_files_that_do_not_load_are_refused() {
    refused(|c| c.replace("/tls.crt\"", "/missing.crt\""), "server.tls.cert");
    refused(|c| c.replace("key = \"tls.key\"", "key = \"ca.pem\""), "server.tls.key");
    // A key that does not belong to the certificate.
    let stderr = refused(
        |c| {
            let other = rcgen::generate_simple_self_signed(vec!["other".to_owned()]).unwrap();
            let dir = c.split("cert = \"").nth(1).unwrap().split("/tls.crt").next().unwrap().to_owned();
            std::fs::write(PathBuf::from(dir).join("other.key"), other.signing_key.serialize_pem()).unwrap();
            c.replace("key = \"tls.key\"", "key = \"other.key\"")
        },
        "server.tls.key",
    );
    assert!(stderr.contains("does not fit"), "{stderr}");
    refused(|c| c.replace("/ca.pem\"", "/users.csv\""), "upstream_tls.ca_file");
}

#[test]
fn values_are_checked_and_named() {
    refused(|c| c.replace("shutdown_grace = \"30s\"", "shutdown_grace = \"soon\""), "server.shutdown_grace");
    refused(|c| c.replace("login_per_ip = \"20/min\"", "login_per_ip = \"20/fortnight\""), "limits.login_per_ip");
    refused(
        |c| c.replace("trusted_proxies = [\"127.0.0.1/32\"]", "trusted_proxies = [\"10.0.0.0/33\"]"),
        "server.trusted_proxies[0]",
    );
    refused(|c| c.replace("organization_id = 12", "organization_id = \"12\""), "providers.acme-qwyk.organization_id");
    refused(|c| c.replace("${PAYWAY_CLIENT_SECRET}", "${NOT_SET_ANYWHERE_XYZ}"), "providers.news-payway.client_secret");
    refused(|c| c.replace("[\"/portal-logout\"]", "[\"/login\"]"), "sites[0] (acme).logout.paths");
    refused(
        |c| c.replace("upstream = \"http://127.0.0.1:3000\"", "upstream = \"ftp://x\""),
        "sites[0] (acme).upstream",
    );
    refused(|c| c.replace("users = \"users.csv\"", "users = \"nobody.csv\""), "providers.corp-rest.users");
    let (code, stderr) = check("[server\nlisten = 1");
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid TOML") && stderr.contains("line 1"), "{stderr}");
    // A malformed line holding a secret: the error says where, never what.
    let (code, stderr) = check("[sessions]\nsecret = \"s3cret-value\\q-not-an-escape\"\n");
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid TOML") && stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains("s3cret-value"), "{stderr}");
}

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
    let config =
        spec_example(dir.path()).replace("secret = \"${FERRYGATE_SESSION_SECRET}\"", "secret_file = \"secret\"");
    let out = run(&["check"], dir.path(), &config);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let both = config.replace("secret_file = \"secret\"", "secret_file = \"secret\"\nsecret = \"x\"");
    let out = run(&["check"], dir.path(), &both);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["check"], dir.path(), &config.replace("secret_file = \"secret\"", "secret_file = \"nope\""));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: sessions.secret_file:"));
}

#[test]
fn serve_refuses_an_invalid_config_with_the_same_messages() {
    let dir = tempfile::tempdir().unwrap();
    let config = spec_example(dir.path()).replace("provider = \"acme-qwyk\"", "provider = \"missing\"");
    let checked = run(&["check"], dir.path(), &config);
    let served = run(&["serve"], dir.path(), &config);
    assert_eq!(served.status.code(), Some(1));
    assert_eq!(served.stderr, checked.stderr);
    assert!(String::from_utf8_lossy(&served.stderr).contains("error: sites[0] (acme).provider:"));
}

#[test]
fn the_config_path_defaults_to_the_environment_then_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = spec_example(dir.path());
    std::fs::write(dir.path().join("ferrygate.toml"), &config).unwrap();
    let envs = [
        ("FERRYGATE_SESSION_SECRET", SECRET),
        ("PAYWAY_CLIENT_SECRET", "x"),
        ("OIDC_CLIENT_SECRET", "x"),
        ("LDAP_BIND_PASSWORD", "x"),
    ];
    let out = Command::new(BIN)
        .arg("check")
        .current_dir(dir.path())
        .envs(envs)
        .env_remove("FERRYGATE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN)
        .arg("check")
        .current_dir(dir.path())
        .envs(envs)
        .env("FERRYGATE_CONFIG", dir.path().join("absent.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.toml"));
}

#[test]
fn version_and_log_format_are_accepted_anywhere() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let dir = tempfile::tempdir().unwrap();
    let config = spec_example(dir.path());
    for args in [&["--log-format", "json", "check"][..], &["check", "--log-format", "pretty"][..]] {
        let out = run(args, dir.path(), &config);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = run(&["check", "--log-format", "xml"], dir.path(), &config);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_payway_landing_page_must_be_https() {
    // SPEC 1.2: the landing page (which receives the authorization code) is HTTPS-only.
    refused(
        |c| c.replace("https://www.news.example/landing", "http://www.news.example/landing"),
        "providers.news-payway.redirect_uri",
    );
    // Plain HTTP to a loopback host (tests, the demo) stays allowed.
    let dir = tempfile::tempdir().unwrap();
    let config = spec_example(dir.path()).replace("https://www.news.example/landing", "http://localhost:8080/landing");
    assert_eq!(run(&["check"], dir.path(), &config).status.code(), Some(0));
}

#[test]
fn every_deploy_example_passes_check() {
    let mut checked = 0;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let files = std::fs::read_dir(&examples).unwrap().chain(std::fs::read_dir(examples.join("forward-auth")).unwrap());
    for entry in files {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(BIN)
                .arg("check")
                .arg("--config")
                .arg(&path)
                .env("FERRYGATE_SESSION_SECRET", SECRET)
                .env("PAYWAY_CLIENT_SECRET", "x")
                .env("LDAP_BIND_PASSWORD", "x")
                .env("OIDC_CLIENT_SECRET", "x")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{}: {stderr}", path.display());
            assert!(!stderr.contains("warning"), "{}: {stderr}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 7, "examples missing: {checked} checked");
}

#[test]
fn no_refusal_quotes_a_secret_value_or_a_files_content() {
    // A secret typed as a number: serde's type error would quote it.
    let stderr = refused(
        |c| c.replace("client_secret = \"${PAYWAY_CLIENT_SECRET}\"", "client_secret = 123456789"),
        "providers.news-payway.client_secret",
    );
    assert!(!stderr.contains("123456789"), "the value was quoted: {stderr}");
    // A URL that is no http(s) URL, or no URL at all, may still hold a password or key.
    for bad in ["ftp://reader:Url-Secret-98@payway.example/token", "https://reader:Url-Secret-98@[bad/token"] {
        let stderr = refused(
            |c| c.replace("token_url = \"https://payway.example/oauth2/token\"", &format!("token_url = \"{bad}\"")),
            "providers.news-payway.token_url",
        );
        assert!(!stderr.contains("Url-Secret-98"), "the URL was quoted: {stderr}");
    }
    assert!(stderr.contains("invalid type: integer, expected"), "{stderr}");
    // `users` naming a secret file by mistake: its first line is never printed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "hunter2-very-secret\n").unwrap();
    let config = spec_example(dir.path()).replace("users = \"users.csv\"", "users = \"secret.txt\"");
    let out = run(&["check"], dir.path(), &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: providers.corp-rest.users:"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the file's content was printed: {stderr}");
}

#[test]
fn a_host_with_a_port_or_a_bad_character_is_refused() {
    refused(
        |c| c.replace("hosts = [\"www.acme.example\"]", "hosts = [\"www.acme.example:8080\"]"),
        "sites[0] (acme).hosts[0]",
    );
    refused(
        |c| c.replace("hosts = [\"www.acme.example\"]", "hosts = [\"www..acme.example\"]"),
        "sites[0] (acme).hosts[0]",
    );
}

#[test]
fn authorization_rules_are_checked() {
    fn rule(paths: &'static str, groups: &'static str) -> impl Fn(String) -> String {
        move |c: String| format!("{c}\n[[sites.authorize]]\npaths = {paths}\ngroups = {groups}\n")
    }
    refused(rule("[]", "[\"admins\"]"), "sites[0] (acme).authorize[0].paths");
    refused(rule("[\"/admin\"]", "[]"), "sites[0] (acme).authorize[0].groups");
    refused(rule("[\"admin\"]", "[\"admins\"]"), "sites[0] (acme).authorize[0].paths[0]");
    // SPEC 2.2: methods are HTTP tokens, networks CIDR blocks, and a public rule names no groups.
    let with =
        |extra: &'static str| move |c: String| format!("{c}\n[[sites.authorize]]\npaths = [\"/admin\"]\n{extra}\n");
    refused(with("methods = [\"GET\", \"PO ST\"]"), "sites[0] (acme).authorize[0].methods[1]");
    refused(with("methods = [\"\"]"), "sites[0] (acme).authorize[0].methods[0]");
    refused(with("networks = [\"10.0.0.0/8\", \"10.0.0.0/33\"]"), "sites[0] (acme).authorize[0].networks[1]");
    refused(with("networks = [\"intranet\"]"), "sites[0] (acme).authorize[0].networks[0]");
    refused(with("public = true\ngroups = [\"admins\"]"), "sites[0] (acme).authorize[0].public");
    refused(with("public = true\nnetworks = [\"10.0.0.0/8\"]"), "sites[0] (acme).authorize[0].public");
    refused(with("public = \"yes\""), "sites[0] (acme).authorize[0].public");
}

/// SPEC 2.2: a lower-case method is warned about (methods compare
/// case-sensitively); rules on one path for different methods are not.
#[test]
fn rule_methods_are_warned_about_only_when_they_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[sites.authorize]]\npaths = [\"/admin\"]\nmethods = [\"POST\"]\ngroups = [\"admins\"]\n\
         [[sites.authorize]]\npaths = [\"/admin\"]\nmethods = [\"get\"]\n\
         [[sites.authorize]]\npaths = [\"/admin\"]\npublic = true\nmethods = [\"POST\", \"DELETE\"]\n\
         [[sites.authorize]]\npaths = [\"/docs\"]\nnetworks = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n\
         [[sites.authorize]]\npaths = [\"/reports\"]\nmethods = [\"GET\"]\n\
         [[sites.authorize]]\npaths = [\"/reports\"]\nmethods = [\"HEAD\"]\ngroups = [\"admins\"]\n\
         [[sites.authorize]]\npaths = [\"/ADMIN/\"]\nmethods = [\"DELETE\"]\n",
        spec_example(dir.path())
    );
    let out = run(&["check"], dir.path(), &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: sites[0] (acme).authorize[1].methods[0]: \"get\" is not upper-case"), "{stderr}");
    // Rule 2 names POST and DELETE: POST is rule 0's, DELETE is not: it still applies.
    assert!(!stderr.contains("warning: sites[0] (acme).authorize[2].paths[0]"), "{stderr}");
    assert!(!stderr.contains("warning: sites[0] (acme).authorize[1].paths[0]"), "{stderr}");
    // A rule an earlier one covers for all its methods never applies: warned, naming the earlier one.
    assert!(
        stderr.contains(
            "warning: sites[0] (acme).authorize[5].paths[0]: names the same path as sites[0].authorize[4].paths[0]"
        ),
        "HEAD after GET: {stderr}"
    );
    assert!(
        stderr.contains(
            "warning: sites[0] (acme).authorize[6].paths[0]: names the same path as sites[0].authorize[2].paths[0]"
        ),
        "DELETE after POST and DELETE: {stderr}"
    );
}

#[test]
fn sections_an_oidc_or_ldap_site_does_not_answer_are_warned_about() {
    for provider in ["corp-okta", "corp-ldap"] {
        let dir = tempfile::tempdir().unwrap();
        let config =
            spec_example(dir.path()).replace("provider = \"acme-qwyk\"", &format!("provider = \"{provider}\""));
        let out = run(&["check"], dir.path(), &config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{provider}: {stderr}");
        for section in ["wizard", "callback", "forgot_password"] {
            let warning = format!("warning: sites[0] (acme).{section}: applies to ");
            assert!(stderr.contains(&warning), "{provider}: no warning for {section}: {stderr}");
        }
    }
}

/// SPEC 6: two rules on one canonical path are a warning naming both (the
/// first applies, the second never would).
#[test]
fn two_rules_on_one_canonical_path_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[sites.authorize]]\npaths = [\"/admin\"]\ngroups = [\"admins\"]\n\
         [[sites.authorize]]\npaths = [\"/reports\", \"/ADMIN/\"]\ngroups = [\"staff\"]\n",
        spec_example(dir.path())
    );
    let out = run(&["check"], dir.path(), &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: sites[0] (acme).authorize[1].paths[1]: names the same path as sites[0].authorize[0].paths[0]"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("authorize[1].paths[0]"), "{stderr}");
}

/// The messages a newcomer meets first (issue: the first hour): a `$NAME`
/// without braces, a server without a scheme, a Redis URL of another
/// scheme, a site named by its name as well as its index.
#[test]
fn first_hour_mistakes_are_explained() {
    let stderr = refused(
        |c| c.replace("secret = \"${FERRYGATE_SESSION_SECRET}\"", "secret = \"$FERRYGATE_SESSION_SECRET\""),
        "sessions.secret",
    );
    assert!(
        stderr
            .contains("error: sessions.secret: looks like $NAME, which is taken as written: only ${NAME} is replaced"),
        "{stderr}"
    );
    assert!(!stderr.contains("$FERRYGATE_SESSION_SECRET\""), "the value is never quoted: {stderr}");
    let stderr = refused(
        |c| c.replace("server = \"https://api.qwyk.example\"", "server = \"api.qwyk.example\""),
        "providers.acme-qwyk.server",
    );
    assert!(stderr.contains("must be an http:// or https:// URL with a host"), "{stderr}");
    let stderr = refused(
        |c| {
            c.replace("store = \"memory\"", "store = \"redis\"")
                .replace("redis_url = \"redis://127.0.0.1:6379/0\"", "redis_url = \"http://user:pw@127.0.0.1:6379\"")
        },
        "sessions.redis_url",
    );
    assert!(stderr.contains("must be a redis://, rediss:// (TLS) or redis+unix:// (socket) URL"), "{stderr}");
    assert!(!stderr.contains("user:pw"), "{stderr}");
    refused(|c| c.replacen("upstream = ", "upsteam = ", 1), "sites[0] (acme).upsteam");
}

/// `error_stylesheet` is a path on the site or an https URL: a link another
/// host could serve over plain HTTP, a scheme-relative `//host` or a
/// `javascript:` URL is refused, naming the key.
#[test]
fn an_error_stylesheet_must_be_a_site_path_or_https() {
    let with = |value: &'static str| {
        move |c: String| c.replace("name = \"acme\"\n", &format!("name = \"acme\"\nerror_stylesheet = \"{value}\"\n"))
    };
    for bad in ["//evil.example/x.css", "http://cdn.example/x.css", "javascript:alert(1)", "css/site.css"] {
        refused(with(bad), "sites[0] (acme).error_stylesheet");
    }
    for good in ["/css/site.css", "https://cdn.example/site.css"] {
        let dir = tempfile::tempdir().unwrap();
        let out = run(&["check"], dir.path(), &with(good)(spec_example(dir.path())));
        assert_eq!(out.status.code(), Some(0), "{good}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
