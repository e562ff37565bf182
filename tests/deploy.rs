//! deploy/ cannot drift from the code: every manifest parses, and ports, probe
//! paths, the config path and the binary's arguments agree with what the
//! binary does; every embedded ferrygate.toml passes validation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

const CONFIG_PATH: &str = "/etc/ferrygate/ferrygate.toml";
const ARGS: [&str; 5] = ["serve", "--config", CONFIG_PATH, "--log-format", "json"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

/// Validates an embedded ferrygate.toml, with its secret files written from `secrets`.
fn check_config(toml: &str, secrets: &HashMap<String, String>) -> ferrygate::Config {
    let dir = tempfile::tempdir().unwrap();
    let mut text = toml.to_owned();
    for (name, value) in secrets {
        let file = dir.path().join(name);
        std::fs::write(&file, value).unwrap();
        text = text.replace(&format!("/etc/ferrygate/secrets/{name}"), file.to_str().unwrap());
    }
    ferrygate::from_toml(&text, dir.path()).unwrap_or_else(|e| panic!("embedded config refused:\n{e}")).config
}

fn port_of(addr: &std::net::SocketAddr) -> i64 {
    i64::from(addr.port())
}

/// The checks shared by every Deployment that runs Ferrygate.
fn check_ferrygate_pod(spec: &Value, config: &ferrygate::Config, name: &str) {
    let containers = spec["containers"].as_sequence().unwrap();
    let fg = containers
        .iter()
        .find(|c| c["name"] == "ferrygate")
        .unwrap_or_else(|| panic!("{name}: no ferrygate container"));
    let args: Vec<&str> = fg["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args, ARGS, "{name}: the container's arguments");
    let ports: HashMap<&str, i64> = fg["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_i64().unwrap()))
        .collect();
    assert_eq!(ports["http"], port_of(&config.server.listen[0]), "{name}: http port vs server.listen");
    assert_eq!(ports["admin"], port_of(&config.admin.as_ref().unwrap().listen), "{name}: admin port vs admin.listen");
    assert_eq!(s(fg, &["livenessProbe", "httpGet", "path"]), "/healthz", "{name}");
    assert_eq!(s(fg, &["readinessProbe", "httpGet", "path"]), "/readyz", "{name}");
    assert_eq!(s(fg, &["readinessProbe", "httpGet", "port"]), "admin", "{name}");
    assert_eq!(s(fg, &["securityContext", "readOnlyRootFilesystem"]).as_bool(), Some(true), "{name}");
    assert_eq!(s(spec, &["securityContext", "runAsNonRoot"]).as_bool(), Some(true), "{name}");
    let mounts: Vec<&str> =
        fg["volumeMounts"].as_sequence().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    assert!(
        mounts.contains(&Path::new(CONFIG_PATH).parent().unwrap().to_str().unwrap()),
        "{name}: config mount {mounts:?}"
    );
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > config.server.shutdown_grace.as_secs(), "{name}: the Pod's grace must outlast shutdown_grace");
}

#[test]
fn kubernetes_manifests_agree_with_the_binary() {
    for mode in ["sidecar", "edge"] {
        let dir = root().join("kubernetes").join(mode);
        let mut all = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            all.extend(docs(&entry.unwrap().path()));
        }
        let of_kind = |kind: &'static str| all.iter().filter(move |d| d["kind"] == kind);
        let secrets: HashMap<String, String> = of_kind("Secret")
            .flat_map(|s| s["stringData"].as_mapping().unwrap().iter())
            .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned()))
            .collect();
        let configmap = of_kind("ConfigMap").next().unwrap_or_else(|| panic!("{mode}: no ConfigMap"));
        let config = check_config(configmap["data"]["ferrygate.toml"].as_str().unwrap(), &secrets);
        let deployments: Vec<&Value> =
            of_kind("Deployment").filter(|d| d["metadata"]["name"] != "ferrygate-redis").collect();
        assert_eq!(deployments.len(), 1, "{mode}");
        let pod = s(deployments[0], &["spec", "template", "spec"]);
        check_ferrygate_pod(pod, &config, mode);
        let service = of_kind("Service").find(|s| s["metadata"]["name"] == deployments[0]["metadata"]["name"]).unwrap();
        assert_eq!(s(service, &["spec", "ports"])[0]["targetPort"], "http", "{mode}: the Service targets Ferrygate");
        if mode == "sidecar" {
            let app_port = pod["containers"].as_sequence().unwrap().iter().find(|c| c["name"] == "app").unwrap()
                ["ports"][0]["containerPort"]
                .as_i64()
                .unwrap();
            let upstream = config.sites[0].upstream.origin.as_ref().unwrap().to_string();
            assert_eq!(upstream, format!("http://127.0.0.1:{app_port}/"), "the sidecar proxies to the app in its Pod");
        } else {
            assert!(deployments[0]["spec"]["replicas"].as_u64().unwrap() >= 2);
            assert!(of_kind("PodDisruptionBudget").next().is_some(), "edge: a PDB");
            assert_eq!(
                config.sessions.store,
                ferrygate::core::config::StoreKind::Redis,
                "edge replicas share sessions"
            );
            assert!(of_kind("Service").any(|s| s["metadata"]["name"] == "ferrygate-redis"), "edge: an example Redis");
        }
    }
}

