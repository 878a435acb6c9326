//! Standard output for a command-line tool that is piped into `head`, `grep -q` or a pager:
//! when the reader goes away, bakdrop stops quietly, as a Unix tool killed by SIGPIPE would
//! (Rust ignores SIGPIPE, so `println!` would panic, and in release builds abort). Text from
//! outside goes into text output through [`Shown`], which escapes control characters.

use std::io::{ErrorKind, Write};

/// Writes `args` to standard output. A closed pipe ends the process with status 0; any other
/// write error ends it with status 2 and a message on standard error.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("bakdrop: writing to standard output failed: {e}");
        std::process::exit(2);
    }
}

/// `print!` through [`write`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// `println!` through [`write`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Text from outside (a file name, a name read from a backup) as a terminal may show it: control
/// characters (C0, DEL, C1) and the bidirectional-text controls are written as escapes (`\n`,
/// `\t`, `\u{1b}`, `\u{202e}`), never raw, so that a file name cannot end a line early, move the
/// cursor, recolour the terminal or reorder what follows. Everything else, non-ASCII letters
/// included, is shown as it is. For text output only: JSON output is escaped by serde.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

/// The bidirectional-text controls (ALM, LRM, RLM, the embeddings and overrides, the isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(|c: char| c.is_control() || is_bidi_control(c)) {
            f.write_str(&rest[..i])?;
            let Some(c) = rest[i..].chars().next() else {
                break;
            };
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                other => write!(f, "\\u{{{:x}}}", u32::from(other))?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// [`Shown`] for a path (non-UTF-8 bytes as U+FFFD, as `Path::display` shows them).
pub fn path(path: &std::path::Path) -> String {
    Shown(&path.to_string_lossy()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_shown_as_escapes() {
        assert_eq!(
            Shown("a\nb\rc\td\u{1b}[31me\u{0}f\u{7f}g\u{85}h\u{202e}i").to_string(),
            "a\\nb\\rc\\td\\u{1b}[31me\\u{0}f\\u{7f}g\\u{85}h\\u{202e}i"
        );
        for plain in [
            "Sales_full.bak",
            "C:\\Data\\x.mdf",
            "caf\u{e9} \u{1f642}",
            "",
        ] {
            assert_eq!(Shown(plain).to_string(), plain);
        }
    }
}
