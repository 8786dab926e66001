//! Database credentials on AWS: the standard RDS secret JSON from Secrets Manager (read once, at
//! cold start), and optionally RDS IAM authentication (a SigV4-presigned token used as password,
//! valid 15 minutes, made fresh for every connection: [`DbConfig::password_source`]).

use crate::error::{ConfigError, Error};
use crate::pg::connect::DbConfig;
use anyhow::Context;
use serde::Deserialize;
use std::time::{Duration, SystemTime};

/// `{"host": ..., "port": 5432, "username": ..., "password": ..., "dbname": ...}` as RDS writes it.
#[derive(Deserialize)]
pub struct RdsSecret {
    pub host: String,
    #[serde(default, deserialize_with = "port_number_or_string")]
    pub port: Option<u16>,
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub dbname: Option<String>,
}

impl std::fmt::Debug for RdsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RdsSecret {{ host: {:?}, port: {:?}, username: {:?}, password: <hidden>, dbname: {:?} }}",
            self.host, self.port, self.username, self.dbname
        )
    }
}

fn port_number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        N(u16),
        S(String),
    }
    match Option::<Port>::deserialize(d)? {
        None => Ok(None),
        Some(Port::N(n)) => Ok(Some(n)),
        Some(Port::S(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl RdsSecret {
    pub fn parse(json: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(json).map_err(|e| {
            ConfigError::invalid(
                "DB_SECRET_ARN",
                "(secret value hidden)",
                // serde's message can quote a value (a numeric password, say): only say where.
                &format!(
                    "the RDS secret JSON with host, port, username, password, dbname (invalid at line {} column {})",
                    e.line(),
                    e.column()
                ),
            )
        })
    }

    /// A connection config from the secret, TLS settings from the environment lookup.
    pub fn db_config(
        &self,
        password: Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DbConfig, ConfigError> {
        let port = self.port.unwrap_or(5432).to_string();
        let password = password.or_else(|| self.password.clone());
        DbConfig::from_lookup(&|k| match k {
            "DATABASE_URL" => None,
            "PGHOST" => Some(self.host.clone()),
            "PGPORT" => Some(port.clone()),
            "PGUSER" => Some(self.username.clone()),
            "PGPASSWORD" => password.clone(),
            "PGDATABASE" => self.dbname.clone(),
            other => env(other),
        })
    }
}

/// Reads the secret named by `secret_id` (ARN or name).
pub async fn fetch_secret(sdk: &aws_config::SdkConfig, secret_id: &str) -> Result<RdsSecret, Error> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
        Error::transient(
            anyhow::anyhow!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e))
                .context(format!("read database secret {secret_id}")),
        )
    })?;
    let text = out.secret_string().ok_or_else(|| Error::invalid(format!("secret {secret_id} has no string value")))?;
    Ok(RdsSecret::parse(text)?)
}

/// An RDS IAM authentication token: `host:port/?Action=connect&DBUser=user&X-Amz-...`, presigned
/// for the `rds-db` service, valid 15 minutes.
pub fn rds_auth_token(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    credentials: aws_credential_types::Credentials,
    now: SystemTime,
) -> anyhow::Result<String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(900));
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(now)
        .settings(settings)
        .build()
        .context("signing parameters")?
        .into();
    let mut url = url::Url::parse(&format!("https://{host}:{port}/")).context("database host")?;
    url.query_pairs_mut().append_pair("Action", "connect").append_pair("DBUser", user);
    let signable = SignableRequest::new("GET", url.as_str(), std::iter::empty(), SignableBody::Bytes(&[]))
        .context("signable request")?;
    let (instructions, _) = sign(signable, &params).context("sign")?.into_parts();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in instructions.params() {
            q.append_pair(k, v);
        }
    }
    Ok(url.as_str().trim_start_matches("https://").to_string())
}

