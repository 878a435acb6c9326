//! One place that talks tiberius: connect, run a statement with its parameters, drain every
//! result set (tiberius needs a stream drained before the next statement), and translate
//! tiberius errors into the core's [`TargetError`].

use std::time::Duration;

use bakdrop_core::ports::TargetError;
use bakdrop_core::tsql::{Param, Statement};
use tiberius::{Client, Config, Row, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

/// How long connecting (TCP, TLS and login) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one statement (run and drained) may take. bakdrop's statements start server-side
/// tasks and read catalog rows; none waits for a restore.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The timeouts of a target's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub query: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            query: QUERY_TIMEOUT,
        }
    }
}

fn timed_out(what: &str, after: Duration) -> TargetError {
    TargetError::Connection(Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} took longer than {} s", after.as_secs_f64()),
    )))
}

/// A connected client.
pub type Connection = Client<Compat<TcpStream>>;

/// Opens a connection with `config`.
///
/// # Errors
/// [`TargetError::Connection`] when the server cannot be reached or refuses the login.
pub async fn connect(config: &Config) -> Result<Connection, TargetError> {
    connect_within(config, CONNECT_TIMEOUT).await
}

/// [`connect`] within `limit` (TCP, TLS and login together).
///
/// # Errors
/// As [`connect`]; a connection that takes longer is [`TargetError::Connection`] (timed out).
pub async fn connect_within(config: &Config, limit: Duration) -> Result<Connection, TargetError> {
    let connecting = async {
        let tcp = TcpStream::connect(config.get_addr())
            .await
            .map_err(|e| TargetError::Connection(Box::new(e)))?;
        tcp.set_nodelay(true)
            .map_err(|e| TargetError::Connection(Box::new(e)))?;
        Client::connect(config.clone(), tcp.compat_write())
            .await
            .map_err(translate)
    };
    tokio::time::timeout(limit, connecting)
        .await
        .map_err(|_| timed_out("connecting to the target", limit))?
}

/// [`run`] within `limit`.
///
/// # Errors
/// As [`run`]; a statement that takes longer is [`TargetError::Connection`] (timed out).
pub async fn run_within(
    client: &mut Connection,
    statement: &Statement,
    limit: Duration,
) -> Result<Vec<Vec<Row>>, TargetError> {
    tokio::time::timeout(limit, run(client, statement))
        .await
        .map_err(|_| timed_out("a statement on the target", limit))?
}

/// Runs one statement and returns every result set, fully drained.
///
/// # Errors
/// [`TargetError::Sql`] with SQL Server's number and message, else as [`connect`].
pub async fn run(
    client: &mut Connection,
    statement: &Statement,
) -> Result<Vec<Vec<Row>>, TargetError> {
    let owned: Vec<Box<dyn ToSql>> = statement
        .params
        .iter()
        .map(|p| -> Box<dyn ToSql> {
            match p {
                Param::Text(t) => Box::new(t.clone()),
                Param::Int(v) => Box::new(*v),
                Param::BigInt(v) => Box::new(*v),
                Param::Guid(v) => Box::new(*v),
            }
        })
        .collect();
    let params: Vec<&dyn ToSql> = owned.iter().map(|b| b.as_ref()).collect();
    let stream = client
        .query(statement.sql.as_str(), &params)
        .await
        .map_err(translate)?;
    stream.into_results().await.map_err(translate)
}

/// tiberius' errors in the core's terms.
pub fn translate(error: tiberius::error::Error) -> TargetError {
    match error {
        tiberius::error::Error::Server(e) => TargetError::Sql {
            number: e.code(),
            message: e.message().to_owned(),
        },
        e @ (tiberius::error::Error::Io { .. }
        | tiberius::error::Error::Tls(_)
        | tiberius::error::Error::Routing { .. }) => TargetError::Connection(Box::new(e)),
        other => TargetError::Protocol(other.to_string()),
    }
}

/// A text column, by name, whatever its SQL type among the text types.
pub fn text(row: &Row, column: &str) -> Option<String> {
    row.try_get::<&str, _>(column)
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// A uniqueidentifier column, by name.
pub fn guid(row: &Row, column: &str) -> Option<tiberius::Uuid> {
    row.try_get::<tiberius::Uuid, _>(column).ok().flatten()
}

/// A whole-number column, by name, whatever its integer width.
pub fn integer(row: &Row, column: &str) -> Option<i64> {
    row.try_get::<i64, _>(column)
        .ok()
        .flatten()
        .or_else(|| row.try_get::<i32, _>(column).ok().flatten().map(i64::from))
        .or_else(|| row.try_get::<i16, _>(column).ok().flatten().map(i64::from))
        .or_else(|| row.try_get::<u8, _>(column).ok().flatten().map(i64::from))
}

/// A numeric column as a float, whatever its numeric type.
pub fn number(row: &Row, column: &str) -> Option<f64> {
    row.try_get::<f64, _>(column)
        .ok()
        .flatten()
        .or_else(|| row.try_get::<f32, _>(column).ok().flatten().map(f64::from))
        .or_else(|| integer(row, column).map(|v| v as f64))
}
