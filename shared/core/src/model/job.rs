//! Messages on the restore queue: versioned JSON a worker can act on without re-reading S3.
//!
//! Schema (version 1):
//! ```json
//! {"schema": 1, "kind": "restore", "migration": "Sales", "file_id": "bucket/Sales/full.bak#etag=…",
//!  "object": {"bucket": "…", "key": "Sales/full.bak", "etag": "…", "size": 1234},
//!  "header": {"backup_type": "full", "first_lsn": "39000000048800071", …}}
//! ```
//! LSNs are decimal strings (they exceed 2^53). `migration` is checked as a target database name
//! on the way in ([`DatabaseName`]): a body naming an invalid one is malformed. Unknown fields are ignored so that a newer
//! producer can add fields; a different `schema` is refused with [`JobError::UnsupportedSchema`].

use serde::{Deserialize, Serialize};

use crate::model::header::HeaderSummary;
use crate::model::names::DatabaseName;
use crate::model::object::ObjectRef;

/// The message schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A message on the restore queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueMessage {
    /// A validated file to put into the restore chain.
    Restore(Box<RestoreJob>),
    /// Look at the migration's task in flight (sent delayed, again and again, until it ends).
    Poll {
        migration: DatabaseName,
        task_name: String,
    },
    /// Plan again (sent delayed when the target was busy).
    Advance { migration: DatabaseName },
    /// Look at the task bringing a Completing migration's database online (RDS
    /// `FINISH_RESTORE`; sent delayed, again and again, until it ends).
    Finish {
        migration: DatabaseName,
        /// When Complete started the task: looks come at 1, 2, 3, 5 … seconds after it (at most
        /// the poll interval apart); without it, every poll interval.
        #[serde(
            default,
            with = "time::serde::rfc3339::option",
            skip_serializing_if = "Option::is_none"
        )]
        since: Option<time::OffsetDateTime>,
    },
}

/// A validated file, with what the worker needs from its header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreJob {
    pub migration: DatabaseName,
    pub file_id: String,
    pub object: ObjectRef,
    pub header: HeaderSummary,
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    schema: u32,
    #[serde(flatten)]
    message: T,
}

/// Why a queue body is not a message this build understands.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the message is not valid JSON of a known kind: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("the message has schema version {0}; this build reads version {SCHEMA_VERSION}")]
    UnsupportedSchema(u32),
}

impl JobError {
    /// Never: a malformed body will not parse on a second try.
    pub fn is_transient(&self) -> bool {
        false
    }
}

impl QueueMessage {
    /// The migration the message is about.
    pub fn migration(&self) -> &DatabaseName {
        match self {
            QueueMessage::Restore(job) => &job.migration,
            QueueMessage::Advance { migration }
            | QueueMessage::Poll { migration, .. }
            | QueueMessage::Finish { migration, .. } => migration,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Envelope {
            schema: SCHEMA_VERSION,
            message: self,
        })
        .unwrap_or_default()
    }

    /// Reads a body.
    ///
    /// # Errors
    /// [`JobError`] when the body is not JSON of a known kind, or of another schema version.
    pub fn from_json(body: &str) -> Result<QueueMessage, JobError> {
        #[derive(Deserialize)]
        struct SchemaOnly {
            schema: u32,
        }
        let SchemaOnly { schema } = serde_json::from_str(body)?;
        if schema != SCHEMA_VERSION {
            return Err(JobError::UnsupportedSchema(schema));
        }
        let envelope: Envelope<QueueMessage> = serde_json::from_str(body)?;
        Ok(envelope.message)
    }
}
