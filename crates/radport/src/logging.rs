//! The server's log: `RADPORT_LOG` chooses what (an `EnvFilter`, default `info`), the
//! `log_format` setting how — lines for people (`text`, the default) or one JSON object per
//! line for a log collector (`json`: `timestamp`, `level`, `target`, `fields.message` and the
//! event's other fields, the current span's fields).

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log events are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => anyhow::bail!("unknown log format {other:?}: use text or json"),
        }
    }
}

/// Starts the log on standard output (`serve`) or standard error (the other commands).
pub fn init(format: LogFormat, to_stderr: bool) {
    let filter = EnvFilter::try_from_env("RADPORT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a file or journald gets plain text.
    let terminal = if to_stderr {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
    } else {
        std::io::IsTerminal::is_terminal(&std::io::stdout())
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal);
    match (format, to_stderr) {
        (LogFormat::Text, false) => builder.init(),
        (LogFormat::Text, true) => builder.with_writer(std::io::stderr).init(),
        (LogFormat::Json, false) => builder.json().flatten_event(false).init(),
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(false)
            .with_writer(std::io::stderr)
            .init(),
    }
}
