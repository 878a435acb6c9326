//! Uploaded objects: which object a file is, and which migration its key names.
//!
//! Key convention: `<optional prefix>/<TargetDatabase>/<file>`. The folder right above the file
//! names the target database (it may differ from the database name inside the backup); anything
//! above it is a free prefix. When that folder names a backup type instead ([`BACKUP_TYPE_FOLDERS`],
//! any case: `Server$Instance/Sales/FULL/file`, as Ola Hallengren's maintenance solution writes
//! backups and `aws s3 sync` copies them), the folder above it names the database. A key without
//! a database folder, with an empty folder or file name, whose database folder is named like a
//! backup type or is not a valid database name is rejected with a reason.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::names::{DatabaseName, DatabaseNameError};

/// Where bakdrop puts its own copies in the upload bucket (staged stripes for RDS). Objects under
/// it are not uploads: validation ignores their events.
pub const STAGING_PREFIX: &str = "_bakdrop/";

/// True for keys under [`STAGING_PREFIX`].
pub fn is_staging_key(key: &str) -> bool {
    key.starts_with(STAGING_PREFIX)
}

/// One version of one S3 object, as the event named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key, already URL-decoded.
    pub key: String,
    /// S3 version id, in versioned buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// ETag without quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Object size in bytes.
    pub size: u64,
}

impl ObjectRef {
    /// A stable identity for this version of the object: `bucket/key#version` (version id, else
    /// ETag, else size). A new upload of the same key is a different file. Keys longer than
    /// [`FILE_ID_KEY_LIMIT`] bytes keep their start and end with a hash of the whole key in
    /// place of their middle, so that every id fits a status-table key (DynamoDB: 1,024 bytes).
    pub fn file_id(&self) -> String {
        let version = self
            .version_id
            .as_deref()
            .map(|v| format!("v={v}"))
            .or_else(|| self.etag.as_deref().map(|e| format!("etag={e}")))
            .unwrap_or_else(|| format!("size={}", self.size));
        format!("{}/{}#{}", self.bucket, bounded_key(&self.key), version)
    }

    /// The file name (last key segment).
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The most bytes of a key a file id carries as they are.
pub const FILE_ID_KEY_LIMIT: usize = 640;

/// `key`, or for a long key its first and last bytes around `~<hash of the whole key>~`.
fn bounded_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= FILE_ID_KEY_LIMIT {
        return key.into();
    }
    let boundary_before = |mut i: usize| {
        while !key.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let head = boundary_before(FILE_ID_KEY_LIMIT / 2);
    let mut tail = key.len() - FILE_ID_KEY_LIMIT / 4;
    while !key.is_char_boundary(tail) {
        tail += 1;
    }
    // FNV-1a, 64 bits twice with different offsets: stable across builds and platforms.
    let fnv = |seed: u64| {
        key.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{}~{:016x}{:016x}~{}",
        &key[..head],
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142),
        &key[tail..]
    )
    .into()
}

/// Folders that name a backup type, not a database (Ola Hallengren's maintenance solution
/// writes `<Server$Instance>/<Database>/<type>/<file>`); compared without regard to case.
pub const BACKUP_TYPE_FOLDERS: [&str; 5] =
    ["FULL", "DIFF", "LOG", "FULL_COPY_ONLY", "LOG_COPY_ONLY"];

/// True when `folder` is named like a backup type ([`BACKUP_TYPE_FOLDERS`], any case).
pub fn is_backup_type_folder(folder: &str) -> bool {
    BACKUP_TYPE_FOLDERS
        .iter()
        .any(|t| t.eq_ignore_ascii_case(folder))
}

/// What a key says: the target database and the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationKey {
    pub database: DatabaseName,
    pub file_name: String,
    /// Everything above the database folder (may be empty).
    pub prefix: String,
    /// The backup-type folder between the database folder and the file, as written (`FULL`,
    /// `log` …), when the key has one.
    pub type_folder: Option<String>,
}

/// Why a key does not follow `<optional prefix>/<TargetDatabase>/<file>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key {0:?} has no database folder: upload backups as <TargetDatabase>/<file> (optionally under a prefix)")]
    NoFolder(String),
    #[error("the key {key:?} has the backup-type folder {type_folder:?} but no database folder above it: upload backups as <TargetDatabase>/{type_folder}/<file> (optionally under a prefix, e.g. Server$Instance/)")]
    NoDatabaseAboveTypeFolder { key: String, type_folder: String },
    #[error("the folder {folder:?} of key {key:?} is named like a backup type ({}), not a database: name the database's folder above it, as in <TargetDatabase>/FULL/<file>", BACKUP_TYPE_FOLDERS.join(", "))]
    TypeFolderAsDatabase { key: String, folder: String },
    #[error("the key {0:?} ends with '/': it is a folder, not a backup file")]
    NoFileName(String),
    #[error("the key {0:?} has a '.' or '..' folder, a backslash or a control character: such a key could name a file outside the backup location on the target; rename the folder or file")]
    UnsafePath(String),
    #[error("the folder {folder:?} of key {key:?} is not a usable database name: {source}")]
    InvalidDatabase {
        key: String,
        folder: String,
        #[source]
        source: DatabaseNameError,
    },
}