/// Resolves the database config on AWS: the secret (if `DB_SECRET_ARN` is set), then an IAM token
/// as password when `DB_IAM_AUTH=true`.
pub async fn resolve_db(env: &dyn Fn(&str) -> Option<String>, current: DbConfig) -> Result<DbConfig, Error> {
    let Some(secret_id) = env("DB_SECRET_ARN").filter(|s| !s.is_empty()) else { return Ok(current) };
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secret = fetch_secret(&sdk, &secret_id).await?;
    let iam = matches!(env("DB_IAM_AUTH").as_deref(), Some("true") | Some("1"));
    let mut config = secret.db_config(None, env)?;
    if iam {
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| Error::invalid("DB_IAM_AUTH=true but no AWS credentials are available"))?;
        let region =
            sdk.region().map(|r| r.to_string()).ok_or_else(|| Error::invalid("DB_IAM_AUTH=true needs AWS_REGION"))?;
        let source = iam_tokens(provider, secret.host.clone(), secret.port.unwrap_or(5432), secret.username, region);
        // One now, so missing credentials fail the start, not the first connect.
        source().await.map_err(Error::transient)?;
        config.password_source = Some(source);
    }
    Ok(config)
}

/// A fresh RDS IAM token for each connect, from the SDK's credentials provider (which caches and
/// renews the role's credentials itself).
fn iam_tokens(
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    host: String,
    port: u16,
    user: String,
    region: String,
) -> crate::pg::connect::PasswordSource {
    use aws_credential_types::provider::ProvideCredentials;
    std::sync::Arc::new(move || {
        let (provider, host, user, region) = (provider.clone(), host.clone(), user.clone(), region.clone());
        Box::pin(async move {
            let creds = provider.provide_credentials().await.map_err(|e| anyhow::anyhow!("AWS credentials: {e}"))?;
            rds_auth_token(&host, port, &user, &region, creds, SystemTime::now())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rds_secret_and_hides_the_password() {
        let s = RdsSecret::parse(r#"{"engine":"postgres","host":"db.example","port":"6432","username":"app","password":"hunter2","dbname":"shop","dbInstanceIdentifier":"x"}"#).unwrap();
        assert_eq!(s.port, Some(6432));
        assert!(!format!("{s:?}").contains("hunter2"));
        let cfg = s.db_config(None, &|k| (k == "PGSSLMODE").then(|| "require".to_string())).unwrap();
        assert_eq!(cfg.describe(), "app@db.example:6432/shop");
        assert_eq!(cfg.pg.get_password(), Some(&b"hunter2"[..]));
        assert!(RdsSecret::parse(r#"{"host": 1}"#).unwrap_err().to_string().contains("RDS secret JSON"));
        assert!(!RdsSecret::parse(r#"{"password": "hunter2"}"#).unwrap_err().to_string().contains("hunter2"));
        assert!(!RdsSecret::parse(r#"{"host": "h", "username": "u", "password": 987654321}"#)
            .unwrap_err()
            .to_string()
            .contains("987654321"));
    }

    #[test]
    fn iam_token_is_a_presigned_rds_db_connect_url() {
        let creds = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let token =
            rds_auth_token("db.example.us-east-1.rds.amazonaws.com", 5432, "app", "us-east-1", creds.clone(), t)
                .unwrap();
        assert!(token.starts_with("db.example.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app&X-Amz-Algorithm=AWS4-HMAC-SHA256"), "{token}");
        assert!(
            token.contains("X-Amz-Credential=AKIDEXAMPLE%2F20260921%2Fus-east-1%2Frds-db%2Faws4_request"),
            "{token}"
        );
        assert!(token.contains("X-Amz-Expires=900") && token.contains("X-Amz-Signature="), "{token}");
        // Deterministic for the same inputs, different for another user.
        assert_eq!(
            token,
            rds_auth_token("db.example.us-east-1.rds.amazonaws.com", 5432, "app", "us-east-1", creds.clone(), t)
                .unwrap()
        );
        assert_ne!(
            token,
            rds_auth_token("db.example.us-east-1.rds.amazonaws.com", 5432, "other", "us-east-1", creds, t).unwrap()
        );
    }

    /// The source a connect calls signs with the provider's credentials as they are then.
    #[tokio::test]
    async fn iam_tokens_are_made_from_the_provider_at_each_call() {
        let creds = aws_credential_types::Credentials::new("AKIDNOW", "secret", None, None, "test");
        let provider = aws_credential_types::provider::SharedCredentialsProvider::new(creds);
        let source = iam_tokens(provider, "db.example".into(), 5433, "app".into(), "eu-west-1".into());
        let token = source().await.unwrap();
        assert!(token.starts_with("db.example:5433/?Action=connect&DBUser=app&"), "{token}");
        assert!(token.contains("X-Amz-Credential=AKIDNOW%2F") && token.contains("%2Feu-west-1%2Frds-db%2F"), "{token}");
    }
}
