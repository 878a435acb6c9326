//! The tiberius adapter pointed at the TDS test server (tests/tds-server) on loopback: the login
//! every test uses (the emulator accepts any), without TLS.

use bakdrop_core::tsql::Dialect;
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
