//! The compaction function and command, driven as the Functions host and an operator
//! drive them: a real handler process gets change events at `/api/ingest` and the timer's
//! invocation at `POST /compact`; `handler compact` runs as a process of its own. On the
//! local lake and on ADLS (the DFS test server), and with storage refusing.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant, SystemTime};

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind, DEV_ACCOUNT_KEY};
use mongo_lake_ingest::domain::EventHour;
use serde_json::{json, Value};
use support::handler::{run, Handler};
use support::timer::{self, stdout_summary};
use support::{insert_event, CONTAINER};

/// 2024-06-16T10:00:00Z and the hour after: long closed.
const HOUR_10: u32 = 1_718_532_000;
const HOUR_11: u32 = HOUR_10 + 3_600;
const HOUR_10_FOLDER: &str = "corpus/docs/year=2024/month=06/day=16/hour=10";
const HOUR_11_FOLDER: &str = "corpus/docs/year=2024/month=06/day=16/hour=11";

/// `count` distinct insert events in the hour starting at `start` (tokens from `first`).
fn events(start: u32, first: u32, count: u32) -> String {
    let events: Vec<String> = (first..first + count)
        .map(|n| insert_event(&format!("82{n:08X}"), start + n % 3_600, r#"{"n":1}"#))
        .collect();
    format!("[{}]", events.join(","))
}

/// POSTs the timer's invocation to `/compact`; the status and the parsed answer.
async fn invoke_timer(handler: &Handler) -> (u16, Value) {
    timer::invoke_timer(handler, "compact").await
}

/// The answer's pass summary (see [`timer::summary_of`]).
fn summary_of(answer: &Value) -> &Value {
    let summary = timer::summary_of(answer, "compact");
    assert!(summary["partsWritten"].is_u64(), "{answer}");
    summary
}

/// The change files of a folder (relative to the container), contents without the final
/// newline, sorted.
fn change_records(container: &Path, folder: &str) -> Vec<String> {
    let dir = container.join("changes").join(folder);
    let mut records: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("readable");
            String::from_utf8(bytes).expect("UTF-8")
        })
        .map(|text| text.trim_end_matches('\n').to_owned())
        .collect();
    records.sort();
    records
}

