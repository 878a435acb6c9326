//! Target database names: validated once, then always emitted bracket-quoted.
//!
//! The name comes from outside (an S3 key, an invoke payload). SQL Server accepts almost any
//! text as a delimited identifier, so the rules here are the ones that keep us and the DBA safe:
//! 1–128 UTF-16 code units (SQL Server's `sysname` is `nvarchar(128)`: a character outside the
//! Basic Multilingual Plane, such as an emoji, takes two), no control characters, not a system
//! database, not RDS's own `rdsadmin*`.
//! The only way to put a name into T-SQL is [`DatabaseName::quoted`], which doubles `]`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A database name that passed [`DatabaseName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DatabaseName(String);

/// Why a text cannot be a target database name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseNameError {
    #[error("database name is empty")]
    Empty,
    /// The length in UTF-16 code units, as SQL Server counts a `sysname`.
    #[error("database name is {0} UTF-16 code units long (characters outside the Basic Multilingual Plane, such as emoji, count twice); SQL Server allows at most 128")]
    TooLong(usize),
    #[error("database name contains a control character (U+{0:04X})")]
    ControlCharacter(u32),
    #[error("database name {0:?} has leading or trailing white space")]
    SurroundingWhitespace(String),
    #[error("{0:?} is a system database and cannot be a restore target")]
    Reserved(String),
    #[error("{0:?} starts with \"rdsadmin\", which Amazon RDS reserves")]
    RdsReserved(String),
}

const SYSTEM_DATABASES: [&str; 5] = ["master", "model", "msdb", "tempdb", "resource"];

