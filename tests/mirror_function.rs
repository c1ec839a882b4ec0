//! The mirror function and command, driven as the Functions host and an operator drive
//! them: a real handler process gets the timer's invocation at `POST /mirror` and change
//! events at `/api/ingest` (which leave the mirror's late markers); `handler mirror` runs
//! as a process of its own. What a pass publishes is tested with the pass itself.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::handler::{run, Handler};
use support::timer::{self, assert_failed_with_one_message, stdout_summary};
use support::{insert_event, CONTAINER};

/// 2024-06-16T10:00:00Z: long closed, so every record of it is late.
const HOUR_10: u32 = 1_718_532_000;
const HOUR_10_FOLDER: &str = "changes/corpus/docs/year=2024/month=06/day=16/hour=10";
const ONELAKE: &str = "https://onelake.dfs.fabric.microsoft.com/0a1b2c3d-0000-4000-8000-0123456789ab/5e6f7a8b-0000-4000-8000-0123456789ab/Files/LandingZone";

/// The summary's fields, as the lead's pass fills them.
const SUMMARY_FIELDS: [&str; 10] = [
    "tables",
    "changes",
    "upserts",
    "deletes",
    "stale",
    "withoutFullDocument",
    "files",
    "lateMarkers",
    "moreToDo",
    "elapsedMs",
];