/// The lines of a compacted JSONL file, sorted (each part is sorted by `eventId` on its
/// own; here only which records it holds matters).
fn sorted_lines(text: &str) -> Vec<String> {
    assert!(text.ends_with('\n'), "a JSONL file ends with a newline");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn hourly_file(folder: &str, name: &str) -> String {
    format!("changes-hourly/{folder}/{name}")
}

fn read_local(container: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(container.join(path)).ok()
}

/// `handler compact` fails with exit code 1 and ends with one message naming the cause.
fn assert_failed_with_one_message(output: &Output, cause: &str) {
    timer::assert_failed_with_one_message(output, 1, "compact", cause);
}

#[tokio::test]
async fn the_timer_invocation_compacts_closed_hours_on_the_local_lake() {
    let lake = tempfile::tempdir().expect("dir");
    let container = lake.path().join(CONTAINER);
    let handler = Handler::start(lake.path(), &[]);
    for body in [events(HOUR_10, 0, 40), events(HOUR_11, 100, 3)] {
        let answer = handler.post_json(body).await;
        assert_eq!(answer.status(), 200);
    }

    let (status, answer) = invoke_timer(&handler).await;
    assert_eq!(status, 200, "{answer}");
    let summary = summary_of(&answer);
    assert_eq!(summary["partsWritten"], 2, "{summary}");
    assert_eq!(summary["recordsCompacted"], 43, "{summary}");
    for (folder, name, records) in [
        (HOUR_10_FOLDER, "events-20240616-10.jsonl", 40),
        (HOUR_11_FOLDER, "events-20240616-11.jsonl", 3),
    ] {
        let text = read_local(&container, &hourly_file(folder, name))
            .unwrap_or_else(|| panic!("{name} was not written"));
        let lines = sorted_lines(&text);
        assert_eq!(lines.len(), records);
        assert_eq!(lines, change_records(&container, folder), "{name}");
    }

    // The next tick finds nothing new: no second part, nothing doubled.
    let (status, answer) = invoke_timer(&handler).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(summary_of(&answer)["partsWritten"], 0, "{answer}");
    assert!(read_local(
        &container,
        &hourly_file(HOUR_10_FOLDER, "events-20240616-10-2.jsonl")
    )
    .is_none());
}

#[tokio::test]
async fn invocations_at_once_take_turns_and_write_each_part_once() {
    let lake = tempfile::tempdir().expect("dir");
    let handler = Handler::start(lake.path(), &[]);
    let answer = handler.post_json(events(HOUR_10, 0, 200)).await;
    assert_eq!(answer.status(), 200);
    let (first, second) = tokio::join!(invoke_timer(&handler), invoke_timer(&handler));
    assert_eq!((first.0, second.0), (200, 200), "{first:?} {second:?}");
    let parts = [&first.1, &second.1].map(|answer| summary_of(answer)["partsWritten"].clone());
    let mut parts = parts.to_vec();
    parts.sort_by_key(|parts| parts.as_u64());
    assert_eq!(
        parts,
        [json!(0), json!(1)],
        "one pass wrote the part, the other found it"
    );
}

#[tokio::test]
async fn only_post_compact_runs_a_pass_and_not_under_the_api_prefix() {
    let lake = tempfile::tempdir().expect("dir");
    let handler = Handler::start(lake.path(), &[]);
    let client = reqwest::Client::new();
    let under_api = client
        .post(handler.url("/api/compact"))
        .json(&timer::timer_invocation("compact", false))
        .send()
        .await
        .expect("sent");
    assert_eq!(under_api.status(), 404);
    let get = client
        .get(handler.url("/compact"))
        .send()
        .await
        .expect("sent");
    assert_eq!(get.status(), 405);
    // Without a timer payload (an operator's `curl -X POST`), a pass still runs.
    let bare = client
        .post(handler.url("/compact"))
        .send()
        .await
        .expect("sent");
    assert_eq!(bare.status(), 200);
    let answer: Value = bare.json().await.expect("JSON");
    summary_of(&answer);
}

#[tokio::test]
async fn the_command_compacts_given_hours_and_prints_one_json_line() {
    let lake = tempfile::tempdir().expect("dir");
    let container = lake.path().join(CONTAINER);
    let handler = Handler::start(lake.path(), &[]);
    for body in [events(HOUR_10, 0, 25), events(HOUR_11, 100, 5)] {
        assert_eq!(handler.post_json(body).await.status(), 200);
    }
    let dir = lake.path().display().to_string();
    let vars = [("LOCAL_LAKE_DIR", dir.as_str())];

    let output = run(&["compact", "--hour", "2024-06-16T10"], &vars);
    let summary = stdout_summary(&output);
    assert_eq!(summary["partsWritten"], 1, "{summary}");
    assert_eq!(summary["recordsCompacted"], 25, "{summary}");
    let hour_10 = read_local(
        &container,
        &hourly_file(HOUR_10_FOLDER, "events-20240616-10.jsonl"),
    )
    .expect("hour 10 compacted");
    assert_eq!(
        sorted_lines(&hour_10),
        change_records(&container, HOUR_10_FOLDER)
    );
    let hour_11 = hourly_file(HOUR_11_FOLDER, "events-20240616-11.jsonl");
    assert!(
        read_local(&container, &hour_11).is_none(),
        "only the hour asked for"
    );

    // A range: hour 10 is done already, hour 11 is new.
    let output = run(
        &[
            "compact",
            "--from",
            "2024-06-16T10",
            "--to",
            "2024-06-16T11",
        ],
        &vars,
    );
    let summary = stdout_summary(&output);
    assert_eq!(summary["partsWritten"], 1, "{summary}");
    assert_eq!(summary["recordsCompacted"], 5, "{summary}");
    assert!(read_local(&container, &hour_11).is_some());

    // The timer then has nothing left.
    let (status, answer) = invoke_timer(&handler).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(summary_of(&answer)["recordsCompacted"], 0, "{answer}");
}

#[test]
fn the_command_refuses_bad_arguments_and_settings_before_touching_the_lake() {
    let lake = tempfile::tempdir().expect("dir");
    let dir = lake.path().join("lake").display().to_string();
    let output = run(&["compact", "--from", "2024-06-16T10"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "handler: --from needs --to too; see --help\n"
    );
    let output = run(
        &["compact"],
        &[("LOCAL_LAKE_DIR", &dir), ("COMPACT_FORMAT", "csv")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("handler compact: configuration error: setting COMPACT_FORMAT"),
        "{stderr}"
    );
    assert!(!Path::new(&dir).exists(), "the lake was not opened");
}

/// Settings for ADLS at `dfs` with the account key, and `delay` as `COMPACT_DELAY_SECS`.
fn adls_vars(dfs: &DfsServer, delay: &str) -> Vec<(&'static str, String)> {
    vec![
        ("STORAGE_ACCOUNT_NAME", "devstoreaccount1".to_owned()),
        ("STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY.to_owned()),
        ("STORAGE_DFS_ENDPOINT", dfs.endpoint()),
        ("STORAGE_WRITE_PROTOCOL", "dfs".to_owned()),
        ("STORAGE_RETRY_BUDGET_SECS", "2".to_owned()),
        ("COMPACT_DELAY_SECS", delay.to_owned()),
    ]
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// The handler on ADLS at `dfs`, with `delay` as `COMPACT_DELAY_SECS`.
fn on_adls(dfs: &DfsServer, delay: &str) -> Handler {
    let vars = adls_vars(dfs, delay);
    Handler::start_on_adls(&dfs.endpoint(), &borrowed(&vars))
}

/// Hours that ended a second ago are closed: the tests' hours (a few hours back) are
/// compacted by a `Due` pass, and the ingest writes late markers for their records.
const PASS_DELAY: &str = "1";

fn run_on(dfs: &DfsServer, args: &[&str]) -> Output {
    run(args, &borrowed(&adls_vars(dfs, PASS_DELAY)))
}

/// The change records of a folder on ADLS, as [`change_records`] reads them locally.
fn adls_change_records(dfs: &DfsServer, folder: &str) -> Vec<String> {
    let prefix = format!("changes/{folder}/");
    let mut records: Vec<String> = dfs
        .files(CONTAINER)
        .into_iter()
        .filter(|entry| entry.path.starts_with(&prefix))
        .map(|entry| {
            dfs.read_string(CONTAINER, &entry.path)
                .expect("readable")
                .trim_end_matches('\n')
                .to_owned()
        })
        .collect();
    records.sort();
    records
}

fn dfs() -> DfsServer {
    DfsServer::builder()
        .filesystem(CONTAINER)
        .start_in_thread()
        .expect("DFS server starts")
}

/// An hour `back` hours before the current one: its start, its folder, its file name
/// and its command-line form.
fn hours_ago(back: i64) -> (u32, String, String, String) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let hour = EventHour::of_unix_seconds(now as i64 - back * 3_600);
    let c = hour.calendar();
    let folder = format!(
        "corpus/docs/year={:04}/month={:02}/day={:02}/hour={:02}",
        c.year, c.month, c.day, c.hour
    );
    let digits = hour.compact_digits();
    let name = format!("events-{}-{}.jsonl", &digits[..8], &digits[8..]);
    let start = u32::try_from(hour.start_seconds()).expect("fits");
    (start, folder, name, hour.to_string())
}

#[tokio::test]
async fn the_command_and_the_function_compact_on_adls() {
    let dfs = dfs();
    let (start_a, folder_a, name_a, arg_a) = hours_ago(3);
    let (start_b, folder_b, name_b, _) = hours_ago(2);
    let handler = on_adls(&dfs, PASS_DELAY);
    for body in [events(start_a, 0, 30), events(start_b, 100, 4)] {
        let answer = handler.post_json(body).await;
        assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    }
    let markers: Vec<String> = dfs
        .files(CONTAINER)
        .into_iter()
        .map(|entry| entry.path)
        .filter(|path| path.starts_with("changes-hourly/_compact/late/"))
        .collect();
    assert_eq!(
        markers.len(),
        2,
        "the late records of each hour, stored by one request, leave one marker: {markers:?}"
    );
    assert!(
        markers.iter().all(|path| path.contains("/arrived-")),
        "{markers:?}"
    );

    let summary = stdout_summary(&run_on(&dfs, &["compact", "--hour", &arg_a]));
    assert_eq!(summary["recordsCompacted"], 30, "{summary}");
    let (status, answer) = invoke_timer(&handler).await;
    assert_eq!(status, 200, "{answer}");
    let summary = summary_of(&answer);
    assert_eq!(summary["partsWritten"], 1, "the later hour only: {summary}");
    assert_eq!(summary["recordsCompacted"], 4, "{summary}");

    for (folder, name) in [(&folder_a, &name_a), (&folder_b, &name_b)] {
        let text = dfs
            .read_string(CONTAINER, &hourly_file(folder, name))
            .unwrap_or_else(|| panic!("{name} is missing"));
        assert_eq!(
            sorted_lines(&text),
            adls_change_records(&dfs, folder),
            "{name}"
        );
    }
    let second_parts: Vec<String> = dfs
        .files(CONTAINER)
        .into_iter()
        .map(|entry| entry.path)
        .filter(|path| path.starts_with("changes-hourly/corpus/") && path.ends_with("-2.jsonl"))
        .collect();
    assert!(second_parts.is_empty(), "{second_parts:?}");
}

#[tokio::test]
async fn a_refused_pass_answers_500_and_the_command_exits_1() {
    let dfs = dfs();
    let mut handler = on_adls(&dfs, PASS_DELAY);
    // The account stops allowing listings (a role removed): no retry helps.
    dfs.faults().push(
        FaultRule::new(
            OpKind::ListPaths,
            FaultAction::status(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            ),
        )
        .always(),
    );

    let (status, answer) = invoke_timer(&handler).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["Outputs"], json!({}));
    assert_eq!(answer["ReturnValue"], Value::Null);
    let logs = answer["Logs"].as_array().expect("Logs");
    assert_eq!(logs.len(), 1, "{answer}");
    let log = logs[0].as_str().expect("text");
    assert!(
        log.starts_with("compaction pass failed: storage: "),
        "{log}"
    );
    assert!(log.contains("AuthorizationPermissionMismatch"), "{log}");
    assert!(!log.contains("changes-hourly/"), "no path: {log}");
    // The host reads no body from a 500: the handler's own log says why.
    let logged = std::iter::from_fn(|| handler.next_line(Duration::from_secs(5)))
        .find(|line| line["message"] == "compact failed")
        .expect("an error line");
    assert_eq!(logged["level"], "ERROR");
    assert!(logged["error"]
        .as_str()
        .is_some_and(|error| error.contains("AuthorizationPermissionMismatch")));

    let output = run_on(&dfs, &["compact"]);
    assert_failed_with_one_message(&output, "AuthorizationPermissionMismatch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("changes-hourly/"), "no path: {stderr}");
}

#[tokio::test]
async fn sigterm_stops_a_pass_in_flight_and_the_handler_exits_cleanly() {
    let dfs = dfs();
    let handler = on_adls(&dfs, PASS_DELAY);
    // The pass's first listing hangs far longer than any deadline below.
    dfs.faults().push(
        FaultRule::new(
            OpKind::ListPaths,
            FaultAction::Delay(Duration::from_secs(120)),
        )
        .times(1),
    );
    let url = handler.url("/compact");
    let invocation = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&timer::timer_invocation("compact", true))
            .send()
            .await
    });
    let started = Instant::now();
    while dfs.faults().fired() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the pass never listed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handler.terminate();
    let response = invocation
        .await
        .expect("task")
        .expect("an answer before exit");
    assert_eq!(response.status(), 500);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(
        answer["Logs"][0],
        "compaction pass stopped: the handler is shutting down; the next pass continues"
    );
    let (status, log) = handler.wait_until(Instant::now() + Duration::from_secs(60));
    assert_eq!(status.and_then(|status| status.code()), Some(0), "{log:?}");
}

#[test]
fn the_function_json_is_a_timer_on_the_documented_schedule() {
    timer::assert_timer_function_json("compact", "COMPACT_SCHEDULE");
    for valid in [
        "0 */5 * * * *",
        "0 0 * * * *",
        "0 30 9 * * 1-5",
        "5,8,10 * * * * *",
    ] {
        assert!(timer::is_ncrontab(valid), "{valid}");
    }
    for invalid in [
        "*/5 * * * *",
        "0 61 * * * *",
        "0 */0 * * * *",
        "0 0 24 * * *",
        "",
    ] {
        assert!(!timer::is_ncrontab(invalid), "{invalid}");
    }
}
