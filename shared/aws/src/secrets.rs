//! The target's login from Secrets Manager (the JSON shape RDS uses for its managed secrets:
//! `{"username", "password", "host", "port"}`). The password lives in memory only.

use std::fmt;

use serde::Deserialize;

/// A login read from a secret.
#[derive(Clone, Deserialize)]
pub struct SecretLogin {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default, deserialize_with = "port_from_number_or_text")]
    pub port: Option<u16>,
}

impl fmt::Debug for SecretLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretLogin")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

fn port_from_number_or_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Option::<Port>::deserialize(d)? {
        None => Ok(None),
        Some(Port::Number(n)) => Ok(Some(n)),
        Some(Port::Text(t)) => t.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Why the login could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Secrets Manager is unavailable or refused to read the secret")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the secret is not JSON with username and password: {0}")]
    Malformed(String),
}

impl SecretError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretError::Unavailable(_))
    }
}

/// Reads and decodes the secret `secret_id` (ARN or name).
///
/// # Errors
/// [`SecretError`].
pub async fn read_login(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<SecretLogin, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| SecretError::Unavailable(Box::new(e)))?;
    let text = out
        .secret_string()
        .ok_or_else(|| SecretError::Malformed("the secret has no string value".into()))?;
    serde_json::from_str(text).map_err(|e| SecretError::Malformed(e.to_string()))
}
