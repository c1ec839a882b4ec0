//! The Azure Functions custom handler: arguments, configuration, telemetry, serve, shutdown;
//! or one pass (`handler compact`, `handler mirror`).

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use mongo_lake_ingest::cli::{self, Command};
use mongo_lake_ingest::configuration::Settings;
use mongo_lake_ingest::startup::{
    compact_once, mirror_once, shutdown_signal, tune_process, Application,
};
use mongo_lake_ingest::telemetry::{self, Output};

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)) {
        // Before any thread exists (allocator arenas, open-file limit).
        Ok(Command::Serve) => {
            tune_process();
            block_on(run())
        }
        Ok(Command::Compact(scope)) => {
            tune_process();
            block_on(one_pass("compact", compaction_off, |settings| async move {
                compact_once(&settings, scope).await
            }))
        }
        Ok(Command::Mirror) => {
            tune_process();
            block_on(one_pass("mirror", mirror_off, |settings| async move {
                mirror_once(&settings).await
            }))
        }
        Ok(Command::Print(text)) => {
            // A closed pipe (`handler --help | head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("handler: {error}");
            ExitCode::from(2)
        }
    }
}

fn block_on(work: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => {
            let code = runtime.block_on(work);
            // `run` bounded the shutdown already, and a finished pass left nothing to wait
            // for: do not wait again for abandoned work.
            runtime.shutdown_background();
            code
        }
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format, &settings.log_filter);
    if settings.signing.is_none() {
        tracing::warn!("INGEST_HMAC_SECRET is not set: unsigned requests are accepted (only the Azure function key guards the endpoint)");
    }

    let app = match Application::build(&settings).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "start-up failed");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        address = %app.local_addr(),
        url = %app.ingest_url(),
        records = %settings.records_location(),
        sink = %app.sink_description(),
        "ready"
    );

    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped: in-flight requests finished");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Why compaction's pass would do nothing, if it would.
fn compaction_off(settings: &Settings) -> Option<&'static str> {
    (!settings.compact.enabled).then_some("compaction is off (COMPACT_ENABLED=false, or STORAGE_DIRECTORY is the container's root and COMPACT_DIRECTORY is not set)")
}

/// Why the mirror's pass would do nothing, if it would.
fn mirror_off(settings: &Settings) -> Option<&'static str> {
    (!settings.mirror.enabled).then_some(
        "the mirror is off: set MIRROR_LANDING_ZONE (or MIRROR_LOCAL_DIR) to its landing zone",
    )
}

/// One pass: logs on stderr, the summary as one JSON line on stdout; exit 0, or 1 with one
/// `handler <command>: <why>` line (2 for settings, as when serving, and for a pass that
/// is off: a setting is missing).
async fn one_pass<S, E, F>(
    command: &str,
    off: fn(&Settings) -> Option<&'static str>,
    pass: impl FnOnce(Settings) -> F,
) -> ExitCode
where
    S: serde::Serialize,
    E: std::fmt::Display,
    F: Future<Output = Result<S, E>>,
{
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("handler {command}: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_on(Output::Stderr, settings.log_format, &settings.log_filter);
    if let Some(why) = off(&settings) {
        eprintln!("handler {command}: {why}");
        return ExitCode::from(2);
    }
    match pass(settings).await {
        Ok(summary) => match serde_json::to_string(&summary) {
            Ok(line) => {
                let _ = writeln!(std::io::stdout(), "{line}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("handler {command}: cannot write the summary: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("handler {command}: {error}");
            ExitCode::FAILURE
        }
    }
}
