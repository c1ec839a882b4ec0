//! Compaction: records/s and peak RSS of `handler compact` (the release binary, as an
//! operator or the timer runs it) over one hour of change files, on the local lake and
//! on ADLS (the DFS test server); and what an idle pass costs over a lake of many hour
//! partitions. Figures go to BENCHMARKS.md ("Compaction").
//!
//! `BENCH_RECORDS` (default 1,000,000) records of `BENCH_RECORD_BYTES` (default 3,000)
//! in one hour; `BENCH_ADLS_RECORDS` (default 20,000) for ADLS; `BENCH_PARTITIONS`
//! (default 2,000) hour partitions for the idle pass. `BENCH_FORMAT` sets COMPACT_FORMAT;
//! `BENCH_FSYNC=false` runs the local pass with `LOCAL_LAKE_FSYNC=false`.

#[path = "support/handler.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mongo_lake_ingest::domain::EventHour;
use support::{post_json, run_command, Handler};

/// 2024-06-16T10:00:00Z.
const HOUR_10: u32 = 1_718_532_000;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let records = env_number("BENCH_RECORDS", 1_000_000);
    let record_bytes = env_number("BENCH_RECORD_BYTES", 3_000);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-compaction");
    let _ = std::fs::remove_dir_all(&root);
    let format = std::env::var("BENCH_FORMAT").unwrap_or_else(|_| "jsonl".to_owned());

    println!(
        "| lake | records | record bytes | format | seconds | records/s | MB/s | peak RSS MiB |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    let durable = std::env::var("BENCH_FSYNC").map_or(true, |v| v != "false");
    local_hour(&root, records, record_bytes, &format, durable);
    adls_hour(env_number("BENCH_ADLS_RECORDS", 20_000), &format);
    idle_pass(&root, env_number("BENCH_PARTITIONS", 2_000));
    let _ = std::fs::remove_dir_all(&root);
}

/// One record line as the handler writes it (relaxed), padded to about `bytes`.
fn record_line(n: usize, seconds: u32, bytes: usize) -> String {
    let mut line = format!(
        r#"{{"operationType":"insert","dataSource":"fullDocument","eventId":"82{seconds:08X}{n:016X}","ns":{{"db":"bench","coll":"events"}},"documentKey":{{"_id":{n}}},"clusterTime":{{"$timestamp":{{"t":{seconds},"i":{n}}}}},"wallTime":{{"$date":"2024-06-16T10:00:00Z"}},"data":{{"_id":{n},"payload":""#
    );
    while line.len() + 4 < bytes {
        let _ = write!(line, "{:x}", n.wrapping_mul(2_654_435_761) & 0xffff_ffff);
    }
    line.push_str("\"}}\n");
    line
}

/// Writes `records` change files of hour 10 straight into a local lake, in the handler's
/// layout and naming, from two threads.
fn write_hour(lake: &Path, records: usize, bytes: usize) {
    let folder = lake.join("mongodb/changes/bench/events/year=2024/month=06/day=16/hour=10");
    std::fs::create_dir_all(&folder).expect("folder");
    std::thread::scope(|scope| {
        for part in 0..2 {
            let folder = &folder;
            scope.spawn(move || {
                for n in (part..records).step_by(2) {
                    let seconds = HOUR_10 + (n % 3600) as u32;
                    let name = format!("{seconds:010}-{n:010}-{n}-{n:016x}.json");
                    std::fs::write(folder.join(name), record_line(n, seconds, bytes))
                        .expect("change file");
                }
            });
        }
    });
}

