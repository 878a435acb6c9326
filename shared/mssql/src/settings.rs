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
