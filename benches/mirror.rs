//! The mirror: rows/s from change files to landing-zone Parquet, peak RSS, and what a
//! pass costs once the backlog is done (the latency a stored change waits beyond the
//! timer's period), with `handler mirror` (the release binary, as an operator or the timer
//! runs it) over one hour of change files on the local lake. Figures go to BENCHMARKS.md
//! ("Mirror").
//!
//! `BENCH_RECORDS` (default 200,000) change files of `BENCH_KEYS` (default 100,000)
//! documents with eight fields of six types; `BENCH_ROWS_PER_FILE` sets
//! MIRROR_MAX_ROWS_PER_FILE (default the handler's).

#[path = "support/handler.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use support::run_command;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let records = env_number("BENCH_RECORDS", 200_000);
    let keys = env_number("BENCH_KEYS", 100_000).max(1);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-mirror");
    let _ = std::fs::remove_dir_all(&root);
    let lake = root.join("lake");
    let zone = root.join("zone");
    std::fs::create_dir_all(&zone).expect("landing zone");

    // The hour the clock is in: the pass lists it as open, as in production.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let hour_start = now - now % 3600;
    write_changes(&lake, records, keys, hour_start, 0);
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };

    let mut settings = vec![
        ("LOCAL_LAKE_DIR", lake.display().to_string()),
        ("MIRROR_LOCAL_DIR", zone.display().to_string()),
    ];
    if let Ok(rows) = std::env::var("BENCH_ROWS_PER_FILE") {
        settings.push(("MIRROR_MAX_ROWS_PER_FILE", rows));
    }
    println!(
        "| pass | change files | rows | seconds | change files/s | rows/s | files | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let (seconds, rss, summary) = run_command(&["mirror"], &settings);
    let rows = number(&summary, "upserts") + number(&summary, "deletes");
    assert_eq!(number(&summary, "changes"), records as u64, "{summary}");
    // One row per key and step (a key's newest change in each data file).
    assert!(
        rows >= keys.min(records) as u64 && rows <= records as u64,
        "{summary}"
    );
    println!(
        "| backlog | {records} | {rows} | {seconds:.1} | {:.0} | {:.0} | {} | {rss:.0} |",
        records as f64 / seconds,
        rows as f64 / seconds,
        number(&summary, "files")
    );

    // Steady state: a few new changes in the same open hour. The pass lists the hour and
    // reads its logs again; its time is what a change waits beyond the timer's period.
    for round in 1..=3 {
        let stored = Instant::now();
        write_changes(&lake, 100, 100, hour_start, records + round * 100);
        let (seconds, rss, summary) = run_command(&["mirror"], &settings);
        assert_eq!(number(&summary, "changes"), 100, "{summary}");
        let waited = stored.elapsed();
        println!(
            "| 100 new changes, {records} files in the open hour | 100 | {} | {seconds:.2} | {:.0} | {:.0} | {} | {rss:.0} |",
            number(&summary, "upserts"),
            100.0 / seconds,
            number(&summary, "upserts") as f64 / seconds,
            number(&summary, "files"),
        );
        assert!(waited < Duration::from_secs(3600), "a pass ends");
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn number(summary: &str, field: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(summary.trim()).expect("summary JSON");
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {summary}"))
}

/// Writes `count` change files (numbered from `first`) of `keys` documents into the hour
/// starting at `hour_start`, in the handler's layout and record format, from two threads.
fn write_changes(lake: &Path, count: usize, keys: usize, hour_start: u64, first: usize) {
    let calendar = hour_folder(hour_start);
    let folder = lake.join(format!("mongodb/changes/bench/events/{calendar}"));
    std::fs::create_dir_all(&folder).expect("folder");
    std::thread::scope(|scope| {
        for part in 0..2 {
            let folder = &folder;
            scope.spawn(move || {
                for n in (first + part..first + count).step_by(2) {
                    let seconds = hour_start + (n % 3000) as u64;
                    let key = n % keys;
                    let name = format!("{seconds:010}-{n:010}-{key}-{n:016x}.json");
                    std::fs::write(folder.join(name), record_line(n, key, seconds))
                        .expect("change file");
                }
            });
        }
    });
}

/// `year=YYYY/month=MM/day=DD/hour=HH` of a Unix hour.
fn hour_folder(seconds: u64) -> String {
    let hour = mongo_lake_ingest::domain::EventHour::of_unix_seconds(seconds as i64).calendar();
    format!(
        "year={:04}/month={:02}/day={:02}/hour={:02}",
        hour.year, hour.month, hour.day, hour.hour
    )
}

/// An upsert of document `key` with fields of six types, as the handler writes it.
fn record_line(n: usize, key: usize, seconds: u64) -> String {
    format!(
        r#"{{"operationType":"update","dataSource":"fullDocument","eventId":"82{seconds:08X}{n:016X}","ns":{{"db":"bench","coll":"events"}},"documentKey":{{"_id":{key}}},"clusterTime":{{"$timestamp":{{"t":{seconds},"i":{n}}}}},"data":{{"_id":{key},"name":"customer {key}","qty":{n},"price":{price},"active":{active},"at":{{"$date":"2024-06-16T10:00:00Z"}},"address":{{"city":"Paris","zip":"75001"}},"tags":["a","b","c"],"note":"{note}"}}}}
"#,
        price = (n % 1000) as f64 + 0.25,
        active = n.is_multiple_of(2),
        note = "x".repeat(400),
    )
}
