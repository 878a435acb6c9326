//! Protocol-level behaviour with a scripted handler.

use crate::common::{config, connect};
use bakdrop_tds_server::protocol::{
    Column, FaultTiming, Handler, Reply, ReplyPart, Request, RequestKind, ResultSet, ServerMessage,
    Session, SqlType, TdsServer, Value,
};
use std::sync::{Arc, Mutex};
use tiberius::ColumnData;
use tokio::io::AsyncWriteExt;

/// Answers by the statement text and records what it saw.
#[derive(Default)]
struct Scripted {
    seen: Mutex<Vec<(Request, Session)>>,
}

impl Handler for Scripted {
    fn handle(&self, session: &mut Session, req: &Request) -> Reply {
        self.seen
            .lock()
            .expect("lock")
            .push((req.clone(), session.clone()));
        match req.sql.as_str() {
            "typed" => {
                let mut rs = ResultSet::new(vec![
                    Column::new("i", SqlType::Int),
                    Column::new("b", SqlType::BigInt),
                    Column::new("s", SqlType::NVarChar),
                    Column::new("f", SqlType::Bit),
                    Column::new("x", SqlType::Float),
                ]);
                rs.push(vec![
                    Value::Int(-7),
                    Value::BigInt(1 << 40),
                    Value::text("héllo ✓"),
                    Value::Bit(true),
                    Value::Float(2.5),
                ]);
                rs.push(vec![
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ]);
                Reply::rows(rs)
            }
            "echo" => {
                let mut rs = ResultSet::new(vec![
                    Column::new("name", SqlType::NVarChar),
                    Column::new("value", SqlType::NVarChar),
                ]);
                for (n, v) in &req.params {
                    rs.push(vec![Value::text(n.clone()), Value::text(v.to_string())]);
                }
                Reply::rows(rs)
            }
            "big" => {
                let mut rs = ResultSet::new(vec![
                    Column::new("n", SqlType::Int),
                    Column::new("pad", SqlType::NVarChar),
                ]);
                for n in 0..2000 {
                    rs.push(vec![
                        Value::Int(n),
                        Value::text(format!("row-{n:05}-{}", "x".repeat(40))),
                    ]);
                }
                Reply::rows(rs)
            }
            "long" => {
                let mut rs = ResultSet::new(vec![Column::new("t", SqlType::NVarChar)]);
                rs.push(vec![Value::text("y".repeat(10_000))]);
                rs.push(vec![Value::Null]);
                Reply::rows(rs)
            }
            "fail" => {
                let mut r = Reply::empty();
                r.push(ReplyPart::Info(ServerMessage::info(0, "about to fail")));
                r.push(ReplyPart::Error(
                    ServerMessage::error(3201, "Cannot open backup device 'x'.").with_state(2),
                ));
                r
            }
            "update" => Reply::row_count(3),
            _ => {
                Reply::error(ServerMessage::error(102, "Incorrect syntax near 'x'.").with_class(15))
            }
        }
    }
}

async fn start() -> (
    std::net::SocketAddr,
    bakdrop_tds_server::ServerHandle,
    Arc<Scripted>,
) {
    let handler = Arc::new(Scripted::default());
    let (addr, handle) = TdsServer::start(handler.clone()).await.expect("start");
    (addr, handle, handler)
}

#[tokio::test]
async fn tiberius_logs_in_and_the_session_carries_login_fields() {
    let (addr, handle, handler) = start().await;
    let mut client = connect(addr).await;
    let rows = client
        .simple_query("update")
        .await
        .expect("batch")
        .into_results()
        .await
        .expect("drain");
    assert!(rows.is_empty());
    let (req, session) = handler.seen.lock().expect("lock")[0].clone();
    assert_eq!(req.kind, RequestKind::Batch);
    assert_eq!(session.user, "sa");
    assert_eq!(session.app_name, "bakdrop-tests");
    assert_eq!(session.packet_size, 4096);
    handle.shutdown().await;
    // After shutdown the port refuses new logins.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_query_returns_typed_columns_and_nulls() {
    let (addr, _handle, _) = start().await;
    let mut client = connect(addr).await;
    let rows = client
        .query("typed", &[])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.get::<i32, _>("i"), Some(-7));
    assert_eq!(r.get::<i64, _>("b"), Some(1 << 40));
    assert_eq!(r.get::<&str, _>("s"), Some("héllo ✓"));
    assert_eq!(r.get::<bool, _>("f"), Some(true));
    assert_eq!(r.get::<f64, _>("x"), Some(2.5));
    let n = &rows[1];
    assert_eq!(n.get::<i32, _>("i"), None);
    assert_eq!(n.get::<i64, _>("b"), None);
    assert_eq!(n.get::<&str, _>("s"), None);
    assert_eq!(n.get::<bool, _>("f"), None);
    assert_eq!(n.get::<f64, _>("x"), None);
}

