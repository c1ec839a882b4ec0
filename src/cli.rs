//! The command line: no argument serves (how the Functions host starts the handler);
//! `compact` runs one compaction pass and exits, `mirror` one mirror pass; `--help` and
//! `--version` print and exit without touching a port or the lake. Hand-rolled: five forms
//! do not need a parser crate.

use std::ffi::OsString;

use crate::compact::PassScope;
use crate::configuration::{
    settings_help, DEFAULT_CONTAINER, DEFAULT_DIRECTORY, DEFAULT_LAKE_DIR, DEFAULT_PORT,
};
use crate::domain::{EventHour, HourError, DEFAULT_TEMPLATE};
use crate::routes::{COMPACT_PATH, INGEST_PATH, MIRROR_PATH};

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the server (configured by environment variables).
    Serve,
    /// Run one compaction pass over these hours, print its summary and exit.
    Compact(PassScope),
    /// Run one mirror pass, print its summary and exit.
    Mirror,
    /// Print this text to standard output and exit successfully.
    Print(String),
}

/// Arguments the handler cannot run with; the message says which and why.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    #[error("unknown argument {0:?}; see --help")]
    Unknown(String),
    #[error("{0} needs an hour (YYYY-MM-DDTHH, UTC); see --help")]
    MissingHour(&'static str),
    #[error("{flag}: {problem}")]
    BadHour {
        flag: &'static str,
        problem: HourError,
    },
    #[error("{0} is given twice; see --help")]
    Repeated(&'static str),
    #[error("--hour and --from/--to cannot be combined; see --help")]
    HourAndRange,
    #[error("{given} needs {missing} too; see --help")]
    HalfRange {
        given: &'static str,
        missing: &'static str,
    },
    #[error("--to {to} is before --from {from}")]
    ReversedRange { from: EventHour, to: EventHour },
}

/// Reads the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, ArgumentError> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Ok(Command::Serve);
    };
    let command = match first.to_str() {
        Some("-h" | "--help") => Command::Print(usage()),
        Some("-V" | "--version") => Command::Print(version()),
        Some("mirror") => Command::Mirror,
        Some("compact") => return compact_scope(args).map(Command::Compact),
        _ => return Err(unknown(first)),
    };
    match args.next() {
        None => Ok(command),
        Some(extra) => Err(unknown(extra)),
    }
}

fn unknown(argument: OsString) -> ArgumentError {
    ArgumentError::Unknown(argument.to_string_lossy().into_owned())
}