/// The hour's part holds every record once, in `eventId` order (read as a stream).
fn check_part(lake: &Path, records: usize) {
    use std::io::BufRead;
    let part = lake.join(
        "mongodb/changes-hourly/bench/events/year=2024/month=06/day=16/hour=10/events-20240616-10.jsonl",
    );
    let reader = std::io::BufReader::new(std::fs::File::open(part).expect("the part"));
    let mut previous = String::new();
    let mut lines = 0;
    for line in reader.lines() {
        let line = line.expect("a line");
        let id = line
            .split("\"eventId\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("eventId")
            .to_owned();
        assert!(
            id > previous,
            "line {lines}: not in eventId order, or doubled"
        );
        previous = id;
        lines += 1;
    }
    assert_eq!(lines, records, "every record once");
}

fn summary_number(summary: &str, field: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(summary.trim()).expect("summary JSON");
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {summary}"))
}

fn report(lake: &str, records: usize, bytes: usize, format: &str, seconds: f64, rss: f64) {
    println!(
        "| {lake} | {records} | {bytes} | {format} | {seconds:.1} | {:.0} | {:.0} | {rss:.0} |",
        records as f64 / seconds,
        (records * bytes) as f64 / seconds / 1e6
    );
}

/// `durable`: the part is flushed to disk before it counts as published (the default);
/// without, the figure is the pass's own work.
fn local_hour(root: &Path, records: usize, bytes: usize, format: &str, durable: bool) {
    let lake = root.join("local");
    write_hour(&lake, records, bytes);
    // Change files are written long before their hour is compacted: time the pass, not
    // the write-back of files the benchmark has just made.
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let spool = root.join("spool");
    std::fs::create_dir_all(&spool).expect("spool");
    let (seconds, rss, summary) = run_command(
        &["compact", "--hour", "2024-06-16T10"],
        &[
            ("LOCAL_LAKE_DIR", lake.display().to_string()),
            ("LOCAL_LAKE_FSYNC", durable.to_string()),
            ("COMPACT_FORMAT", format.to_owned()),
            ("COMPACT_SPOOL_DIR", spool.display().to_string()),
        ],
    );
    assert_eq!(summary_number(&summary, "recordsCompacted"), records as u64);
    if format.contains("jsonl") {
        check_part(&lake, records);
    }
    let lake_name = if durable {
        "local"
    } else {
        "local, LOCAL_LAKE_FSYNC=false"
    };
    report(lake_name, records, bytes, format, seconds, rss);
    let _ = std::fs::remove_dir_all(&lake);
}

fn adls_hour(records: usize, format: &str) {
    use dfs_test_server::{DfsServer, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
    let dfs = DfsServer::builder()
        .filesystem("mongodb")
        .start_in_thread()
        .expect("DFS test server");
    let settings = vec![
        ("STORAGE_ACCOUNT_NAME", DEV_ACCOUNT.to_owned()),
        ("STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY.to_owned()),
        ("STORAGE_DFS_ENDPOINT", dfs.endpoint()),
        ("STORAGE_WRITE_PROTOCOL", "dfs".to_owned()),
        ("COMPACT_FORMAT", format.to_owned()),
    ];
    // The change files arrive as they do in production: through the handler.
    let handler = Handler::start_with(&settings);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = reqwest::Client::new();
    runtime.block_on(async {
        for batch in (0..records).collect::<Vec<_>>().chunks(100) {
            let events: Vec<String> = batch.iter().map(|&n| insert_event(n)).collect();
            let reply = post_json(&client, &handler.url(), format!("[{}]", events.join(","))).await;
            assert!(reply.status().is_success(), "{}", reply.status());
        }
    });
    handler.stop();
    let bytes = record_line(0, HOUR_10, 0).len();
    let (seconds, rss, summary) = run_command(&["compact", "--hour", "2024-06-16T10"], &settings);
    assert_eq!(summary_number(&summary, "recordsCompacted"), records as u64);
    report(
        "ADLS (DFS test server)",
        records,
        bytes,
        format,
        seconds,
        rss,
    );
}

/// A small insert event of hour 10 (for the ADLS run, which goes through the handler).
fn insert_event(n: usize) -> String {
    let seconds = HOUR_10 + (n % 3600) as u32;
    format!(
        r#"{{"_id":{{"_data":"82{seconds:08X}{n:016X}"}},"operationType":"insert","clusterTime":{{"$timestamp":{{"t":{seconds},"i":{n}}}}},"ns":{{"db":"bench","coll":"events"}},"documentKey":{{"_id":{n}}},"fullDocument":{{"_id":{n},"name":"customer {n}","tags":["a","b"],"total":{n}.5}}}}"#
    )
}

/// A lake of `partitions` hour partitions (50 collections), compacted once; then the
/// time and storage calls of a pass with nothing to do.
fn idle_pass(root: &Path, partitions: usize) {
    let lake = root.join("idle");
    let collections = 50;
    let hours = partitions.div_ceil(collections);
    for c in 0..collections {
        for h in 0..hours {
            let seconds = HOUR_10 + (h * 3600) as u32;
            let calendar = hour_folders(seconds);
            let folder = lake.join(format!("mongodb/changes/bench/coll{c}/{calendar}"));
            std::fs::create_dir_all(&folder).expect("folder");
            let name = format!("{seconds:010}-{:010}-{c}-{h:016x}.json", c);
            std::fs::write(folder.join(name), record_line(c * hours + h, seconds, 300))
                .expect("file");
        }
    }
    let settings = [("LOCAL_LAKE_DIR", lake.display().to_string())];
    let (first, _, summary) = run_command(&["compact"], &settings);
    let parts = summary_number(&summary, "partsWritten");
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(run_command(&["compact"], &settings).0);
    }
    idle.sort_by(f64::total_cmp);
    println!();
    println!(
        "Idle pass over {} hour partitions ({collections} collections x {hours} hours): the first pass wrote {parts} parts in {first:.1} s; a pass with nothing to do then took {:.3} s (median of 5, process start included).",
        collections * hours,
        idle[2]
    );
}

/// `year=YYYY/month=MM/day=DD/hour=HH`, as the default template names an hour.
fn hour_folders(seconds: u32) -> String {
    let c = EventHour::of_unix_seconds(i64::from(seconds)).calendar();
    format!(
        "year={:04}/month={:02}/day={:02}/hour={:02}",
        c.year, c.month, c.day, c.hour
    )
}
