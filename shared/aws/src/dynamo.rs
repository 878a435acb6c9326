//! [`DynamoStatusStore`]: migration and file records in one DynamoDB table, with compare-and-set.
//!
//! Table layout (single table, `pk` hash key, `sk` range key, both strings):
//!
//! | item      | pk            | sk               | other attributes                                      |
//! |-----------|---------------|------------------|-------------------------------------------------------|
//! | migration | `MIG#<db>`    | `MIGRATION`      | kind, version, state, updated_at, record, gsi1pk, gsi1sk |
//! | file      | `MIG#<db>`    | `FILE#<file id>` | kind, version, state, updated_at, record, gsi2pk, gsi2sk |
//! | name      | `NAME#<folded db>` | `NAME`      | kind, holder (the migration that claimed the name)     |
//!
//! `record` is the whole record as JSON (the core's serde model); `state`, `kind` and
//! `updated_at` are copied out so that the console and queries can read them. Every put is
//! conditional: `attribute_not_exists(pk)` to create, `version = :expected` to replace.
//!
//! Migrations are listed through the sparse global secondary index [`MIGRATIONS_INDEX`]
//! (`gsi1pk` = `MIGRATIONS` on migration items only, `gsi1sk` = the database name), one page per
//! Query in name order, so that listing reads the migration items and not every file item.
//! A GSI is eventually consistent: a migration created a moment ago may be listed a moment
//! later (reading one migration is strongly consistent).
//!
//! A migration's files are found by state through the global secondary index [`FILES_INDEX`]
//! (`gsi2pk` = `<state>#MIG#<db>`, `gsi2sk` = the record's `updated_at` in nanoseconds, keys only
//! projected): the restore worker reads the files still to plan (Queued, Waiting) and the
//! status report the latest of each state, however many files the migration has restored. The
//! records themselves are then read from the table (`BatchGetItem`, strongly consistent), so
//! a record is never older than the index entry that found it. File items written before the
//! index existed carry no `gsi2pk`; [`MigrationRecord::files_indexed`] tells the core to read
//! such a migration's files in full.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Select};
use bakdrop_core::model::status::{FileRecord, FileState, MigrationRecord, Versioned};
use bakdrop_core::ports::{StatusStore, StoreError};
use serde::{de::DeserializeOwned, Serialize};

/// The status table on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoStatusStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

const MIGRATION_SK: &str = "MIGRATION";
const NAME_SK: &str = "NAME";

/// The index that lists migrations by name (template.yaml defines it with the table).
pub const MIGRATIONS_INDEX: &str = "migrations-by-name";
const MIGRATIONS_PARTITION: &str = "MIGRATIONS";

/// The index that finds a migration's files by state (template.yaml defines it with the table).
pub const FILES_INDEX: &str = "files-by-state";

/// `BatchGetItem` reads at most this many keys per request.
const BATCH_GET_KEYS: usize = 100;

/// The files-by-state index's partition of `database`'s files in `state`.
fn files_partition(database: &str, state: FileState) -> String {
    format!("{state}#{}", pk(database))
}

/// The files-by-state index's sort key: when the record was last written, in nanoseconds
/// (zero-padded, so that text order is time order).
fn files_sort_key(updated_at: time::OffsetDateTime) -> String {
    format!("{:020}", updated_at.unix_timestamp_nanos().max(0))
}

fn pk(database: &str) -> String {
    format!("MIG#{database}")
}

fn file_sk(file_id: &str) -> String {
    format!("FILE#{file_id}")
}

impl DynamoStatusStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoStatusStore {
        DynamoStatusStore {
            client,
            table: table.into(),
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: String,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        out.item.map(|item| decode(&item)).transpose()
    }

