//! [`DynamoStatusStore`]: migration and file records in one DynamoDB table, with compare-and-set.
//!
//! Table layout (single table, `pk` hash key, `sk` range key, both strings):
//!
//! | item      | pk            | sk               | other attributes                                      |
//! |-----------|---------------|------------------|-------------------------------------------------------|
//! | migration | `MIG#<db>`    | `MIGRATION`      | kind, version, state, updated_at, record, gsi1pk, gsi1sk |
//! | file      | `MIG#<db>`    | `FILE#<file id>` | kind, version, state, updated_at, record              |
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

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use bakdrop_core::ports::{StatusStore, StoreError};
use bakdrop_core::status::{FileRecord, MigrationRecord, Versioned};
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
        listed_as: Option<&str>,
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
        if let Some(name) = listed_as {
            request = request
                .item("gsi1pk", AttributeValue::S(MIGRATIONS_PARTITION.into()))
                .item("gsi1sk", AttributeValue::S(name.to_owned()));
        }
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
            Some(&record.database),
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
            pk(&record.migration),
            file_sk(&record.file_id),
            "file",
            record.state.to_string(),
            rfc3339(record.updated_at),
            record,
            expected,
            None,
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
}
