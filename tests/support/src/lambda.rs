//! A local Lambda service for tests and benchmarks: the Invoke API that the AWS SDK calls
//! (`POST /2015-03-31/functions/{name}/invocations`) in front of functions that are either
//!
//! - real function binaries, started as processes that poll a local Lambda Runtime API
//!   (`/2018-06-01/runtime/invocation/next`, `…/{id}/response`, `…/{id}/error`, `…/init/error`),
//!   exactly as they do in AWS, with their cold start (process start → first poll) and peak RSS
//!   measured; or
//! - in-process handlers (a closure over a function crate's `handle`), for tests that cannot
//!   build the binaries (cargo holds the build lock while tests run).
//!
//! What it answers is what the AWS SDK reads: the payload, `X-Amz-Function-Error: Unhandled` with
//! `{"errorType", "errorMessage"}` for a function error, `X-Amz-Executed-Version`, and
//! `ResourceNotFoundException` for an unknown function. `Event` invokes answer 202 and run in
//! the background; `DryRun` answers 204.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};

/// What a function answered: its payload, or the error it reported.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(Value),
    /// `errorType`, `errorMessage`.
    Error {
        error_type: String,
        message: String,
    },
}

/// Why an invoke could not run.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("function {0} is not registered")]
    NotFound(String),
    #[error("function {0} stopped before answering (its process exited or failed to start)")]
    Gone(String),
    #[error("function {name} did not answer within {after:?}")]
    Timeout { name: String, after: Duration },
}

type HandlerFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;
type Handler = Arc<dyn Fn(Value) -> HandlerFuture + Send + Sync>;

/// One invocation waiting for a process to take it.
#[derive(Debug)]
struct Invocation {
    id: String,
    payload: Value,
    answer: oneshot::Sender<Outcome>,
}

/// A function binary running against its own Runtime API listener.
#[derive(Debug)]
struct Process {
    queue: mpsc::UnboundedSender<Invocation>,
    runtime: tokio::task::JoinHandle<()>,
    timing: Arc<Mutex<Timing>>,
    pid: Option<u32>,
    child: AsyncMutex<tokio::process::Child>,
}

#[derive(Debug, Default)]
struct Timing {
    spawned: Option<Instant>,
    first_poll: Option<Instant>,
    init_error: Option<String>,
}

enum Function {
    InProcess(Handler),
    Process(Arc<Process>),
}

/// The local Lambda service. Dropping it stops its listener; [`LocalLambda::stop`] also ends
/// the processes it started.
pub struct LocalLambda {
    addr: SocketAddr,
    functions: Arc<Mutex<HashMap<String, Function>>>,
    server: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl std::fmt::Debug for LocalLambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLambda")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Cold-start figures of a spawned function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdStart {
    /// From process start to its first `GET …/invocation/next`.
    pub init: Duration,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LocalLambda {
    /// Starts the Invoke API on a free loopback port.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> std::io::Result<LocalLambda> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let functions: Arc<Mutex<HashMap<String, Function>>> = Arc::default();
        let timeout = Duration::from_secs(60);
        let shared = Arc::clone(&functions);
        let server = tokio::spawn(serve(listener, move |req| {
            let functions = Arc::clone(&shared);
            async move { invoke_api(req, functions, timeout).await }
        }));
        Ok(LocalLambda {
            addr,
            functions,
            server,
            timeout,
        })
    }

