//! Configuration from the environment, read once per cold start.

use bakdrop_core::model::version::{SqlServerRelease, VersionPolicy};
use bakdrop_core::tsql::source::SourceLocation;

/// What the function needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// DynamoDB status table (`STATUS_TABLE`).
    pub status_table: String,
    /// SQS restore queue URL (`RESTORE_QUEUE_URL`).
    pub restore_queue_url: String,
    /// Target SQL Server release (`TARGET_SQLSERVER_VERSION`, e.g. `2022`, `16`, `957`).
    pub target: SqlServerRelease,
    /// Version policy (`VERSION_POLICY`: `same` (default) or `not-newer`).
    pub policy: VersionPolicy,
    /// Where the target will read the backups (`TARGET_DIALECT`, `SOURCE_LOCATION`,
    /// `AWS_REGION`), so that an upload it could never read is rejected at once.
    pub location: SourceLocation,
    /// An uploaded `bakdrop-complete.json` arms Complete (`COMPLETE_BY_UPLOAD`: `enabled`;
    /// default `disabled`, when such an object is ignored).
    pub arm_by_upload: bool,
}

/// A setting that is missing or invalid.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct SettingsError(String);

impl Settings {
    /// Reads the settings through `get` (the process environment in production).
    ///
    /// # Errors
    /// [`SettingsError`] naming the missing or invalid variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let required = |name: &str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| SettingsError(format!("{name} is not set")))
        };
        let config =
            bakdrop_core::validate::ValidateConfig::from_lookup(&get).map_err(SettingsError)?;
        let target = config
            .target
            .ok_or_else(|| SettingsError("TARGET_SQLSERVER_VERSION is not set".into()))?;
        let (policy, location, arm_by_upload) =
            (config.policy, config.location, config.arm_by_upload);
        Ok(Settings {
            arm_by_upload,
            status_table: required("STATUS_TABLE")?,
            restore_queue_url: required("RESTORE_QUEUE_URL")?,
            target,
            policy,
            location,
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
