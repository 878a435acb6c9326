//! The same scenarios on a real SQL Server 2022, opt-in: `BAKDROP_TEST_SQLSERVER` names it
//! (`host=..;port=..;user=..;password=..;tls=..`, the command line's `--target` format). Without
//! it every test here prints one line saying why it skipped and passes. Start one with
//! `infra/real-sqlserver/compose.yaml` (SQL Server 2022 with Agent, MinIO with TLS for
//! `FROM URL`); `.github/workflows/real-sqlserver.yml` runs this suite on a hosted runner.
//!
//! The pipeline runs with the core's in-memory store, queue and object reader (what is under
//! test here is the target): the Validator reads the fixture's bytes, the Worker restores through
//! `TiberiusTarget` over TDS, and the server reads the backups itself:
//! - from disk: `BAKDROP_TEST_SQLSERVER_SHARE` = `<host dir>:<the same dir as the server sees
//!   it>` (a bind mount; the tests copy the fixtures there);
//! - from URL: `BAKDROP_TEST_S3` = `<endpoint as the server sees it>;<bucket>;<access key
//!   id>;<secret key>` (the compose file's setup uploads the fixtures under `fixtures/`; the
//!   tests create the credential).

use std::sync::Arc;
use std::time::Duration;

use bakdrop_core::cutover::{self, CompleteRequest};
use bakdrop_core::model::names::DatabaseName;
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::status::{FileState, MigrationState};
use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::ports::fakes::{MemoryObjects, MemoryQueue, MemoryStore};
use bakdrop_core::ports::{RestoreTarget, StatusStore};
use bakdrop_core::restore::{Attempt, RestoreConfig, SourceLocation, WorkOutcome, Worker};
use bakdrop_core::tsql::{self, Dialect, RestoreRequest, RestoreSource, S3Arn};
use bakdrop_core::validate::{Outcome, ValidateConfig, Validator};
use bakdrop_mssql::settings::{TargetLogin, Tls};
use bakdrop_mssql::TiberiusTarget;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/bak/");

/// The 2016 chain: full, differential, then the logs after it.
const CHAIN: [&str; 5] = [
    "sql2016_full_RestoreTimeClean.bak",
    "sql2016_diff_RestoreTimeClean2.bak",
    "sql2016_log_RestoreTimeClean2_1.trn",
    "sql2016_log_RestoreTimeClean2_2.trn",
    "sql2016_log_RestoreTimeClean2_3.trn",
];

/// The real server, or why the test skips.
fn server() -> Option<TargetLogin> {
    let Ok(text) = std::env::var("BAKDROP_TEST_SQLSERVER") else {
        println!("skipped: BAKDROP_TEST_SQLSERVER is not set (a real SQL Server 2022; see infra/real-sqlserver/compose.yaml)");
        return None;
    };
    let mut login = TargetLogin {
        host: String::new(),
        port: 1433,
        username: String::new(),
        password: String::new(),
        tls: Tls::TrustServerCertificate,
    };
    for part in text.split(';').filter(|p| !p.trim().is_empty()) {
        let (key, value) = part
            .split_once('=')
            .expect("BAKDROP_TEST_SQLSERVER: key=value;…");
        match key.trim() {
            "host" => login.host = value.to_owned(),
            "port" => login.port = value.parse().expect("port"),
            "user" => login.username = value.to_owned(),
            "password" => login.password = value.to_owned(),
            "tls" => login.tls = value.parse().expect("tls"),
            other => panic!("BAKDROP_TEST_SQLSERVER: unknown key {other}"),
        }
    }
    Some(login)
}

/// `(host dir, server dir)` of the shared folder, or why the test skips.
fn share() -> Option<(std::path::PathBuf, String)> {
    let Ok(text) = std::env::var("BAKDROP_TEST_SQLSERVER_SHARE") else {
        println!("skipped: BAKDROP_TEST_SQLSERVER_SHARE is not set (<host dir>:<server dir> of a folder both see)");
        return None;
    };
    let (host, server) = text.split_once(':').expect("<host dir>:<server dir>");
    Some((host.into(), server.trim_end_matches('/').to_owned()))
}

fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..8])
}

/// The validator and worker over in-memory ports and the real target.
struct Rig {
    objects: Arc<MemoryObjects>,
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    validator: Validator<Arc<MemoryObjects>, Arc<MemoryStore>, Arc<MemoryQueue>>,
    worker: Worker<Arc<MemoryStore>, Arc<MemoryQueue>, Arc<TiberiusTarget>, Arc<MemoryObjects>>,
    target: Arc<TiberiusTarget>,
}

