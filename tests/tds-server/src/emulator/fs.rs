//! The emulated server's own file system: how it reads a path. Either separator is accepted;
//! paths compare case-insensitively on Windows and case-sensitively on Linux.

use super::state::Platform;

/// A path in one comparable form: `\` read as `/`, repeated separators collapsed, no trailing
/// separator (except a lone root), lower-cased on Windows.
pub fn normalise(platform: Platform, path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.trim().chars() {
        let c = if c == '\\' { '/' } else { c };
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    while out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    match platform {
        Platform::Windows => out.to_lowercase(),
        Platform::Linux => out,
    }
}

/// The directory part of a path (`None` when it has no separator).
pub fn parent(path: &str) -> Option<String> {
    let trimmed = path.trim_end_matches(['/', '\\']);
    let i = trimmed.rfind(['/', '\\'])?;
    if i == 0 {
        return Some(trimmed[..1].to_string());
    }
    Some(trimmed[..i].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_compare_without_case_and_with_either_separator() {
        assert_eq!(
            normalise(Platform::Windows, "D:\\rdsdbdata\\DATA\\"),
            normalise(Platform::Windows, "d:/RDSDBDATA/data")
        );
        assert_ne!(
            normalise(Platform::Linux, "/var/opt/mssql/DATA"),
            normalise(Platform::Linux, "/var/opt/mssql/data")
        );
        assert_eq!(
            normalise(Platform::Linux, "/var/opt/mssql/data/"),
            "/var/opt/mssql/data"
        );
    }

    #[test]
    fn the_parent_of_a_file_is_its_directory() {
        assert_eq!(
            parent("C:\\Program Files\\DATA\\x.mdf").as_deref(),
            Some("C:\\Program Files\\DATA")
        );
        assert_eq!(parent("/var/x.mdf").as_deref(), Some("/var"));
        assert_eq!(parent("/x.mdf").as_deref(), Some("/"));
        assert_eq!(parent("x.mdf"), None);
    }
}
