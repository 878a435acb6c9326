//! The adapter pointed at the TDS test server (`tests/tds-server`) on loopback, for the tests
//! and benchmarks of every crate (feature `test-support`).

use bakdrop_core::tsql::Dialect;

use crate::settings::{TargetLogin, Tls};
use crate::TiberiusTarget;

/// A target on `127.0.0.1:port` speaking `dialect`, with the login every test uses (the test
/// server accepts any unless told otherwise), without TLS.
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