    #[allow(clippy::too_many_arguments)]
    async fn put<T: Serialize>(
        &self,
        pk: String,
        sk: String,
        kind: &str,
        state: String,
        updated_at: String,
        record: &T,
        expected: Option<u64>,
        index: Index<'_>,
    ) -> Result<u64, StoreError> {
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode record: {e}")))?;
        let version = expected.unwrap_or(0) + 1;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(pk))
            .item("sk", AttributeValue::S(sk))
            .item("kind", AttributeValue::S(kind.to_owned()))
            .item("version", AttributeValue::N(version.to_string()))
            .item("state", AttributeValue::S(state))
            .item("updated_at", AttributeValue::S(updated_at))
            .item("record", AttributeValue::S(json));
        request = match index {
            Index::Migration { name } => request
                .item("gsi1pk", AttributeValue::S(MIGRATIONS_PARTITION.into()))
                .item("gsi1sk", AttributeValue::S(name.to_owned())),
            Index::File { partition, sort } => request
                .item("gsi2pk", AttributeValue::S(partition))
                .item("gsi2sk", AttributeValue::S(sort)),
        };
        request = match expected {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(v) => request
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
        };
        match request.send().await {
            Ok(_) => Ok(version),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Err(StoreError::Conflict { expected })
            }
            Err(e) => Err(store_error(e)),
        }
    }
}

/// Which index an item joins.
enum Index<'a> {
    /// migrations-by-name, under the database's name.
    Migration { name: &'a str },
    /// files-by-state, in its state's partition, sorted by when it was written.
    File { partition: String, sort: String },
}

