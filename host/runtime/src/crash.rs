//! What a crashed plugin said, in one line: the exception of a Python
//! traceback, the message of a Rust panic, else its stderr. The language
//! runtime's own lines around it (componentize-py's Rust panic, the
//! backtrace hint) are left out.

/// The reason to show for a crash whose stderr is `stderr`, or `None` when
/// the plugin printed nothing.
pub fn reason(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    if lines.is_empty() {
        return None;
    }
    python_exception(&lines)
        .or_else(|| rust_panic(&lines))
        .or_else(|| Some(format!("stderr: {}", join(&lines))))
}

fn join(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

/// `Traceback (most recent call last):`, indented frames, then the
/// exception at column 0: `ValueError: boom (File "/0/app.py", line 9, in poll)`.
fn python_exception(lines: &[&str]) -> Option<String> {
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("Traceback (most recent call last):"))?;
    let rest = &lines[start + 1..];
    let exception = rest.iter().find(|l| !l.starts_with(char::is_whitespace))?;
    let frame = rest
        .iter()
        .take_while(|l| l.starts_with(char::is_whitespace))
        .filter(|l| l.trim_start().starts_with("File "))
        .last();
    Some(match frame {
        Some(f) => format!("{} ({})", exception.trim(), f.trim()),
        None => exception.trim().to_string(),
    })
}

/// `thread '<unnamed>' panicked at src/lib.rs:27:25:` then the message.
fn rust_panic(lines: &[&str]) -> Option<String> {
    let at = lines.iter().position(|l| l.contains("' panicked at "))?;
    let (_, place) = lines[at].split_once("' panicked at ")?;
    let message = join(&lines[at + 1..]);
    Some(format!("panicked at {place} {message}").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn a_python_exception_is_its_last_line_and_place() {
        let stderr = "Traceback (most recent call last):\n  File \"/0/app.py\", line 113, in poll\n    raise ValueError(\"boom\")\nValueError: boom\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            reason(stderr).as_deref(),
            Some("ValueError: boom (File \"/0/app.py\", line 113, in poll)")
        );
    }

    #[test]
    fn a_rust_panic_is_its_place_and_message() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:27:25:\nhostile plugin panicked on purpose\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            reason(stderr).as_deref(),
            Some("panicked at src/lib.rs:27:25: hostile plugin panicked on purpose")
        );
    }

    #[test]
    fn other_output_is_quoted_and_silence_is_none() {
        assert_eq!(reason("a\n b\n").as_deref(), Some("stderr: a b"));
        assert_eq!(reason("\n\n"), None);
    }
}