#[tokio::test]
async fn parameters_arrive_with_their_types() {
    let (addr, _handle, handler) = start().await;
    let mut client = connect(addr).await;
    let rows = client
        .query(
            "echo",
            &[
                &5i32,
                &"db'one",
                &true,
                &9_000_000_000i64,
                &Option::<i32>::None,
            ],
        )
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>(0).unwrap_or_default().to_string(),
                r.get::<&str, _>(1).unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("@P1".to_string(), "5".to_string()),
            ("@P2".to_string(), "N'db''one'".to_string()),
            ("@P3".to_string(), "1".to_string()),
            ("@P4".to_string(), "9000000000".to_string()),
            ("@P5".to_string(), "NULL".to_string()),
        ]
    );
    let seen = handler.seen.lock().expect("lock");
    let (req, _) = &seen[0];
    assert_eq!(req.kind, RequestKind::ExecuteSql);
    assert_eq!(req.param("@p2"), Some(&Value::text("db'one")));
    assert_eq!(req.param("P3"), Some(&Value::Bit(true)));
    assert_eq!(req.param("P4"), Some(&Value::BigInt(9_000_000_000)));
}

#[tokio::test]
async fn a_server_error_surfaces_as_tiberius_server_error_with_number_and_message() {
    let (addr, _handle, _) = start().await;
    let mut client = connect(addr).await;
    let err = client.execute("fail", &[]).await.expect_err("must fail");
    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!(e.code(), 3201);
            assert_eq!(e.state(), 2);
            assert_eq!(e.class(), 16);
            assert_eq!(e.message(), "Cannot open backup device 'x'.");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    // The connection stays usable after a server error.
    let res = client.execute("update", &[]).await.expect("execute");
    assert_eq!(res.rows_affected(), &[3]);
    let err = match client.simple_query("nonsense").await {
        Ok(stream) => stream.into_results().await.expect_err("102"),
        Err(e) => e,
    };
    assert_eq!(err.code(), Some(102));
}

#[tokio::test]
async fn a_large_result_is_split_across_packets_and_read_whole() {
    let (addr, _handle, _) = start().await;
    let mut client = connect(addr).await;
    let rows = client
        .query("big", &[])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2000);
    assert_eq!(rows[1999].get::<i32, _>("n"), Some(1999));
    assert!(rows[1234]
        .get::<&str, _>("pad")
        .unwrap_or_default()
        .starts_with("row-01234-"));
    let rows = client
        .query("long", &[])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(rows[0].get::<&str, _>(0).map(str::len), Some(10_000));
    assert_eq!(rows[1].get::<&str, _>(0), None);
    // A parameter longer than one packet arrives whole too.
    let long = "z".repeat(9_000);
    let rows = client
        .query("echo", &[&long.as_str()])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(rows[0].get::<&str, _>(1).map(str::len), Some(9_000 + 3));
}

#[tokio::test]
async fn a_fault_cuts_the_connection_and_the_client_sees_an_io_error() {
    let (addr, handle, handler) = start().await;
    let mut client = connect(addr).await;
    handle.cut_connection_on_sql(FaultTiming::AfterHandler, "update");
    let err = client.execute("update", &[]).await.expect_err("cut");
    assert!(
        matches!(err, tiberius::error::Error::Io { .. }),
        "expected an I/O error, got {err:?}"
    );
    assert_eq!(handle.faults_struck().len(), 1);
    assert_eq!(handle.faults_pending(), 0);
    // AfterHandler: the handler ran.
    assert_eq!(handler.seen.lock().expect("lock").len(), 1);
    // BeforeHandler: it did not.
    let mut client = connect(addr).await;
    handle.cut_connection_on(FaultTiming::BeforeHandler, |r| r.sql == "typed");
    client.query("typed", &[]).await.expect_err("cut");
    assert_eq!(handler.seen.lock().expect("lock").len(), 1);
    // Other connections keep working.
    let mut client = connect(addr).await;
    client.execute("update", &[]).await.expect("works");
}

#[tokio::test]
async fn garbage_input_closes_only_that_connection() {
    let (addr, _handle, _) = start().await;
    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0x12, 0x01, 0x00, 0x02, 0, 0, 0, 0],
        vec![0x12, 0x01, 0x00, 0x0A, 0, 0, 1, 0, 0xAB, 0xCD],
        vec![0xFF; 70_000],
        vec![0x10, 0x01, 0x00, 0x10, 0, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8],
    ];
    for g in garbage {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.write_all(&g).await;
        let _ = tcp.shutdown().await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut buf),
        )
        .await;
    }
    // Garbage after a valid login, inside an RPC.
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut client = tiberius::Client::connect(
        config(addr),
        tokio_util::compat::TokioAsyncWriteCompatExt::compat_write(tcp),
    )
    .await
    .expect("login");
    let bad = "x".repeat(10);
    let _ = client.query("echo", &[&bad.as_str()]).await;
    // A fresh client still works.
    let mut client = connect(addr).await;
    let rows = client
        .query("typed", &[])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2);
    let _ = ColumnData::I32(None);
}