impl DynamoStatusStore {
    /// The keys (`pk`, `sk`) the files-by-state index lists for `database` in `state`, most
    /// recently written first, at most `limit`.
    async fn index_keys(
        &self,
        database: &str,
        state: FileState,
        limit: usize,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut keys = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        while keys.len() < limit {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(FILES_INDEX)
                .key_condition_expression("gsi2pk = :p")
                .expression_attribute_values(
                    ":p",
                    AttributeValue::S(files_partition(database, state)),
                )
                .scan_index_forward(false)
                .limit(i32::try_from(limit - keys.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(store_error)?;
            for item in out.items() {
                let key: HashMap<String, AttributeValue> = item
                    .iter()
                    .filter(|(name, _)| *name == "pk" || *name == "sk")
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                if key.len() != 2 {
                    return Err(StoreError::Corrupt(format!(
                        "an entry of index {FILES_INDEX} has no table key"
                    )));
                }
                keys.push(key);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        keys.truncate(limit);
        Ok(keys)
    }

    /// The file items at `keys`, strongly consistent, in the order of `keys` (an item deleted
    /// meanwhile is left out).
    async fn file_items(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
        let sk_of = |item: &HashMap<String, AttributeValue>| {
            item.get("sk")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let order: Vec<String> = keys.iter().map(sk_of).collect();
        let mut found: HashMap<String, Versioned<FileRecord>> = HashMap::new();
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Corrupt(format!("cannot build BatchGetItem: {e}")))?,
            );
            // UnprocessedKeys: DynamoDB read part of the batch (throttling, 16 MB); ask again.
            for _ in 0..MAX_BATCH_ROUNDS {
                let Some(request) = pending.take() else { break };
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(store_error)?;
                for item in out
                    .responses
                    .as_ref()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    found.insert(sk_of(item), decode::<FileRecord>(item)?);
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
            if pending.is_some() {
                return Err(StoreError::Unavailable(
                    "BatchGetItem left keys unprocessed after retrying".into(),
                ));
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|sk| found.remove(&sk))
            .collect())
    }
}

/// Rounds of `BatchGetItem` for one batch before giving up (transient).
const MAX_BATCH_ROUNDS: usize = 8;

/// DynamoDB's answer as a [`StoreError`]: a request DynamoDB refuses as invalid
/// (`ValidationException`, e.g. a key over 1,024 bytes) is [`StoreError::Rejected`], not
/// retried; everything else (throttling, network, service faults) is transient.
fn store_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(service) if service.err().code() == Some("ValidationException") => {
            StoreError::Rejected(
                service
                    .err()
                    .message()
                    .unwrap_or("ValidationException")
                    .to_owned(),
            )
        }
        _ => StoreError::Unavailable(Box::new(e)),
    }
}

fn decode<T: DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<Versioned<T>, StoreError> {
    let version = item
        .get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| StoreError::Corrupt("item has no numeric version".into()))?;
    let json = item
        .get("record")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("item has no record".into()))?;
    let record = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("record does not decode: {e}")))?;
    Ok(Versioned { record, version })
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl StatusStore for DynamoStatusStore {
    async fn claim_name(&self, folded: &str, database: &str) -> Result<String, StoreError> {
        let key = format!("NAME#{folded}");
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.clone()))
            .item("sk", AttributeValue::S(NAME_SK.into()))
            .item("kind", AttributeValue::S("name".into()))
            .item("holder", AttributeValue::S(database.to_owned()))
            .condition_expression("attribute_not_exists(pk) OR holder = :db")
            .expression_attribute_values(":db", AttributeValue::S(database.to_owned()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(database.to_owned()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", AttributeValue::S(key))
                    .key("sk", AttributeValue::S(NAME_SK.into()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(store_error)?;
                out.item
                    .as_ref()
                    .and_then(|item| item.get("holder"))
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt(format!("name item {folded} has no holder")))
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn get_migration(
        &self,
        database: &str,
    ) -> Result<Option<Versioned<MigrationRecord>>, StoreError> {
        self.get(pk(database), MIGRATION_SK.to_owned()).await
    }

    async fn put_migration(
        &self,
        record: &MigrationRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.put(
            pk(&record.database),
            MIGRATION_SK.to_owned(),
            "migration",
            record.state.to_string(),
            rfc3339(record.updated_at),
            record,
            expected,
            Index::Migration {
                name: &record.database,
            },
        )
        .await
    }

    async fn get_file(
        &self,
        migration: &str,
        file_id: &str,
    ) -> Result<Option<Versioned<FileRecord>>, StoreError> {
        self.get(pk(migration), file_sk(file_id)).await
    }

    async fn put_file(
        &self,
        record: &FileRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.put(
            pk(record.migration_key()),
            file_sk(&record.file_id),
            "file",
            record.state.to_string(),
            rfc3339(record.updated_at),
            record,
            expected,
            Index::File {
                partition: files_partition(record.migration_key(), record.state),
                sort: files_sort_key(record.updated_at),
            },
        )
        .await
    }

    async fn delete_file(
        &self,
        migration: &str,
        file_id: &str,
        expected: u64,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk(migration)))
            .key("sk", AttributeValue::S(file_sk(file_id)))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()));
        match request.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), DeleteItemError::ConditionalCheckFailedException(_)) =>
            {
                Err(StoreError::Conflict {
                    expected: Some(expected),
                })
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn list_migrations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MigrationRecord>, StoreError> {
        // One Query of the index per page (more only if DynamoDB's 1 MB page ends first).
        let mut found: Vec<MigrationRecord> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        while found.len() < limit {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(MIGRATIONS_INDEX)
                .expression_attribute_values(":p", AttributeValue::S(MIGRATIONS_PARTITION.into()))
                .limit(i32::try_from(limit - found.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            query = match after {
                Some(after) => query
                    .key_condition_expression("gsi1pk = :p AND gsi1sk > :after")
                    .expression_attribute_values(":after", AttributeValue::S(after.to_owned())),
                None => query.key_condition_expression("gsi1pk = :p"),
            };
            let out = query.send().await.map_err(store_error)?;
            for item in out.items() {
                found.push(decode::<MigrationRecord>(item)?.record);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    async fn list_files(&self, migration: &str) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
        let mut files = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :file)")
                .expression_attribute_values(":pk", AttributeValue::S(pk(migration)))
                .expression_attribute_values(":file", AttributeValue::S("FILE#".into()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(store_error)?;
            for item in out.items() {
                files.push(decode::<FileRecord>(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        files.sort_by_key(|v| v.record.created_at);
        Ok(files)
    }

    async fn list_files_in(
        &self,
        migration: &str,
        state: FileState,
        limit: usize,
    ) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
        let keys = self.index_keys(migration, state, limit).await?;
        self.file_items(keys).await
    }

    async fn count_files_in(&self, migration: &str, state: FileState) -> Result<usize, StoreError> {
        let mut count = 0usize;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(FILES_INDEX)
                .key_condition_expression("gsi2pk = :p")
                .expression_attribute_values(
                    ":p",
                    AttributeValue::S(files_partition(migration, state)),
                )
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(store_error)?;
            count += usize::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(count)
    }

    /// The files-by-state index is a global secondary index: eventually consistent.
    fn lists_lag(&self) -> bool {
        true
    }
}
