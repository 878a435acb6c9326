//! The TCP server: accepts connections on loopback, runs the login handshake, and hands each
//! decoded request to a [`Handler`]; also the fault hook that cuts a connection on purpose.

use super::decode::{self, DecodeError};
use super::encode::{self, ReplyStyle, ServerVersion, Tokens};
use super::types::{Reply, Request, ServerMessage, Session};
use super::wire::{self, packet_type, ReadMessageError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Answers requests. Called on the connection's task; keep it quick (no blocking I/O).
pub trait Handler: Send + Sync + 'static {
    /// The reply to one request.
    fn handle(&self, session: &mut Session, req: &Request) -> Reply;

    /// Accepts or refuses a login (refusal sends the error and closes). Default: accept.
    ///
    /// # Errors
    /// The message the client sees (e.g. 18456 "Login failed for user ...").
    fn login(&self, _session: &Session, _password: &str) -> Result<(), ServerMessage> {
        Ok(())
    }

    /// Version sent in PRELOGIN and LOGINACK.
    fn version(&self) -> ServerVersion {
        ServerVersion {
            major: 16,
            minor: 0,
            build: 4135,
        }
    }

    /// Server name put in ERROR/INFO tokens.
    fn server_name(&self) -> String {
        "EMULATOR".to_string()
    }
}

/// When a planned fault strikes relative to the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTiming {
    /// Drop the connection before the handler sees the request (the statement never ran).
    BeforeHandler,
    /// Run the handler, then drop the connection instead of replying (it ran; the reply is lost).
    AfterHandler,
}

type Predicate = Box<dyn Fn(&Request) -> bool + Send + Sync>;

struct Fault {
    timing: FaultTiming,
    predicate: Predicate,
}

/// Faults planned by a test; each strikes once.
#[derive(Default)]
struct Faults {
    pending: Mutex<Vec<Fault>>,
    struck: Mutex<Vec<Request>>,
}

impl Faults {
    fn take(&self, req: &Request) -> Option<FaultTiming> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let idx = pending.iter().position(|f| (f.predicate)(req))?;
        let fault = pending.remove(idx);
        self.struck
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(req.clone());
        Some(fault.timing)
    }
}

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening socket could not be bound.
    #[error("binding {addr} failed")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The TDS server.
#[derive(Debug)]
pub struct TdsServer;

impl TdsServer {
    /// Starts a server on `127.0.0.1:0` (a free port).
    ///
    /// # Errors
    /// [`StartError::Bind`].
    pub async fn start(
        handler: Arc<dyn Handler>,
    ) -> Result<(SocketAddr, ServerHandle), StartError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), handler).await
    }

    /// Starts a server on a given address.
    ///
    /// # Errors
    /// [`StartError::Bind`].
    pub async fn start_on(
        addr: SocketAddr,
        handler: Arc<dyn Handler>,
    ) -> Result<(SocketAddr, ServerHandle), StartError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let faults = Arc::new(Faults::default());
        let spids = Arc::new(AtomicU16::new(51));
        let task = tokio::spawn(accept_loop(
            listener,
            handler,
            stop_rx,
            Arc::clone(&faults),
            spids,
        ));
        Ok((
            local,
            ServerHandle {
                addr: local,
                stop: stop_tx,
                task: Some(task),
                faults,
            },
        ))
    }
}

