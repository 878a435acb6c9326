//! The tiberius adapter pointed at the TDS test server (tests/tds-server) on loopback: the login
//! every test uses (the emulator accepts any unless told otherwise), without TLS; and the restore
//! worker's configuration the end-to-end tests share.

use std::time::Duration;

use bakdrop_core::restore::{RestoreConfig, SourceLocation};
use bakdrop_core::tsql::Dialect;
use bakdrop_core::version::VersionPolicy;
use bakdrop_mssql::settings::{TargetLogin, Tls};
use bakdrop_mssql::TiberiusTarget;

/// A target on `127.0.0.1:port` speaking `dialect`.
pub fn emulator_target(port: u16, dialect: Dialect) -> TiberiusTarget {
    let login = TargetLogin {
        host: "127.0.0.1".into(),
        port,
        username: "admin".into(),
        password: "Secret#1".into(),
        tls: Tls::Off,
    };
    TiberiusTarget::new(login.config(), dialect)
}

/// Where the native dialect's target reads backups in the tests (`RESTORE … FROM DISK`).
pub const DISK: &str = "/var/opt/mssql/backup";

/// The worker's configuration against the TDS test server: S3 ARNs on RDS, [`DISK`] natively,
/// backups no newer than the target, polls and busy retries at once (the tests drive time).
pub fn emulator_restore_config(dialect: Dialect) -> RestoreConfig {
    RestoreConfig {
        dialect,
        location: match dialect {
            Dialect::Rds => SourceLocation::rds(None),
            Dialect::Native => SourceLocation::Disk {
                directory: DISK.into(),
            },
        },
        policy: VersionPolicy::NotNewer,
        poll_interval: Duration::ZERO,
        busy_retry: Duration::ZERO,
    }
}
