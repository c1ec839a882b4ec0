//! docs/operations.md cannot drift from the logs: every `line.<field>` its KQL reads, and
//! every `line.message` it filters on, is in a line the handler process really writes with
//! `LOG_FORMAT=json` (on ADLS through the DFS test server, with stored, retried, repeated,
//! refused (4xx) and storage-failed (5xx) requests, and compaction and mirror passes that
//! succeed and fail).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dfs_test_server::{FaultAction, FaultRule, OpKind, DEV_ACCOUNT_KEY};
use serde_json::Value;
use support::adls::server_with_container;
use support::handler::Handler;
use support::sample;
use support::timer::invoke_timer;

const DOC: &str = include_str!("../docs/operations.md");

/// The text of every ```kql block.
fn kql_blocks(doc: &str) -> Vec<&str> {
    doc.split("```kql\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .collect()
}

/// The fields a query reads as `line.<field>`.
fn fields(kql: &str) -> BTreeSet<String> {
    kql.match_indices("line.")
        .map(|(at, _)| {
            kql[at + "line.".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|field| !field.is_empty())
        .collect()
}

/// The message texts a query filters on: the string literals on `line.message` lines.
fn messages(kql: &str) -> BTreeSet<String> {
    kql.lines()
        .filter(|line| line.contains("line.message ==") || line.contains("line.message in"))
        .flat_map(|line| line.split('"').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

/// Runs the requests and passes the queries are about and returns every log line.
async fn a_handlers_log() -> Vec<Value> {
    let dfs = server_with_container().await;
    let landing = tempfile::tempdir().expect("dir");
    let landing_dir = landing.path().join("LandingZone");
    let handler = Handler::start_on_adls(
        &dfs.endpoint(),
        &[
            ("STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY),
            ("STORAGE_RETRY_BUDGET_SECS", "3"),
            ("MIRROR_LOCAL_DIR", landing_dir.to_str().expect("UTF-8")),
        ],
    );
    let faults = dfs.faults();

    // Stored after a retry, then the same event again (already present).
    faults.push(FaultRule::new(OpKind::CreateFile, FaultAction::server_busy()).times(1));
    assert_eq!(handler.post_json(sample("insert.json")).await.status(), 200);
    assert_eq!(handler.post_json(sample("insert.json")).await.status(), 200);
    // Refused (4xx).
    assert_eq!(handler.post_json("{oops").await.status(), 400);
    // A storage failure (5xx): the sink is then unreachable, until the next stored file.
    faults.push(FaultRule::new(OpKind::CreateFile, FaultAction::internal_error()).always());
    assert_eq!(
        handler.post_json(sample("replace.json")).await.status(),
        503
    );
    faults.clear();
    assert_eq!(
        handler.post_json(sample("replace.json")).await.status(),
        200
    );

    // Passes that finish, then passes that fail.
    assert_eq!(invoke_timer(&handler, "compact").await.0, 200);
    assert_eq!(invoke_timer(&handler, "mirror").await.0, 200);
    faults.push(
        FaultRule::new(
            OpKind::ListPaths,
            FaultAction::status(403, "AuthorizationPermissionMismatch", "not permitted"),
        )
        .always(),
    );
    assert_eq!(invoke_timer(&handler, "compact").await.0, 500);
    assert_eq!(invoke_timer(&handler, "mirror").await.0, 500);

    handler.terminate();
    let (status, log) = handler.wait_until(Instant::now() + Duration::from_secs(60));
    assert!(status.is_some_and(|status| status.success()), "{log:?}");
    log.iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("JSON: {line}")))
        .collect()
}

#[tokio::test]
async fn every_field_and_message_the_kql_reads_is_in_a_line_the_handler_writes() {
    let log = a_handlers_log().await;
    let written_fields: BTreeSet<&str> = log
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|line| line.keys().map(String::as_str))
        .collect();
    let written_messages: BTreeSet<&str> = log
        .iter()
        .filter_map(|line| line["message"].as_str())
        .collect();

    let blocks = kql_blocks(DOC);
    assert!(blocks.len() >= 8, "the doc's queries: {}", blocks.len());
    let mut used = BTreeSet::new();
    for block in &blocks {
        assert!(
            block.contains("extend line = parse_json(message)"),
            "each query parses the line: {block}"
        );
        for field in fields(block) {
            assert!(
                written_fields.contains(field.as_str()),
                "`line.{field}` is in no log line; the handler writes {written_fields:?}\n{block}"
            );
            used.insert(field);
        }
        for message in messages(block) {
            assert!(
                written_messages.contains(message.as_str()),
                "no line says {message:?}; the handler writes {written_messages:?}"
            );
        }
    }
    // What the issue asks the queries for.
    for field in [
        "events",
        "written",
        "already_present",
        "status",
        "latency_ms",
        "storage_retries",
        "hours_checked",
        "upserts",
    ] {
        assert!(used.contains(field), "no query reads `line.{field}`");
    }
    // The request lines carry the counts, and the retry and the failure are in them.
    let requests: Vec<&Value> = log
        .iter()
        .filter(|line| {
            ["ingest", "ingest refused", "ingest failed: storage"]
                .contains(&line["message"].as_str().unwrap_or_default())
        })
        .collect();
    let statuses: Vec<u64> = requests
        .iter()
        .filter_map(|line| line["status"].as_u64())
        .collect();
    assert_eq!(statuses, [200, 200, 400, 503, 200], "{requests:?}");
    assert_eq!(requests[0]["storage_retries"], 1, "{}", requests[0]);
    assert_eq!(requests[1]["already_present"], 1, "{}", requests[1]);
}

#[test]
fn the_5xx_alert_query_is_marked_for_the_template() {
    let (_, marked) = DOC
        .split_once("<!-- kql: ingest-5xx-rate -->\n```kql\n")
        .expect("the alert query is marked");
    let (query, _) = marked.split_once("```").expect("a closed block");
    assert!(query.contains("rate_5xx"), "{query}");
    assert!(query.contains(">= 500"), "{query}");
    assert_eq!(DOC.matches("<!-- kql: ingest-5xx-rate -->").count(), 1);
}

#[test]
fn the_template_alerts_with_the_marked_query() {
    let (_, marked) = DOC
        .split_once("<!-- kql: ingest-5xx-rate -->\n```kql\n")
        .expect("the alert query is marked");
    let (query, _) = marked.split_once("```").expect("a closed block");
    let template: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("deploy/azuredeploy.json").expect("the template"),
    )
    .expect("JSON");
    assert_eq!(
        template["variables"]["failedIngestQuery"].as_str(),
        Some(query.trim_end()),
        "the alert rule runs the query docs/operations.md shows"
    );
    let rule = template["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["type"] == "Microsoft.Insights/scheduledQueryRules")
        .expect("the alert rule");
    assert_eq!(
        rule["properties"]["criteria"]["allOf"][0]["metricMeasureColumn"],
        "rate_5xx"
    );
}
