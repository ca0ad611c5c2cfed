//! Terminal output: progress bars on a terminal only, and quiet exits on closed pipes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-count progress bar on stderr, hidden when stderr is not a terminal.
pub fn progress_bar(total: u64, message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message);
    bar
}

/// True when the error is the command's own output meeting a closed pipe (`shardpack ls |
/// head`), which is no failure. A broken pipe inside the library (a stream written with
/// `pack -o -` whose reader died) is a failure: the output is cut short.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let library = err
        .chain()
        .any(|c| c.downcast_ref::<shardpack::Error>().is_some());
    let pipe = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    pipe && !library
}

/// `println!` that returns an error instead of panicking when standard output is closed
/// (`shardpack ls | head`); `main` turns a broken pipe into a quiet exit.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use outln;

/// The error and its causes joined by ": ", leaving out a cause whose text the message
/// before it already ends with (the library's errors name their I/O cause themselves).
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
