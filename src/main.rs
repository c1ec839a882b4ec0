//! The Azure Functions custom handler: arguments, configuration, telemetry, serve, shutdown.

use std::io::Write;
use std::process::ExitCode;

use mongo_lake_ingest::cli::{self, Command};
use mongo_lake_ingest::configuration::Settings;
use mongo_lake_ingest::startup::{shutdown_signal, tune_process, Application};
use mongo_lake_ingest::telemetry;

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Serve) => serve(),
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

fn serve() -> ExitCode {
    // Before any thread exists (allocator arenas, open-file limit).
    tune_process();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => {
            let code = runtime.block_on(run());
            // `run` bounded the shutdown already; do not wait again for abandoned work.
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
