//! Load benchmark: drives the release `handler` binary over loopback HTTP with distinct
//! change events and reports throughput, latency percentiles, peak RSS and start-up time.
//!
//! Run: `cargo bench --bench ingest_load` (figures go to stdout as Markdown tables;
//! BENCHMARKS.md records them with the machine). `BENCH_SCALE=0.1` runs a tenth of the
//! work for a quick look. The ADLS part runs the handler against the DFS test server on
//! loopback (`BENCH_ADLS=0` leaves it out, `BENCH_LOCAL=0` the local lake). The load generator shares the machine with the handler, so
//! figures on a 2-core machine include the client's own CPU use.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SAMPLE: &str = include_str!("../samples/insert.json");

#[path = "support/handler.rs"]
mod handler;
use handler::{free_port, Handler};

/// Where benchmark lakes go: `BENCH_LAKE_DIR` (e.g. /dev/shm to leave the disk out),
/// else the target directory, on the disk the project is built on.
fn lake_root() -> PathBuf {
    std::env::var_os("BENCH_LAKE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

/// A distinct, realistic insert event (a ~2 KB `sample_mflix.movies` document) with its
/// own resume token, `_id` and cluster time (a new second every 1,000 events).
fn event(serial: usize) -> String {
    let time = 1_700_000_000 + serial / 1000;
    let event = SAMPLE
        .replace(sample_part("\"_data\": \""), &format!("82{serial:016X}"))
        .replace(sample_part("\"t\": "), &time.to_string())
        .replace(sample_part("\"$oid\": \""), &format!("{serial:024x}"));
    assert!(
        event.contains(&format!("82{serial:016X}")) && event.contains(&format!("{serial:024x}"))
    );
    event
}

/// The sample's value after `key` (up to the next quote or comma).
fn sample_part(key: &str) -> &'static str {
    let start = SAMPLE.find(key).expect("key in the sample") + key.len();
    let len = SAMPLE[start..].find(['"', ',']).expect("end of the value");
    &SAMPLE[start..start + len]
}

struct Run {
    name: String,
    events: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    /// Handler CPU (user + system) per event, in microseconds.
    cpu_us_per_event: f64,
}

impl Run {
    fn with_cpu(self, cpu_seconds: f64) -> Run {
        let cpu_us_per_event = cpu_seconds * 1e6 / self.events as f64;
        Run {
            cpu_us_per_event,
            ..self
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index].as_secs_f64() * 1000.0
    }

    fn row(&self, label: &str) -> String {
        format!(
            "| {label}: {} | {} | {:.0} | {:.2} | {:.2} | {:.0} |",
            self.name,
            self.events,
            self.events as f64 / self.seconds,
            self.percentile(0.50),
            self.percentile(0.99),
            self.cpu_us_per_event
        )
    }
}

/// Sends `bodies` with `concurrency` closed-loop workers (each waits for its answer).
async fn closed_loop(
    name: &str,
    url: &str,
    bodies: Vec<String>,
    per_body: usize,
    concurrency: usize,
) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, bodies, next, url) = (
                client.clone(),
                Arc::clone(&bodies),
                Arc::clone(&next),
                url.to_owned(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(index) else { break };
                    let sent = Instant::now();
                    let response = handler::post_json(&client, &url, body.clone()).await;
                    assert_eq!(
                        response.status(),
                        200,
                        "{}",
                        response.text().await.unwrap_or_default()
                    );
                    let _ = response.bytes().await;
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    Run {
        name: name.to_owned(),
        events: bodies.len() * per_body,
        seconds: started.elapsed().as_secs_f64(),
        latencies,
        cpu_us_per_event: f64::NAN,
    }
}

/// Sends single-event requests at a fixed rate (open loop), so latency is measured at a
/// known load rather than at saturation.
async fn fixed_rate(name: &str, url: &str, bodies: Vec<String>, per_second: u32) -> Run {
    let client = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / per_second);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let count = bodies.len();
    let mut requests = Vec::with_capacity(count);
    for body in bodies {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.to_owned());
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = handler::post_json(&client, &url, body).await;
            assert_eq!(response.status(), 200);
            let _ = response.bytes().await;
            sent.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for request in requests {
        latencies.push(request.await.expect("request"));
    }
    Run {
        name: name.to_owned(),
        events: count,
        seconds: started.elapsed().as_secs_f64(),
        latencies,
        cpu_us_per_event: f64::NAN,
    }
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(10)
}

