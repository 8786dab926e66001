//! Connecting to PostgreSQL: `DATABASE_URL` or the libpq variables, TLS through `native-tls`.
//!
//! tokio-postgres understands `sslmode=disable|prefer|require` but not libpq's `verify-ca` and
//! `verify-full`, so the mode is taken out of the URL and applied here: `require` encrypts without
//! checking the certificate (as libpq does), `verify-ca` checks it against `sslrootcert`,
//! `verify-full` also checks the host name. Every session gets `TimeZone = UTC` so catalog bounds
//! read back in one zone whatever the server's default, and `synchronize_seqscans = off` so a
//! COPY of a frozen table always sends its rows in the same (physical) order: with synchronized
//! scans, a COPY that starts while another scan of the table runs (our own `count(*)` on the second
//! connection, say) begins mid-table, and the same rows come out rotated, which would make an
//! archive impossible to recognise by its content (write-once adoption compares the two).
//!
//! # Vanished peers
//! A connection can die without either side being told (a NAT or load balancer dropping its
//! state, a failover, a network partition). Every session therefore
//! - is named `partition-archiver/<run id>` (`application_name`), so a session of a run that
//!   vanished can be told from a live one and from other applications' ([`crate::pg::lock`]);
//! - keeps client-side TCP keepalives on (idle `DB_KEEPALIVE_SECONDS`, then 3 probes a third of
//!   that apart) and a `tcp_user_timeout` of four times it, so this process notices a dead server
//!   within about twice `DB_KEEPALIVE_SECONDS` (30 s by default) instead of waiting forever;
//! - asks the server for the same (`tcp_keepalives_idle`, `_interval`, `_count`,
//!   `tcp_user_timeout`, and `client_connection_check_interval` on PostgreSQL 14+), so the server
//!   ends a backend whose client is gone, releasing its locks, instead of after the OS default of
//!   two hours.

use crate::error::ConfigError;
use crate::pg::watch::{Watched, Wire};
use native_tls::{Certificate, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::{SslMode as PgSslMode, TargetSessionAttrs};
use tokio_postgres::tls::TlsConnect;
use tokio_postgres::{Client, Config};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(ConfigError::invalid(
                    "PGSSLMODE",
                    other,
                    "disable, prefer, require, verify-ca or verify-full",
                ))
            }
        })
    }
}

#[derive(Clone)]
pub struct DbConfig {
    pub pg: Config,
    pub ssl_mode: SslMode,
    pub ssl_root_cert: Option<PathBuf>,
    /// `DB_KEEPALIVE_SECONDS`: TCP keepalive idle time, both sides (see the module docs).
    pub keepalive: Duration,
    /// Makes each new session's password, in place of `pg`'s: an RDS IAM token is valid 15
    /// minutes, and a warm Lambda process connects for hours.
    pub password_source: Option<PasswordSource>,
}

/// A password made for each connect ([`DbConfig::password_source`]).
pub type PasswordSource =
    Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, anyhow::Result<String>> + Send + Sync>;

/// Every session's `application_name` starts with this; the rest is the run id.
pub const APPLICATION_PREFIX: &str = "partition-archiver/";

/// The run the sessions opened from now on belong to (their `application_name`). One process
/// serves one request at a time (the CLI one, the Lambda runtime one after another), so the run id
/// is process-wide: set by [`crate::app::App`] when a request starts, read by every connect,
/// including the archive's worker connections.
static RUN_ID: std::sync::RwLock<String> = std::sync::RwLock::new(String::new());

pub fn set_run_id(run_id: &str) {
    if let Ok(mut id) = RUN_ID.write() {
        *id = run_id.to_string();
    }
}

/// `partition-archiver/<run id>` (`partition-archiver/-` before any request).
pub fn application_name() -> String {
    let id = RUN_ID.read().map(|id| id.clone()).unwrap_or_default();
    format!("{APPLICATION_PREFIX}{}", if id.is_empty() { "-" } else { id.as_str() })
}

/// `DB_KEEPALIVE_SECONDS` bounds: below 5 s, a busy server's probes become noise; above 10
/// minutes, a vanished peer holds its locks too long to be worth the name.
pub const KEEPALIVE_RANGE_S: std::ops::RangeInclusive<u64> = 5..=600;
pub const DEFAULT_KEEPALIVE_S: u64 = 15;

