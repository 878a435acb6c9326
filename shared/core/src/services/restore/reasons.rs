//! The reasons a DBA reads when the target refuses or fails: SQL Server's number and message,
//! and the remedy the documentation gives for it.

use super::*;

/// Codes of [`target_reason`]: a migration in progress carrying one is not failed; the reason
/// goes when a restore is recorded.
pub(super) const TARGET_ERROR_CODES: [&str; 4] = [
    "TargetUnreachable",
    "TargetRefused",
    "AgentNotRunning",
    "NoS3Credential",
];

/// What keeps the target from restoring, with its remedy.
pub(super) fn not_ready_reason(not_ready: &crate::ports::NotReady) -> Reason {
    use crate::ports::NotReady;
    match not_ready {
        NotReady::EditionWithoutAgent { edition } => Reason::new(
            "EditionWithoutAgent",
            format!("the target is SQL Server {edition}, which has no SQL Server Agent: bakdrop runs each native restore as an Agent job so that it outlives the restore worker (and Express cannot restore FROM URL). Migrate to a Standard, Enterprise or Developer edition"),
        ),
        NotReady::AgentNotRunning => Reason::new(
            "AgentNotRunning",
            "SQL Server Agent is not running on the target, and bakdrop runs each native restore as an Agent job. Start it (SQL Server on Linux: sudo /opt/mssql/bin/mssql-conf set sqlagent.enabled true, then restart mssql-server; Windows: start the SQL Server Agent service); the restore then starts by itself",
        ),
        NotReady::NoCredential { url } => Reason::new(
            "NoS3Credential",
            format!("the target has no credential for {url}: create one named after the URL's bucket prefix (CREATE CREDENTIAL [s3://<endpoint>/<bucket>] WITH IDENTITY = 'S3 Access Key', SECRET = '<access key id>:<secret key>'), or, if it exists, grant bakdrop's login VIEW ANY DEFINITION so that it can see it in sys.credentials; the restore then starts by itself"),
        ),
    }
}

/// Why the target could not be used, for a migration's status.
pub(super) fn target_reason(error: &TargetError) -> Reason {
    match error {
        TargetError::NotReady(not_ready) => not_ready_reason(not_ready),
        TargetError::Sql { number, message } => {
            let mut reason = Reason::new(
                "TargetRefused",
                format!("the target SQL Server refused bakdrop (error {number}); the message is retried: check the login in the target secret and its permissions"),
            );
            reason.sql_error = Some(SqlError {
                number: *number,
                message: message.clone(),
            });
            reason
        }
        TargetError::Connection(e) => Reason::new(
            "TargetUnreachable",
            format!("cannot reach the target SQL Server ({e}); the message is retried: check its host, port, security groups and TLS settings"),
        ),
        other => Reason::new(
            "TargetRefused",
            format!("the target SQL Server answered what bakdrop cannot use ({other}); the message is retried"),
        ),
    }
}

/// Clears a [`target_reason`] from a migration in progress (a restore was just recorded).
pub(super) fn clear_target_reason(m: &mut MigrationRecord) {
    m.target_fault_since = None;
    if m.reason
        .as_ref()
        .is_some_and(|r| TARGET_ERROR_CODES.contains(&r.code.as_str()))
        && m.state.accepts_uploads()
    {
        m.reason = None;
    }
}