async fn scenarios(lake: PathBuf, durable: bool, serial: &mut usize) -> (Vec<Run>, f64, f64) {
    let handler = Handler::start(lake, durable);
    let url = handler.url();
    let mut take = |n: usize| -> Vec<String> {
        let bodies = (*serial..*serial + n).map(event).collect();
        *serial += n;
        bodies
    };
    // Warm-up: connections, page cache, allocator.
    closed_loop("warm-up", &url, take(500), 1, 8).await;

    let single_1 = take(scaled(3_000));
    let single_32 = take(scaled(30_000));
    let batches: Vec<String> = (0..scaled(400))
        .map(|_| format!("[{}]", take(100).join(",")))
        .collect();
    let paced = take(scaled(10_000));

    let mut runs = Vec::new();
    let cpu = handler.cpu_seconds();
    let run = closed_loop("single event, concurrency 1", &url, single_1, 1, 1).await;
    runs.push(run.with_cpu(handler.cpu_seconds() - cpu));
    let cpu = handler.cpu_seconds();
    let run = closed_loop("single event, concurrency 32", &url, single_32, 1, 32).await;
    runs.push(run.with_cpu(handler.cpu_seconds() - cpu));
    let cpu = handler.cpu_seconds();
    let run = closed_loop("100-event batches, concurrency 4", &url, batches, 100, 4).await;
    runs.push(run.with_cpu(handler.cpu_seconds() - cpu));
    let cpu = handler.cpu_seconds();
    let run = fixed_rate("single event at 1,000 req/s", &url, paced, 1_000).await;
    runs.push(run.with_cpu(handler.cpu_seconds() - cpu));
    let rss = handler.peak_rss_mib();

    // The largest request a user can send (MAX_BODY_BYTES is 100 MiB): its memory, apart
    // from the peak of the load above.
    let big_events = scaled(45_000);
    let big_body = take(big_events)
        .iter()
        .map(|event| compact(event))
        .collect::<Vec<_>>()
        .join("\n");
    let big_mib = big_body.len() as f64 / (1024.0 * 1024.0);
    let cpu = handler.cpu_seconds();
    let client = reqwest::Client::new();
    let sent = Instant::now();
    let response = client
        .post(&url)
        .header("Content-Type", "application/x-ndjson")
        .body(big_body)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
    let big = Run {
        name: format!("one {big_mib:.0} MiB NDJSON request"),
        events: big_events,
        seconds: sent.elapsed().as_secs_f64(),
        latencies: vec![sent.elapsed()],
        cpu_us_per_event: f64::NAN,
    }
    .with_cpu(handler.cpu_seconds() - cpu);
    runs.push(big);
    let big_rss = handler.peak_rss_mib();
    handler.stop();
    (runs, rss, big_rss)
}

/// An event on one line, for NDJSON.
fn compact(event: &str) -> String {
    serde_json::from_str::<serde_json::Value>(event)
        .map(|value| value.to_string())
        .unwrap_or_default()
}

