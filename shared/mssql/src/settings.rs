//! How to reach the target: host, port, login and TLS, turned into a tiberius [`Config`] without
//! ever pasting the password into a connection string.

use std::fmt;

use tiberius::{AuthMethod, Config, EncryptionLevel};

/// TLS towards the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// No TLS (local test servers only).
    Off,
    /// TLS, verifying the server against the CA bundle in this PEM/DER file (RDS: the RDS CA
    /// bundle for the region).
    VerifyWithCa(String),
    /// TLS, verifying the server against the system roots.
    Verify,
    /// TLS without verifying the certificate (not for production).
    TrustServerCertificate,
}

/// The target's address and login.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetLogin {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub tls: Tls,
}

// Never print the password.
impl fmt::Debug for TargetLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetLogin")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("tls", &self.tls)
            .finish()
    }
}

impl TargetLogin {
    /// The tiberius configuration (database `master`, application name `bakdrop`).
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config.host(&self.host);
        config.port(self.port);
        config.database("master");
        config.application_name("bakdrop");
        config.authentication(AuthMethod::sql_server(&self.username, &self.password));
        match &self.tls {
            Tls::Off => config.encryption(EncryptionLevel::NotSupported),
            Tls::Verify => config.encryption(EncryptionLevel::Required),
            Tls::VerifyWithCa(path) => {
                config.encryption(EncryptionLevel::Required);
                config.trust_cert_ca(path);
            }
            Tls::TrustServerCertificate => {
                config.encryption(EncryptionLevel::Required);
                config.trust_cert();
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_appears_in_debug_output() {
        let login = TargetLogin {
            host: "db".into(),
            port: 1433,
            username: "admin".into(),
            password: "s3cr3t;Password=x".into(),
            tls: Tls::Off,
        };
        let shown = format!("{login:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(login.config().get_addr(), "db:1433");
    }
}

impl fmt::Display for Tls {
    /// As `TARGET_TLS` and `--target tls=` take it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tls::Off => f.write_str("off"),
            Tls::Verify => f.write_str("verify"),
            Tls::TrustServerCertificate => f.write_str("trust-server-certificate"),
            Tls::VerifyWithCa(path) => write!(f, "ca:{path}"),
        }
    }
}

impl std::str::FromStr for Tls {
    type Err = String;

    /// `verify`, `ca:<path>`, `trust-server-certificate` or `off`.
    fn from_str(text: &str) -> Result<Tls, String> {
        match text.trim() {
            "verify" => Ok(Tls::Verify),
            "off" => Ok(Tls::Off),
            "trust-server-certificate" => Ok(Tls::TrustServerCertificate),
            other => match other.strip_prefix("ca:") {
                Some(path) if !path.is_empty() => Ok(Tls::VerifyWithCa(path.to_owned())),
                _ => Err(format!(
                    "TARGET_TLS {other:?}: use verify, ca:<path>, trust-server-certificate or off"
                )),
            },
        }
    }
}

/// Where the target is and how to log in, from the environment: `TARGET_DIALECT` (rds |
/// native), `TARGET_SECRET_ARN` (the login, Secrets Manager), `TARGET_HOST` / `TARGET_PORT`
/// (override the secret's), `TARGET_TLS`, and for native restores `TARGET_DATA_PATH` /
/// `TARGET_LOG_PATH` (where the database's files go instead of the server's default
/// directories; the log path defaults to the data path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSettings {
    pub dialect: bakdrop_core::tsql::Dialect,
    pub secret_id: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Tls,
    pub paths: Option<bakdrop_core::tsql::TargetPaths>,
}

impl TargetSettings {
    /// Reads the target settings through `get`.
    ///
    /// # Errors
    /// A sentence naming the missing or invalid variable.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<TargetSettings, String> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        Ok(TargetSettings {
            dialect: get("TARGET_DIALECT")
                .unwrap_or_else(|| "rds".into())
                .parse()
                .map_err(|e| format!("TARGET_DIALECT: {e}"))?,
            secret_id: get("TARGET_SECRET_ARN").ok_or("TARGET_SECRET_ARN is not set")?,
            host: get("TARGET_HOST"),
            port: get("TARGET_PORT")
                .map(|p| p.parse().map_err(|e| format!("TARGET_PORT: {e}")))
                .transpose()?,
            tls: get("TARGET_TLS")
                .unwrap_or_else(|| "verify".into())
                .parse()?,
            paths: match (get("TARGET_DATA_PATH"), get("TARGET_LOG_PATH")) {
                (Some(data), log) => Some(bakdrop_core::tsql::TargetPaths {
                    log: log.unwrap_or_else(|| data.clone()),
                    data,
                }),
                (None, Some(_)) => {
                    return Err("TARGET_LOG_PATH is set without TARGET_DATA_PATH".into())
                }
                (None, None) => None,
            },
        })
    }

    /// The login, given the username, password and (optional) host and port from the secret.
    ///
    /// # Errors
    /// When neither the settings nor the secret name the host.
    pub fn login(
        &self,
        username: &str,
        password: &str,
        secret_host: Option<&str>,
        secret_port: Option<u16>,
    ) -> Result<TargetLogin, String> {
        Ok(TargetLogin {
            host: self
                .host
                .clone()
                .or(secret_host.map(str::to_owned))
                .ok_or("the target host is neither in TARGET_HOST nor in the secret")?,
            port: self.port.or(secret_port).unwrap_or(1433),
            username: username.to_owned(),
            password: password.to_owned(),
            tls: self.tls.clone(),
        })
    }
}
