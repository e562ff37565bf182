//! The `ferrygate` command: serve, check, demo.
//!
//! About 400 lines: the CLI's commands (serve with reload, check, demo) and
//! the log set-up, in the order a reader runs them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ferrygate::Loaded;
use ferrygate_server::Server;

#[derive(Parser)]
#[command(name = "ferrygate", version, about = "A login gateway for hosted portals' external authentication")]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, global = true, default_value = "pretty")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file [default: $FERRYGATE_CONFIG, then ./ferrygate.toml]
        #[arg(long, env = "FERRYGATE_CONFIG", default_value = "ferrygate.toml", hide_default_value = true)]
        config: PathBuf,
    },
    /// Validate a configuration: exit 0, or 1 with messages naming the key.
    Check {
        /// Configuration file [default: $FERRYGATE_CONFIG, then ./ferrygate.toml]
        #[arg(long, env = "FERRYGATE_CONFIG", default_value = "ferrygate.toml", hide_default_value = true)]
        config: PathBuf,
    },
    /// Exit 0 when the admin listener answers /healthz with 200 (for container
    /// health checks in images without a shell).
    Healthcheck {
        /// The admin listener.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
    },
    /// Run everything embedded: a demo site, provider and portal behind Ferrygate.
    Demo {
        /// Where the gateway listens (with --behind, where the proxy in front does).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Run the intranet behind a real proxy asking Ferrygate (forward
        /// authentication) with the shipped deploy/examples/forward-auth file.
        #[arg(long, value_enum)]
        behind: Option<Front>,
    },
}

/// A proxy `demo --behind` puts in front.
#[derive(Clone, Copy, ValueEnum)]
enum Front {
    /// nginx `auth_request` with deploy/examples/forward-auth/nginx.conf.
    Nginx,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Installed first, so every counter from the start is recorded.
    let _ = ferrygate_server::metrics::handle();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Check { config } => check(&config).await,
            Command::Serve { config } => serve(&config).await,
            Command::Demo { listen, behind: None } => demo(listen).await,
            Command::Demo { listen, behind: Some(Front::Nginx) } => demo_behind_nginx(listen).await,
            Command::Healthcheck { admin } => healthcheck(admin),
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.fmt_fields(escaped_fields()).init(),
    }
}

/// The text format's fields with every control character escaped (JSON
/// escapes its own): a provider's message, a header or a username holding a
/// `\n` cannot forge a log line, nor an ESC rewrite the terminal (SPEC 7).
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        // Copied only when there is something to escape (most values have nothing).
        let escaped: std::borrow::Cow<'_, str> = if text.chars().any(char::is_control) {
            let mut out = String::with_capacity(text.len() + 8);
            for c in text.chars() {
                if c.is_control() {
                    out.extend(c.escape_debug());
                } else {
                    out.push(c);
                }
            }
            out.into()
        } else {
            text.as_str().into()
        };
        match field.name() {
            "message" => write!(w, "{escaped}"),
            name => write!(w, "{name}={escaped}"),
        }
    })
    .delimited(" ")
}

