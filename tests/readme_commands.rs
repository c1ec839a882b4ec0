//! The README's shell commands stay runnable as written: every `NAME=value` they set is a
//! setting the handler reads (from its one settings table, not a copy) or one of the few
//! the Functions host or a tool reads, and every repository file they name exists.

use std::collections::BTreeSet;
use std::path::Path;

use mongo_lake_ingest::configuration::setting_names;

/// Variables the README's commands set that are not the handler's: shell variables of the
/// commands themselves and tools' own settings.
const NOT_HANDLER: &[&str] = &[
    "CC_x86_64_unknown_linux_musl",
    "RUST_LOG",
    "CARGO_TARGET_DIR",
];

fn shell_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence == "```sh" || fence == "```bash" => {
                current = Some(String::new())
            }
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_setting_a_readme_command_sets_is_read_by_the_handler() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let known: BTreeSet<&str> = setting_names().collect();
    let mut checked = 0;
    for block in shell_blocks(&readme) {
        for word in block.split(|c: char| c.is_whitespace() || c == '\\' || c == '"') {
            let Some((name, _)) = word.split_once('=') else {
                continue;
            };
            let looks_like_a_setting = name.len() > 2
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && name.chars().next().is_some_and(|c| c.is_ascii_uppercase());
            if !looks_like_a_setting || NOT_HANDLER.contains(&name) {
                continue;
            }
            assert!(
                known.contains(name),
                "the README sets {name}, which is not a setting the handler reads"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "the deploy and run commands set settings ({checked} found)"
    );
}

#[test]
fn every_file_a_readme_command_names_exists() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let mut checked = 0;
    for block in shell_blocks(&readme) {
        for word in block.split(|c: char| c.is_whitespace() || "@\"';),".contains(c)) {
            let prefixes = ["samples/", "deploy/", "atlas-function/", "tests/"];
            if prefixes.iter().any(|p| word.starts_with(p))
                && !word.contains('<')
                && !word.contains('*')
            {
                assert!(
                    Path::new(word).exists(),
                    "the README's commands name {word}, which does not exist"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 3,
        "the README's commands name repository files ({checked} found)"
    );
}