/// Controls a running server; dropping it stops the server too.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops the connection at the next request matching `predicate` (once), at `timing`.
    pub fn cut_connection_on(
        &self,
        timing: FaultTiming,
        predicate: impl Fn(&Request) -> bool + Send + Sync + 'static,
    ) {
        self.faults
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Fault {
                timing,
                predicate: Box::new(predicate),
            });
    }

    /// Drops the connection at the next request whose text contains `needle` (case-insensitive).
    pub fn cut_connection_on_sql(&self, timing: FaultTiming, needle: &str) {
        let needle = needle.to_lowercase();
        self.cut_connection_on(timing, move |r| r.sql.to_lowercase().contains(&needle));
    }

    /// Requests at which a planned fault struck, in order.
    pub fn faults_struck(&self) -> Vec<Request> {
        self.faults
            .struck
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Planned faults that have not struck yet.
    pub fn faults_pending(&self) -> usize {
        self.faults
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Stops accepting, closes every connection, and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    mut stop: watch::Receiver<bool>,
    faults: Arc<Faults>,
    spids: Arc<AtomicU16>,
) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let spid = spids.fetch_add(1, Ordering::Relaxed);
                let handler = Arc::clone(&handler);
                let faults = Arc::clone(&faults);
                let mut stop = stop.clone();
                conns.retain(|c| !c.is_finished());
                conns.push(tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.changed() => {}
                        result = serve(stream, handler, faults, spid) => {
                            if let Err(e) = result {
                                tracing::debug!(error.message = %e, spid, "TDS connection closed");
                            }
                        }
                    }
                }));
            }
        }
    }
    for c in conns {
        c.abort();
        let _ = c.await;
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Reading a message failed.
    #[error(transparent)]
    Read(#[from] ReadMessageError),
    /// A message could not be decoded.
    #[error("undecodable {ty:#04x} message")]
    Decode {
        /// Packet type.
        ty: u8,
        /// The cause.
        #[source]
        source: DecodeError,
    },
    /// A packet type that is not valid at this point of the conversation.
    #[error("unexpected packet type {0:#04x}")]
    UnexpectedPacket(u8),
    /// Writing a reply failed.
    #[error("writing to the client failed")]
    Write(#[source] std::io::Error),
    /// The handler refused the login.
    #[error("login refused")]
    LoginRefused,
    /// A planned fault cut the connection.
    #[error("connection cut by a planned fault")]
    FaultInjected,
}

async fn serve(
    mut stream: TcpStream,
    handler: Arc<dyn Handler>,
    faults: Arc<Faults>,
    spid: u16,
) -> Result<(), ConnectionError> {
    let _ = stream.set_nodelay(true);
    let version = handler.version();
    let server = handler.server_name();

    // PRELOGIN.
    let msg = wire::read_message(&mut stream).await?;
    if msg.ty != packet_type::PRELOGIN {
        return Err(ConnectionError::UnexpectedPacket(msg.ty));
    }
    decode::check_prelogin(&msg.payload)
        .map_err(|source| ConnectionError::Decode { ty: msg.ty, source })?;
    write(&mut stream, spid, encode::prelogin_reply(version), 4096)
        .await
        .map_err(ConnectionError::Write)?;

    // LOGIN7.
    let msg = wire::read_message(&mut stream).await?;
    if msg.ty != packet_type::LOGIN7 {
        return Err(ConnectionError::UnexpectedPacket(msg.ty));
    }
    let login = decode::login7(&msg.payload)
        .map_err(|source| ConnectionError::Decode { ty: msg.ty, source })?;
    let packet_size = if login.packet_size == 0 {
        4096
    } else {
        login.packet_size.clamp(512, 32767)
    };
    let mut session = Session {
        spid,
        user: login.user.clone(),
        database: if login.database.is_empty() {
            "master".to_string()
        } else {
            login.database.clone()
        },
        app_name: login.app_name.clone(),
        host_name: login.host_name.clone(),
        packet_size,
        notes: Vec::new(),
    };
    let size = packet_size as usize;
    if let Err(refusal) = handler.login(&session, &login.password) {
        let mut t = Tokens::new();
        t.message(&refusal, &server);
        t.done(0xFD, 0x02, 0, 0);
        write(&mut stream, spid, t.into_bytes(), 4096)
            .await
            .map_err(ConnectionError::Write)?;
        return Err(ConnectionError::LoginRefused);
    }
    let mut t = Tokens::new();
    t.env_change_text(1, &session.database, "master");
    t.message(
        &ServerMessage::info(
            5701,
            format!("Changed database context to '{}'.", session.database),
        )
        .with_state(2),
        &server,
    );
    t.env_change_collation();
    t.login_ack("Microsoft SQL Server", version);
    t.env_change_text(4, &packet_size.to_string(), "4096");
    t.done(0xFD, 0, 0, 0);
    write(&mut stream, spid, t.into_bytes(), 4096)
        .await
        .map_err(ConnectionError::Write)?;

    // Requests.
    loop {
        let msg = wire::read_message(&mut stream).await?;
        let (req, style) = match msg.ty {
            packet_type::SQL_BATCH => (decode::sql_batch(&msg.payload), ReplyStyle::Batch),
            packet_type::RPC => (decode::rpc(&msg.payload), ReplyStyle::Rpc),
            packet_type::ATTENTION => {
                let mut t = Tokens::new();
                t.done(0xFD, 0x20, 0, 0);
                write(&mut stream, spid, t.into_bytes(), size)
                    .await
                    .map_err(ConnectionError::Write)?;
                continue;
            }
            other => return Err(ConnectionError::UnexpectedPacket(other)),
        };
        let req = req.map_err(|source| ConnectionError::Decode { ty: msg.ty, source })?;
        let fault = faults.take(&req);
        if fault == Some(FaultTiming::BeforeHandler) {
            return Err(ConnectionError::FaultInjected);
        }
        let reply = handler.handle(&mut session, &req);
        if fault == Some(FaultTiming::AfterHandler) {
            return Err(ConnectionError::FaultInjected);
        }
        let bytes = encode::reply(&reply, style, &server);
        write(&mut stream, spid, bytes, size)
            .await
            .map_err(ConnectionError::Write)?;
    }
}

async fn write(
    stream: &mut TcpStream,
    spid: u16,
    payload: Vec<u8>,
    size: usize,
) -> std::io::Result<()> {
    wire::write_message(stream, packet_type::TABULAR_RESULT, spid, &payload, size).await
}