/// The remedy for a failed restore, from the texts Amazon RDS documents for its task failures
/// ("Importing and exporting SQL Server databases using native backup and restore",
/// Troubleshooting; RDS reports no error numbers there) and from SQL Server's error numbers
/// ("Database engine events and errors").
pub(super) fn remedy(number: Option<u32>, message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    let has = |text: &str| lower.contains(text);
    if has("option is not enabled") || has("sqlserver_backup_restore") {
        return Some("the RDS instance's option group needs the SQLSERVER_BACKUP_RESTORE option with an IAM role that can read the bucket");
    }
    if has("same region as rds instance") {
        return Some("the bucket is in another AWS Region than the RDS instance: upload to a bucket in the instance's region (or replicate the objects there)");
    }
    if has("the specified bucket does not exist") {
        return Some("RDS cannot find the bucket: check the bucket name, and that it is in the instance's account and region");
    }
    if has("access denied") {
        return Some("the IAM role of the SQLSERVER_BACKUP_RESTORE option cannot read the object: grant it s3:GetObject and s3:ListBucket on the bucket (and kms:Decrypt if the bucket uses a KMS key), and keep the bucket in the instance's region");
    }
    if has("does not exist") && has("key ") && has("arn:") {
        return Some(
            "the backup is encrypted with a KMS key RDS cannot find: check the key and its region",
        );
    }
    if has("is not authorized to perform") {
        return Some("the IAM role of the SQLSERVER_BACKUP_RESTORE option lacks the KMS permissions for the key: add them to the role and the key policy");
    }
    if has("more than 10 backup file") {
        return Some(
            "RDS restores from at most 10 files at once: take the backup again to at most 10 files",
        );
    }
    if has("two databases that differ only by case or accent") {
        return Some("a database of that name (ignoring case and accents) already exists on the instance: drop or rename it, or upload to another database folder");
    }
    if has("execute permission was denied") {
        return Some(
            "connect as the RDS master user (or a login with EXECUTE on msdb's rds_* procedures)",
        );
    }
    if has("filestream") {
        return Some("Amazon RDS cannot restore a database with a FILESTREAM filegroup: remove the filegroup on the source and back up again, or migrate to SQL Server on EC2");
    }
    if has("file_guid") {
        return Some("a database restored from this backup already exists on the instance (RDS refuses a second restore of the same files, by file_guid); restore it on another instance or drop the other copy");
    }
    if has("operating system error 50") {
        return Some("SQL Server has no credential for the URL: create a credential named after the URL's bucket prefix (CREATE CREDENTIAL [s3://<endpoint>/<bucket>] WITH IDENTITY = 'S3 Access Key', SECRET = '<access key id>:<secret key>')");
    }
    match number? {
        3169 => Some("the backup comes from a newer SQL Server than the target; restore it on the same or a newer version"),
        3154 | 1801 => Some("a database with that name already exists on the target; cancel, drop or rename it, and migrate again"),
        4305 => Some("a log backup is missing between the last restored backup and this one; upload the missing log backups"),
        4326 => Some("this log backup ends before the point the database was restored to, so it is already covered: it should not have been applied; upload the next log backup"),
        3201 => Some("the target cannot open the backup: check the URL or path, that the object exists, and that the target may read it (credential, network, TLS)"),
        3187 => Some("the backup has no checksums but the restore asked to verify them"),
        5133 | 3156 => Some("a directory for the database's files does not exist on the target: check TargetDataPath/TargetLogPath (or the server's default data and log directories)"),
        1834 => Some("a file for the database is already used by another database on the target: this happens when another database was restored to the same file names; drop that database or migrate under another name"),
        3234 => Some("the backup's file list does not match what the restore moved: upload the backup again"),
        3118 => Some("the database is not on the target any more (dropped?): cancel, reset and migrate again from the full backup"),
        22022 => Some("SQL Server Agent is not running on the target: start it, then cancel, reset and migrate again"),
        _ => None,
    }
}

/// SQL Server's error as a reason, with the remedy for the failures users meet first.
pub fn sql_reason(number: u32, message: &str) -> Reason {
    let mut reason = Reason::new(
        "SqlServerError",
        match remedy(Some(number), message) {
            Some(r) => format!("SQL Server refused the restore: {r}"),
            None => "SQL Server refused the restore".to_owned(),
        },
    );
    reason.sql_error = Some(SqlError {
        number,
        message: message.to_owned(),
    });
    reason
}

/// A failed restore task that reported no error number (RDS documents none in `task_info`):
/// its text, with the remedy the documented texts call for.
pub fn task_failure_reason(message: &str) -> Reason {
    Reason::new(
        "RestoreFailed",
        match remedy(None, message) {
            Some(r) => format!("the restore task failed: {r}. The target said: {message}"),
            None => format!("the restore task failed: {message}"),
        },
    )
}
