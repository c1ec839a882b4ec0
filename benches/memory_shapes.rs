//! Memory benchmark (issue #8): the release handler's peak resident set for one request of
//! each hostile or unusual shape, in both record encodings, and for twelve large requests
//! at once under the in-flight budget.
//!
//! Run: `cargo bench --bench memory_shapes` (Markdown tables on stdout; BENCHMARKS.md
//! records them). `BENCH_SHAPE_MB` sets the size of each request (default 20),
//! `BENCH_HANDLER=<path>` measures another build (an older commit's, for before/after),
//! `BENCH_CONCURRENT=0` leaves out the twelve-at-once run.
//! Each single-request figure is a fresh handler process, so its VmHWM is that request's
//! peak. Records go to a local lake without fsync: the disk is not what is measured.

use std::time::{Duration, Instant};

#[path = "support/handler.rs"]
mod handler;
use handler::Handler;

const MIB: f64 = 1024.0 * 1024.0;

/// A change event around `document`.
fn event(serial: usize, document: &str) -> String {
    format!(
        r#"{{"_id":{{"_data":"82AA{serial:08}"}},"operationType":"insert","clusterTime":{{"$timestamp":{{"t":1700000000,"i":1}}}},"ns":{{"db":"bench","coll":"shapes"}},"documentKey":{{"_id":{serial}}},"fullDocument":{document}}}"#
    )
}

/// `count` copies of `item`, comma-separated.
fn repeated(item: &str, count: usize) -> String {
    let mut out = String::with_capacity((item.len() + 1) * count);
    for index in 0..count {
        if index > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out
}

/// The request bodies, each about `bytes` long: (name, body).
fn shapes(bytes: usize) -> Vec<(&'static str, String)> {
    let keys: Vec<String> = (0..bytes / 10).map(|i| format!(r#""k{i}":0"#)).collect();
    let dollar_keys: Vec<String> = (0..bytes / 11).map(|i| format!(r#""$k{i}":0"#)).collect();
    let batch: Vec<String> = (0..bytes / 260)
        .map(|i| event(i, &format!(r#"{{"_id":{i},"t":"x"}}"#)))
        .collect();
    vec![
        (
            "numeric array `[0,0,...]`",
            event(
                0,
                &format!(r#"{{"_id":0,"a":[{}]}}"#, repeated("0", bytes / 2)),
            ),
        ),
        (
            "array of empty documents `[{},{},...]`",
            event(
                0,
                &format!(r#"{{"_id":0,"a":[{}]}}"#, repeated("{}", bytes / 3)),
            ),
        ),
        (
            "many small keys `{\"k0\":0,...}`",
            event(0, &format!(r#"{{"_id":0,{}}}"#, keys.join(","))),
        ),
        (
            "one long string",
            event(0, &format!(r#"{{"_id":0,"s":"{}"}}"#, "x".repeat(bytes))),
        ),
        (
            "doubles `[1e0,1e0,...]`",
            event(
                0,
                &format!(r#"{{"_id":0,"a":[{}]}}"#, repeated("1e0", bytes / 4)),
            ),
        ),
        (
            "`$`-prefixed keys `{\"$k0\":0,...}`",
            event(0, &format!("{{{}}}", dollar_keys.join(","))),
        ),
        (
            "batch of small events (~260 B each)",
            format!("[{}]", batch.join(",")),
        ),
    ]
}

struct Measured {
    status: u16,
    seconds: f64,
    peak_mib: f64,
}

/// One request to a fresh handler; its answer's status, time and the process's peak RSS.
fn measure(runtime: &tokio::runtime::Runtime, encoding: &str, body: &str) -> Measured {
    let lake = tempfile::tempdir().expect("temp dir");
    let handler = Handler::start_with(&[
        ("LOCAL_LAKE_DIR", lake.path().display().to_string()),
        ("LOCAL_LAKE_FSYNC", "false".to_owned()),
        ("RECORD_ENCODING", encoding.to_owned()),
    ]);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let status = runtime.block_on(async {
        let response = handler::post_json(&client, &handler.url(), body.to_owned()).await;
        let status = response.status().as_u16();
        let _ = response.bytes().await;
        status
    });
    let measured = Measured {
        status,
        seconds: started.elapsed().as_secs_f64(),
        peak_mib: handler.peak_rss_mib(),
    };
    handler.stop();
    measured
}

/// Twelve large requests at once with the default budget; the client retries a 503 after
/// its `Retry-After`, as the Atlas side does. Returns (peak MiB, 503s seen, seconds).
fn concurrent(runtime: &tokio::runtime::Runtime, body: &str) -> (f64, usize, f64) {
    let lake = tempfile::tempdir().expect("temp dir");
    let handler = Handler::start_with(&[
        ("LOCAL_LAKE_DIR", lake.path().display().to_string()),
        ("LOCAL_LAKE_FSYNC", "false".to_owned()),
    ]);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let busy: usize = runtime.block_on(async {
        let requests = (0..12).map(|serial| {
            let (client, url) = (client.clone(), handler.url());
            // Distinct events: each request writes its own file.
            let body = body.replacen("82AA", &format!("82B{serial:X}"), 1);
            tokio::spawn(async move {
                let mut busy = 0;
                loop {
                    let response = handler::post_json(&client, &url, body.clone()).await;
                    match response.status().as_u16() {
                        200 => return busy,
                        503 => {
                            busy += 1;
                            let wait = response
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(1);
                            tokio::time::sleep(Duration::from_secs(wait)).await;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
            })
        });
        let mut busy = 0;
        for request in requests.collect::<Vec<_>>() {
            busy += request.await.expect("request task");
        }
        busy
    });
    let result = (
        handler.peak_rss_mib(),
        busy,
        started.elapsed().as_secs_f64(),
    );
    handler.stop();
    result
}

fn main() {
    let megabytes: usize = std::env::var("BENCH_SHAPE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let shapes = shapes(megabytes * 1_000_000);

    println!("| shape | encoding | body MiB | status | peak RSS MiB | peak / body | bound 64 MiB + 12x | MB/s |");
    println!("|---|---|---:|---:|---:|---:|---|---:|");
    for (name, body) in &shapes {
        for encoding in ["relaxed", "canonical"] {
            let m = measure(&runtime, encoding, body);
            let body_mib = body.len() as f64 / MIB;
            let bound = 64.0 + 12.0 * body_mib;
            println!(
                "| {name} | {encoding} | {body_mib:.1} | {} | {:.0} | {:.1}x | {} | {:.0} |",
                m.status,
                m.peak_mib,
                m.peak_mib / body_mib,
                if m.peak_mib <= bound {
                    "within"
                } else {
                    "**over**"
                },
                body.len() as f64 / 1e6 / m.seconds,
            );
        }
    }

    if std::env::var("BENCH_CONCURRENT").as_deref() == Ok("0") {
        return;
    }
    let (_, numbers) = &shapes[0];
    let (peak, busy, seconds) = concurrent(&runtime, numbers);
    println!();
    println!(
        "| twelve {:.0} MiB numeric-array requests at once (default MAX_INFLIGHT_BYTES) | peak RSS {peak:.0} MiB | 503s answered (then retried) {busy} | all stored in {seconds:.1} s |",
        numbers.len() as f64 / MIB
    );
}
