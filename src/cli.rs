//! The command line: no argument serves (how the Functions host starts the handler);
//! `--help` and `--version` print and exit without touching a port or the lake.
//! Hand-rolled: three forms do not need a parser crate.

use std::ffi::OsString;

use crate::configuration::{
    settings_help, DEFAULT_CONTAINER, DEFAULT_DIRECTORY, DEFAULT_LAKE_DIR, DEFAULT_PORT,
};
use crate::domain::DEFAULT_TEMPLATE;
use crate::routes::INGEST_PATH;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the server (configured by environment variables).
    Serve,
    /// Print this text to standard output and exit successfully.
    Print(String),
}

/// An argument the handler does not know.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown argument {0:?}; see --help")]
pub struct UnknownArgument(pub String);

/// Reads the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UnknownArgument> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Ok(Command::Serve);
    };
    let command = match first.to_str() {
        Some("-h" | "--help") => Command::Print(usage()),
        Some("-V" | "--version") => Command::Print(version()),
        _ => return Err(UnknownArgument(first.to_string_lossy().into_owned())),
    };
    match args.next() {
        None => Ok(command),
        Some(extra) => Err(UnknownArgument(extra.to_string_lossy().into_owned())),
    }
}

/// `handler <version>`.
pub fn version() -> String {
    format!("handler {}\n", env!("CARGO_PKG_VERSION"))
}

/// What the program is, how it runs, and every setting with its default.
pub fn usage() -> String {
    let local_folder =
        format!("{DEFAULT_LAKE_DIR}/{DEFAULT_CONTAINER}/{DEFAULT_DIRECTORY}/{DEFAULT_TEMPLATE}/");
    format!(
        "\
handler {version}: MongoDB Atlas change events in, one lake file per change out.

An Azure Functions custom handler. A MongoDB Atlas Trigger POSTs change events
(Extended JSON) to it; it writes one JSON file per change, to a local lake folder
or to Azure Data Lake Storage Gen2.

Usage:
  handler              serve until SIGTERM or Ctrl-C (settings below)
  handler --help, -h   print this help
  handler --version, -V
                       print the version

How it runs:
  Under the Functions host (`func start`, or on Azure): the host starts it with
  FUNCTIONS_CUSTOMHANDLER_PORT set and forwards POST {INGEST_PATH} to it.
  Locally (`cargo run --release`, no settings): it serves
    http://127.0.0.1:{DEFAULT_PORT}{INGEST_PATH}
  and writes files under
    {local_folder}
  The start-up line names the URL and the absolute folder (or ADLS location).

Settings are environment variables (Azure app settings are environment variables).
Empty counts as unset. Anything invalid or contradictory stops start-up with one
message naming the setting (exit code 2).

{settings}",
        version = env!("CARGO_PKG_VERSION"),
        settings = settings_help(),
    )
    .replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::SETTINGS;

    fn parse_strs(args: &[&str]) -> Result<Command, UnknownArgument> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn no_argument_serves_and_the_flags_print() {
        assert_eq!(parse_strs(&[]), Ok(Command::Serve));
        for flag in ["--help", "-h"] {
            assert_eq!(parse_strs(&[flag]), Ok(Command::Print(usage())));
        }
        for flag in ["--version", "-V"] {
            assert_eq!(
                parse_strs(&[flag]),
                Ok(Command::Print(format!(
                    "handler {}\n",
                    env!("CARGO_PKG_VERSION")
                )))
            );
        }
    }

    #[test]
    fn anything_else_is_named_in_the_error() {
        let error = parse_strs(&["--port"]).expect_err("unknown");
        assert_eq!(error.to_string(), "unknown argument \"--port\"; see --help");
        assert_eq!(
            parse_strs(&["--help", "extra"]),
            Err(UnknownArgument("extra".into()))
        );
    }

    #[test]
    fn usage_says_how_it_runs_and_lists_every_setting() {
        let text = usage();
        assert!(text.contains("http://127.0.0.1:8080/api/ingest"), "{text}");
        assert!(
            text.contains("./lake/mongodb/changes/{db}/{coll}/"),
            "{text}"
        );
        assert!(text.contains("FUNCTIONS_CUSTOMHANDLER_PORT set"), "{text}");
        for setting in SETTINGS {
            assert!(text.contains(setting.name), "{}", setting.name);
        }
    }
}