#[test]
fn the_helm_chart_agrees_with_the_binary() {
    let chart = root().join("helm/ferrygate");
    let values = &docs(&chart.join("values.yaml"))[0];
    let secrets: HashMap<String, String> = values["secret"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned()))
        .collect();
    let config = check_config(values["config"].as_str().unwrap(), &secrets);
    assert_eq!(values["configPath"], CONFIG_PATH);
    assert_eq!(values["ports"]["http"].as_i64().unwrap(), port_of(&config.server.listen[0]));
    assert_eq!(values["ports"]["admin"].as_i64().unwrap(), port_of(&config.admin.as_ref().unwrap().listen));
    assert!(values["terminationGracePeriodSeconds"].as_u64().unwrap() > config.server.shutdown_grace.as_secs());
    let deployment = std::fs::read_to_string(chart.join("templates/deployment.yaml")).unwrap();
    for needle in [
        r#"args: ["serve", "--config", "{{ .Values.configPath }}", "--log-format", "json"]"#,
        "httpGet: {path: /healthz, port: admin}",
        "httpGet: {path: /readyz, port: admin}",
        "containerPort: {{ .Values.ports.admin }}",
        "mountPath: /etc/ferrygate,",
        "readOnlyRootFilesystem: true",
        r#"{{- if eq .Values.mode "sidecar" }}"#,
    ] {
        assert!(deployment.contains(needle), "templates/deployment.yaml lacks {needle}");
    }
    assert!(std::fs::read_to_string(chart.join("templates/service.yaml")).unwrap().contains("PodDisruptionBudget"));
    // mode: forward-auth renders the site's Ingress asking Ferrygate's check path.
    let ingress = std::fs::read_to_string(chart.join("templates/ingress.yaml")).unwrap();
    assert!(ingress.contains(r#"{{- if eq .Values.mode "forward-auth" }}"#));
    assert!(ingress.contains("nginx.ingress.kubernetes.io/auth-url") && ingress.contains("auth-response-headers"));
    assert_eq!(values["forwardAuth"]["checkPath"], "/_ferrygate/auth");
    assert!(docs(&chart.join("Chart.yaml"))[0]["name"] == "ferrygate");
}

#[test]
fn the_dockerfile_runs_the_binary_as_documented() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(text.contains(r#"ENTRYPOINT ["/usr/local/bin/ferrygate"]"#));
    assert!(text.contains(&format!(r#"CMD ["serve", "--config", "{CONFIG_PATH}", "--log-format", "json"]"#)));
    assert!(text.contains("USER nonroot"));
    assert!(text.contains("EXPOSE 8080 9090"));
    assert!(text.contains(r#"CMD ["/usr/local/bin/ferrygate", "healthcheck", "--admin", "127.0.0.1:9090"]"#));
    assert!(text.matches("FROM ").count() >= 2, "multi-stage");
}

#[test]
fn the_healthcheck_subcommand_tells_up_from_down() {
    let bin = env!("CARGO_BIN_EXE_ferrygate");
    // Down: nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = std::process::Command::new(bin).args(["healthcheck", "--admin", &closed.to_string()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    // Up: a real admin listener.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"{addr}\"\n[sessions]\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
             [providers.p]\nkind = \"qwyk\"\nserver = \"http://127.0.0.1:9\"\norganization_id = 1\nsite_id = 2\n\
             [[sites]]\nname = \"s\"\nupstream = \"http://127.0.0.1:9\"\nprovider = \"p\"\n[sites.login]\npath = \"/login\"\n[sites.portal]\nurl = \"https://p.example/\"\n"
        );
        drop(listener);
        let config = ferrygate::from_toml(&config, ".".as_ref()).unwrap().config;
        let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
        let server = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
        let admin = server.admin_addr().unwrap();
        tokio::spawn(server.run(std::future::pending()));
        admin
    });
    let out = std::process::Command::new(bin).args(["healthcheck", "--admin", &admin.to_string()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Traefik's and ingress-nginx's examples (no test runs those proxies here)
/// agree with the `ferrygate.toml` beside them: the check's path and port, the
/// identity headers handed on, and Ferrygate's own routes reaching it without
/// the check.
#[test]
fn the_traefik_and_ingress_nginx_examples_agree_with_their_ferrygate_toml() {
    let dir = root().join("examples/forward-auth");
    let fg: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("ferrygate.toml")).unwrap()).unwrap();
    let site = &fg["sites"][0];
    let check_path = site["forward_auth"]["path"].as_str().unwrap();
    let login = site["login"]["path"].as_str().unwrap();
    let logout: Vec<&str> = site["logout"]["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let listen: std::net::SocketAddr = fg["server"]["listen"][0].as_str().unwrap().parse().unwrap();
    // SPEC 2.1: the identity headers a check answers with.
    let identity = [
        "X-Ferrygate-User",
        "X-Ferrygate-User-Id",
        "X-Ferrygate-Org-Id",
        "X-Ferrygate-Groups",
        "X-Ferrygate-Provider",
        "X-Ferrygate-Amr",
        "X-Ferrygate-Jwt",
    ];
    let at_ferrygate = |url: &str| {
        let url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(url.port(), Some(listen.port()), "{url}: not Ferrygate's port");
        url
    };

    let traefik = &docs(&dir.join("traefik.yml"))[0]["http"];
    let forward = &traefik["middlewares"]["ferrygate"]["forwardAuth"];
    assert_eq!(at_ferrygate(forward["address"].as_str().unwrap()).path(), check_path);
    let handed: Vec<&str> =
        forward["authResponseHeaders"].as_sequence().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    assert_eq!(handed, identity);
    // SPEC 2.1: Traefik sets X-Forwarded-* itself (a client's are replaced) and
    // passes only the cookies on, never a client's X-Original-URI.
    assert_eq!(forward["trustForwardHeader"].as_bool(), Some(false), "a client's X-Forwarded-Uri would be believed");
    let passed: Vec<&str> =
        forward["authRequestHeaders"].as_sequence().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    assert!(
        passed.contains(&"Cookie") && !passed.iter().any(|h| h.to_ascii_lowercase().starts_with("x-")),
        "{passed:?}"
    );
    let own = &traefik["routers"]["ferrygate-routes"];
    assert!(own["middlewares"].is_null(), "Ferrygate's own routes must not need the check");
    let rule = own["rule"].as_str().unwrap();
    for path in std::iter::once(login).chain(logout.iter().copied()) {
        assert!(rule.contains(&format!("Path(`{path}`)")), "{path} not routed to Ferrygate: {rule}");
    }
    assert_eq!(traefik["routers"]["site"]["middlewares"][0], "ferrygate");
    at_ferrygate(traefik["services"]["ferrygate"]["loadBalancer"]["servers"][0]["url"].as_str().unwrap());

    let ingresses = docs(&dir.join("ingress-nginx.yaml"));
    let named = |name: &str| ingresses.iter().find(|d| d["metadata"]["name"] == name).unwrap();
    let guarded = &named("intranet")["metadata"]["annotations"];
    let annotation = |key: &str| guarded[format!("nginx.ingress.kubernetes.io/{key}").as_str()].as_str().unwrap();
    assert_eq!(at_ferrygate(annotation("auth-url")).path(), check_path);
    let signin = url::Url::parse(annotation("auth-signin")).unwrap();
    assert_eq!(signin.path(), login);
    assert!(signin.query_pairs().any(|(k, _)| k == "destination"), "{signin}: the way back is `destination`");
    assert_eq!(annotation("auth-response-headers").split(',').collect::<Vec<_>>(), identity);
    // Every header the check reads is set by the ingress, never the client's.
    let snippet = annotation("auth-snippet");
    for set in [
        "X-Original-URI $request_uri;",
        "X-Original-Method $request_method;",
        "X-Forwarded-Host $host;",
        "X-Forwarded-Uri \"\";",
    ] {
        assert!(snippet.contains(&format!("proxy_set_header {set}")), "auth-snippet lacks {set}");
    }
    let own = named("intranet-ferrygate");
    assert!(own["metadata"]["annotations"].is_null(), "Ferrygate's own routes must not need the check");
    let rule = &own["spec"]["rules"][0];
    assert_eq!(rule["host"].as_str(), signin.host_str(), "the login page's host");
    let paths = rule["http"]["paths"].as_sequence().unwrap();
    for path in std::iter::once(login).chain(logout.iter().copied()) {
        let routed = paths.iter().find(|p| p["path"] == path).unwrap_or_else(|| panic!("{path} not routed"));
        assert_eq!(s(routed, &["backend", "service", "port", "number"]).as_i64(), Some(port_of(&listen)));
    }
}
