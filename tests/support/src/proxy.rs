//! A TCP proxy on loopback that tests put between a client and a server (the tiberius adapter
//! and the TDS test server, the AWS SDK and the local AWS endpoint) to break the network on
//! purpose: cut every open connection, stop listening for a while (connections refused) and come
//! back on the same port, or cut one connection when the client sends given bytes — either
//! before they reach the server (the request never ran) or after the server got them, dropping
//! its reply (the request ran; the client cannot know).
//!
//! It can also hold one request back for a while (a slow network at an exact point), to force
//! an interleaving of two clients.
//!
//! Bytes pass through unchanged; the proxy never parses a protocol. Triggers look at the
//! client's bytes only (TDS text is UTF-16LE: see [`utf16le`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// When a byte trigger cuts the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutTiming {
    /// Before the matching bytes reach the server: the request never ran.
    BeforeForwarding,
    /// The server gets the matching bytes; its reply is dropped and the connection cut: the
    /// request ran, the client sees a broken connection.
    LoseTheReply,
}

/// What a trigger does to the connection.
#[derive(Debug, Clone, Copy)]
enum Action {
    Cut(CutTiming),
    /// Holds the matching bytes back this long, then forwards them.
    Delay(std::time::Duration),
}

/// A planned fault on client bytes; strikes once.
#[derive(Debug, Clone)]
struct Trigger {
    pattern: Vec<u8>,
    action: Action,
    /// Also stop listening when it strikes (bring it back with [`TcpProxy::come_up`]).
    then_go_down: bool,
    label: String,
}

/// What the proxy did, for the tests' printouts and assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded.
    pub accepted: usize,
    /// Connections closed by [`TcpProxy::cut_all`], [`TcpProxy::go_down`] or a trigger.
    pub cut: usize,
    /// Labels of the triggers that struck, in order.
    pub struck: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    /// Bumped to close every open connection.
    generation: watch::Sender<u64>,
    triggers: Mutex<Vec<Trigger>>,
    struck: Mutex<Vec<String>>,
    accepted: AtomicUsize,
    cut: AtomicUsize,
    /// True while the proxy is down: the accept loop returns, dropping its listener.
    down_requested: watch::Sender<bool>,
}

/// The proxy; stops listening and closes its connections when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

/// The proxy could not listen.
#[derive(Debug, thiserror::Error)]
#[error("the proxy cannot listen on {addr}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

