//! Answers "how is the migration of X?" (or "which migrations are there?") from the status table.
//! Reached by direct invoke (`{"database": "Sales"}`, `{}` to list, `{"after": "Sales"}` for the
//! next page) and through a Function URL (`GET /?database=Sales`, `GET /Sales`, `GET /`).

use bakdrop_core::ports::{StatusStore, StoreError};
use bakdrop_core::report::{self, StatusReport};
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

/// The report of one database.
///
/// # Errors
/// [`StatusError`].
pub async fn status_of<S: StatusStore>(
    store: &S,
    database: &str,
) -> Result<StatusReport, StatusError> {
    let migration = store.get_migration(database).await?.map(|v| v.record);
    let files: Vec<_> = store
        .list_files(database)
        .await?
        .into_iter()
        .map(|v| v.record)
        .collect();
    if migration.is_none() && files.is_empty() {
        return Err(StatusError::NotFound(database.to_owned()));
    }
    Ok(report::build(database, migration.as_ref(), &files))
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
            database: m.database,
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
            .then(|| bakdrop_core::object::decode_event_key(&path.replace('+', "%2B")))
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
