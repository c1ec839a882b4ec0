//! The built `handler` binary's command line: `--help` and `--version` print and exit
//! without serving, anything else is refused, and the start-up line says where to post
//! and where records go.

mod support;

use std::net::TcpListener;
use std::path::Path;

use mongo_lake_ingest::configuration::setting_names;
use serde_json::Value;
use support::handler::{run, Handler};

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[test]
fn help_prints_usage_and_every_setting_without_binding_or_touching_the_lake() {
    // The port the handler would serve on is taken: serving would fail loudly.
    let held = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = held.local_addr().expect("addr").port().to_string();
    let dir = tempfile::tempdir().expect("dir");
    let lake = dir.path().join("lake");
    let lake_text = lake.display().to_string();
    for flag in ["--help", "-h"] {
        let output = run(
            &[flag],
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", &port),
                ("LOCAL_LAKE_DIR", &lake_text),
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert_eq!(
            text(&output.stderr),
            "",
            "{flag}: nothing to complain about"
        );
        let help = text(&output.stdout);
        assert!(help.starts_with("handler "), "{help}");
        assert!(help.contains("http://127.0.0.1:8080/api/ingest"), "{help}");
        assert!(help.contains("./lake/mongodb/changes/"), "{help}");
        assert!(help.contains("Functions host"), "{help}");
        for name in setting_names() {
            assert!(help.contains(name), "{name} is missing from --help");
        }
        assert!(help.contains("[default: mongodb]"), "{help}");
        assert!(!lake.exists(), "--help created the lake");
    }
    drop(held);
}

#[test]
fn help_ignores_invalid_settings() {
    // Help is for the person whose settings are wrong, too.
    let output = run(&["--help"], &[("RECORD_ENCODING", "bson")]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).contains("RECORD_ENCODING"));
}

#[test]
fn version_prints_the_package_version() {
    for flag in ["--version", "-V"] {
        let output = run(&[flag], &[]);
        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert_eq!(
            text(&output.stdout),
            format!("handler {}\n", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(text(&output.stderr), "");
    }
}

#[test]
fn any_other_argument_exits_2_naming_it() {
    for args in [&["--port"][..], &["serve"], &["--help", "--verbose"]] {
        let output = run(args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&output.stdout), "", "{args:?}");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        let named = args.last().expect("an argument");
        assert!(stderr.contains(named), "{stderr}");
        assert!(stderr.contains("see --help"), "{stderr}");
    }
}

#[tokio::test]
async fn the_ready_line_names_the_url_and_the_absolute_canonical_lake_folder() {
    // Started in a folder reached through a symbolic link, with the default `./lake`.
    let dir = tempfile::tempdir().expect("dir");
    let real = dir.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let handler = Handler::start_in(&link, &[("STORAGE_DIRECTORY", "raw/mongo")]);

    let address = handler.ready_field("address");
    assert_eq!(
        handler.ready_field("url"),
        format!("http://{address}/api/ingest")
    );
    let records = Path::new(handler.ready_field("records"));
    let expected = real
        .canonicalize()
        .expect("exists")
        .join("lake/mongodb/raw/mongo");
    assert_eq!(records, expected);

    // And that is where a posted event lands.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/insert.json");
    let response = reqwest::Client::new()
        .post(handler.ready_field("url"))
        .header("Content-Type", "application/json")
        .body(std::fs::read(sample).expect("sample"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let written: Value = response.json().await.expect("JSON");
    let path = written["paths"]["written"][0].as_str().expect("a path");
    let relative = path
        .strip_prefix("raw/mongo/")
        .expect("under the directory");
    assert!(
        records.join(relative).is_file(),
        "{path} not under {records:?}"
    );
}

#[test]
fn the_ready_line_names_the_adls_location_but_never_the_credential() {
    let dir = tempfile::tempdir().expect("dir");
    let handler = Handler::start_in(
        dir.path(),
        &[
            ("STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
            ("STORAGE_SAS_TOKEN", "sv=2022-11-02&sp=racwdl&sig=SECRETSIG"),
            // Nothing listens there: the background check fails, the line comes first.
            (
                "STORAGE_DFS_ENDPOINT",
                "http://127.0.0.1:9/devstoreaccount1",
            ),
            ("STORAGE_WRITE_PROTOCOL", "dfs"),
        ],
    );
    assert_eq!(
        handler.ready_field("records"),
        "http://127.0.0.1:9/devstoreaccount1/mongodb/changes"
    );
    assert!(
        !handler.ready.to_string().contains("SECRETSIG"),
        "{}",
        handler.ready
    );
}