/// `count` distinct insert events of hour 10.
fn events(count: u32) -> String {
    let events: Vec<String> = (0..count)
        .map(|n| insert_event(&format!("82{n:08X}"), HOUR_10 + n, r#"{"n":1}"#))
        .collect();
    format!("[{}]", events.join(","))
}

/// A lake and a landing-zone folder beside it, and the settings that name both.
struct Folders {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    landing: PathBuf,
}

impl Folders {
    fn new() -> Folders {
        let dir = tempfile::tempdir().expect("dir");
        Folders {
            lake: dir.path().join("lake"),
            landing: dir.path().join("LandingZone"),
            _dir: dir,
        }
    }

    fn lake_text(&self) -> String {
        self.lake.display().to_string()
    }

    fn landing_text(&self) -> String {
        self.landing.display().to_string()
    }

    fn container(&self) -> PathBuf {
        self.lake.join(CONTAINER)
    }
}

/// The names in a folder, sorted; none if it does not exist.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The summary of a pass that ran with the mirror on (or `off`).
fn assert_summary(summary: &Value, off: bool) {
    for field in SUMMARY_FIELDS {
        assert!(!summary[field].is_null(), "{field} in {summary}");
    }
    assert_eq!(summary.get("off").is_some(), off, "{summary}");
}

#[tokio::test]
async fn the_timer_invocation_runs_a_pass_and_answers_its_summary() {
    let folders = Folders::new();
    let landing = folders.landing_text();
    let handler = Handler::start(&folders.lake, &[("MIRROR_LOCAL_DIR", &landing)]);
    assert!(folders.landing.is_dir(), "start-up opens the landing zone");

    let (status, answer) = timer::invoke_timer(&handler, "mirror").await;
    assert_eq!(status, 200, "{answer}");
    assert_summary(timer::summary_of(&answer, "mirror"), false);

    // Invocations at once take turns; both answer.
    let (first, second) = tokio::join!(
        timer::invoke_timer(&handler, "mirror"),
        timer::invoke_timer(&handler, "mirror")
    );
    for (status, answer) in [first, second] {
        assert_eq!(status, 200, "{answer}");
        assert_summary(timer::summary_of(&answer, "mirror"), false);
    }
}

#[tokio::test]
async fn only_post_mirror_runs_a_pass_and_not_under_the_api_prefix() {
    let folders = Folders::new();
    let handler = Handler::start(&folders.lake, &[]);
    let client = reqwest::Client::new();
    let invocation = timer::timer_invocation("mirror", false);
    let under_api = client
        .post(handler.url("/api/mirror"))
        .json(&invocation)
        .send()
        .await
        .expect("sent");
    assert_eq!(under_api.status(), 404);
    let get = client
        .get(handler.url("/mirror"))
        .send()
        .await
        .expect("sent");
    assert_eq!(get.status(), 405);
    // Without a timer payload (an operator's `curl -X POST`), a pass still runs: off here.
    let bare = client
        .post(handler.url("/mirror"))
        .send()
        .await
        .expect("sent");
    assert_eq!(bare.status(), 200);
    let answer: Value = bare.json().await.expect("JSON");
    let summary = timer::summary_of(&answer, "mirror");
    assert_summary(summary, true);
    assert_eq!(summary["off"], true);
}

#[tokio::test]
async fn a_onelake_landing_zone_starts_without_a_key_or_a_request() {
    // No credential is set, and none is needed until a pass publishes: start-up builds
    // the Entra ID client without asking for a token.
    let folders = Folders::new();
    let handler = Handler::start(&folders.lake, &[("MIRROR_LANDING_ZONE", ONELAKE)]);
    let (status, answer) = timer::invoke_timer(&handler, "mirror").await;
    assert_eq!(status, 200, "{answer}");
    assert_summary(timer::summary_of(&answer, "mirror"), false);
}

#[test]
fn the_command_runs_one_pass_and_prints_one_json_line() {
    let folders = Folders::new();
    let (lake, landing) = (folders.lake_text(), folders.landing_text());
    let output = run(
        &["mirror"],
        &[("LOCAL_LAKE_DIR", &lake), ("MIRROR_LOCAL_DIR", &landing)],
    );
    let summary = stdout_summary(&output);
    assert_summary(&summary, false);
    assert!(folders.landing.is_dir());
}

#[test]
fn the_command_exits_2_when_the_mirror_is_off_or_misconfigured_and_1_when_it_fails() {
    let folders = Folders::new();
    let lake = folders.lake_text();
    let output = run(&["mirror"], &[("LOCAL_LAKE_DIR", &lake)]);
    assert_failed_with_one_message(
        &output,
        2,
        "mirror",
        "the mirror is off: set MIRROR_LANDING_ZONE",
    );
    let output = run(&["mirror", "--now"], &[("LOCAL_LAKE_DIR", &lake)]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "handler: unknown argument \"--now\"; see --help\n"
    );

    let landing = folders.landing_text();
    for (vars, setting) in [
        (
            vec![("MIRROR_LANDING_ZONE", "https://example.com/fs/dir")],
            "MIRROR_LANDING_ZONE",
        ),
        (
            vec![
                ("MIRROR_LANDING_ZONE", ONELAKE),
                ("MIRROR_LOCAL_DIR", &landing),
            ],
            "MIRROR_LANDING_ZONE",
        ),
        (
            vec![
                ("MIRROR_LOCAL_DIR", &landing),
                ("COMPACT_DELETE_SOURCES", "true"),
            ],
            "COMPACT_DELETE_SOURCES",
        ),
        (
            vec![("MIRROR_LOCAL_DIR", &landing), ("STORAGE_DIRECTORY", "/")],
            "MIRROR_LOCAL_DIR",
        ),
    ] {
        let mut vars = vars;
        vars.push(("LOCAL_LAKE_DIR", &lake));
        let output = run(&["mirror"], &vars);
        let cause = format!("configuration error: setting {setting}: ");
        assert_failed_with_one_message(&output, 2, "mirror", &cause);
    }
    assert!(!folders.lake.exists(), "the lake was not opened");
    assert!(!folders.landing.exists(), "nor the landing zone");

    // A landing zone that cannot be opened (a file is in the way): the pass fails.
    std::fs::create_dir_all(&folders.lake).expect("dir");
    let blocked = folders.lake.join("file");
    std::fs::write(&blocked, b"x").expect("file");
    let inside_a_file = blocked.join("LandingZone").display().to_string();
    let output = run(
        &["mirror"],
        &[
            ("LOCAL_LAKE_DIR", &lake),
            ("MIRROR_LOCAL_DIR", &inside_a_file),
        ],
    );
    assert_failed_with_one_message(
        &output,
        1,
        "mirror",
        "cannot open the mirror's landing zone (MIRROR_LOCAL_DIR)",
    );
}

#[tokio::test]
async fn the_ingest_leaves_a_mirror_late_marker_beside_compactions() {
    let late = |container: &Path, pass: &str| {
        names(&container.join(format!("changes-hourly/{pass}/late/corpus/docs/2024061610")))
    };
    // Mirror and compaction on; the mirror alone; compaction alone.
    for (mirror, compaction) in [(true, true), (true, false), (false, true)] {
        let folders = Folders::new();
        let landing = folders.landing_text();
        let mut vars = vec![("COMPACT_ENABLED", if compaction { "true" } else { "false" })];
        if mirror {
            vars.push(("MIRROR_LOCAL_DIR", &landing));
        }
        let handler = Handler::start(&folders.lake, &vars);
        let answer = handler.post_json(events(5)).await;
        assert_eq!(answer.status(), 200);

        let container = folders.container();
        assert_eq!(names(&container.join(HOUR_10_FOLDER)).len(), 5);
        // One request's late records of one hour share one marker per pass.
        let expect = |on: bool| usize::from(on);
        for (pass, on) in [("_mirror", mirror), ("_compact", compaction)] {
            let markers = late(&container, pass);
            assert_eq!(markers.len(), expect(on), "{pass} {markers:?} {vars:?}");
            assert!(
                markers.iter().all(|name| is_arrival_marker(name)),
                "{markers:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_mirror_marker_that_cannot_be_stored_is_a_503_and_the_retry_stores_it() {
    let folders = Folders::new();
    let landing = folders.landing_text();
    let handler = Handler::start(&folders.lake, &[("MIRROR_LOCAL_DIR", &landing)]);
    // A file where the mirror's state folder goes: its markers cannot be written.
    let state = folders.container().join("changes-hourly/_mirror");
    std::fs::create_dir_all(state.parent().expect("parent")).expect("dir");
    std::fs::write(&state, b"in the way").expect("file");

    let answer = handler.post_json(events(3)).await;
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["error"], "storage_unavailable", "{body}");

    // The sender retries once the way is clear: the records are there already, the
    // markers are written now.
    std::fs::remove_file(&state).expect("removed");
    let answer = handler.post_json(events(3)).await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["alreadyPresent"], json!(3), "{body}");
    let markers = names(&state.join("late/corpus/docs/2024061610"));
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert!(is_arrival_marker(&markers[0]), "{markers:?}");
}

/// `arrived-YYYYMMDDHHMM`: the minute late records were stored in.
fn is_arrival_marker(name: &str) -> bool {
    name.strip_prefix("arrived-")
        .is_some_and(|digits| digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn the_function_json_is_a_timer_on_the_documented_schedule() {
    timer::assert_timer_function_json("mirror", "MIRROR_SCHEDULE");
}