    /// The endpoint to give the AWS SDK (`endpoint_url`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers `name` as an in-process handler.
    pub fn route<F, Fut>(&self, name: &str, handler: F)
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |v| Box::pin(handler(v)));
        lock(&self.functions).insert(name.to_owned(), Function::InProcess(handler));
    }

    /// Starts `program` with `args` as function `name`: its own Runtime API listener, the
    /// environment Lambda gives a function (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`,
    /// …) plus `env` (nothing else of this process's environment but `PATH`), stdout/stderr to
    /// `log` (or discarded).
    ///
    /// # Errors
    /// When the listener cannot be bound or the process not started.
    pub async fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let runtime_addr = listener.local_addr()?;
        let (queue, rx) = mpsc::unbounded_channel::<Invocation>();
        let rx = Arc::new(AsyncMutex::new(rx));
        let waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>> = Arc::default();
        let timing: Arc<Mutex<Timing>> = Arc::default();
        let runtime = {
            let (rx, timing) = (rx, Arc::clone(&timing));
            let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
            tokio::spawn(serve(listener, move |req| {
                let (rx, waiting, timing, arn) = (
                    Arc::clone(&rx),
                    Arc::clone(&waiting),
                    Arc::clone(&timing),
                    arn.clone(),
                );
                async move { runtime_api(req, rx, waiting, timing, arn).await }
            }))
        };
        let (stdout, stderr) = match log {
            Some(path) => {
                let file = std::fs::File::create(path)?;
                (Stdio::from(file.try_clone()?), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime_addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        lock(&timing).spawned = Some(Instant::now());
        let child = command.spawn()?;
        let pid = child.id();
        let process = Arc::new(Process {
            queue,
            runtime,
            timing,
            pid,
            child: AsyncMutex::new(child),
        });
        lock(&self.functions).insert(name.to_owned(), Function::Process(process));
        Ok(())
    }

    /// Waits until the spawned function `name` polls for its first invocation.
    ///
    /// # Errors
    /// [`InvokeError::NotFound`] for an unknown or in-process function, [`InvokeError::Gone`]
    /// when the process reported an init error or exited, [`InvokeError::Timeout`].
    pub async fn cold_start(&self, name: &str) -> Result<ColdStart, InvokeError> {
        let process = self.process(name)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            {
                let t = lock(&process.timing);
                if let (Some(spawned), Some(first)) = (t.spawned, t.first_poll) {
                    return Ok(ColdStart {
                        init: first.duration_since(spawned),
                    });
                }
                if t.init_error.is_some() {
                    return Err(InvokeError::Gone(name.to_owned()));
                }
            }
            if let Ok(Some(_)) = process.child.lock().await.try_wait() {
                return Err(InvokeError::Gone(name.to_owned()));
            }
            if Instant::now() > deadline {
                return Err(InvokeError::Timeout {
                    name: name.to_owned(),
                    after: self.timeout,
                });
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// The spawned function's peak resident set so far (`VmHWM`), in KiB.
    ///
    /// # Errors
    /// When `name` is not a running process.
    pub fn peak_rss_kib(&self, name: &str) -> Result<u64, InvokeError> {
        let process = self.process(name)?;
        let pid = process
            .pid
            .ok_or_else(|| InvokeError::Gone(name.to_owned()))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|_| InvokeError::Gone(name.to_owned()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| InvokeError::Gone(name.to_owned()))
    }

    /// Invokes `name` directly (what the Invoke API does for a `RequestResponse` call).
    ///
    /// # Errors
    /// [`InvokeError`].
    pub async fn invoke(&self, name: &str, payload: Value) -> Result<Outcome, InvokeError> {
        invoke(&self.functions, name, payload, self.timeout).await
    }

    /// Ends the process of function `name` and forgets the function.
    pub async fn kill(&self, name: &str) {
        let removed = lock(&self.functions).remove(name);
        if let Some(Function::Process(p)) = removed {
            p.runtime.abort();
            let mut child = p.child.lock().await;
            let _ = child.kill().await;
        }
    }

    /// Stops the listener and every process started.
    pub async fn stop(self) {
        self.server.abort();
        let processes: Vec<Arc<Process>> = lock(&self.functions)
            .drain()
            .filter_map(|(_, f)| match f {
                Function::Process(p) => Some(p),
                Function::InProcess(_) => None,
            })
            .collect();
        for p in processes {
            p.runtime.abort();
            let mut child = p.child.lock().await;
            let _ = child.kill().await;
        }
    }

    fn process(&self, name: &str) -> Result<Arc<Process>, InvokeError> {
        match lock(&self.functions).get(name) {
            Some(Function::Process(p)) => Ok(Arc::clone(p)),
            _ => Err(InvokeError::NotFound(name.to_owned())),
        }
    }
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn invoke(
    functions: &Mutex<HashMap<String, Function>>,
    name: &str,
    payload: Value,
    timeout: Duration,
) -> Result<Outcome, InvokeError> {
    enum Target {
        InProcess(Handler),
        Process(Arc<Process>),
    }
    let target = match lock(functions).get(name) {
        Some(Function::InProcess(h)) => Target::InProcess(Arc::clone(h)),
        Some(Function::Process(p)) => Target::Process(Arc::clone(p)),
        None => return Err(InvokeError::NotFound(name.to_owned())),
    };
    let answer = match target {
        Target::InProcess(handler) => {
            return tokio::time::timeout(timeout, handler(payload))
                .await
                .map_err(|_| InvokeError::Timeout {
                    name: name.to_owned(),
                    after: timeout,
                })
        }
        Target::Process(process) => {
            let (tx, rx) = oneshot::channel();
            let id = format!(
                "00000000-0000-4000-8000-{:012x}",
                NEXT_ID.fetch_add(1, Ordering::Relaxed)
            );
            process
                .queue
                .send(Invocation {
                    id,
                    payload,
                    answer: tx,
                })
                .map_err(|_| InvokeError::Gone(name.to_owned()))?;
            rx
        }
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(_)) => Err(InvokeError::Gone(name.to_owned())),
        Err(_) => Err(InvokeError::Timeout {
            name: name.to_owned(),
            after: timeout,
        }),
    }
}

type Body = Full<Bytes>;

async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(status: StatusCode, headers: &[(&str, &str)], body: Vec<u8>) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn json_response(status: StatusCode, headers: &[(&str, &str)], value: &Value) -> Response<Body> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    respond(status, &all, value.to_string().into_bytes())
}

async fn body_json(req: Request<Incoming>) -> Value {
    match req.into_body().collect().await {
        Ok(body) => {
            let bytes = body.to_bytes();
            if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            }
        }
        Err(_) => Value::Null,
    }
}

/// `{name}` from `/2015-03-31/functions/{name}/invocations`, where `name` may be a
/// percent-encoded ARN with a qualifier.
fn function_name(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/2015-03-31/functions/")?;
    let encoded = rest.strip_suffix("/invocations")?;
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .ok()?
        .into_owned();
    match decoded.strip_prefix("arn:") {
        Some(arn) => arn.split(':').nth(5).map(str::to_owned),
        None => Some(decoded.split(':').next().unwrap_or_default().to_owned()),
    }
}

async fn invoke_api(
    req: Request<Incoming>,
    functions: Arc<Mutex<HashMap<String, Function>>>,
    timeout: Duration,
) -> Response<Body> {
    let Some(name) = function_name(req.uri().path()).filter(|_| req.method() == "POST") else {
        return json_response(
            StatusCode::NOT_FOUND,
            &[("x-amzn-errortype", "UnknownOperationException")],
            &json!({"message": "only Invoke is served here"}),
        );
    };
    let invocation_type = req
        .headers()
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_owned();
    let payload = body_json(req).await;
    if !lock(&functions).contains_key(&name) {
        return json_response(
            StatusCode::NOT_FOUND,
            &[("x-amzn-errortype", "ResourceNotFoundException")],
            &json!({"Type": "User", "message": format!("Function not found: {name}")}),
        );
    }
    match invocation_type.as_str() {
        "DryRun" => return respond(StatusCode::NO_CONTENT, &[], Vec::new()),
        "Event" => {
            tokio::spawn(async move {
                let _ = invoke(&functions, &name, payload, timeout).await;
            });
            return respond(StatusCode::ACCEPTED, &[], Vec::new());
        }
        _ => {}
    }
    let version = [("x-amz-executed-version", "$LATEST")];
    match invoke(&functions, &name, payload, timeout).await {
        Ok(Outcome::Ok(value)) => json_response(StatusCode::OK, &version, &value),
        Ok(Outcome::Error {
            error_type,
            message,
        }) => json_response(
            StatusCode::OK,
            &[version[0], ("x-amz-function-error", "Unhandled")],
            &json!({"errorType": error_type, "errorMessage": message}),
        ),
        Err(e) => json_response(
            StatusCode::OK,
            &[version[0], ("x-amz-function-error", "Unhandled")],
            &json!({"errorType": "Runtime.ExitError", "errorMessage": e.to_string()}),
        ),
    }
}

async fn runtime_api(
    req: Request<Incoming>,
    queue: Arc<AsyncMutex<mpsc::UnboundedReceiver<Invocation>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
    timing: Arc<Mutex<Timing>>,
    arn: String,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return respond(StatusCode::NOT_FOUND, &[], Vec::new());
    };
    if rest == "invocation/next" {
        {
            let mut t = lock(&timing);
            if t.first_poll.is_none() {
                t.first_poll = Some(Instant::now());
            }
        }
        let next = queue.lock().await.recv().await;
        let Some(invocation) = next else {
            return respond(StatusCode::GONE, &[], Vec::new());
        };
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() + 900_000)
            .unwrap_or_default()
            .to_string();
        lock(&waiting).insert(invocation.id.clone(), invocation.answer);
        return json_response(
            StatusCode::OK,
            &[
                ("lambda-runtime-aws-request-id", invocation.id.as_str()),
                ("lambda-runtime-deadline-ms", deadline.as_str()),
                ("lambda-runtime-invoked-function-arn", arn.as_str()),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000;Sampled=0",
                ),
            ],
            &invocation.payload,
        );
    }
    if rest == "init/error" {
        let body = body_json(req).await;
        lock(&timing).init_error = Some(body.to_string());
        return json_response(StatusCode::ACCEPTED, &[], &json!({"status": "OK"}));
    }
    let Some((id, kind)) = rest
        .strip_prefix("invocation/")
        .and_then(|r| r.split_once('/'))
    else {
        return respond(StatusCode::NOT_FOUND, &[], Vec::new());
    };
    let (id, kind) = (id.to_owned(), kind.to_owned());
    let body = body_json(req).await;
    let outcome = match kind.as_str() {
        "response" => Outcome::Ok(body),
        "error" => Outcome::Error {
            error_type: body["errorType"].as_str().unwrap_or("Unknown").to_owned(),
            message: body["errorMessage"].as_str().unwrap_or_default().to_owned(),
        },
        _ => return respond(StatusCode::NOT_FOUND, &[], Vec::new()),
    };
    match lock(&waiting).remove(&id) {
        Some(answer) => {
            let _ = answer.send(outcome);
            json_response(StatusCode::ACCEPTED, &[], &json!({"status": "OK"}))
        }
        None => json_response(
            StatusCode::BAD_REQUEST,
            &[],
            &json!({"errorMessage": format!("unknown request id {id}")}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_come_from_plain_names_and_qualified_arns() {
        assert_eq!(
            function_name("/2015-03-31/functions/complete/invocations").as_deref(),
            Some("complete")
        );
        assert_eq!(
            function_name(
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Acomplete%3Aprod/invocations"
            )
            .as_deref(),
            Some("complete")
        );
        assert_eq!(function_name("/2015-03-31/functions/x"), None);
    }

    const BOOTSTRAP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lambda/python_bootstrap.py");

    #[tokio::test]
    async fn a_process_on_the_runtime_api_answers_invokes_and_reports_errors() {
        let lambda = LocalLambda::start().await.expect("started");
        let python = Path::new("python3");
        lambda
            .spawn("echo", python, &[BOOTSTRAP], &[], None)
            .await
            .expect("spawned");
        let cold = lambda.cold_start("echo").await.expect("polled");
        assert!(cold.init > Duration::ZERO);
        assert!(lambda.peak_rss_kib("echo").expect("rss") > 0);
        for n in 0..3 {
            assert_eq!(
                lambda
                    .invoke("echo", json!({ "n": n }))
                    .await
                    .expect("answered"),
                Outcome::Ok(json!({"echo": {"n": n}}))
            );
        }
        assert_eq!(
            lambda
                .invoke("echo", json!({"fail": "no"}))
                .await
                .expect("answered"),
            Outcome::Error {
                error_type: "Refused".into(),
                message: "no".into()
            }
        );
        lambda.kill("echo").await;
        assert!(matches!(
            lambda.invoke("echo", json!({})).await,
            Err(InvokeError::NotFound(_))
        ));
        lambda.stop().await;
    }

    #[tokio::test]
    async fn a_process_that_exits_at_init_is_reported_gone() {
        let lambda = LocalLambda::start().await.expect("started");
        lambda
            .spawn(
                "broken",
                Path::new("python3"),
                &["-c", "raise SystemExit(3)"],
                &[],
                None,
            )
            .await
            .expect("spawned");
        assert!(matches!(
            lambda.cold_start("broken").await,
            Err(InvokeError::Gone(_))
        ));
        lambda.stop().await;
    }
}