/// Loads and validates `path`, printing what `check` prints; `None` when invalid.
async fn load(path: &Path) -> Option<(Vec<ferrygate::ConfigError>, ferrygate::Gateway)> {
    let Loaded { config, warnings } = match ferrygate::load(path) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("{errors}");
            return None;
        }
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if let Err(errors) = config.servable() {
        eprintln!("{errors}");
        return None;
    }
    // Build (without binding) so a provider this build cannot run is refused too.
    match ferrygate::Gateway::from_config(config).await {
        Ok(gateway) => Some((warnings, gateway)),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

async fn check(path: &Path) -> ExitCode {
    let Some((warnings, gateway)) = load(path).await else { return ExitCode::FAILURE };
    let config = gateway.config();
    println!(
        "{}: ok ({} site(s), {} provider(s), {} warning(s))",
        path.display(),
        config.sites.len(),
        config.providers.len(),
        warnings.len()
    );
    ExitCode::SUCCESS
}

async fn serve(path: &Path) -> ExitCode {
    let mut signals = Signals::install();
    let Some((_, gateway)) = load(path).await else { return ExitCode::FAILURE };
    match Server::bind(gateway.gateway_layer().clone()).await {
        Ok(server) => {
            tokio::spawn(watch_config(path.to_path_buf(), gateway, server.reloader(), signals.hup.take()));
            run(server, None, signals).await
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What identifies one version of the config file: where its path leads
/// (ConfigMaps swap a symlink), its inode, size and modification time.
fn fingerprint(path: &Path) -> Option<(PathBuf, u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((std::fs::canonicalize(path).ok()?, meta.ino(), meta.len(), meta.modified().ok()?))
}

/// Reloads on SIGHUP and when the file changes (checked every 2 s): parse,
/// validate, swap. An invalid file is logged and counted; the old config serves on.
async fn watch_config(
    path: PathBuf,
    mut gateway: ferrygate::Gateway,
    reloader: ferrygate_server::Reloader,
    mut hup: Option<tokio::signal::unix::Signal>,
) {
    let mut seen = fingerprint(&path);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        let why = tokio::select! {
            () = next_signal(&mut hup) => "SIGHUP",
            _ = tick.tick() => {
                let now = fingerprint(&path);
                if now == seen || now.is_none() {
                    continue;
                }
                "file change"
            }
        };
        // Whatever triggered it, this version of the file has now been tried.
        seen = fingerprint(&path);
        let result = match ferrygate::load(&path) {
            Err(errors) => Err(errors.to_string()),
            Ok(loaded) => match gateway.reload(loaded.config).await {
                Err(e) => Err(e.to_string()),
                Ok(next) => reloader.reload(next.gateway_layer().clone()).map(|()| next).map_err(|e| e.to_string()),
            },
        };
        match result {
            Ok(next) => {
                gateway = next;
                metrics::counter!("ferrygate_config_reloads_total", "result" => "success").increment(1);
                tracing::info!(trigger = why, "configuration reloaded");
            }
            Err(e) => {
                metrics::counter!("ferrygate_config_reloads_total", "result" => "error").increment(1);
                tracing::error!(trigger = why, error = %e, "configuration NOT reloaded; the previous one keeps serving");
            }
        }
    }
}

/// The demo's embedded services, or the reason they could not start (printed).
async fn start_demo() -> Option<ferrygate_demo::Demo> {
    ferrygate_demo::Demo::start().await.map_err(|e| eprintln!("error: cannot start the demo: {e}")).ok()
}

async fn demo(listen: SocketAddr) -> ExitCode {
    let signals = Signals::install();
    let Some(demo) = start_demo().await else { return ExitCode::FAILURE };
    // Bound first: the demo's Payway redirect_uri needs the real port.
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    let config = match ferrygate::from_toml(&demo.config_toml(addr), Path::new(".")) {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("error: the demo configuration is invalid (a bug):\n{e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match ferrygate::Gateway::from_config(config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match Server::with_listeners(gateway.gateway_layer().clone(), vec![listener]).await {
        Ok(server) => run(server, Some(demo), signals).await,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `demo --behind nginx`: the intranet behind a real nginx running the
/// shipped forward-auth snippet, Ferrygate beside it on a loopback port.
async fn demo_behind_nginx(listen: SocketAddr) -> ExitCode {
    let signals = Signals::install();
    let Some(demo) = start_demo().await else { return ExitCode::FAILURE };
    let config = ferrygate::from_toml(&demo.forward_auth_toml(([127, 0, 0, 1], 0).into()), Path::new("."));
    let config = match config {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("error: the demo configuration is invalid (a bug):\n{e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match ferrygate::Gateway::from_config(config).await {
        Ok(g) => Server::bind(g.gateway_layer().clone()).await,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ferrygate = server.local_addrs()[0];
    let nginx = match ferrygate_demo::front::Nginx::start(ferrygate, demo.intranet, listen) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: cannot start nginx: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addrs = %ferrygate, nginx = %listen, "ferrygate listening");
    println!("\n  Ferrygate demo behind nginx (forward authentication) is running:");
    println!("    http://{listen}/   Contoso Intranet: nginx asks Ferrygate (auth_request) before every page");
    println!("    nginx runs deploy/examples/forward-auth/nginx.conf as shipped (addresses substituted):");
    println!("      {}", nginx.dir().join("forward-auth.conf").display());
    println!("    Ferrygate (forward_auth.style = \"nginx\") listens on {ferrygate}\n");
    println!("  Sign in with one of these demo accounts (alice is in admins: try /admin):");
    for u in ferrygate_demo::USERS {
        println!("    {:<20} password: {}", u.email, u.password);
    }
    println!("\n  (Ctrl-C to stop; nginx stops with it.)\n");
    server.run(shutdown_signal(signals)).await;
    drop(nginx);
    drop(demo);
    ExitCode::SUCCESS
}

async fn run(server: Server, demo: Option<ferrygate_demo::Demo>, signals: Signals) -> ExitCode {
    let addrs = server.local_addrs();
    let listening: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let admin = server.admin_addr().map(|a| a.to_string());
    tracing::info!(addrs = %listening.join(" "), admin = admin.as_deref(), "ferrygate listening");
    if let (Some(demo), Some(addr)) = (&demo, addrs.first()) {
        let url = format!("http://{addr}");
        demo.set_gateway_url(&url);
        println!("\n  Ferrygate demo is running:");
        println!("    {url}/   Northwind Freight (qwyk: token login, portal redirect, booking wizard)");
        let port = addr.port();
        println!(
            "    http://localhost:{port}/   The Daily Courant (payway: login handle, OAuth2 redirect, state check)"
        );
        println!(
            "    http://intranet.localhost:{port}/   Contoso Intranet (rest: pass-through, directory, protected pages)"
        );
        println!(
            "    http://sso.localhost:{port}/   Fabrikam Staff Portal (oidc: password grant, ID token, refresh)\n"
        );
        println!("  Sign in with one of these demo accounts:");
        for u in ferrygate_demo::USERS {
            println!("    {:<20} password: {}", u.email, u.password);
        }
        println!(
            "\n  Behind the gateway, on loopback: site={} provider={} portal={} news={} payway={} intranet={} identity={} staff={} issuer={}",
            demo.site, demo.provider, demo.portal, demo.news, demo.payway, demo.intranet, demo.identity, demo.staff, demo.issuer
        );
        println!("  (Ctrl-C to stop. `ferrygate demo --behind nginx` runs the intranet behind nginx instead.)\n");
    }
    server.run(shutdown_signal(signals)).await;
    ExitCode::SUCCESS
}

fn healthcheck(admin: SocketAddr) -> ExitCode {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let answer = std::net::TcpStream::connect_timeout(&admin, timeout).and_then(|mut s| {
        s.set_read_timeout(Some(timeout))?;
        write!(s, "GET /healthz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head)
    });
    match answer {
        Ok(head) if head.starts_with(b"HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {admin}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The signals Ferrygate answers, registered before anything is bound, so a
/// SIGTERM or SIGHUP that arrives during start-up is handled, not fatal.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let register = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| tracing::warn!(error = %e, "cannot handle {name}")).ok()
        };
        Self {
            term: register(SignalKind::terminate(), "SIGTERM"),
            int: register(SignalKind::interrupt(), "SIGINT"),
            hup: register(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// The next SIGTERM or SIGINT.
    async fn stop(&mut self) {
        tokio::select! {
            () = next_signal(&mut self.term) => {}
            () = next_signal(&mut self.int) => {}
        }
    }
}

/// The next delivery of a signal, or never when it could not be registered.
async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal(mut signals: Signals) {
    signals.stop().await;
    tokio::spawn(async move {
        signals.stop().await;
        eprintln!("second signal: exiting now");
        std::process::exit(1);
    });
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// A log line per event, whatever the values hold.
    #[test]
    fn control_characters_never_make_a_line_of_their_own() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .fmt_fields(super::escaped_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let forged = "bad\nINFO ferrygate: login outcome=\"success\"\r\u{1b}[2J";
            tracing::warn!(error = %forged, code = forged, "provider said {forged}");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert_eq!(text.matches("bad\\nINFO").count(), 3, "each of the three values escaped: {text}");
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
