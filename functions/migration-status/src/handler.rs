//! Answers "how is the migration of X?" (or "which migrations are there?") from the status table.
//! Reached by direct invoke (`{"database": "Sales"}`, `{}` to list, `{"after": "Sales"}` for the
//! next page) and through a Function URL (`GET /?database=Sales`, `GET /Sales`, `GET /`).

use bakdrop_core::ports::{StatusStore, StoreError};
use bakdrop_core::report::StatusReport;
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{json, Value};

/// Migrations per page when listing.
pub const PAGE: usize = 50;

/// Why there is no answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no migration and no uploaded file for database {0:?}")]
    NotFound(String),
    #[error("the status table is unavailable")]
    Store(#[from] StoreError),
}

impl From<StatusError> for Diagnostic {
    fn from(error: StatusError) -> Diagnostic {
        Diagnostic {
            error_type: match error {
                StatusError::NotFound(_) => "MigrationNotFound",
                StatusError::Store(_) => "StatusStoreUnavailable",
            }
            .to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// One migration's row in a listing.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub database: String,
    pub state: String,
    pub updated_at: String,
}

/// The report of one database: bounded, the latest [`bakdrop_core::report::LISTED`] files per list.
///
/// # Errors
/// [`StatusError`].
pub async fn status_of<S: StatusStore>(
    store: &S,
    database: &str,
) -> Result<StatusReport, StatusError> {
    // Boxed: a dozen store calls make a deep future; the handler's stays small.
    Box::pin(bakdrop_core::files::report(store, database))
        .await?
        .ok_or_else(|| StatusError::NotFound(database.to_owned()))
}

/// One page of migrations.
///
/// # Errors
/// [`StatusError::Store`].
pub async fn list<S: StatusStore>(store: &S, after: Option<&str>) -> Result<Value, StatusError> {
    let page = store.list_migrations(after, PAGE).await?;
    let next = (page.len() == PAGE)
        .then(|| page.last().map(|m| m.database.clone()))
        .flatten();
    let migrations: Vec<Listed> = page
        .into_iter()
        .map(|m| Listed {
            database: m.database.to_string(),
            state: m.state.to_string(),
            updated_at: m
                .updated_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        })
        .collect();
    Ok(json!({ "migrations": migrations, "next": next }))
}

/// Handles a direct invoke or a Function URL request.
///
/// # Errors
/// [`StatusError`] for a direct invoke; HTTP requests always get an HTTP response.
pub async fn handle<S: StatusStore>(store: &S, payload: Value) -> Result<Value, StatusError> {
    if payload.get("requestContext").is_some() && payload.get("rawPath").is_some() {
        return Ok(http(store, &payload).await);
    }
    let database = payload.get("database").and_then(Value::as_str);
    match database {
        Some(db) => Ok(serde_json::to_value(status_of(store, db).await?).unwrap_or(Value::Null)),
        None => list(store, payload.get("after").and_then(Value::as_str)).await,
    }
}

async fn http<S: StatusStore>(store: &S, request: &Value) -> Value {
    let query = |name: &str| {
        request
            .get("queryStringParameters")
            .and_then(|q| q.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let path = request
        .get("rawPath")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .trim_matches('/');
    let database = query("database").or_else(|| {
        (!path.is_empty())
            .then(|| bakdrop_core::model::object::decode_event_key(&path.replace('+', "%2B")))
    });
    let result = match database {
        Some(db) => status_of(store, &db)
            .await
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null)),
        None => list(store, query("after").as_deref()).await,
    };
    let (status, body) = match result {
        Ok(body) => (200, body),
        Err(StatusError::NotFound(db)) => (
            404,
            json!({"error": "MigrationNotFound", "message": format!("no migration and no uploaded file for database {db:?}")}),
        ),
        Err(e) => {
            tracing::error!(error.message = %e, error.cause_chain = ?e, "status read failed");
            (
                503,
                json!({"error": "StatusStoreUnavailable", "message": "the status table is unavailable; try again"}),
            )
        }
    };
    json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakdrop_core::model::object::ObjectRef;
    use bakdrop_core::model::status::{
        FileRecord, FileState, MigrationRecord, MigrationState, Reason, SqlError,
    };
    use bakdrop_core::ports::fakes::MemoryStore;
    use time::OffsetDateTime;

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000)
    }

    async fn store_with_failed_migration() -> MemoryStore {
        let store = MemoryStore::default();
        let mut migration = MigrationRecord::new(
            bakdrop_core::DatabaseName::parse("Sales DB").expect("name"),
            now(),
        );
        migration.state = MigrationState::Failed;
        let mut reason = Reason::new("SqlServerError", "SQL Server refused the restore");
        reason.sql_error = Some(SqlError {
            number: 4305,
            message: "The log in this backup set begins at LSN 1, which is too recent".into(),
        });
        migration.reason = Some(reason);
        store.put_migration(&migration, None).await.expect("stored");
        let rejected = FileRecord {
            migration: Some(bakdrop_core::DatabaseName::parse("Sales DB").expect("name")),
            file_id: "b/Sales DB/two.bak#etag=1".into(),
            object: ObjectRef {
                bucket: "b".into(),
                key: "Sales DB/two.bak".into(),
                version_id: None,
                etag: Some("1".into()),
                size: 10,
            },
            state: FileState::Rejected,
            reason: Some(Reason::new(
                "MoreThanOneBackupSet",
                "the file holds 2 backup sets",
            )),
            header: None,
            claim: None,
            restore_started_at: None,
            restore_finished_at: None,
            created_at: now(),
            updated_at: now(),
        };
        store.put_file(&rejected, None).await.expect("stored");
        store
    }