impl MigrationKey {
    /// Reads the convention out of a URL-decoded key.
    ///
    /// # Errors
    /// A [`KeyError`] naming what is missing or invalid.
    pub fn parse(key: &str) -> Result<MigrationKey, KeyError> {
        if key.split('/').any(|s| s == "." || s == "..")
            || key.contains('\\')
            || key.chars().any(char::is_control)
        {
            return Err(KeyError::UnsafePath(key.to_owned()));
        }
        let (rest, file_name) = key
            .rsplit_once('/')
            .ok_or_else(|| KeyError::NoFolder(key.to_owned()))?;
        if file_name.is_empty() {
            return Err(KeyError::NoFileName(key.to_owned()));
        }
        let (mut prefix, mut folder) = rest.rsplit_once('/').unwrap_or(("", rest));
        if folder.is_empty() {
            return Err(KeyError::NoFolder(key.to_owned()));
        }
        let mut type_folder = None;
        if is_backup_type_folder(folder) {
            let Some((above, database_folder)) = rest
                .rsplit_once('/')
                .map(|(above, _)| above.rsplit_once('/').unwrap_or(("", above)))
                .filter(|(_, f)| !f.is_empty())
            else {
                return Err(KeyError::NoDatabaseAboveTypeFolder {
                    key: key.to_owned(),
                    type_folder: folder.to_owned(),
                });
            };
            type_folder = Some(folder.to_owned());
            (prefix, folder) = (above, database_folder);
        }
        if is_backup_type_folder(folder) {
            return Err(KeyError::TypeFolderAsDatabase {
                key: key.to_owned(),
                folder: folder.to_owned(),
            });
        }
        let database = DatabaseName::parse(folder).map_err(|source| KeyError::InvalidDatabase {
            key: key.to_owned(),
            folder: folder.to_owned(),
            source,
        })?;
        Ok(MigrationKey {
            database,
            file_name: file_name.to_owned(),
            prefix: prefix.to_owned(),
            type_folder,
        })
    }
}

