//! Sessions on a highly available Redis, with real redis-server processes on
//! free loopback ports, stopped by PID: a three-primary Redis Cluster (keys
//! in different slots, MOVED followed), and a primary, a replica and a
//! Sentinel with a failover while Ferrygate serves. Needs redis-server and
//! redis-cli (`scripts/test` installs them).
//!
//! Longer than 400 lines on purpose: Sentinel and Cluster failovers with
//! real processes; the harness that starts them is most of it.

use ferrygate_testkit as common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

const TOKEN: &str = r#"{"access_token":"tok-ha","token_type":"bearer","expires_in":600}"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free port for a cluster node: at most 55535, with its cluster bus port
/// (10 000 higher) free too.
fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p <= 55535 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

/// redis-server processes; killed (SIGKILL, they have no children) when dropped.
struct Servers(Vec<(u16, Child)>);

impl Servers {
    fn spawn(&mut self, dir: &Path, port: u16, args: &[&str]) {
        assert!(
            Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success()),
            "redis-server is not installed: run scripts/test (it installs it)"
        );
        let child = Command::new("redis-server")
            .args(args)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.0.push((port, child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server on {port} did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self, port: u16) {
        if let Some(i) = self.0.iter().position(|(p, _)| *p == port) {
            let (_, mut child) = self.0.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Redis Cluster of `n` nodes (`replicas` per primary) in `dir`, up and
/// `cluster_state:ok`: its servers, ports, and `127.0.0.1:port` addresses.
fn cluster(dir: &Path, n: usize, replicas: u8, args: &[&str]) -> (Servers, Vec<u16>, Vec<String>) {
    let mut servers = Servers(Vec::new());
    let ports: Vec<u16> = (0..n).map(|_| cluster_port()).collect();
    for (i, port) in ports.iter().enumerate() {
        let node_dir = dir.join(format!("n{i}"));
        std::fs::create_dir(&node_dir).unwrap();
        servers.spawn(
            &node_dir,
            *port,
            &[&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"], args].concat(),
        );
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
    wait_until("the cluster did not become ok", 20, || {
        ports.iter().all(|p| cli(*p, &["cluster", "info"]).contains("cluster_state:ok"))
    });
    (servers, ports, nodes)
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, seconds: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bounded loop against both gateways until each honours Alice's session
/// again. Every answer is the page with her identity or a 503 (fail closed):
/// never a redirect to sign in, never the page without identity, never a
/// hang. Returns the time from `failed_over` to the last gateway's first 200.
async fn ride_out_failover(a: &Gateway, b: &Gateway, cookie: &str, failed_over: Instant, what: &str) -> Duration {
    let (mut ok, mut unavailable) = (0, 0);
    let mut recovered = [false, false];
    let mut window = Duration::ZERO;
    while !(recovered[0] && recovered[1]) {
        for (i, gw) in [a, b].into_iter().enumerate() {
            let asked = Instant::now();
            let res = get_with_cookie(&gw.url("/account"), cookie).await;
            assert!(asked.elapsed() < Duration::from_secs(5), "an answer took {:?}", asked.elapsed());
            match res.status {
                StatusCode::OK => {
                    assert_eq!(echoed(&res.json(), "x-ferrygate-user"), vec!["alice@example.com"]);
                    ok += 1;
                    if !recovered[i] {
                        recovered[i] = true;
                        window = window.max(failed_over.elapsed());
                    }
                }
                StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
                other => panic!("during the {what}: {other} {}", res.text()),
            }
        }
        assert!(failed_over.elapsed() < Duration::from_secs(30), "no recovery after the {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{what}: {unavailable} answers 503, then {ok} 200");
    window
}

/// A third gateway on the same store, serving only its admin listener:
/// returns the URL of its `/readyz`.
async fn readiness(cfg: &str) -> String {
    let toml = format!("[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n{cfg}");
    let config = ferrygate::from_toml(&toml, ".".as_ref()).unwrap_or_else(|e| panic!("{e}")).config;
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    let readyz = format!("http://{}/readyz", server.admin_addr().unwrap());
    tokio::spawn(server.run(std::future::pending()));
    readyz
}

fn config(provider: std::net::SocketAddr, upstream: std::net::SocketAddr, store: &str) -> String {
    qwyk_config(provider, upstream, "", "protected_paths = [\"/account\"]")
        .replace("cookie_secure = false\n", &format!("cookie_secure = false\nstore = \"redis\"\n{store}\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_sessions_on_a_redis_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, ports, nodes) = cluster(dir.path(), 3, 0, &[]);

    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let seeds: Vec<String> = nodes.iter().take(2).map(|n| format!("\"redis://{n}\"")).collect();
    let cfg = config(mock.addr, upstream, &format!("redis_cluster = [{}]", seeds.join(", ")));
    let (a, b) = (gateway(&cfg).await, gateway(&cfg).await);
    // Several sessions: their keys hash to different slots, on different primaries.
    let mut cookies = Vec::new();
    for i in 0..12 {
        let login =
            post_form(&a.url("/login"), &[("email", &format!("user{i}@example.com")), ("password", "pw")]).await;
        assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text());
        cookies.push(cookie_pair(&login));
    }
    let per_node: Vec<usize> = ports.iter().map(|p| cli(*p, &["dbsize"]).trim().parse().unwrap_or(0)).collect();
    assert!(per_node.iter().filter(|&&n| n > 0).count() >= 2, "keys on one node only: {per_node:?}");
    // Honoured by the other replica, logout there ends it on both.
    for (i, cookie) in cookies.iter().enumerate() {
        let echo = get_with_cookie(&b.url("/account"), cookie).await.json();
        // Each cookie its own user, wherever its key landed: never lost, never mixed up.
        assert_eq!(echoed(&echo, "x-ferrygate-user"), vec![format!("user{i}@example.com")]);
    }
    let out = get_with_cookie(&b.url("/portal-logout"), &cookies[0]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(get_with_cookie(&a.url("/account"), &cookies[0]).await.status, StatusCode::SEE_OTHER);
    // The brute-force limits are counted in the cluster too (one key per script call).
    let wrong = Mock::start(401, "{}", Duration::ZERO).await;
    let limited = cfg
        .replace("[sessions]", "[limits]\nlogin_per_account = \"2/min\"\n\n[sessions]")
        .replace(&mock.addr.to_string(), &wrong.addr.to_string());
    let (c2, d2) = (gateway(&limited).await, gateway(&limited).await);
    for gw in [&c2, &d2] {
        let res = post_json(&gw.url("/login"), serde_json::json!({"email": "eve@example.com", "password": "x"})).await;
        assert_eq!(res.json()["error"], "invalid_credentials");
    }
    let res = post_json(&c2.url("/login"), serde_json::json!({"email": "eve@example.com", "password": "x"})).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "the two replicas' failures were counted together");
    servers.kill(ports[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_sentinel_failover_with_a_short_503_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Servers(Vec::new());
    let (primary, replica) = (free_port(), free_port());
    let sentinels: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // The data nodes require a password (sessions.redis_password); Sentinel itself does not.
    let auth = ["--requirepass", "ha-node-pw", "--masterauth", "ha-node-pw", "--repl-diskless-sync-delay", "0"];
    servers.spawn(dir.path(), primary, &auth);
    let primary_arg = primary.to_string();
    servers.spawn(dir.path(), replica, &[&auth[..], &["--replicaof", "127.0.0.1", &primary_arg]].concat());
    // Three sentinels, a quorum of two.
    for (i, port) in sentinels.iter().enumerate() {
        let conf = dir.path().join(format!("sentinel-{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {primary} 2\n\
                 sentinel auth-pass mymaster ha-node-pw\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
            ),
        )
        .unwrap();
        let conf_arg = conf.display().to_string();
        servers.spawn(dir.path(), *port, &[&conf_arg, "--sentinel"]);
    }
    let node = |port: u16, args: &[&str]| cli(port, &[&["-a", "ha-node-pw", "--no-auth-warning"][..], args].concat());
    wait_until("the replica did not sync", 15, || {
        node(replica, &["info", "replication"]).contains("master_link_status:up")
    });
    wait_until("the sentinels did not find each other", 15, || {
        cli(sentinels[0], &["sentinel", "sentinels", "mymaster"]).matches("127.0.0.1").count() >= 2
    });

    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let nodes: Vec<String> = sentinels.iter().map(|p| format!("\"redis://127.0.0.1:{p}\"")).collect();
    let cfg = config(
        mock.addr,
        upstream,
        &format!(
            "redis_sentinel = {{ master = \"mymaster\", nodes = [{}] }}\nredis_password = \"ha-node-pw\"",
            nodes.join(", ")
        ),
    );
    // Two gateways share the store.
    let (a, b) = (gateway(&cfg).await, gateway(&cfg).await);
    let readyz = readiness(&cfg).await;
    assert_eq!(get(&readyz).await.status, StatusCode::OK);
    let login = post_form(&a.url("/login"), &[("email", "alice@example.com"), ("password", "pw")]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text());
    let cookie = cookie_pair(&login);
    assert_eq!(get_with_cookie(&b.url("/account"), &cookie).await.status, StatusCode::OK);
    // The session reached the replica before the primary goes away.
    wait_until("the session was not replicated", 10, || {
        node(replica, &["--scan", "--pattern", "ferrygate:session:*"]).lines().count() == 1
    });

    servers.kill(primary);
    let failed_over = Instant::now();
    // Sentinel waits a second (down-after-milliseconds) before it acts, so
    // readiness follows the store down first.
    assert_eq!(get(&readyz).await.status, StatusCode::SERVICE_UNAVAILABLE);
    let window = ride_out_failover(&a, &b, &cookie, failed_over, "failover").await;
    eprintln!("kill to the last gateway's first 200: {window:?}");
    // SPEC 4: a short 503 window (Sentinel itself waits 1 s before acting).
    assert!(window < Duration::from_secs(10), "a 503 window of {window:?}");
    assert!(
        cli(sentinels[0], &["sentinel", "get-master-addr-by-name", "mymaster"]).contains(&replica.to_string()),
        "the replica was not promoted"
    );

    // Readiness comes back without a restart.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&readyz).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "readiness did not recover after the failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // New logins work on the new primary.
    let login = post_form(&b.url("/login"), &[("email", "bob@example.com"), ("password", "pw")]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert!(login.header("location").starts_with("https://portal.acme.example/"), "{}", login.header("location"));
}

#[test]
fn check_names_the_key_of_every_ha_mistake() {
    let base = |store: &str| {
        format!(
            "[sessions]\nsecret = \"{SECRET}\"\nstore = \"redis\"\n{store}\n[providers.p]\nkind = \"qwyk\"\nserver = \"http://127.0.0.1:9\"\n\
             organization_id = 1\nsite_id = 2\n[[sites]]\nname = \"s\"\nupstream = \"http://127.0.0.1:9\"\nprovider = \"p\"\n\
             [sites.login]\npath = \"/login\"\n[sites.portal]\nurl = \"https://p.example/\"\n"
        )
    };
    for (store, key) in [
        ("redis_cluster = []", "sessions.redis_cluster"),
        ("redis_cluster = [\"http://x:1\"]", "sessions.redis_cluster[0]"),
        ("redis_url = \"redis://a\"\nredis_cluster = [\"redis://b:1\"]", "sessions.redis_cluster"),
        ("redis_sentinel = { master = \"\", nodes = [\"redis://s:26379\"] }", "sessions.redis_sentinel.master"),
        ("redis_sentinel = { master = \"m\", nodes = [] }", "sessions.redis_sentinel.nodes"),
        ("", "sessions.redis_url"),
    ] {
        let err = ferrygate::from_toml(&base(store), ".".as_ref()).unwrap_err().to_string();
        assert!(err.contains(&format!("error: {key}:")), "{store:?}: {err}");
    }
    // A URL with a password is never quoted.
    let err = ferrygate::from_toml(&base("redis_cluster = [\"redis://:s3cret-pw@host\", \"nope\"]"), ".".as_ref())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sessions.redis_cluster[1]") && !err.contains("s3cret-pw"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_verifies_the_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_test_pki(d);
    let tls_port = free_port();
    let mut servers = Servers(Vec::new());
    let (p, c, k, ca_file) = (
        tls_port.to_string(),
        d.join("server.pem").display().to_string(),
        d.join("server.key").display().to_string(),
        d.join("ca.pem").display().to_string(),
    );
    // Plain port 0 (off): TLS only.
    let plain = free_port();
    servers.spawn(
        d,
        plain,
        &[
            "--tls-port",
            &p,
            "--tls-cert-file",
            &c,
            "--tls-key-file",
            &k,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "no",
        ],
    );
    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let admin = free_port();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
        config(mock.addr, upstream, &format!("redis_url = \"rediss://localhost:{tls_port}\""))
    );
    let path = d.join("ferrygate.toml");
    std::fs::write(&path, toml).unwrap();
    let args = ["serve", "--log-format", "json", "--config"];
    // The server's CA trusted (rustls-native-certs reads SSL_CERT_FILE): sessions over TLS.
    let mut trusted = start_logged_env(&args, &path, "info", &[("SSL_CERT_FILE", &ca_file)]);
    let url = |addr: std::net::SocketAddr, p: &str| format!("http://{addr}{p}");
    let login = post_form(&url(trusted.addr, "/login"), &[("email", "alice@example.com"), ("password", "pw")]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert!(login.header("location").starts_with("https://portal.acme.example/"), "{}", login.header("location"));
    let cookie = cookie_pair(&login);
    assert_eq!(get_with_cookie(&url(trusted.addr, "/account"), &cookie).await.status, StatusCode::OK);
    let _ = trusted.child.kill();
    let _ = trusted.child.wait();
    // Not trusted: nothing is stored, logins fail closed.
    let mut untrusted = start_logged_env(&args, &path, "info", &[("SSL_CERT_FILE", "/nonexistent")]);
    let login =
        post_json(&url(untrusted.addr, "/login"), serde_json::json!({"email": "bob@example.com", "password": "pw"}))
            .await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE, "{}", login.text());
    // The store's failures and call times are on /metrics.
    let metrics = get(&format!("http://127.0.0.1:{admin}/metrics")).await.text();
    assert!(metric(&metrics, "ferrygate_store_errors_total") >= 1.0, "{metrics}");
    assert!(metric(&metrics, "ferrygate_store_request_duration_seconds_count") >= 1.0, "{metrics}");
    let _ = untrusted.child.kill();
    let _ = untrusted.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_fails_over_to_its_replica() {
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, ports, nodes) = cluster(dir.path(), 6, 1, &["--cluster-node-timeout", "1000"]);
    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let seeds: Vec<String> = nodes.iter().map(|n| format!("\"redis://{n}\"")).collect();
    let cfg = config(mock.addr, upstream, &format!("redis_cluster = [{}]", seeds.join(", ")));
    let (a, b) = (gateway(&cfg).await, gateway(&cfg).await);
    let login = post_form(&a.url("/login"), &[("email", "alice@example.com"), ("password", "pw")]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text());
    let cookie = cookie_pair(&login);
    // The primary that holds the session's key, and its replica having it too.
    let holders = || -> Vec<u16> {
        ports
            .iter()
            .copied()
            .filter(|p| cli(*p, &["--scan", "--pattern", "ferrygate:session:*"]).lines().count() == 1)
            .collect()
    };
    wait_until("the session was not replicated", 10, || holders().len() == 2);
    let holders = holders();
    let primary = *holders.iter().find(|p| cli(**p, &["role"]).starts_with("master")).expect("a primary holds it");
    servers.kill(primary);
    let failed_over = Instant::now();
    let window = ride_out_failover(&a, &b, &cookie, failed_over, "cluster failover").await;
    eprintln!("cluster failover: kill to the last gateway's first 200: {window:?}");
    assert!(window < Duration::from_secs(10), "a 503 window of {window:?}");
    let replica = holders.iter().copied().find(|p| *p != primary).unwrap();
    assert!(cli(replica, &["role"]).starts_with("master"), "the replica was not promoted");
    // Writes go on after the failover: a new login on one gateway is honoured
    // by the other, and a logout on one ends it on both.
    let login = post_form(&b.url("/login"), &[("email", "bob@example.com"), ("password", "pw")]).await;
    assert!(login.header("location").starts_with("https://portal.acme.example/"), "{}", login.header("location"));
    let bob = cookie_pair(&login);
    assert_eq!(get_with_cookie(&a.url("/account"), &bob).await.status, StatusCode::OK);
    assert_eq!(get_with_cookie(&a.url("/portal-logout"), &cookie).await.status, StatusCode::SEE_OTHER);
    assert_eq!(get_with_cookie(&b.url("/account"), &cookie).await.status, StatusCode::SEE_OTHER);
}

/// Sentinels reached over TLS (`rediss://`) name a primary that Ferrygate
/// reaches over TLS too, verifying its certificate: the Sentinel's and the
/// primary's come from two CAs, and trusting only the Sentinel's fails the
/// login closed, as does trusting neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_over_tls_names_a_primary_reached_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sentinel_pki, primary_pki) = (d.join("sentinel-pki"), d.join("primary-pki"));
    for pki in [&sentinel_pki, &primary_pki] {
        std::fs::create_dir(pki).unwrap();
        write_test_pki(pki);
    }
    let file = |pki: &Path, name: &str| pki.join(name).display().to_string();
    // Both CAs, for Ferrygate.
    let both = d.join("both-cas.pem");
    let cas = [&sentinel_pki, &primary_pki].map(|pki| std::fs::read_to_string(pki.join("ca.pem")).unwrap());
    std::fs::write(&both, cas.concat()).unwrap();
    let both = both.display().to_string();
    // A server's own certificate, and the CA it verifies the servers it connects to with
    // (the two test CAs share a name: OpenSSL would try only the first of a bundle).
    let tls_lines = |pki: &Path, peers: &Path| {
        format!(
            "tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
            file(pki, "server.pem"),
            file(pki, "server.key"),
            file(peers, "ca.pem")
        )
    };
    let mut servers = Servers(Vec::new());
    // Each server also listens in plain on its first port, for redis-cli here only.
    let (primary, primary_tls) = (free_port(), free_port());
    let primary_conf = d.join("primary.conf");
    std::fs::write(&primary_conf, format!("tls-port {primary_tls}\n{}", tls_lines(&primary_pki, &primary_pki)))
        .unwrap();
    servers.spawn(d, primary, &[&primary_conf.display().to_string()]);
    let (sentinel, sentinel_tls) = (free_port(), free_port());
    let sentinel_conf = d.join("sentinel.conf");
    std::fs::write(
        &sentinel_conf,
        format!(
            "tls-port {sentinel_tls}\n{}sentinel monitor mymaster 127.0.0.1 {primary_tls} 1\n",
            tls_lines(&sentinel_pki, &primary_pki)
        ),
    )
    .unwrap();
    servers.spawn(d, sentinel, &[&sentinel_conf.display().to_string(), "--sentinel"]);
    wait_until("the sentinel did not reach the primary over TLS", 15, || {
        let out = cli(sentinel, &["sentinel", "master", "mymaster"]);
        out.lines().collect::<Vec<_>>().windows(2).any(|w| w == ["flags", "master"])
    });

    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let store =
        format!("redis_sentinel = {{ master = \"mymaster\", nodes = [\"rediss://localhost:{sentinel_tls}\"] }}");
    let toml = format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{}", config(mock.addr, upstream, &store));
    let path = d.join("ferrygate.toml");
    std::fs::write(&path, toml).unwrap();
    let args = ["serve", "--log-format", "json", "--config"];
    let url = |addr: std::net::SocketAddr, p: &str| format!("http://{addr}{p}");
    // The CA trusted (rustls-native-certs reads SSL_CERT_FILE).
    let mut trusted = start_logged_env(&args, &path, "info", &[("SSL_CERT_FILE", &both)]);
    let login = post_form(&url(trusted.addr, "/login"), &[("email", "alice@example.com"), ("password", "pw")]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text());
    // A failed form login is a 303 too, back to the form.
    assert!(login.header("location").starts_with("https://portal.acme.example/"), "{}", login.header("location"));
    let cookie = cookie_pair(&login);
    assert_eq!(get_with_cookie(&url(trusted.addr, "/account"), &cookie).await.status, StatusCode::OK);
    assert_eq!(cli(primary, &["--scan", "--pattern", "ferrygate:session:*"]).lines().count(), 1, "not on the primary");
    let _ = trusted.child.kill();
    let _ = trusted.child.wait();
    // The Sentinel's CA trusted but not the primary's, then neither: nothing
    // is stored, the login fails closed.
    let sentinel_ca = file(&sentinel_pki, "ca.pem");
    for trusted_cas in [sentinel_ca.as_str(), "/nonexistent"] {
        let mut untrusted = start_logged_env(&args, &path, "info", &[("SSL_CERT_FILE", trusted_cas)]);
        let login = post_json(
            &url(untrusted.addr, "/login"),
            serde_json::json!({"email": "bob@example.com", "password": "pw"}),
        )
        .await;
        assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE, "{trusted_cas}: {}", login.text());
        assert_eq!(cli(primary, &["--scan", "--pattern", "ferrygate:session:*"]).lines().count(), 1);
        if trusted_cas == sentinel_ca {
            // The Sentinels answered; the error log names the primary they named.
            let line = std::iter::from_fn(|| untrusted.lines.recv_timeout(Duration::from_secs(5)).ok())
                .find(|l| l.contains("cannot connect to the primary"))
                .unwrap_or_else(|| panic!("no log line names the primary: {:?}", untrusted.early));
            assert!(line.contains(&format!(":{primary_tls}\"")), "{line}");
        }
        let _ = untrusted.child.kill();
        let _ = untrusted.child.wait();
    }
}
