//! Logging: text for people, JSON lines for Application Insights (`LOG_FORMAT=json`).
//! `RUST_LOG` filters as usual (default `info`; read and checked with the other settings). Nothing logged at `info` or above holds
//! document contents or secrets.

use std::io::IsTerminal;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::configuration::LogFormat;

/// Libraries whose debug logs hold secrets or documents: the storage client logs whole
/// requests (URL with any SAS signature, the `Authorization` header, the body) and the
/// HTTP client logs URLs. They stay at `info` whatever `RUST_LOG` says (`typespec_client_core`
/// is the pipeline under `azure_identity` 1.x: the user-assigned managed identity).
const QUIET: [&str; 7] = [
    "azure_core=info",
    "typespec_client_core=info",
    "azure_storage=info",
    "azure_storage_datalake=info",
    "azure_identity=info",
    "reqwest=info",
    "hyper_util=info",
];

/// Where log lines go: standard output when serving (the host collects it), standard
/// error for `handler compact`, whose standard output carries only its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

/// Installs the global subscriber with `filter` (`RUST_LOG`), writing to standard output.
/// A second call (tests) is a no-op.
pub fn init(format: LogFormat, filter: &str) {
    init_on(Output::Stdout, format, filter);
}

/// As [`init`], writing to `output`.
pub fn init_on(output: Output, format: LogFormat, filter: &str) {
    let mut filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in QUIET {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let (writer, terminal) = match output {
        Output::Stdout => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
        Output::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(terminal).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