/// Decodes an S3 event key: `+` is a space, then `%XX` escapes (S3 form-encodes keys in events).
/// Invalid escapes are kept as they are; invalid UTF-8 is replaced, never a panic.
pub fn decode_event_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_are_form_decoded() {
        assert_eq!(
            decode_event_key("migrations/Sales+DB/full%2B1.bak"),
            "migrations/Sales DB/full+1.bak"
        );
        assert_eq!(decode_event_key("Sales/%C3%A4.bak"), "Sales/\u{e4}.bak");
        assert_eq!(decode_event_key("a%2Fb/%zz.bak"), "a/b/%zz.bak");
        assert_eq!(decode_event_key("db/%FF.bak"), "db/\u{fffd}.bak");
    }

    #[test]
    fn the_folder_above_the_file_names_the_target_database() {
        let key = MigrationKey::parse("landing/2024/Sales DB/full.bak").expect("valid");
        assert_eq!(key.database.as_str(), "Sales DB");
        assert_eq!(key.file_name, "full.bak");
        assert_eq!(key.prefix, "landing/2024");
        let key = MigrationKey::parse("Sales/log 1.trn").expect("valid");
        assert_eq!((key.database.as_str(), key.prefix.as_str()), ("Sales", ""));
    }

    #[test]
    fn ola_hallengren_type_folders_name_the_folder_above_them_as_the_database() {
        for (key, database, prefix, kind) in [
            (
                "SQL01$PROD/Sales/FULL/SQL01$PROD_Sales_FULL_20261130_220000.bak",
                "Sales",
                "SQL01$PROD",
                "FULL",
            ),
            (
                "SQL01$PROD/Sales/DIFF/SQL01$PROD_Sales_DIFF_20261201_020000.bak",
                "Sales",
                "SQL01$PROD",
                "DIFF",
            ),
            (
                "SQL01$PROD/Sales/LOG/SQL01$PROD_Sales_LOG_20261201_021500.trn",
                "Sales",
                "SQL01$PROD",
                "LOG",
            ),
            (
                "landing/SQL01/HR/full_copy_only/HR.bak",
                "HR",
                "landing/SQL01",
                "full_copy_only",
            ),
            (
                "SQL01/HR/Log_Copy_Only/HR.trn",
                "HR",
                "SQL01",
                "Log_Copy_Only",
            ),
            ("HR/log/HR.trn", "HR", "", "log"),
        ] {
            let parsed = MigrationKey::parse(key).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(parsed.database.as_str(), database, "{key}");
            assert_eq!(parsed.prefix, prefix, "{key}");
            assert_eq!(parsed.type_folder.as_deref(), Some(kind), "{key}");
        }
        // Without a type folder, the folder above the file, as always (a folder merely
        // containing a type's name is a database name).
        let plain = MigrationKey::parse("SQL01/FULLTEXT/x.bak").expect("valid");
        assert_eq!(
            (plain.database.as_str(), plain.type_folder),
            ("FULLTEXT", None)
        );
    }

    #[test]
    fn a_folder_named_like_a_backup_type_never_becomes_a_database() {
        for key in ["FULL/x.bak", "/LOG/x.trn", "diff/x.bak"] {
            assert!(
                matches!(
                    MigrationKey::parse(key),
                    Err(KeyError::NoDatabaseAboveTypeFolder { .. })
                ),
                "{key}"
            );
        }
        for key in [
            "srv/LOG/FULL/x.bak",
            "srv/full/x/../x.bak",
            "srv/Diff/DIFF/x.bak",
        ] {
            let parsed = MigrationKey::parse(key);
            assert!(parsed.is_err(), "{key}: {parsed:?}");
        }
        let err = MigrationKey::parse("srv/LOG/FULL/x.bak").expect_err("type as database");
        assert!(
            matches!(err, KeyError::TypeFolderAsDatabase { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("named like a backup type"),
            "{err}"
        );
    }

    #[test]
    fn keys_outside_the_convention_are_rejected_with_a_reason() {
        assert!(matches!(
            MigrationKey::parse("full.bak"),
            Err(KeyError::NoFolder(_))
        ));
        assert!(matches!(
            MigrationKey::parse("/full.bak"),
            Err(KeyError::NoFolder(_))
        ));
        assert!(matches!(
            MigrationKey::parse("a//full.bak"),
            Err(KeyError::NoFolder(_))
        ));
        assert!(matches!(
            MigrationKey::parse("Sales/"),
            Err(KeyError::NoFileName(_))
        ));
        let err = MigrationKey::parse("x/master/full.bak").expect_err("reserved");
        assert!(err.to_string().contains("system database"), "{err}");
    }

    #[test]
    fn keys_that_could_escape_the_backup_location_are_rejected() {
        for key in [
            "../full.bak",
            "../Sales/full.bak",
            "Sales/../full.bak",
            "x/./Sales/full.bak",
            "Sales/..",
            "Sales\\..\\full.bak",
            "Sales/full\u{0}.bak",
            "Sales/full\n.bak",
        ] {
            assert!(
                matches!(MigrationKey::parse(key), Err(KeyError::UnsafePath(_))),
                "{key:?}"
            );
        }
        // Dots inside names are fine.
        assert!(MigrationKey::parse("Sales.v2/full..bak").is_ok());
    }

    #[test]
    fn file_ids_of_long_keys_stay_within_a_table_key_and_apart() {
        let object = |key: String| ObjectRef {
            bucket: "b".repeat(63),
            key,
            version_id: Some("v".repeat(32)),
            etag: None,
            size: 1,
        };
        let long = format!("{}/Sales/{}.bak", "p".repeat(400), "ä".repeat(300));
        let id = object(long.clone()).file_id();
        assert!(id.len() + "FILE#".len() <= 1024, "{}", id.len());
        assert_eq!(id, object(long.clone()).file_id(), "stable");
        let other = long.replacen('p', "q", 1);
        assert_ne!(id, object(other).file_id());
        let middle = format!("{}x{}", &long[..350], &long[351..]);
        assert_ne!(
            id,
            object(middle).file_id(),
            "a change in the elided middle"
        );
        let max = "k".repeat(1024);
        assert!(object(max).file_id().len() + 5 <= 1024);
        // Short keys are kept as they are.
        assert_eq!(
            object("Sales/full.bak".into()).file_id(),
            format!("{}/Sales/full.bak#v={}", "b".repeat(63), "v".repeat(32))
        );
    }

    #[test]
    fn file_identity_changes_with_the_object_version() {
        let mut object = ObjectRef {
            bucket: "b".into(),
            key: "Sales/full.bak".into(),
            version_id: None,
            etag: Some("abc".into()),
            size: 10,
        };
        assert_eq!(object.file_id(), "b/Sales/full.bak#etag=abc");
        object.version_id = Some("v2".into());
        assert_eq!(object.file_id(), "b/Sales/full.bak#v=v2");
        assert_eq!(object.file_name(), "full.bak");
    }
}