fn listen(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let fail = |source| ListenError { addr, source };
    let socket = TcpSocket::new_v4().map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(1024).map_err(fail)
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`.
    ///
    /// # Errors
    /// [`ListenError`] when no loopback port can be bound.
    pub async fn start(upstream: SocketAddr) -> Result<TcpProxy, ListenError> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = listen(any)?;
        let addr = listener
            .local_addr()
            .map_err(|source| ListenError { addr: any, source })?;
        let (generation, _) = watch::channel(0);
        let (down_requested, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            upstream,
            generation,
            triggers: Mutex::new(Vec::new()),
            struck: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            cut: AtomicUsize::new(0),
            down_requested,
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(TcpProxy {
            addr,
            shared,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, for SDK endpoints.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every open connection (new ones are still accepted).
    pub fn cut_all(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Cuts every connection and stops listening: new connections are refused until
    /// [`TcpProxy::come_up`].
    pub fn go_down(&self) {
        go_down_from_connection(&self.shared);
    }

    /// True while the proxy refuses connections.
    pub fn is_down(&self) -> bool {
        *self.shared.down_requested.borrow()
    }

    /// Listens again on the same port (after [`TcpProxy::go_down`] or a trigger that took the
    /// proxy down).
    ///
    /// # Errors
    /// [`ListenError`] when the port cannot be bound again.
    pub async fn come_up(&self) -> Result<(), ListenError> {
        let old = lock(&self.accept).take();
        if let Some(old) = old {
            // The loop ends by itself once down; a port still listening cannot be bound again.
            old.abort();
            let _ = old.await;
        }
        let listener = listen(self.addr)?;
        self.shared.down_requested.send_replace(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&self.shared)));
        *lock(&self.accept) = Some(task);
        Ok(())
    }

    /// Cuts the connection on which the client next sends `pattern` (once), at `timing`.
    pub fn cut_when_client_sends(&self, label: &str, pattern: &[u8], timing: CutTiming) {
        self.plan(label, pattern, timing, false);
    }

    /// As [`TcpProxy::cut_when_client_sends`], and then stops listening (every other
    /// connection cut too) until [`TcpProxy::come_up`].
    pub fn go_down_when_client_sends(&self, label: &str, pattern: &[u8], timing: CutTiming) {
        self.plan(label, pattern, timing, true);
    }

    /// Holds back the next client bytes that contain `pattern` (once) for `delay`, then
    /// forwards them: a slow network at one exact request.
    pub fn delay_when_client_sends(&self, label: &str, pattern: &[u8], delay: std::time::Duration) {
        lock(&self.shared.triggers).push(Trigger {
            pattern: pattern.to_vec(),
            action: Action::Delay(delay),
            then_go_down: false,
            label: label.to_owned(),
        });
    }

    fn plan(&self, label: &str, pattern: &[u8], timing: CutTiming, then_go_down: bool) {
        lock(&self.shared.triggers).push(Trigger {
            pattern: pattern.to_vec(),
            action: Action::Cut(timing),
            then_go_down,
            label: label.to_owned(),
        });
    }

    /// Planned triggers that have not struck yet.
    pub fn pending_triggers(&self) -> usize {
        lock(&self.shared.triggers).len()
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.shared.accepted.load(Ordering::SeqCst),
            cut: self.shared.cut.load(Ordering::SeqCst),
            struck: lock(&self.shared.struck).clone(),
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.accept).take() {
            task.abort();
        }
        self.cut_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `text` as UTF-16LE bytes: how TDS carries SQL text, for triggers on statements.
pub fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut down = shared.down_requested.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = down.wait_for(|d| *d) => return, // drops the listener: connections refused
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(shared.upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            pump(client, server, shared).await;
        });
    }
}

/// What a trigger decided for the bytes just read from the client.
enum Verdict {
    Forward,
    Delay(std::time::Duration),
    Cut { then_go_down: bool },
    ForwardThenLoseReply { then_go_down: bool },
}

fn judge(shared: &Shared, window: &[u8]) -> Verdict {
    let mut triggers = lock(&shared.triggers);
    let Some(i) = triggers.iter().position(|t| contains(window, &t.pattern)) else {
        return Verdict::Forward;
    };
    let t = triggers.remove(i);
    lock(&shared.struck).push(t.label);
    match t.action {
        Action::Delay(d) => Verdict::Delay(d),
        Action::Cut(CutTiming::BeforeForwarding) => Verdict::Cut {
            then_go_down: t.then_go_down,
        },
        Action::Cut(CutTiming::LoseTheReply) => Verdict::ForwardThenLoseReply {
            then_go_down: t.then_go_down,
        },
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn go_down_from_connection(shared: &Shared) {
    shared.down_requested.send_replace(true);
    shared.generation.send_modify(|g| *g += 1);
}

async fn pump(mut client: TcpStream, mut server: TcpStream, shared: Arc<Shared>) {
    let mut generation = shared.generation.subscribe();
    generation.borrow_and_update();
    let mut from_client = vec![0u8; 64 << 10];
    let mut from_server = vec![0u8; 64 << 10];
    // The client's recent bytes, so that a pattern split across reads still matches.
    let mut window: Vec<u8> = Vec::new();
    let mut lose_reply: Option<bool> = None;
    let cut = loop {
        tokio::select! {
            _ = generation.changed() => break true,
            read = client.read(&mut from_client) => {
                let n = match read { Ok(0) | Err(_) => break false, Ok(n) => n };
                let chunk = &from_client[..n];
                let keep = window.len().min(4096);
                window.drain(..window.len() - keep);
                window.extend_from_slice(chunk);
                match judge(&shared, &window) {
                    Verdict::Forward => {
                        if server.write_all(chunk).await.is_err() { break false; }
                    }
                    Verdict::Delay(d) => {
                        window.clear();
                        tokio::time::sleep(d).await;
                        if server.write_all(chunk).await.is_err() { break false; }
                    }
                    Verdict::Cut { then_go_down } => {
                        if then_go_down { go_down_from_connection(&shared); }
                        break true;
                    }
                    Verdict::ForwardThenLoseReply { then_go_down } => {
                        window.clear();
                        if server.write_all(chunk).await.is_err() { break false; }
                        lose_reply = Some(then_go_down);
                    }
                }
            }
            read = server.read(&mut from_server) => {
                let n = match read { Ok(0) | Err(_) => break false, Ok(n) => n };
                if let Some(then_go_down) = lose_reply {
                    if then_go_down { go_down_from_connection(&shared); }
                    break true;
                }
                if client.write_all(&from_server[..n]).await.is_err() { break false; }
            }
        }
    };
    if cut {
        shared.cut.fetch_add(1, Ordering::SeqCst);
        // Close without lingering: the peer sees a reset, as when a middlebox drops the flow.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}