impl std::fmt::Debug for DbConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl DbConfig {
    /// From `DATABASE_URL` (a `postgres://` URL or a libpq key=value string) or, when it is not set,
    /// from `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`. `PGSSLMODE` and
    /// `PGSSLROOTCERT` apply to both (a `sslmode` in the URL wins).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut ssl_mode = get("PGSSLMODE").map(|s| SslMode::parse(&s)).transpose()?;
        let mut ssl_root_cert = get("PGSSLROOTCERT").map(PathBuf::from);
        let mut pg = if let Some(url) = get("DATABASE_URL").filter(|s| !s.is_empty()) {
            let (cleaned, mode, root) = take_ssl_params(&url)?;
            ssl_mode = mode.or(ssl_mode);
            ssl_root_cert = root.or(ssl_root_cert);
            cleaned.parse::<Config>().map_err(|e| {
                ConfigError::invalid("DATABASE_URL", "(hidden)", &format!("not a PostgreSQL connection string: {e}"))
            })?
        } else {
            let mut c = Config::new();
            c.host(get("PGHOST").as_deref().unwrap_or("localhost"));
            let port = get("PGPORT").unwrap_or_else(|| "5432".into());
            c.port(port.parse().map_err(|_| ConfigError::invalid("PGPORT", &port, "a port number"))?);
            c.user(get("PGUSER").as_deref().unwrap_or("postgres"));
            if let Some(db) = get("PGDATABASE") {
                c.dbname(&db);
            }
            c
        };
        if pg.get_password().is_none() {
            if let Some(pw) = get("PGPASSWORD") {
                pg.password(pw);
            }
        }
        // application_name is set at each connect (the run id); one given in DATABASE_URL is
        // replaced, because telling our sessions apart by it is what clears vanished runs.
        let keepalive = Duration::from_secs(ConfigError::int_setting(
            get,
            "DB_KEEPALIVE_SECONDS",
            DEFAULT_KEEPALIVE_S,
            KEEPALIVE_RANGE_S,
            "seconds",
        )?);
        let ssl_mode = ssl_mode.unwrap_or(SslMode::Prefer);
        if matches!(ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull) && ssl_root_cert.is_none() {
            return Err(ConfigError::Missing("PGSSLROOTCERT (required by sslmode verify-ca / verify-full)".into()));
        }
        Ok(Self { pg, ssl_mode, ssl_root_cert, keepalive, password_source: None })
    }

    /// How long a session of this configuration can go without a word from its peer before one
    /// side notices: the keepalive idle time plus its probes.
    pub fn dead_peer_bound(&self) -> Duration {
        self.keepalive + keepalive_interval(self.keepalive) * KEEPALIVE_PROBES
    }

    /// The session settings that make the server notice a vanished client (module docs).
    fn server_keepalive_sql(&self) -> String {
        let idle = self.keepalive.as_secs();
        let interval = keepalive_interval(self.keepalive).as_secs();
        let user_timeout_ms = (self.keepalive * 4).as_millis();
        format!(
            "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {interval}; \
             SET tcp_keepalives_count = {KEEPALIVE_PROBES}; SET tcp_user_timeout = {user_timeout_ms}"
        )
    }

    /// `client_connection_check_interval` (PostgreSQL 14+): the server also checks, while a
    /// statement runs, that the client is still there. Servers on platforms without `POLLRDHUP`
    /// refuse any value but 0: then the keepalives alone do it.
    fn connection_check_sql(&self, server_version_num: i32) -> Option<String> {
        (server_version_num >= 140000)
            .then(|| format!("SET client_connection_check_interval = {}", self.keepalive.as_secs() * 1000))
    }

    /// `user@host:port/db`, for logs and reports: no password, ever.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{}:{}/{}",
            self.pg.get_user().unwrap_or("?"),
            hosts.join(","),
            port,
            self.pg.get_dbname().unwrap_or("")
        )
    }

    /// A new session of the current run, watched ([`crate::pg::watch`]). The whole of it (TCP,
    /// TLS, start-up, session set-up) must finish within [`Self::connect_bound`]: a server behind a
    /// blackholed route would otherwise keep a connect waiting forever.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Ok(self.connect_watched().await?.0)
    }

    /// [`Self::connect`], also returning the session's wire (the lease leaves its own out).
    pub async fn connect_watched(&self) -> anyhow::Result<(Client, Arc<Wire>)> {
        use anyhow::Context;
        let bound = self.connect_bound();
        let mut last_error = None;
        for target in self.targets() {
            match tokio::time::timeout(bound, self.connect_to(&target)).await {
                Ok(Ok(session)) => return Ok(session),
                Ok(Err(e)) => last_error = Some(e),
                Err(_) => last_error = Some(anyhow::anyhow!("{target}: no answer within {bound:?}")),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no host given")))
            .with_context(|| format!("connect to {}", self.describe()))
    }

    /// How long a connect may take before it is given up: the TCP connect timeout, then as long
    /// as a silent peer is given anywhere else.
    pub fn connect_bound(&self) -> Duration {
        CONNECT_TIMEOUT + self.dead_peer_bound()
    }

    /// Where to connect, in order: each host (with its `hostaddr` when given) and port.
    fn targets(&self) -> Vec<Target> {
        let hosts = self.pg.get_hosts();
        let addrs = self.pg.get_hostaddrs();
        let ports = self.pg.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        (0..hosts.len().max(addrs.len()))
            .map(|i| match hosts.get(i) {
                #[cfg(unix)]
                Some(tokio_postgres::config::Host::Unix(dir)) => {
                    Target::Unix(dir.join(format!(".s.PGSQL.{}", port(i))))
                }
                host => {
                    let name = match host {
                        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                        _ => addrs[i].to_string(),
                    };
                    Target::Tcp { host: name, addr: addrs.get(i).copied(), port: port(i) }
                }
            })
            .collect()
    }

    async fn connect_to(&self, target: &Target) -> anyhow::Result<(Client, Arc<Wire>)> {
        use anyhow::Context;
        let mut pg = self.pg.clone();
        pg.application_name(application_name());
        if let Some(source) = &self.password_source {
            pg.password(source().await.context("make the session's password")?);
        }
        let (client, wire) = match target {
            #[cfg(unix)]
            Target::Unix(path) => {
                // No TLS over a local socket (libpq does the same).
                pg.ssl_mode(PgSslMode::Disable);
                let socket = tokio::net::UnixStream::connect(path).await.with_context(|| target.to_string())?;
                start(&pg, socket, tokio_postgres::NoTls, true).await?
            }
            Target::Tcp { host, addr, port } => {
                let socket = self.tcp(host, *addr, *port).await.with_context(|| target.to_string())?;
                if self.ssl_mode == SslMode::Disable {
                    pg.ssl_mode(PgSslMode::Disable);
                    start(&pg, socket, tokio_postgres::NoTls, true).await?
                } else {
                    pg.ssl_mode(if self.ssl_mode == SslMode::Prefer { PgSslMode::Prefer } else { PgSslMode::Require });
                    let mut tls = MakeTlsConnector::new(self.tls_connector()?);
                    let tls = tokio_postgres::tls::MakeTlsConnect::<Watched<tokio::net::TcpStream>>::make_tls_connect(
                        &mut tls, host,
                    )
                    .context("TLS set-up")?;
                    start(&pg, socket, tls, false).await?
                }
            }
        };
        // One round trip sets the session up and reads what the rest needs.
        // extra_float_digits = 3: floats printed as text (CSV archives, the text form of arrays or
        // composites holding floats, the Parquet statistics query) round-trip exactly whatever the
        // database's or role's own setting (<= 0 rounds them).
        let setup = format!(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET statement_timeout = 0; \
             SET synchronize_seqscans = off; SET extra_float_digits = 3; {}; \
             SELECT current_setting('server_version_num'), pg_backend_pid(), pg_is_in_recovery()",
            self.server_keepalive_sql()
        );
        let row = client
            .simple_query(&setup)
            .await
            .context("initialise session")?
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .context("initialise session: no answer")?;
        let field = |i: usize| row.get(i).unwrap_or_default();
        let version: i32 = field(0).parse().context("initialise session: server_version_num")?;
        wire.backend_pid.store(field(1).parse().unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        // A list of hosts with target_session_attrs=read-write means "the primary, wherever it is".
        let read_only = field(2) == "t";
        let wanted = self.pg.get_target_session_attrs();
        if (read_only && wanted == TargetSessionAttrs::ReadWrite)
            || (!read_only && wanted == TargetSessionAttrs::ReadOnly)
        {
            anyhow::bail!("{target}: the server does not match target_session_attrs ({wanted:?})");
        }
        if let Some(sql) = self.connection_check_sql(version) {
            if let Err(e) = client.batch_execute(&sql).await {
                tracing::debug!(error = %e, "the server does not check for vanished clients during a statement");
            }
        }
        Ok((client, wire))
    }

    /// A TCP connection with the client-side keepalives and `tcp_user_timeout` (module docs).
    async fn tcp(
        &self,
        host: &str,
        addr: Option<std::net::IpAddr>,
        port: u16,
    ) -> anyhow::Result<tokio::net::TcpStream> {
        use anyhow::Context;
        let addrs: Vec<std::net::SocketAddr> = match addr {
            Some(ip) => vec![(ip, port).into()],
            None => tokio::net::lookup_host((host, port)).await.context("resolve")?.collect(),
        };
        let mut last_error = anyhow::anyhow!("the name resolves to no address");
        for a in addrs {
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(a)).await {
                Ok(Ok(stream)) => {
                    stream.set_nodelay(true)?;
                    let socket = socket2::SockRef::from(&stream);
                    socket.set_tcp_keepalive(
                        &socket2::TcpKeepalive::new()
                            .with_time(self.keepalive)
                            .with_interval(keepalive_interval(self.keepalive))
                            .with_retries(KEEPALIVE_PROBES),
                    )?;
                    #[cfg(target_os = "linux")]
                    socket.set_tcp_user_timeout(Some(self.keepalive * 4))?;
                    return Ok(stream);
                }
                Ok(Err(e)) => last_error = anyhow::Error::new(e).context(a.to_string()),
                Err(_) => last_error = anyhow::anyhow!("{a}: connect timed out after {CONNECT_TIMEOUT:?}"),
            }
        }
        Err(last_error)
    }

    fn tls_connector(&self) -> anyhow::Result<TlsConnector> {
        use anyhow::Context;
        let mut builder = TlsConnector::builder();
        match self.ssl_mode {
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let path = self.ssl_root_cert.as_ref().expect("checked in from_lookup");
                let pem = read_root_cert(path)?;
                // A bundle (such as the RDS one) holds many certificates: add each.
                for block in split_pem(&pem) {
                    builder.add_root_certificate(
                        Certificate::from_pem(&block).context("parse a certificate of PGSSLROOTCERT")?,
                    );
                }
                builder.danger_accept_invalid_hostnames(self.ssl_mode == SslMode::VerifyCa);
            }
            _ => {
                builder.danger_accept_invalid_certs(true).danger_accept_invalid_hostnames(true);
            }
        }
        builder.build().context("build TLS connector")
    }
}

