//! Driving a timer function (`compact`, `mirror`) as the Functions host does, and its
//! command as an operator does: the invocation payload, the answer's shape, the one JSON
//! line of a pass, and the `function.json` binding with its NCRONTAB schedule.

use std::path::Path;
use std::process::Output;

use mongo_lake_ingest::configuration::{settings_help, settings_markdown, Kind, SETTINGS};
use serde_json::{json, Value};

use super::handler::Handler;

/// The timer invocation as the host sends it to a custom handler (payload mode, the
/// binding named `timer` in `<function>/function.json`).
pub fn timer_invocation(function: &str, past_due: bool) -> Value {
    json!({
        "Data": {
            "timer": {
                "Schedule": {"AdjustForDST": true},
                "ScheduleStatus": {
                    "Last": "2024-06-16T12:05:00+00:00",
                    "Next": "2024-06-16T12:15:00+00:00",
                    "LastUpdated": "2024-06-16T12:10:00+00:00"
                },
                "IsPastDue": past_due
            }
        },
        "Metadata": {
            "sys": {
                "MethodName": function,
                "UtcNow": "2024-06-16T12:10:00.0123456Z",
                "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e"
            }
        }
    })
}

/// POSTs the timer's invocation to `/<function>`; the status and the parsed answer.
pub async fn invoke_timer(handler: &Handler, function: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(handler.url(&format!("/{function}")))
        .header(
            "X-Azure-Functions-InvocationId",
            "5b1e1c7e-7d0e-4c84-9a4b-3f8d1f4c2a10",
        )
        .header("User-Agent", "Azure-Functions-Host/4.1036.1.23224")
        .json(&timer_invocation(function, false))
        .send()
        .await
        .expect("invocation sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    (status, response.json().await.expect("a JSON answer"))
}

/// The custom-handler answer shape: `Outputs` (none: the function has no output
/// binding), one log line `<function>: <summary>`, and the pass summary as `ReturnValue`.
/// Returns the summary.
pub fn summary_of<'a>(answer: &'a Value, function: &str) -> &'a Value {
    assert_eq!(answer["Outputs"], json!({}), "{answer}");
    let logs = answer["Logs"].as_array().expect("Logs is a list");
    assert_eq!(logs.len(), 1, "{answer}");
    let line = logs[0].as_str().expect("a log line");
    let summary = &answer["ReturnValue"];
    assert_eq!(line, format!("{function}: {summary}"));
    assert!(summary["elapsedMs"].is_u64(), "{answer}");
    summary
}

/// A pass command's summary: exit 0 and exactly one JSON line on stdout.
pub fn stdout_summary(output: &Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout.clone()).expect("UTF-8");
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout:?}");
    serde_json::from_str(stdout.trim_end()).expect("the summary is JSON")
}

/// `handler <command>` failed with `code`, printed no summary, and ended with one
/// `handler <command>: ` message naming `cause`.
pub fn assert_failed_with_one_message(output: &Output, code: i32, command: &str, cause: &str) {
    assert_eq!(output.status.code(), Some(code));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "", "no summary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let prefix = format!("handler {command}: ");
    let messages: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .collect();
    assert_eq!(messages.len(), 1, "{stderr}");
    assert_eq!(stderr.lines().last(), Some(messages[0]), "{stderr}");
    assert!(messages[0].contains(cause), "{stderr}");
}

/// `<function>/function.json` is a timer on `%<setting>%` with no output binding, and
/// the setting's documented default is a valid schedule, shown in `--help` and the
/// README table and set by the example settings (the host cannot default a `%setting%`).
pub fn assert_timer_function_json(function: &str, setting: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(function).join("function.json");
    let text = std::fs::read_to_string(&path).expect("function.json exists");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    let bindings = json["bindings"].as_array().expect("bindings");
    assert_eq!(bindings.len(), 1, "a trigger and no output binding");
    let timer = &bindings[0];
    assert_eq!(timer["type"], "timerTrigger");
    assert_eq!(timer["direction"], "in");
    assert_eq!(timer["name"], "timer", "the key of Data in the invocation");
    assert_eq!(timer["schedule"], format!("%{setting}%"));
    assert_eq!(timer["runOnStartup"], false);
    assert_eq!(timer["useMonitor"], true);

    let row = SETTINGS
        .iter()
        .find(|row| row.name == setting)
        .expect("a row");
    let Kind::Host { default } = row.kind else {
        panic!("{setting} is read by the host only");
    };
    assert!(is_ncrontab(default), "{default}");
    assert!(settings_help().contains(&format!("{setting}  [default: {default}]")));
    assert!(settings_markdown().contains(&format!("| `{setting}` | `{default}` |")));
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("local.settings.json.example")).expect("exists"),
    )
    .expect("JSON");
    assert_eq!(example["Values"][setting], default);
}

/// NCRONTAB as the Functions host reads it: six fields (`second minute hour day month
/// day-of-week`), each `*`, a number, a range, a list, or a step of one of those.
pub fn is_ncrontab(expression: &str) -> bool {
    const BOUNDS: [(u32, u32); 6] = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let number = |text: &str, (low, high): (u32, u32)| {
        text.parse::<u32>()
            .is_ok_and(|value| (low..=high).contains(&value))
    };
    let range = |text: &str, bounds| match text.split_once('-') {
        _ if text == "*" => true,
        Some((from, to)) => number(from, bounds) && number(to, bounds),
        None => number(text, bounds),
    };
    fields.len() == 6
        && fields.iter().zip(BOUNDS).all(|(field, bounds)| {
            field.split(',').all(|item| match item.split_once('/') {
                Some((base, step)) => {
                    range(base, bounds) && step.parse::<u32>().is_ok_and(|s| s > 0)
                }
                None => range(item, bounds),
            })
        })
}
