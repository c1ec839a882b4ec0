//! The S3 sink against moto's server (started here, on loopback): files/s and latency of
//! conditional puts, one at a time and a batch at a time, beside the floor of one plain
//! request to the same server. moto is a Python server on the same two cores: its speed
//! is not S3's, and these figures compare the sink with moto's own floor, nothing more.
//!
//! Run: `cargo bench --bench s3_sink` (`BENCH_FILES`, default 2,000 per scenario).

#[path = "../tests/support/moto.rs"]
#[allow(dead_code)]
mod moto;
#[path = "../tests/support/python.rs"]
#[allow(dead_code)]
mod python;

use std::time::{Duration, Instant};

use mongo_lake_ingest::domain::{LakePath, Segment};
use mongo_lake_ingest::sink::{LakeFile, S3Sink, Sink};

const SAMPLE: &str = include_str!("../samples/insert.json");

fn file(serial: usize) -> LakeFile {
    let segments = ["changes", "d", "c", &format!("{serial:010}.json")]
        .iter()
        .map(|part| Segment::literal(part).expect("segment"))
        .collect();
    LakeFile {
        path: LakePath::new(segments).expect("path"),
        contents: SAMPLE.as_bytes().to_vec(),
    }
}

fn percentile(latencies: &mut [Duration], p: f64) -> f64 {
    latencies.sort();
    let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
    latencies[index].as_secs_f64() * 1000.0
}

fn main() {
    let files: usize = std::env::var("BENCH_FILES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let server = moto::Moto::start().await;
        server.bucket("bench").await;
        let sink = S3Sink::new(&moto::settings(&server.endpoint, "bench")).expect("client");
        println!("| scenario | files/s | p50 ms | p99 ms |\n|---|---:|---:|---:|");

        // The floor: one plain request (a HEAD of the bucket's root listing) at a time.
        let client = reqwest::Client::new();
        let mut floor = Vec::new();
        let started = Instant::now();
        for _ in 0..files {
            let one = Instant::now();
            let _ = client
                .head(format!("{}/bench", server.endpoint))
                .send()
                .await
                .expect("head");
            floor.push(one.elapsed());
        }
        let rate = files as f64 / started.elapsed().as_secs_f64();
        println!(
            "| floor: one unsigned HEAD, concurrency 1 | {rate:.0} | {:.2} | {:.2} |",
            percentile(&mut floor, 0.5),
            percentile(&mut floor, 0.99)
        );

        let mut latencies = Vec::new();
        let started = Instant::now();
        for serial in 0..files {
            let one = Instant::now();
            sink.store_one(file(serial)).await.expect("stored");
            latencies.push(one.elapsed());
        }
        let rate = files as f64 / started.elapsed().as_secs_f64();
        println!(
            "| one file at a time (conditional put) | {rate:.0} | {:.2} | {:.2} |",
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99)
        );

        let mut batches = Vec::new();
        let started = Instant::now();
        for batch in 0..files / 100 {
            let one = Instant::now();
            let base = files + batch * 100;
            let results = sink.store_all((base..base + 100).map(file).collect()).await;
            assert!(results.iter().all(Result::is_ok));
            batches.push(one.elapsed());
        }
        let rate = (files / 100 * 100) as f64 / started.elapsed().as_secs_f64();
        println!(
            "| 100-file batches (32 at once) | {rate:.0} | {:.2} per batch | {:.2} per batch |",
            percentile(&mut batches, 0.5),
            percentile(&mut batches, 0.99)
        );
    });
}