/// `compact [--hour H | --from H --to H]`: no hours is the timer's pass (closed hours
/// not compacted yet); given hours are compacted whether closed or not.
fn compact_scope(args: impl Iterator<Item = OsString>) -> Result<PassScope, ArgumentError> {
    let (mut hour, mut from, mut to) = (None, None, None);
    let mut args = args.peekable();
    while let Some(argument) = args.next() {
        let (flag, slot) = match argument.to_str() {
            Some("--hour") => ("--hour", &mut hour),
            Some("--from") => ("--from", &mut from),
            Some("--to") => ("--to", &mut to),
            _ => return Err(unknown(argument)),
        };
        if slot.is_some() {
            return Err(ArgumentError::Repeated(flag));
        }
        let value = args.next().ok_or(ArgumentError::MissingHour(flag))?;
        let value = value.to_string_lossy();
        let parsed = value
            .parse::<EventHour>()
            .map_err(|problem| ArgumentError::BadHour { flag, problem })?;
        *slot = Some(parsed);
    }
    match (hour, from, to) {
        (None, None, None) => Ok(PassScope::Due),
        (Some(hour), None, None) => Ok(PassScope::Hours {
            first: hour,
            last: hour,
        }),
        (Some(_), _, _) => Err(ArgumentError::HourAndRange),
        (None, Some(_), None) => Err(ArgumentError::HalfRange {
            given: "--from",
            missing: "--to",
        }),
        (None, None, Some(_)) => Err(ArgumentError::HalfRange {
            given: "--to",
            missing: "--from",
        }),
        (None, Some(from), Some(to)) if to < from => Err(ArgumentError::ReversedRange { from, to }),
        (None, Some(first), Some(last)) => Ok(PassScope::Hours { first, last }),
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
  handler compact      run one compaction pass over the closed hours not yet
                       compacted, print its summary (one JSON line) and exit
  handler compact --hour 2024-06-16T10
  handler compact --from 2024-06-16T00 --to 2024-06-16T23
                       compact these hours (UTC, both ends included), closed
                       or not; safe beside the timer function
  handler mirror       run one mirror pass: every change stored before it reaches
                       the landing zone (MIRROR_LANDING_ZONE or MIRROR_LOCAL_DIR);
                       print its summary (one JSON line) and exit
  handler --help, -h   print this help
  handler --version, -V
                       print the version

How it runs:
  Under the Functions host (`func start`, or on Azure): the host starts it with
  FUNCTIONS_CUSTOMHANDLER_PORT set and forwards POST {INGEST_PATH} to it; the
  compact timer function (COMPACT_SCHEDULE) arrives as POST {COMPACT_PATH}, the
  mirror timer function (MIRROR_SCHEDULE) as POST {MIRROR_PATH}.
  Locally (`cargo run --release`, no settings): it serves
    http://127.0.0.1:{DEFAULT_PORT}{INGEST_PATH}
  and writes files under
    {local_folder}
  The start-up line names the URL and the absolute folder (or ADLS location).

Settings are environment variables (Azure app settings are environment variables).
Empty counts as unset. Anything invalid or contradictory stops start-up with one
message naming the setting (exit code 2). `handler compact` and `handler mirror`
exit 0 after a pass, 1 with one message on stderr if the pass failed, 2 if their
pass is off (logs go to stderr, the summary to stdout).

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

    fn parse_strs(args: &[&str]) -> Result<Command, ArgumentError> {
        parse(args.iter().map(OsString::from))
    }

    fn hour(text: &str) -> EventHour {
        text.parse().expect("an hour")
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
            Err(ArgumentError::Unknown("extra".into()))
        );
    }

    #[test]
    fn mirror_takes_no_argument() {
        assert_eq!(parse_strs(&["mirror"]), Ok(Command::Mirror));
        assert_eq!(
            parse_strs(&["mirror", "--hour", "2024-06-16T10"]),
            Err(ArgumentError::Unknown("--hour".into()))
        );
    }

    #[test]
    fn compact_takes_no_hours_one_hour_or_a_range() {
        assert_eq!(
            parse_strs(&["compact"]),
            Ok(Command::Compact(PassScope::Due))
        );
        let h = hour("2024-06-16T10");
        assert_eq!(
            parse_strs(&["compact", "--hour", "2024-06-16T10"]),
            Ok(Command::Compact(PassScope::Hours { first: h, last: h }))
        );
        let range = PassScope::Hours {
            first: hour("2024-06-16T10"),
            last: hour("2024-06-17T02"),
        };
        for args in [
            [
                "compact",
                "--from",
                "2024-06-16T10",
                "--to",
                "2024-06-17T02",
            ],
            [
                "compact",
                "--to",
                "2024-06-17T02",
                "--from",
                "2024-06-16T10",
            ],
        ] {
            assert_eq!(parse_strs(&args), Ok(Command::Compact(range.clone())));
        }
    }

    #[test]
    fn compact_refuses_incomplete_reversed_or_mixed_hours() {
        let error = |args: &[&str]| {
            let mut all = vec!["compact"];
            all.extend_from_slice(args);
            parse_strs(&all).expect_err("refused").to_string()
        };
        assert_eq!(
            error(&["--from", "2024-06-16T10"]),
            "--from needs --to too; see --help"
        );
        assert_eq!(
            error(&["--to", "2024-06-16T10"]),
            "--to needs --from too; see --help"
        );
        assert_eq!(
            error(&["--from", "2024-06-16T10", "--to", "2024-06-16T09"]),
            "--to 2024-06-16T09 is before --from 2024-06-16T10"
        );
        assert_eq!(
            error(&["--hour", "2024-06-16T10", "--from", "2024-06-16T10"]),
            "--hour and --from/--to cannot be combined; see --help"
        );
        assert_eq!(
            error(&["--hour"]),
            "--hour needs an hour (YYYY-MM-DDTHH, UTC); see --help"
        );
        assert_eq!(
            error(&["--hour", "2024-06-16T10", "--hour", "2024-06-16T11"]),
            "--hour is given twice; see --help"
        );
        assert!(error(&["--hour", "2024-06-16 10"])
            .starts_with("--hour: \"2024-06-16 10\" is not an hour"));
        assert!(error(&["--hour", "2024-02-30T10"]).contains("is not an hour"));
        assert_eq!(
            error(&["--verbose"]),
            "unknown argument \"--verbose\"; see --help"
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
        assert!(
            text.contains("handler compact --hour 2024-06-16T10"),
            "{text}"
        );
        assert!(text.contains("POST /compact"), "{text}");
        assert!(text.contains("POST /mirror"), "{text}");
        assert!(text.contains("handler mirror "), "{text}");
        for setting in SETTINGS {
            assert!(text.contains(setting.name), "{}", setting.name);
        }
    }
}