impl Rig {
    fn new(login: &TargetLogin, location: SourceLocation) -> Rig {
        let objects = Arc::new(MemoryObjects::default());
        let store = Arc::new(MemoryStore::default());
        let queue = Arc::new(MemoryQueue::default());
        let target = Arc::new(TiberiusTarget::new(login.config(), Dialect::Native));
        Rig {
            validator: Validator {
                reader: objects.clone(),
                store: store.clone(),
                queue: queue.clone(),
                config: ValidateConfig {
                    arm_by_upload: false,
                    target: Some("2022".parse().expect("release")),
                    policy: VersionPolicy::NotNewer,
                    location: location.clone(),
                },
            },
            worker: Worker {
                store: store.clone(),
                queue: queue.clone(),
                target: target.clone(),
                objects: objects.clone(),
                config: RestoreConfig {
                    dialect: Dialect::Native,
                    location,
                    policy: VersionPolicy::NotNewer,
                    check_version: true,
                    poll_interval: Duration::from_secs(1),
                    busy_retry: Duration::from_secs(1),
                    settle: None,
                },
            },
            objects,
            store,
            queue,
            target,
        }
    }

    /// Validates `bytes` as the upload `key` (bucket `real`).
    async fn upload(&self, key: &str, bytes: Vec<u8>) {
        let object = ObjectRef {
            bucket: "real".into(),
            key: key.into(),
            version_id: None,
            etag: Some(format!("e-{key}")),
            size: bytes.len() as u64,
        };
        self.objects.put("real", key, bytes);
        let outcome = self
            .validator
            .validate(&object, "real", time::OffsetDateTime::now_utc())
            .await
            .expect("validated");
        assert!(
            matches!(outcome, Outcome::Queued { .. }),
            "{key}: {outcome:?}"
        );
    }

    /// Delivers queued messages (sleeping a poll interval between rounds) until none is left.
    async fn run_to_quiet(&self) -> Vec<WorkOutcome> {
        let mut outcomes = Vec::new();
        for round in 0..600 {
            let messages = self.queue.drain_sent();
            if messages.is_empty() {
                return outcomes;
            }
            if round > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            for (i, (message, _)) in messages.into_iter().enumerate() {
                let id = format!("r{round}-{i}");
                let attempt = Attempt {
                    message_id: &id,
                    invocation: &id,
                };
                outcomes.push(
                    self.worker
                        .handle(&message, attempt, time::OffsetDateTime::now_utc())
                        .await
                        .unwrap_or_else(|e| panic!("{e:?}")),
                );
            }
        }
        panic!("the migration did not settle in 600 rounds");
    }

    async fn state(&self, name: &str) -> MigrationState {
        self.store
            .get_migration(name)
            .await
            .expect("store")
            .expect("migration")
            .record
            .state
    }

