//! Where the store's commands go: one server (a connection manager that
//! reconnects by itself), a Redis Cluster (slots, MOVED and ASK followed by
//! the cluster client), or the primary that Sentinel names — asked again after
//! any failed command, so a failover is found without a restart.
//!
//! Every key Ferrygate writes is one key per command or script (sessions,
//! used states, one rate-limit window per script call), so all of them work
//! in cluster mode; nothing scans the keyspace.

use std::time::Duration;

use ferrygate_core::{ExposeSecret, SecretString, SetupError};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::Mutex;

/// How long connecting and each answer may take.
const TIMEOUT: Duration = Duration::from_millis(800);

/// Where the store connects (`sessions.redis_url`, `redis_cluster` or `redis_sentinel`).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Single(&'a SecretString),
    Cluster { nodes: &'a [SecretString], password: Option<&'a SecretString> },
    Sentinel { master: &'a str, nodes: &'a [SecretString], password: Option<&'a SecretString> },
}

pub(crate) enum Backend {
    Single(ConnectionManager),
    /// The cluster connection, made once: it reconnects and re-learns the slots by itself.
    Cluster {
        client: ClusterClient,
        conn: tokio::sync::OnceCell<ClusterConnection>,
    },
    Sentinel {
        client: Mutex<SentinelClient>,
        conn: Mutex<Option<MultiplexedConnection>>,
        /// The primary's name at the Sentinels (`redis_sentinel.master`).
        master: String,
        /// When the Sentinels were last asked which primary they name, for
        /// the error log: at most once per [`ASK_EVERY`], so an outage (every
        /// store call failing to connect) does not double the Sentinels' load.
        asked: std::sync::Mutex<Option<std::time::Instant>>,
    },
}

/// One connection to send a command on.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Node(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Node(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Node(c) => c.get_db(),
        }
    }
}

impl Backend {
    /// Connects lazily: Ferrygate starts while Redis is down, and says so
    /// through readiness and 503s.
    pub(crate) fn new(target: Target<'_>) -> Result<Self, SetupError> {
        // `rediss://` goes through rustls with the process's (ring) provider.
        ferrygate_core::tls::install_crypto_provider();
        match target {
            Target::Single(url) => {
                let refused = |e: redis::RedisError| SetupError::new("sessions.redis_url", format!("{:?}", e.kind()));
                let client = redis::Client::open(url.expose_secret()).map_err(refused)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                Ok(Backend::Single(ConnectionManager::new_lazy_with_config(client, config).map_err(refused)?))
            }
            Target::Cluster { nodes, password } => {
                let refused =
                    |e: redis::RedisError| SetupError::new("sessions.redis_cluster", format!("{:?}", e.kind()));
                let mut builder = ClusterClient::builder(nodes.iter().map(|n| n.expose_secret().to_owned()))
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT);
                if let Some(pw) = password {
                    builder = builder.password(pw.expose_secret());
                }
                Ok(Backend::Cluster { client: builder.build().map_err(refused)?, conn: tokio::sync::OnceCell::new() })
            }
            Target::Sentinel { master, nodes, password } => {
                let refused =
                    |e: redis::RedisError| SetupError::new("sessions.redis_sentinel", format!("{:?}", e.kind()));
                // The primary is reached as the Sentinels are: over TLS when they
                // are `rediss://` (redis-rs would otherwise use plain TCP to it).
                let mut node_info = SentinelNodeConnectionInfo::default();
                if nodes.iter().any(|n| n.expose_secret().starts_with("rediss://")) {
                    node_info = node_info.set_tls_mode(redis::TlsMode::Secure);
                }
                if let Some(pw) = password {
                    node_info = node_info.set_redis_connection_info(
                        redis::RedisConnectionInfo::default().set_password(pw.expose_secret()),
                    );
                }
                let node_info = Some(node_info);
                let urls: Vec<String> = nodes.iter().map(|n| n.expose_secret().to_owned()).collect();
                let client =
                    SentinelClient::build(urls, master, node_info, SentinelServerType::Master).map_err(refused)?;
                Ok(Backend::Sentinel {
                    client: Mutex::new(client),
                    conn: Mutex::new(None),
                    master: master.to_owned(),
                    asked: std::sync::Mutex::new(None),
                })
            }
        }
    }

    /// A connection for the next command: the open one, or a new one (for
    /// Sentinel, to the primary it names now).
    pub(crate) async fn conn(&self) -> RedisResult<Conn> {
        match self {
            Backend::Single(c) => Ok(Conn::Single(c.clone())),
            Backend::Cluster { client, conn } => {
                Ok(Conn::Cluster(conn.get_or_try_init(|| client.get_async_connection()).await?.clone()))
            }
            Backend::Sentinel { client, conn, master, asked } => {
                let mut slot = conn.lock().await;
                if let Some(c) = slot.as_ref() {
                    return Ok(Conn::Node(c.clone()));
                }
                let connected = client.lock().await.get_async_connection().await;
                let c = match connected {
                    Ok(c) => c,
                    Err(e) => {
                        // Which primary: the Sentinels may name one the operator
                        // does not expect (redis-rs's error does not say).
                        let due = {
                            let mut last = asked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            let due = last.is_none_or(|t| t.elapsed() >= ASK_EVERY);
                            if due {
                                *last = Some(std::time::Instant::now());
                            }
                            due
                        };
                        if due {
                            let named = named_primary(client, master).await;
                            let primary = named.as_deref().unwrap_or("(the Sentinels named none)");
                            tracing::error!(primary, error = ?e.kind(), "cannot connect to the primary the Sentinels name");
                        } else {
                            tracing::error!(error = ?e.kind(), "cannot connect to the primary the Sentinels name");
                        }
                        return Err(e);
                    }
                };
                *slot = Some(c.clone());
                Ok(Conn::Node(c))
            }
        }
    }

    /// After a failed command: for Sentinel the next one connects anew (the
    /// primary may be a replica now). A single server's connection manager
    /// and a cluster connection reconnect and re-learn the slots by themselves.
    pub(crate) async fn forget(&self) {
        match self {
            Backend::Single(_) | Backend::Cluster { .. } => {}
            Backend::Sentinel { conn, .. } => *conn.lock().await = None,
        }
    }
}

/// How often a failing Sentinel connection asks which primary is named.
const ASK_EVERY: Duration = Duration::from_secs(10);

/// `host:port` of the primary the Sentinels name for `master`, asked of the
/// first Sentinel that answers (for the error log only).
async fn named_primary(client: &Mutex<SentinelClient>, master: &str) -> Option<String> {
    let sentinel = client.lock().await.async_get_sentinel_client().await.ok()?;
    let mut conn = sentinel.get_multiplexed_async_connection().await.ok()?;
    let (host, port): (String, u16) =
        redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master).query_async(&mut conn).await.ok()?;
    Some(format!("{host}:{port}"))
}
