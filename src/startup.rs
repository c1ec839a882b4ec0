//! Building the server from settings, running it, and stopping it cleanly; and the one
//! pass `handler compact` and `handler mirror` run, on the same stores.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::compact::{CompactError, Compactor, LateMarkers, PassScope, PassSummary};
use crate::configuration::{
    AdlsSettings, Credential, LandingZone, ServerLimits, Settings, StorageSettings, WriteProtocol,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_BUDGET, DEFAULT_WRITE_CONCURRENCY,
};
pub use crate::error::{CompactFailure, MirrorFailure};
use crate::error::{PassError, PassFailure};
use crate::ingest::Ingestor;
use crate::mirror::{Mirror, MirrorError, MirrorPaths, MirrorSettings, MirrorSummary};
use crate::routes::{router, AppState, Compaction, InflightBudget, Mirroring, INGEST_PATH};
use crate::server::Server;
use crate::signature::Verifier;
use crate::sink::{AdlsSink, ClientError, LocalLake, S3ClientError, S3Sink, Sink, SinkHealth};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the local lake at {dir}: {source}")]
    LocalLake {
        dir: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up the ADLS client: {0}")]
    Adls(#[from] ClientError),
    #[error(transparent)]
    S3(#[from] S3ClientError),
    #[error("cannot open the mirror's landing zone (MIRROR_LOCAL_DIR) at {dir}: {source}")]
    LandingZone {
        dir: String,
        #[source]
        source: io::Error,
    },
}

/// Serving ended badly. Nothing in it was acknowledged: a 200 is only sent once stored.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("shutdown did not finish within SHUTDOWN_TIMEOUT_SECS ({} s): {connections} connections and {writes} ingest tasks abandoned, none of them answered 200", .after.as_secs())]
    ShutdownTimedOut {
        after: Duration,
        connections: usize,
        writes: usize,
    },
}

/// `handler compact` or `handler mirror` could not run its pass, or the pass failed.
#[derive(Debug, thiserror::Error)]
pub enum PassCommandError<E: PassError> {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Pass(#[from] PassFailure<E>),
}

pub type CompactCommandError = PassCommandError<CompactError>;
pub type MirrorCommandError = PassCommandError<MirrorError>;

/// The store the settings name: the local lake, ADLS Gen2 or S3. No request is sent: when
/// serving, the health watch's first probe checks it in the background.
fn open_sink(settings: &Settings) -> Result<Arc<dyn Sink>, StartupError> {
    Ok(match &settings.storage {
        StorageSettings::LocalLake { dir, durable } => Arc::new(
            LocalLake::open(dir, &settings.container, *durable).map_err(|source| {
                StartupError::LocalLake {
                    dir: dir.display().to_string(),
                    source,
                }
            })?,
        ),
        StorageSettings::Adls(adls) => Arc::new(AdlsSink::new(
            adls,
            &settings.container,
            settings.layout.directory(),
        )?),
        StorageSettings::S3(s3) => Arc::new(S3Sink::new(s3)?),
    })
}

/// The mirror's landing zone, `None` when the mirror is off. Locally a lake whose
/// container is the folder itself (so `<db>.schema/<coll>/` lands directly inside it); on
/// ADLS (OneLake) a sink that always authenticates with Microsoft Entra ID, since OneLake
/// takes no Shared Key or SAS, whatever the change files' credential is. It writes with
/// the change files' limits when they go to ADLS too, else with the defaults.
/// Fabric's reserved staging folder in a landing zone ("Open mirroring best practices").
const LANDING_STAGING: &str = "_scratchPad";

fn landing_sink(settings: &Settings) -> Result<Option<Arc<dyn Sink>>, StartupError> {
    let Some(zone) = &settings.landing_zone else {
        return Ok(None);
    };
    Ok(Some(match zone {
        LandingZone::Local {
            lake_dir,
            container,
        } => {
            let durable = match &settings.storage {
                StorageSettings::LocalLake { durable, .. } => *durable,
                StorageSettings::Adls(_) | StorageSettings::S3(_) => true,
            };
            let lake = LocalLake::open(lake_dir, container, durable).map_err(|source| {
                StartupError::LandingZone {
                    dir: lake_dir.join(container).display().to_string(),
                    source,
                }
            })?;
            Arc::new(lake)
        }
        LandingZone::Adls(url) => {
            let (write_concurrency, request_timeout, retry_budget) = match &settings.storage {
                StorageSettings::Adls(lake) => (
                    lake.write_concurrency,
                    lake.request_timeout,
                    lake.retry_budget,
                ),
                StorageSettings::S3(lake) => (
                    lake.write_concurrency,
                    lake.request_timeout,
                    lake.retry_budget,
                ),
                StorageSettings::LocalLake { .. } => (
                    DEFAULT_WRITE_CONCURRENCY,
                    DEFAULT_REQUEST_TIMEOUT,
                    DEFAULT_RETRY_BUDGET,
                ),
            };
            let adls = AdlsSettings {
                account: url.account.clone(),
                credential: Credential::entra(&settings.identity),
                endpoint: url.endpoint.clone(),
                create_filesystem: false,
                write_concurrency,
                request_timeout,
                retry_budget,
                // OneLake's landing zone takes DFS writes.
                write: WriteProtocol::Dfs,
            };
            Arc::new(
                AdlsSink::new(&adls, &url.filesystem, &url.directory)?
                    .with_staging_folder(LANDING_STAGING),
            )
        }
    }))
}

/// The mirror between the lake and its landing zone. Off, a pass does nothing and never
/// touches a landing zone: the lake stands in for the one there is not.
fn mirror(lake: Arc<dyn Sink>, settings: &Settings) -> Result<Mirror, StartupError> {
    mirror_with(lake, settings, settings.mirror.clone())
}

fn mirror_with(
    lake: Arc<dyn Sink>,
    settings: &Settings,
    mirror: MirrorSettings,
) -> Result<Mirror, StartupError> {
    let landing = landing_sink(settings)?.unwrap_or_else(|| Arc::clone(&lake));
    Ok(Mirror::new(lake, landing, settings.layout.clone(), mirror))
}

/// The late markers the ingest leaves: one per pass that is on (compaction's, the
/// mirror's), by the same rule (`COMPACT_DELAY_SECS` closes an hour for both).
fn late_markers(settings: &Settings) -> LateMarkers {
    let mut markers = LateMarkers::none(settings.compact.delay);
    if settings.compact.enabled {
        markers = markers.with_compaction(settings.compact.root.clone());
    }
    if settings.mirror.enabled {
        markers =
            markers.with_folder(MirrorPaths::new(settings.mirror.state_root.clone()).late_folder());
    }
    markers
}

fn compactor(sink: Arc<dyn Sink>, settings: &Settings) -> Compactor {
    Compactor::new(sink, settings.layout.clone(), settings.compact.clone())
}

/// One compaction pass over `scope` on the store the settings name, as `handler compact`
/// runs it (the timer function runs the same pass through `POST /compact`).
pub async fn compact_once(
    settings: &Settings,
    scope: PassScope,
) -> Result<PassSummary, CompactCommandError> {
    let sink = open_sink(settings)?;
    let summary = compactor(sink, settings)
        .run_pass(scope, SystemTime::now())
        .await
        .map_err(CompactFailure::from)?;
    Ok(summary)
}

/// One mirror pass on the stores the settings name, as `handler mirror` runs it (the
/// timer function runs the same pass through `POST /mirror`).
pub async fn mirror_once(settings: &Settings) -> Result<MirrorSummary, MirrorCommandError> {
    let lake = open_sink(settings)?;
    // The command runs until everything stored before it started is out (after a burst,
    // the landing zone is complete when it exits): no time budget.
    let unbounded = MirrorSettings {
        time_budget: Duration::MAX,
        ..settings.mirror.clone()
    };
    let summary = mirror_with(lake, settings, unbounded)?
        .pass(SystemTime::now())
        .await
        .map_err(MirrorFailure::from)?;
    Ok(summary)
}

/// A bound, ready-to-serve application.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    limits: ServerLimits,
    /// Cancelled when shutdown starts: stops a compaction or mirror pass in flight, and
    /// the sink's health watch.
    stopping: CancellationToken,
    /// How often the sink is probed when nothing else has shown it reachable or not
    /// (`HEALTH_PROBE_SECS`).
    health_probe: Duration,
}

impl Application {
    /// Opens the sink and binds the listener. Cheap, so the host's first readiness ping
    /// is answered within milliseconds of the process starting.
    pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
        let sink = open_sink(settings)?;
        let stopping = CancellationToken::new();
        let compaction = Compaction::new(compactor(Arc::clone(&sink), settings), stopping.clone());
        let mirroring = Mirroring::new(mirror(Arc::clone(&sink), settings)?, stopping.clone());
        let health = Arc::new(SinkHealth::new());
        let ingestor = Ingestor::new(sink, settings.layout.clone(), settings.encoding)
            .with_late_markers(late_markers(settings))
            .with_health(Arc::clone(&health));
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    address: settings.listen,
                    source,
                })?;
        Ok(Application {
            listener,
            limits: settings.limits.clone(),
            stopping,
            health_probe: settings.health_probe_interval,
            state: AppState {
                health,
                compaction: Arc::new(compaction),
                mirroring: Arc::new(mirroring),
                ingestor: Arc::new(ingestor),
                tracker: TaskTracker::new(),
                max_body_bytes: settings.max_body_bytes,
                budget: InflightBudget::new(settings.limits.max_inflight_bytes),
                verifier: settings.signing.as_ref().map(|signing| {
                    Arc::new(Verifier::new(&signing.secret, signing.tolerance_secs))
                }),
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The URL callers POST change events to (forwarding mode).
    pub fn ingest_url(&self) -> String {
        format!("http://{}{INGEST_PATH}", self.local_addr())
    }

    pub fn sink_description(&self) -> String {
        self.state.ingestor.sink().describe()
    }

    /// Probes the sink in the background while serving (at once, then whenever nothing
    /// has been seen of it for `HEALTH_PROBE_SECS`); it ends when `stopping` is cancelled.
    fn spawn_health_watch(&self) -> tokio::task::JoinHandle<()> {
        let health = Arc::clone(&self.state.health);
        let ingestor = Arc::clone(&self.state.ingestor);
        let (interval, stopping) = (self.health_probe, self.stopping.clone());
        tokio::spawn(async move { health.watch(ingestor.sink(), interval, stopping).await })
    }

    /// Serves until `shutdown` completes, then stops accepting connections, lets the
    /// requests whose body is in finish and waits for every write they started: all of it
    /// within `SHUTDOWN_TIMEOUT_SECS` of the signal, whatever clients do.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let tracker = self.state.tracker.clone();
        let watch = self.spawn_health_watch();
        let draining = Server::new(self.listener, router(self.state), &self.limits)
            .serve_until(shutdown)
            .await;
        let deadline = tokio::time::Instant::now() + self.limits.shutdown_timeout;
        // A pass may take minutes; stopped, it leaves nothing half-done (docs/decisions.md).
        self.stopping.cancel();
        tracker.close();
        let drained = tokio::time::timeout_at(deadline, async {
            draining.closed().await;
            tracker.wait().await;
            let _ = watch.await;
        })
        .await;
        drained.map_err(|_| ServeError::ShutdownTimedOut {
            after: self.limits.shutdown_timeout,
            connections: draining.open(),
            writes: tracker.len(),
        })
    }
}

/// Process-wide settings made before any thread starts:
///
/// - glibc's malloc arenas are capped at two (unless `MALLOC_ARENA_MAX` is set, which
///   glibc reads itself). By default glibc gives busy threads up to eight arenas per core,
///   and memory freed in one stays resident; with the blocking pool's threads that
///   doubled the resident set for no speed gain (BENCHMARKS.md).
/// - allocations of 256 KiB and more always get their own mapping (a fixed
///   `M_MMAP_THRESHOLD`, which also turns off glibc's adaptive threshold). A large
///   request's buffers then grow in place (`mremap`, no copy, so never twice resident)
///   and go back to the system when the request ends; with the adaptive threshold they
///   came from the heap after the first large request, and were copied on growth.
/// - the soft limit on open files is raised to the hard limit: each request in flight
///   holds a few descriptors per file being written, and the common soft default (1024)
///   would turn a burst of batches into 503s.
pub fn tune_process() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads start.
    unsafe {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit read and write a plain struct owned by this frame.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Completes on SIGTERM (what the Functions host and container runtimes send) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
