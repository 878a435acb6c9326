//! Configuration from the environment, read once per cold start.

use std::time::Duration;

use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::restore::{RestoreConfig, SourceLocation};
use bakdrop_mssql::settings::TargetSettings;

/// What the function needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `STATUS_TABLE`.
    pub status_table: String,
    /// `RESTORE_QUEUE_URL` (polls and retries are sent back to it, delayed).
    pub restore_queue_url: String,
    /// The target and its login (`TARGET_*`).
    pub target: TargetSettings,
    pub restore: RestoreConfig,
    /// `MAX_RECEIVE_COUNT`: the restore queue's `maxReceiveCount` (the last delivery before the
    /// dead-letter queue).
    pub max_receives: Option<u32>,
}

/// A setting that is missing or invalid.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct SettingsError(String);

impl Settings {
    /// Reads the settings through `get`.
    ///
    /// # Errors
    /// [`SettingsError`] naming the variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let target = TargetSettings::from_lookup(&get).map_err(SettingsError)?;
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let required =
            |name: &str| get(name).ok_or_else(|| SettingsError(format!("{name} is not set")));
        let dialect = target.dialect;
        let location = SourceLocation::from_settings(
            dialect,
            get("SOURCE_LOCATION").as_deref(),
            get("AWS_REGION").as_deref(),
        )
        .map_err(SettingsError)?;
        let policy: VersionPolicy = match get("VERSION_POLICY") {
            Some(t) => t
                .parse()
                .map_err(|e| SettingsError(format!("VERSION_POLICY: {e}")))?,
            None => VersionPolicy::Same,
        };
        let seconds = |name: &str, default: u64| -> Result<Duration, SettingsError> {
            match get(name) {
                Some(t) => t
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|e| SettingsError(format!("{name}: {e}"))),
                None => Ok(Duration::from_secs(default)),
            }
        };
        Ok(Settings {
            status_table: required("STATUS_TABLE")?,
            restore_queue_url: required("RESTORE_QUEUE_URL")?,
            max_receives: get("MAX_RECEIVE_COUNT")
                .map(|t| {
                    t.parse()
                        .map_err(|e| SettingsError(format!("MAX_RECEIVE_COUNT: {e}")))
                })
                .transpose()?,
            target,
            restore: RestoreConfig {
                dialect,
                location,
                policy,
                check_version: true,
                poll_interval: seconds("POLL_INTERVAL_SECONDS", 60)?,
                busy_retry: seconds("BUSY_RETRY_SECONDS", 120)?,
                settle: settle(seconds("SETTLE_SECONDS", 2)?),
            },
        })
    }

    /// Reads the settings from the process environment.
    ///
    /// # Errors
    /// As [`Settings::from_lookup`].
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }
}

/// A poll waits in the invocation for a restore ending within `longest` (`SETTLE_SECONDS`,
/// default 2; 0: never), on tokio's timer.
pub fn settle(longest: Duration) -> Option<bakdrop_core::restore::Settle> {
    (!longest.is_zero()).then(|| bakdrop_core::restore::Settle {
        longest,
        pause: std::sync::Arc::new(|d| Box::pin(tokio::time::sleep(d))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakdrop_core::tsql::Dialect;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("STATUS_TABLE", "t"),
        ("RESTORE_QUEUE_URL", "q"),
        (
            "TARGET_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:1:secret:x",
        ),
    ];

    #[test]
    fn rds_is_the_default_dialect_and_reads_objects_by_arn() {
        let s = settings(&BASE).expect("valid");
        assert_eq!(s.restore.dialect, Dialect::Rds);
        assert_eq!(s.restore.location, SourceLocation::rds(None));
        assert_eq!(s.restore.poll_interval, Duration::from_secs(60));
    }

    #[test]
    fn native_needs_a_source_location() {
        let mut pairs = BASE.to_vec();
        pairs.push(("TARGET_DIALECT", "native"));
        assert!(settings(&pairs).is_err());
        pairs.push(("SOURCE_LOCATION", "disk:/var/opt/mssql/backup"));
        let s = settings(&pairs).expect("valid");
        assert_eq!(
            s.restore.location,
            SourceLocation::Disk {
                directory: "/var/opt/mssql/backup".into()
            }
        );
    }

    #[test]
    fn missing_and_invalid_settings_are_named() {
        let err = settings(&BASE[..2]).expect_err("no secret");
        assert!(err.to_string().contains("TARGET_SECRET_ARN"));
        let mut pairs = BASE.to_vec();
        pairs.push(("TARGET_DIALECT", "oracle"));
        assert!(settings(&pairs)
            .expect_err("bad")
            .to_string()
            .contains("TARGET_DIALECT"));
    }
}