/// One place to connect to.
enum Target {
    Tcp {
        host: String,
        addr: Option<std::net::IpAddr>,
        port: u16,
    },
    #[cfg(unix)]
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp { host, port, .. } => write!(f, "{host}:{port}"),
            #[cfg(unix)]
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The TCP connect itself gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the protocol on a watched `socket`, spawns the connection task and registers the
/// session with the watch. `plaintext`: no TLS (`tls` is `NoTls`), so the protocol is counted on
/// the socket itself.
async fn start<S, T>(pg: &Config, socket: S, tls: T, plaintext: bool) -> anyhow::Result<(Client, Arc<Wire>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: TlsConnect<Watched<S>> + Send + 'static,
    T::Future: Send + 'static,
    T::Stream: Send + 'static,
{
    // Without TLS the protocol is read on the socket itself; with it, above the TLS layer.
    let (socket, wire) = Watched::new(socket, plaintext);
    let tls = crate::pg::watch::FramingTls { inner: tls, wire: wire.clone() };
    let (client, conn) = pg.connect_raw(socket, tls).await?;
    let watched = wire.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "database connection ended with an error");
        }
        crate::pg::watch::forget(&watched);
    });
    crate::pg::watch::register(wire.clone(), task.abort_handle());
    Ok((client, wire))
}

