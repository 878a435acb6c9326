//! A status report as a person reads it on a terminal: the summary line, the restore in
//! flight, how recent the data is, what comes next, the restored steps and the files by state.

use std::fmt::Write as _;

use bakdrop_core::model::status::{FileRecord, FileState};
use bakdrop_core::report::StatusReport;

/// A status report as text: the summary line, the restore in flight, how recent the data is,
/// what comes next, the restored steps, the rejected files by code, and the state of `files`
/// under `heading` (files whose key names no database: by folder).
pub fn report_text(r: &StatusReport, files: &[FileRecord], heading: &str) -> String {
    report_text_at(r, files, heading, time::OffsetDateTime::now_utc())
}

fn ago(since: &str, now: time::OffsetDateTime) -> Option<String> {
    let then =
        time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339).ok()?;
    let secs = (now - then).whole_seconds().max(0);
    Some(match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h {} min ago", secs / 3600, secs % 3600 / 60),
        _ => format!("{} days ago", secs / 86_400),
    })
}

/// [`report_text`] as of `now`.
pub fn report_text_at(
    r: &StatusReport,
    files: &[FileRecord],
    heading: &str,
    now: time::OffsetDateTime,
) -> String {
    let mut s = String::new();
    let state = r
        .state
        .map_or("no migration (no file accepted)".to_owned(), |st| {
            st.to_string()
        });
    if r.database.is_empty() {
        let _ = writeln!(s, "== files outside any database folder: {}", r.summary);
    } else {
        let _ = writeln!(s, "== {} [{state}]: {}", r.database, r.summary);
    }
    if let Some(file) = &r.restoring {
        match r.percent_complete {
            Some(p) => {
                let _ = writeln!(s, "  restoring {file}: {p:.0}% complete");
            }
            None => {
                let _ = writeln!(s, "  restoring {file}");
            }
        }
    }
    if let Some(as_of) = &r.data_as_of {
        let _ = writeln!(
            s,
            "  data as of {as_of} (the finish time of the last restored backup: what Complete would bring online)"
        );
    }
    if let Some(at) = &r.last_restored_at {
        let _ = writeln!(
            s,
            "  last restore finished {}",
            ago(at, now).unwrap_or_else(|| at.clone())
        );
    }
    if !r.database.is_empty() {
        let _ = writeln!(s, "  next: {}", r.next);
    }
    if !r.applied.is_empty() {
        let _ = writeln!(s, "  restored, in order:");
        for (i, a) in r.applied.iter().enumerate() {
            let stripes = match a.files.len() {
                0 | 1 => String::new(),
                n => format!(" (+{} stripe files)", n - 1),
            };
            let _ = writeln!(
                s,
                "    {}. {:<12} {}{stripes}  LSN {} → {}",
                i + 1,
                a.backup_type.to_string(),
                a.file,
                a.first_lsn,
                a.last_lsn
            );
        }
    }
    if !r.rejected.is_empty() {
        let _ = writeln!(s, "  rejected, by reason:");
        for (code, n) in &r.rejected_by_code {
            let of_code: Vec<_> = r.rejected.iter().filter(|f| &f.code == code).collect();
            let reason = of_code
                .first()
                .map(|f| f.reason.as_str())
                .unwrap_or_default();
            let _ = writeln!(s, "    {code} ({n}): {reason}");
            for f in of_code {
                let _ = writeln!(s, "      {}", f.key);
            }
        }
    }
    let _ = writeln!(s, "  {heading}:");
    write_files(&mut s, files, r.database.is_empty());
    if let Some(e) = &r.last_error {
        let _ = writeln!(s, "  last error: {e}");
    }
    if !r.actions.is_empty() {
        let _ = writeln!(s, "  you may now: {}", r.actions.join(", "));
    }
    s
}

/// The files' lines: under their folder when `by_folder` (files whose key names no database),
/// else with their state and reason.
fn write_files(s: &mut String, files: &[FileRecord], by_folder: bool) {
    let mut listed: Vec<&FileRecord> = files.iter().collect();
    if by_folder {
        // Files whose key names no database: under their folder.
        listed.sort_by(|a, b| a.object.key.cmp(&b.object.key));
        let mut folder: Option<&str> = None;
        for f in listed {
            let here = f
                .object
                .key
                .rsplit_once('/')
                .map_or("(top level)", |(d, _)| d);
            if folder != Some(here) {
                let _ = writeln!(s, "    {here}/");
                folder = Some(here);
            }
            let code = f.reason.as_ref().map_or("", |r| r.code.as_str());
            let _ = writeln!(s, "      {} {}: {code}", f.state, f.object.file_name());
        }
    } else {
        for f in listed {
            let reason = match (&f.reason, f.state) {
                (Some(r), FileState::Rejected) => format!(": {}", r.code),
                (Some(r), _) => format!(": {r}"),
                (None, _) => String::new(),
            };
            let _ = writeln!(
                s,
                "    {:<10} {}{reason}",
                f.state.to_string(),
                f.object.key
            );
        }
    }
}