    /// Complete, then follow the recovery's Agent job every second (as the worker's Finish
    /// messages would) until it ended.
    async fn complete(&self, name: &str) -> MigrationState {
        let request = CompleteRequest {
            database: name.into(),
            last_backup: None,
            require_tail_log: false,
        };
        let mut state = cutover::complete(
            &*self.store,
            &*self.target,
            &request,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .expect("complete");
        for _ in 0..600 {
            if state != MigrationState::Completing {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            state = cutover::follow_finish(
                &*self.store,
                &*self.target,
                name,
                time::OffsetDateTime::now_utc(),
            )
            .await
            .expect("follow the recovery");
        }
        state
    }

    async fn drop_database(&self, name: &str) {
        let database = DatabaseName::parse(name).expect("name");
        if self
            .target
            .database_state(&database)
            .await
            .expect("state")
            .is_some()
        {
            self.target.drop_database(&database).await.expect("dropped");
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture")
}

/// Copies fixtures into the share under `<run>/<database>/` and returns the disk location.
fn place(
    share: &(std::path::PathBuf, String),
    run: &str,
    database: &str,
    files: &[&str],
) -> SourceLocation {
    let dir = share.0.join(run).join(database);
    std::fs::create_dir_all(&dir).expect("share dir");
    for f in files {
        std::fs::copy(format!("{FIXTURES}{f}"), dir.join(f)).expect("copy");
    }
    SourceLocation::Disk {
        directory: format!("{}/{run}", share.1),
    }
}

#[tokio::test]
async fn real_server_native_full_differential_logs_then_complete() {
    let (Some(login), Some(share)) = (server(), share()) else {
        return;
    };
    let run = unique("run");
    let name = unique("RealChain");
    let rig = Rig::new(&login, place(&share, &run, &name, &CHAIN));
    for f in CHAIN.iter().rev() {
        rig.upload(&format!("{name}/{f}"), fixture(f)).await;
    }
    rig.run_to_quiet().await;
    assert_eq!(rig.state(&name).await, MigrationState::Synchronizing);
    let files = rig.store.list_files(&name).await.expect("files");
    assert!(
        files
            .iter()
            .all(|f| matches!(f.record.state, FileState::Restored | FileState::Skipped)),
        "{files:?}"
    );
    assert_eq!(rig.complete(&name).await, MigrationState::Succeeded);
    let state = rig
        .target
        .database_state(&DatabaseName::parse(&name).expect("name"))
        .await
        .expect("state");
    assert_eq!(state.as_deref(), Some("ONLINE"));
    rig.drop_database(&name).await;
}

#[tokio::test]
async fn real_server_two_migrations_of_one_source_database_get_files_of_their_own() {
    let (Some(login), Some(share)) = (server(), share()) else {
        return;
    };
    let run = unique("run");
    let (a, b) = (unique("RealA"), unique("RealB"));
    let full = CHAIN[0];
    let location = place(&share, &run, &a, &[full]);
    place(&share, &run, &b, &[full]);
    let rig = Rig::new(&login, location);
    rig.upload(&format!("{a}/{full}"), fixture(full)).await;
    rig.upload(&format!("{b}/{full}"), fixture(full)).await;
    rig.run_to_quiet().await;
    // Without MOVE to names of their own, the second restore would fail 1834 (file in use).
    assert_eq!(rig.state(&a).await, MigrationState::Synchronizing);
    assert_eq!(rig.state(&b).await, MigrationState::Synchronizing);
    rig.drop_database(&a).await;
    rig.drop_database(&b).await;
}

#[tokio::test]
async fn real_server_a_backup_with_checksums_is_verified_and_migrated() {
    let (Some(login), Some(share)) = (server(), share()) else {
        return;
    };
    // A 2022 full backup WITH CHECKSUM, taken on the server itself into the share.
    let run = unique("run");
    let source = unique("RealSrc");
    let name = unique("RealChecksum");
    let dir = share.0.join(&run).join(&name);
    std::fs::create_dir_all(&dir).expect("share dir");
    // The server (uid mssql) writes into the folder.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for d in [share.0.join(&run), dir.clone()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
    }
    let file = "full_checksum.bak";
    let server_path = format!("{}/{run}/{name}/{file}", share.1);
    let mut client = connect(&login).await;
    let script = format!(
        "CREATE DATABASE [{source}]; BACKUP DATABASE [{source}] TO DISK = N'{server_path}' WITH CHECKSUM, FORMAT, INIT; DROP DATABASE [{source}];"
    );
    client
        .simple_query(script)
        .await
        .expect("backup")
        .into_results()
        .await
        .expect("drained");
    let bytes = std::fs::read(dir.join(file)).expect("backup written");
    let location = SourceLocation::Disk {
        directory: format!("{}/{run}", share.1),
    };
    let rig = Rig::new(&login, location);
    rig.upload(&format!("{name}/{file}"), bytes).await;
    let header = rig
        .store
        .list_files(&name)
        .await
        .expect("files")
        .first()
        .and_then(|f| f.record.header.clone())
        .expect("header");
    assert!(
        header.has_checksums,
        "the parser reads HasBackupChecksums of a 2022 backup"
    );
    rig.run_to_quiet().await;
    assert_eq!(rig.state(&name).await, MigrationState::Synchronizing);
    assert_eq!(rig.complete(&name).await, MigrationState::Succeeded);
    rig.drop_database(&name).await;
}

#[tokio::test]
async fn real_server_cancel_during_a_restore_drops_the_database() {
    let (Some(login), Some(share)) = (server(), share()) else {
        return;
    };
    let run = unique("run");
    let name = unique("RealCancel");
    let rig = Rig::new(&login, place(&share, &run, &name, &CHAIN[..1]));
    rig.upload(&format!("{name}/{}", CHAIN[0]), fixture(CHAIN[0]))
        .await;
    // Submit, then cancel at once (the restore may or may not have finished by then).
    let messages = rig.queue.drain_sent();
    let attempt = Attempt {
        message_id: "m",
        invocation: "i",
    };
    rig.worker
        .handle(&messages[0].0, attempt, time::OffsetDateTime::now_utc())
        .await
        .expect("submitted");
    let state = cutover::cancel(
        &*rig.store,
        &*rig.target,
        &name,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .expect("cancel");
    assert_eq!(state, MigrationState::Cancelled);
    rig.run_to_quiet().await;
    let database = DatabaseName::parse(&name).expect("name");
    assert_eq!(
        rig.target.database_state(&database).await.expect("state"),
        None
    );
}

#[tokio::test]
async fn real_server_restores_from_url_through_an_s3_compatible_store() {
    let Some(login) = server() else { return };
    let Ok(s3) = std::env::var("BAKDROP_TEST_S3") else {
        println!("skipped: BAKDROP_TEST_S3 is not set (<endpoint>;<bucket>;<access key id>;<secret key>)");
        return;
    };
    let parts: Vec<&str> = s3.split(';').collect();
    let [endpoint, bucket, key_id, secret] = parts[..] else {
        panic!("BAKDROP_TEST_S3: <endpoint>;<bucket>;<access key id>;<secret key>")
    };
    let credential = format!("s3://{endpoint}/{bucket}");
    let mut client = connect(&login).await;
    let create = format!(
        "IF NOT EXISTS (SELECT 1 FROM sys.credentials WHERE name = N'{credential}') CREATE CREDENTIAL [{credential}] WITH IDENTITY = 'S3 Access Key', SECRET = '{key_id}:{secret}';"
    );
    client
        .simple_query(create)
        .await
        .expect("credential")
        .into_results()
        .await
        .expect("drained");
    let name = unique("RealUrl");
    let location = SourceLocation::Url {
        endpoint: endpoint.to_owned(),
        region: None,
    };
    // The compose file's setup uploaded the fixtures under fixtures/<file>; the migration's
    // folder is the key's parent, so restore the full as database "fixtures" renamed below.
    let rig = Rig::new(&login, location);
    let full = CHAIN[0];
    let object = ObjectRef {
        bucket: bucket.to_owned(),
        key: format!("fixtures/{full}"),
        version_id: None,
        etag: None,
        size: fixture(full).len() as u64,
    };
    let request = RestoreRequest {
        files: bakdrop_core::backup::summary::summarize(&fixture(full), None, object.size)
            .expect("header")
            .files,
        ..RestoreRequest::new(
            DatabaseName::parse(&name).expect("name"),
            bakdrop_core::model::header::BackupKind::Full,
            vec![rig.worker.config.location.source(&object)],
        )
    };
    rig.target
        .check_ready(&request)
        .await
        .expect("Agent runs and the credential matches");
    let task = rig.target.submit(&request, &name).await.expect("submitted");
    let mut status = rig
        .target
        .poll(&request.database, &task)
        .await
        .expect("poll");
    for _ in 0..300 {
        if !matches!(status, bakdrop_core::ports::TaskStatus::Running { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        status = rig
            .target
            .poll(&request.database, &task)
            .await
            .expect("poll");
    }
    assert_eq!(status, bakdrop_core::ports::TaskStatus::Succeeded);
    rig.drop_database(&name).await;
}

/// The RDS dialect's statements, compiled on a plain SQL Server (`SET PARSEONLY ON`): the
/// procedures do not exist there, but the syntax is checked.
#[tokio::test]
async fn real_server_parses_the_rds_dialects_statements() {
    let Some(login) = server() else { return };
    let db = DatabaseName::parse("Sales O'Brien").expect("name");
    let request = RestoreRequest::new(
        db.clone(),
        bakdrop_core::model::header::BackupKind::Full,
        vec![RestoreSource::S3Arn(S3Arn::object(
            "aws",
            "bucket",
            "Sales/full.bak",
        ))],
    );
    let statements = [
        tsql::rds::restore(&request),
        tsql::rds::restore(&RestoreRequest {
            kind: bakdrop_core::model::header::BackupKind::Log,
            ..request.clone()
        }),
        tsql::rds::task_status(&db, 7),
        tsql::rds::tasks_of(&db),
        tsql::rds::all_tasks(),
        tsql::rds::finish(&db),
        tsql::rds::cancel(7),
        tsql::rds::drop_database(&db),
    ];
    let mut client = connect(&login).await;
    for statement in statements {
        let script = format!("SET PARSEONLY ON;\n{statement}\nSET PARSEONLY OFF;");
        client
            .simple_query(script.clone())
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
            .into_results()
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"));
    }
}

async fn connect(login: &TargetLogin) -> bakdrop_mssql::connection::Connection {
    bakdrop_mssql::connection::connect(&login.config())
        .await
        .expect("connected")
}