/// `PGSSLROOTCERT` is a file, or `embedded:rds-global-bundle` for the RDS bundle compiled into
/// this binary (`certs/`).
fn read_root_cert(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    if path.as_os_str() == EMBEDDED_RDS_BUNDLE {
        return Ok(RDS_BUNDLE.to_vec());
    }
    std::fs::read(path).with_context(|| format!("read PGSSLROOTCERT {}", path.display()))
}

/// The CA certificates of Amazon RDS and RDS Proxy (`certs/README.md`).
const RDS_BUNDLE: &[u8] = include_bytes!("../../certs/rds-global-bundle.pem");

/// The `PGSSLROOTCERT` value that selects the RDS CA bundle embedded at build time.
pub const EMBEDDED_RDS_BUNDLE: &str = "embedded:rds-global-bundle";

/// Keepalive probes before a silent peer is declared dead.
const KEEPALIVE_PROBES: u32 = 3;

fn keepalive_interval(idle: Duration) -> Duration {
    (idle / 3).max(Duration::from_secs(1))
}

fn split_pem(pem: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END ") {
            out.push(std::mem::take(&mut current).into_bytes());
        }
    }
    out
}

/// Removes `sslmode` and `sslrootcert` from a URL or key=value string, returning them.
fn take_ssl_params(conn: &str) -> Result<(String, Option<SslMode>, Option<PathBuf>), ConfigError> {
    let mut mode = None;
    let mut root = None;
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        let mut url =
            url::Url::parse(conn).map_err(|e| ConfigError::invalid("DATABASE_URL", "(hidden)", &e.to_string()))?;
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sslmode" => mode = Some(SslMode::parse(&v)?),
                "sslrootcert" => root = Some(PathBuf::from(v.as_ref())),
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok((url.to_string(), mode, root))
    } else {
        let mut kept = Vec::new();
        for part in conn.split_whitespace() {
            match part.split_once('=') {
                Some(("sslmode", v)) => mode = Some(SslMode::parse(v)?),
                Some(("sslrootcert", v)) => root = Some(PathBuf::from(v)),
                _ => kept.push(part),
            }
        }
        Ok((kept.join(" "), mode, root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<DbConfig, ConfigError> {
        DbConfig::from_lookup(&crate::error::lookup_of(vars))
    }

    #[test]
    fn url_and_libpq_variables() {
        let c = cfg(&[(
            "DATABASE_URL",
            "postgres://app:s3cret@db.example:6543/shop?sslmode=verify-full&sslrootcert=/ca.pem",
        )])
        .unwrap();
        assert_eq!(c.ssl_mode, SslMode::VerifyFull);
        assert_eq!(c.ssl_root_cert.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(c.describe(), "app@db.example:6543/shop");
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = cfg(&[
            ("PGHOST", "h"),
            ("PGPORT", "5433"),
            ("PGUSER", "u"),
            ("PGPASSWORD", "pw"),
            ("PGDATABASE", "d"),
            ("PGSSLMODE", "require"),
        ])
        .unwrap();
        assert_eq!((c.describe().as_str(), c.ssl_mode), ("u@h:5433/d", SslMode::Require));
        assert_eq!(c.pg.get_password(), Some(&b"pw"[..]));
        assert!(cfg(&[("PGSSLMODE", "verify-full")]).unwrap_err().to_string().contains("PGSSLROOTCERT"));
        assert!(cfg(&[("PGSSLMODE", "sometimes")]).unwrap_err().to_string().contains("PGSSLMODE"));
        assert!(cfg(&[("PGPORT", "http")]).is_err());
        let c = cfg(&[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", EMBEDDED_RDS_BUNDLE)]).unwrap();
        assert_eq!(c.ssl_root_cert.as_deref(), Some(std::path::Path::new(EMBEDDED_RDS_BUNDLE)));
        assert_eq!(read_root_cert(std::path::Path::new(EMBEDDED_RDS_BUNDLE)).unwrap(), RDS_BUNDLE);
        assert!(read_root_cert(std::path::Path::new("/nonexistent/ca.pem"))
            .unwrap_err()
            .to_string()
            .contains("read PGSSLROOTCERT"));
        let err = cfg(&[("DATABASE_URL", "postgres://u:topsecret@h:notaport/d")]).unwrap_err().to_string();
        assert!(!err.contains("topsecret"), "{err}");
    }

    #[test]
    fn the_embedded_rds_bundle_parses_and_holds_the_rds_roots() {
        use base64::Engine;
        let blocks = split_pem(RDS_BUNDLE);
        assert!(blocks.len() >= 100, "{} certificates", blocks.len());
        let mut ders = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            Certificate::from_pem(block).unwrap_or_else(|e| panic!("certificate {i} does not parse: {e}"));
            let body: String = String::from_utf8_lossy(block).lines().filter(|l| !l.starts_with("-----")).collect();
            ders.push(base64::engine::general_purpose::STANDARD.decode(body).unwrap());
        }
        // Subject names are plain text inside the DER: the roots RDS (2024 CAs, per region) and
        // RDS Proxy (Amazon Trust Services) certificates chain to.
        for name in [
            "Amazon RDS us-east-1 Root CA RSA2048 G1",
            "Amazon RDS eu-west-1 Root CA RSA4096 G1",
            "Amazon RDS ap-southeast-2 Root CA ECC384 G1",
            "Amazon Root CA 1",
        ] {
            assert!(
                ders.iter().any(|d| d.windows(name.len()).any(|w| w == name.as_bytes())),
                "no certificate names {name}"
            );
        }
    }

    #[tokio::test]
    async fn keepalives_on_both_sides_follow_one_setting() {
        let c = cfg(&[]).unwrap();
        assert_eq!((c.keepalive, c.dead_peer_bound()), (Duration::from_secs(15), Duration::from_secs(30)));
        assert_eq!(c.connect_bound(), Duration::from_secs(40));
        // The client side: read back from a real socket.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = c.tcp("localhost", Some([127, 0, 0, 1].into()), port).await.unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(15));
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), Duration::from_secs(5));
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
        #[cfg(target_os = "linux")]
        assert_eq!(socket.tcp_user_timeout().unwrap(), Some(Duration::from_secs(60)));
        drop(listener);
        assert!(c.tcp("localhost", Some([127, 0, 0, 1].into()), port).await.is_err(), "nothing listens");
        let c = cfg(&[("DB_KEEPALIVE_SECONDS", "60")]).unwrap();
        assert_eq!(c.dead_peer_bound(), Duration::from_secs(120));
        assert_eq!(
            c.server_keepalive_sql(),
            "SET tcp_keepalives_idle = 60; SET tcp_keepalives_interval = 20; SET tcp_keepalives_count = 3; \
             SET tcp_user_timeout = 240000"
        );
        assert_eq!(c.connection_check_sql(150004).as_deref(), Some("SET client_connection_check_interval = 60000"));
        assert_eq!(c.connection_check_sql(130010), None);
        for bad in ["0", "-5", "4", "601", "soon", "1e9"] {
            let e = cfg(&[("DB_KEEPALIVE_SECONDS", bad)]).unwrap_err().to_string();
            assert!(e.contains("DB_KEEPALIVE_SECONDS"), "{bad}: {e}");
        }
        set_run_id("0123abcd");
        assert_eq!(application_name(), "partition-archiver/0123abcd");
        // Hosts, their addresses and ports, in order.
        let c = cfg(&[("DATABASE_URL", "host=a,b hostaddr=10.0.0.1,10.0.0.2 port=5433")]).unwrap();
        let addrs: Vec<String> = c
            .targets()
            .iter()
            .map(|t| match t {
                Target::Tcp { host, addr, port } => format!("{host}={}:{port}", addr.unwrap()),
                #[cfg(unix)]
                Target::Unix(p) => p.display().to_string(),
            })
            .collect();
        assert_eq!(addrs, ["a=10.0.0.1:5433", "b=10.0.0.2:5433"]);
        let c = cfg(&[("DATABASE_URL", "host=a,b port=5433,5434 dbname=d")]).unwrap();
        let targets: Vec<String> = c.targets().iter().map(|t| t.to_string()).collect();
        assert_eq!(targets, ["a:5433", "b:5434"]);
        let c = cfg(&[("DATABASE_URL", "host=/run/postgresql port=5999")]).unwrap();
        let targets: Vec<String> = c.targets().iter().map(|t| t.to_string()).collect();
        assert_eq!(targets, ["/run/postgresql/.s.PGSQL.5999"]);
    }
}