impl DatabaseName {
    /// Validates a name that came from outside.
    ///
    /// # Errors
    /// A [`DatabaseNameError`] naming the rule the text breaks.
    pub fn parse(text: &str) -> Result<DatabaseName, DatabaseNameError> {
        if text.is_empty() {
            return Err(DatabaseNameError::Empty);
        }
        let units = text.encode_utf16().count();
        if units > 128 {
            return Err(DatabaseNameError::TooLong(units));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(DatabaseNameError::ControlCharacter(u32::from(c)));
        }
        if text.trim() != text {
            return Err(DatabaseNameError::SurroundingWhitespace(text.to_owned()));
        }
        let lower = text.to_lowercase();
        if SYSTEM_DATABASES.contains(&lower.as_str()) {
            return Err(DatabaseNameError::Reserved(text.to_owned()));
        }
        if lower.starts_with("rdsadmin") {
            return Err(DatabaseNameError::RdsReserved(text.to_owned()));
        }
        Ok(DatabaseName(text.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a T-SQL delimited identifier: `[name]`, with every `]` doubled.
    pub fn quoted(&self) -> String {
        format!("[{}]", self.0.replace(']', "]]"))
    }

    /// The name as SQL Server tells databases apart: see [`fold`].
    pub fn folded(&self) -> String {
        fold(&self.0)
    }
}

/// A name folded so that names one target takes for the same database compare equal: lower
/// case, accents removed (canonical decomposition, combining marks dropped). SQL Server's default
/// collation (`SQL_Latin1_General_CP1_CI_AS`) ignores case; RDS refuses "two databases that differ
/// only by case or accent" ("Importing and exporting SQL Server databases using native backup and
/// restore", Troubleshooting): folding both is the reading that is safe on either target.
pub fn fold(name: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    name.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A checked name reads as the text it is (for the ports, which key records by text).
impl std::ops::Deref for DatabaseName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for DatabaseName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for DatabaseName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for DatabaseName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for DatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DatabaseName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DatabaseName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional name stored as text, `""` meaning none (how file records have always
/// stored the migration of a key that names none). A stored name that is not a valid name is an
/// error, as for [`DatabaseName`] itself.
pub mod or_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::DatabaseName;

    pub fn serialize<S: Serializer>(
        name: &Option<DatabaseName>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(name.as_ref().map_or("", DatabaseName::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DatabaseName>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(None);
        }
        DatabaseName::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// A 32-bit FNV-1a hash: stable across builds and platforms (unlike std's hasher), for names
/// derived from a database name that must stay the same for the same input (task names, file
/// names).
pub fn stable_hash(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The name of the task bringing the migration's database online (native: the Agent job
/// running `WITH RECOVERY`), built as [`crate::restore::task_name`] is: the same for the same
/// migration and generation, so that a Complete resumed after a crash finds the job instead of
/// starting a second one.
pub fn finish_task_name(migration: &str, generation: u32) -> String {
    format!("{}_recovery", task_name_stem(migration, generation))
}

/// `bakdrop_<letters and digits of the name>[_g<generation>]_<hash of the name>`.
pub(crate) fn task_name_stem(migration: &str, generation: u32) -> String {
    let suffix = if generation > 0 {
        format!("_g{generation}")
    } else {
        String::new()
    };
    let short: String = migration
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(60 - suffix.len())
        .collect();
    let hash = crate::model::names::stable_hash(migration.as_bytes());
    format!("bakdrop_{short}{suffix}_{hash:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted_and_bracket_quoted() {
        let name = DatabaseName::parse("Sales 2024").expect("valid");
        assert_eq!(name.quoted(), "[Sales 2024]");
    }

    #[test]
    fn closing_brackets_are_doubled_so_the_identifier_cannot_end_early() {
        let name = DatabaseName::parse("x]; DROP DATABASE master; --").expect("valid text");
        assert_eq!(name.quoted(), "[x]]; DROP DATABASE master; --]");
    }

    #[test]
    fn names_that_differ_only_in_case_or_accents_fold_alike() {
        assert_eq!(fold("Sales"), fold("SALES"));
        assert_eq!(fold("Café"), fold("CAFE"));
        // Precomposed and decomposed é are one name too.
        assert_eq!(fold("Caf\u{e9}"), fold("Cafe\u{301}"));
        assert_eq!(fold("Straße"), "straße");
        assert_ne!(fold("Sales"), fold("Sales2"));
        assert_eq!(
            DatabaseName::parse("QuảnLý").expect("valid").folded(),
            "quanly"
        );
    }

    #[test]
    fn system_and_rds_names_are_reserved_in_any_case() {
        for bad in [
            "master",
            "MSDB",
            "TempDB",
            "model",
            "rdsadmin",
            "RDSAdmin_x",
        ] {
            assert!(DatabaseName::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(DatabaseName::parse(&"é".repeat(128)).is_ok());
        assert_eq!(
            DatabaseName::parse(&"a".repeat(129)),
            Err(DatabaseNameError::TooLong(129))
        );
    }

    #[test]
    fn length_counts_utf16_units_as_sql_server_does() {
        // U+1F642 is one character but two UTF-16 units: 64 of them fill a sysname.
        assert!(DatabaseName::parse(&"\u{1f642}".repeat(64)).is_ok());
        assert_eq!(
            DatabaseName::parse(&"\u{1f642}".repeat(65)),
            Err(DatabaseNameError::TooLong(130))
        );
        assert_eq!(
            DatabaseName::parse(&format!("{}\u{1f642}", "a".repeat(127))),
            Err(DatabaseNameError::TooLong(129))
        );
        assert!(DatabaseName::parse(&format!("{}\u{1f642}", "a".repeat(126))).is_ok());
    }

    #[test]
    fn control_characters_and_padding_are_refused() {
        assert_eq!(
            DatabaseName::parse("a\u{0}b"),
            Err(DatabaseNameError::ControlCharacter(0))
        );
        assert!(DatabaseName::parse("a\nb").is_err());
        assert!(DatabaseName::parse(" a").is_err());
        assert_eq!(DatabaseName::parse(""), Err(DatabaseNameError::Empty));
    }
}