fn startup_times(samples: usize) -> Vec<f64> {
    (0..samples)
        .map(|_| {
            let lake = lake_root()
                .join(format!("bench-{}", std::process::id()))
                .join("startup");
            let port = free_port();
            let started = Instant::now();
            let child = Command::new(handler::binary())
                .env_clear()
                .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
                .env("LOCAL_LAKE_DIR", &lake)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("handler starts");
            let handler = Handler { child, port };
            let ready = handler.wait_ready(started);
            handler.stop();
            ready.as_secs_f64() * 1000.0
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Lakes are removed only at the end: on some file systems (ext4 without a journal, as
    // on this project's VMs) deleting many files slows the creation of the next ones,
    // which would penalise whichever scenario runs after a cleanup.
    let root = lake_root().join(format!("bench-{}", std::process::id()));
    let mut serial = 0;
    println!("| scenario | events | events/s | p50 ms | p99 ms | handler CPU µs/event |");
    println!("|---|---:|---:|---:|---:|---:|");
    let local = std::env::var("BENCH_LOCAL").as_deref() != Ok("0");
    for durable in [true, false].into_iter().filter(|_| local) {
        let lake = root.join(if durable { "durable" } else { "fast" });
        let (runs, rss, big_rss) = runtime.block_on(scenarios(lake, durable, &mut serial));
        let label = if durable {
            "fsync on (default)"
        } else {
            "LOCAL_LAKE_FSYNC=false"
        };
        for run in &runs {
            println!("{}", run.row(label));
        }
        println!("| {label}: peak RSS (VmHWM) under load | | {rss:.1} MiB | | | |");
        println!("| {label}: peak RSS after the largest request | | {big_rss:.1} MiB | | | |");
    }
    if std::env::var("BENCH_ADLS").as_deref() != Ok("0") {
        for protocol in ["blob", "dfs"] {
            adls(&runtime, &mut serial, protocol);
        }
    }
    let mut startup = startup_times(20);
    startup.sort_by(f64::total_cmp);
    println!(
        "| process start to first `GET /` answer (20 starts) | | median {:.1} ms | | max {:.1} ms | |",
        startup[startup.len() / 2],
        startup[startup.len() - 1]
    );
    println!("\nlakes under {}", root.display());
    let _ = std::fs::remove_dir_all(&root);
}

/// The ADLS sink against the DFS test server (Shared Key verified on every request) with
/// the write `protocol` (`blob`: one Put Blob per file on its Blob endpoint; `dfs`:
/// create, append, rename): files/s, latency, storage requests per file and connections
/// per 1,000 files, and the floor: one signed request to the same server.
fn adls(runtime: &tokio::runtime::Runtime, serial: &mut usize, protocol: &str) {
    use dfs_test_server::{DfsServer, DEV_ACCOUNT, DEV_ACCOUNT_KEY};

    // Its own runtime threads, as a separate service would have.
    let dfs = DfsServer::builder()
        .filesystem("mongodb")
        .start_in_thread()
        .expect("DFS test server");
    let handler = Handler::start_with(&[
        ("STORAGE_ACCOUNT_NAME", DEV_ACCOUNT.to_owned()),
        ("STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY.to_owned()),
        ("STORAGE_DFS_ENDPOINT", dfs.endpoint()),
        ("STORAGE_BLOB_ENDPOINT", dfs.blob_endpoint()),
        ("STORAGE_WRITE_PROTOCOL", protocol.to_owned()),
    ]);
    let url = handler.url();
    let mut take = |n: usize| -> Vec<String> {
        let bodies = (*serial..*serial + n).map(event).collect();
        *serial += n;
        bodies
    };
    println!();
    println!(
        "ADLS sink, DFS test server on loopback (Shared Key), STORAGE_WRITE_PROTOCOL={protocol}:"
    );
    println!();
    println!("| scenario | events | events/s | p50 ms | p99 ms | handler CPU µs/event | files/event | storage requests/file | connections/1,000 events |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    runtime.block_on(async {
        closed_loop("warm-up", &url, take(200), 1, 8).await;
        let floor = floor_latency(&dfs, scaled(2_000)).await;
        let mut scenarios: Vec<(String, Vec<String>, usize, usize)> = [1, 16, 64]
            .into_iter()
            .map(|concurrency| {
                (
                    format!("single event, concurrency {concurrency}"),
                    take(scaled(if concurrency == 1 { 2_000 } else { 10_000 })),
                    1,
                    concurrency,
                )
            })
            .collect();
        scenarios.push((
            "100-event batches, concurrency 4".to_owned(),
            (0..scaled(100))
                .map(|_| format!("[{}]", take(100).join(",")))
                .collect(),
            100,
            4,
        ));
        let mut single_p50 = f64::NAN;
        for (name, bodies, per_body, concurrency) in scenarios {
            dfs.reset_stats();
            let files_before = dfs.files("mongodb").len();
            let cpu = handler.cpu_seconds();
            let run = closed_loop(&name, &url, bodies, per_body, concurrency)
                .await
                .with_cpu(handler.cpu_seconds() - cpu);
            let stats = dfs.stats();
            let files = run.events as f64;
            // An old event writes its change file and a late-change marker (empty).
            let stored = (dfs.files("mongodb").len() - files_before) as f64;
            if concurrency == 1 {
                single_p50 = run.percentile(0.50);
            }
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.1} |",
                run.name,
                run.events,
                files / run.seconds,
                run.percentile(0.50),
                run.percentile(0.99),
                run.cpu_us_per_event,
                stored / files,
                stats.requests as f64 / stored,
                stats.connections as f64 * 1000.0 / files
            );
        }
        println!(
            "| floor: one signed request to the same server (filesystem HEAD), concurrency 1 | {} | | {floor:.2} | | | | 1 | |",
            scaled(2_000)
        );
        println!(
            "\nA single-event request writing one file takes {:.1}x the floor at p50.",
            single_p50 / floor
        );
    });
    println!(
        "handler peak RSS (VmHWM) on ADLS ({protocol}): {:.1} MiB",
        handler.peak_rss_mib()
    );
    handler.stop();
}

/// p50 latency of one Shared Key-signed request (filesystem properties) to `dfs`, sent one
/// at a time through the same client library and connection pooling the sink uses.
async fn floor_latency(dfs: &dfs_test_server::DfsServer, requests: usize) -> f64 {
    use azure_storage::{CloudLocation, StorageCredentials};
    use azure_storage_datalake::clients::DataLakeClientBuilder;

    let credentials = StorageCredentials::access_key(
        dfs_test_server::DEV_ACCOUNT,
        dfs_test_server::DEV_ACCOUNT_KEY.to_owned(),
    );
    let location = CloudLocation::Custom {
        account: dfs_test_server::DEV_ACCOUNT.to_owned(),
        uri: dfs.endpoint(),
    };
    let http = reqwest::Client::new();
    let filesystem = DataLakeClientBuilder::with_location(location, credentials)
        .transport(azure_core::TransportOptions::new(Arc::new(http)))
        .build()
        .file_system_client("mongodb");
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let sent = Instant::now();
        filesystem.get_properties().await.expect("filesystem HEAD");
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    latencies[latencies.len() / 2].as_secs_f64() * 1000.0
}