    #[tokio::test]
    async fn a_direct_invoke_answers_the_state_the_reason_and_the_rejected_files() {
        let store = store_with_failed_migration().await;
        let answer = handle(&store, json!({"database": "Sales DB"}))
            .await
            .expect("answer");
        assert_eq!(answer["state"], "Failed");
        let summary = answer["summary"].as_str().unwrap_or_default();
        assert!(summary.starts_with("Synchronization failed:"), "{summary}");
        assert!(summary.contains("4305"), "{summary}");
        assert_eq!(answer["last_error"]["sql_error"]["number"], 4305);
        assert_eq!(answer["rejected"][0]["file"], "two.bak");
        assert_eq!(answer["counts"]["rejected"], 1);
        assert_eq!(answer["actions"], json!(["cancel"]));
    }

    /// Words and counts agree: a queued file is counted and named as queued, and a migration
    /// whose full backup is accepted does not read as awaiting it.
    #[tokio::test]
    async fn the_summary_counts_what_the_counts_count() {
        let store = store_with_failed_migration().await;
        let mut awaiting = MigrationRecord::new(
            bakdrop_core::DatabaseName::parse("Fresh").expect("name"),
            now(),
        );
        awaiting.state = MigrationState::AwaitingFull;
        store.put_migration(&awaiting, None).await.expect("stored");
        let mut queued = store
            .list_files("Sales DB")
            .await
            .expect("files")
            .remove(0)
            .record;
        queued.migration = Some(bakdrop_core::DatabaseName::parse("Fresh").expect("name"));
        queued.state = FileState::Queued;
        queued.reason = None;
        store.put_file(&queued, None).await.expect("stored");
        let answer = handle(&store, json!({"database": "Fresh"}))
            .await
            .expect("answer");
        assert_eq!(answer["counts"]["queued"], 1);
        assert_eq!(answer["counts"]["waiting"], 0);
        assert_eq!(
            answer["summary"],
            "Awaiting the full backup (1 queued, 0 waiting for it)"
        );
        let Some(mut m) = store.get_migration("Fresh").await.expect("read") else {
            panic!("no migration");
        };
        m.record.full_backup_set_guid = Some(Default::default());
        store
            .put_migration(&m.record, Some(m.version))
            .await
            .expect("stored");
        let answer = handle(&store, json!({"database": "Fresh"}))
            .await
            .expect("answer");
        assert_eq!(
            answer["summary"],
            "Full backup accepted; its restore starts shortly (1 queued, 0 waiting)"
        );
    }

    #[tokio::test]
    async fn an_unknown_database_is_a_clear_not_found() {
        let store = MemoryStore::default();
        let err = handle(&store, json!({"database": "Nope"}))
            .await
            .expect_err("not found");
        assert_eq!(Diagnostic::from(err).error_type, "MigrationNotFound");
    }

    #[tokio::test]
    async fn without_a_database_it_lists_migrations() {
        let store = store_with_failed_migration().await;
        let answer = handle(&store, json!({})).await.expect("list");
        assert_eq!(answer["migrations"][0]["database"], "Sales DB");
        assert_eq!(answer["migrations"][0]["state"], "Failed");
        assert_eq!(answer["next"], Value::Null);
    }

    #[tokio::test]
    async fn function_url_requests_get_http_answers() {
        let store = store_with_failed_migration().await;
        let request = |path: &str, query: Value| json!({"version": "2.0", "rawPath": path, "queryStringParameters": query, "requestContext": {"http": {"method": "GET"}}});
        let ok = handle(&store, request("/Sales%20DB", Value::Null))
            .await
            .expect("http");
        assert_eq!(ok["statusCode"], 200);
        let body: Value =
            serde_json::from_str(ok["body"].as_str().unwrap_or_default()).expect("json body");
        assert_eq!(body["database"], "Sales DB");
        let by_query = handle(&store, request("/", json!({"database": "Sales DB"})))
            .await
            .expect("http");
        assert_eq!(by_query["statusCode"], 200);
        let missing = handle(&store, request("/Nope", Value::Null))
            .await
            .expect("http");
        assert_eq!(missing["statusCode"], 404);
        let list = handle(&store, request("/", Value::Null))
            .await
            .expect("http");
        assert!(list["body"]
            .as_str()
            .unwrap_or_default()
            .contains("Sales DB"));
    }
}
