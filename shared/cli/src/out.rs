//! Standard output for a command-line tool that is piped into `head`, `grep -q` or a pager:
//! when the reader goes away, bakdrop stops quietly, as a Unix tool killed by SIGPIPE would
//! (Rust ignores SIGPIPE, so `println!` would panic, and in release builds abort).

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
