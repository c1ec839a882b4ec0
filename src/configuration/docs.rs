//! The settings table as text for people: `handler --help` and the README's settings
//! table. Both are made from the table, so neither can drift from what the handler reads.

use super::table::{Group, Kind, Setting, TextDefault, Unit, SETTINGS};

/// Width of `--help` text (a terminal's 80 columns, after the indent).
const WIDTH: usize = 80;
const INDENT: &str = "      ";

/// Every setting, grouped, with its default and what it does, for `--help`.
pub fn settings_help() -> String {
    let mut out = String::new();
    for group in Group::ALL {
        out.push_str(group.title());
        out.push_str(":\n");
        for setting in in_group(group) {
            let names: Vec<&str> = setting.names().collect();
            let default = default_text(setting)
                .map(|value| format!("  [default: {value}]"))
                .unwrap_or_default();
            out.push_str(&format!("  {}{default}\n", names.join(", ")));
            let text = plain(&description(setting));
            for line in wrap(&text, WIDTH - INDENT.len()) {
                out.push_str(INDENT);
                out.push_str(&line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

/// Every setting as Markdown tables, one per group, as the README shows them.
pub fn settings_markdown() -> String {
    let mut out = String::new();
    for group in Group::ALL {
        out.push_str(&format!("**{}**\n\n", group.title()));
        out.push_str("| Setting | Default | Meaning |\n|---|---|---|\n");
        for setting in in_group(group) {
            let names: Vec<String> = setting.names().map(|name| format!("`{name}`")).collect();
            let default = default_text(setting)
                .map(|value| format!("`{value}`"))
                .unwrap_or_else(|| "(none)".to_owned());
            out.push_str(&format!(
                "| {} | {default} | {} |\n",
                names.join(" / "),
                description(setting).replace('|', "\\|")
            ));
        }
        out.push('\n');
    }
    out
}

fn in_group(group: Group) -> impl Iterator<Item = &'static Setting> {
    SETTINGS
        .iter()
        .filter(move |setting| setting.group == group)
}

/// The value used when the setting is unset, as text.
fn default_text(setting: &Setting) -> Option<String> {
    match setting.kind {
        Kind::Text {
            default: TextDefault::Value(value) | TextDefault::Derived(value),
        } => Some(value.to_owned()),
        Kind::Text {
            default: TextDefault::None,
        }
        | Kind::Secret => None,
        Kind::Number { default, .. } => Some(default.to_string()),
        Kind::Flag { default } => Some(default.to_string()),
        Kind::Choice { default, .. } => default.map(str::to_owned),
        Kind::Host { default } => Some(default.to_owned()),
    }
}

/// The help text followed by what values the kind accepts.
fn description(setting: &Setting) -> String {
    let values = match setting.kind {
        Kind::Text { .. } => return setting.help.to_owned(),
        Kind::Host { .. } => {
            "Read by the Functions host, not the handler: the default is the value to set."
                .to_owned()
        }
        Kind::Secret => "Secret: never printed.".to_owned(),
        Kind::Number { min, max, unit, .. } => {
            let range = match max {
                u64::MAX => format!("at least {min}"),
                _ => format!("{min}-{max}"),
            };
            match unit {
                Unit::Seconds => format!("Seconds, {range}."),
                Unit::Bytes => format!("Bytes, {range}."),
                Unit::Count => format!("{}{}.", range[..1].to_uppercase(), &range[1..]),
            }
        }
        Kind::Flag { .. } => "`true` or `false`.".to_owned(),
        Kind::Choice { options, .. } => {
            let quoted: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
            match quoted.as_slice() {
                [only] => format!("Only {only}."),
                _ => format!("One of {}.", quoted.join(", ")),
            }
        }
    };
    format!("{} {values}", setting.help)
}

/// Markdown code spans as plain text for a terminal.
fn plain(text: &str) -> String {
    text.replace('`', "")
}

/// Greedy word wrap; a word longer than `width` gets a line of its own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::setting_names;

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = settings_help();
        for setting in SETTINGS {
            let line = help
                .lines()
                .find(|line| line.starts_with(&format!("  {}", setting.name)))
                .unwrap_or_else(|| panic!("{} is missing from --help", setting.name));
            for name in setting.names() {
                assert!(line.contains(name), "{line}");
            }
            if let Some(default) = default_text(setting) {
                assert!(line.contains(&format!("[default: {default}]")), "{line}");
            }
        }
        for group in Group::ALL {
            assert!(help.contains(group.title()), "{}", group.title());
        }
    }

    #[test]
    fn help_is_plain_text_that_fits_a_terminal() {
        let help = settings_help();
        assert!(!help.contains('`'), "Markdown leaked into --help");
        for line in help.lines().filter(|line| line.starts_with(INDENT)) {
            let longest_word = line.split_whitespace().map(str::len).max().unwrap_or(0);
            assert!(
                line.len() <= WIDTH || longest_word > WIDTH - INDENT.len(),
                "too wide: {line}"
            );
        }
    }

    #[test]
    fn numbers_show_their_range_and_secrets_say_so() {
        let help = settings_help();
        assert!(help.contains("Seconds, 1-180."), "{help}");
        assert!(help.contains("Secret: never printed."), "{help}");
        assert!(help.contains("One of relaxed, canonical."), "{help}");
    }

    /// The README's settings tables are exactly what the table renders: edit the table
    /// (src/configuration/table.rs), then paste the text this test prints.
    #[test]
    fn the_readme_shows_the_settings_table() {
        let readme = include_str!("../../README.md");
        let expected = settings_markdown();
        let start = "<!-- settings table: generated from src/configuration/table.rs -->\n";
        let end = "<!-- end of settings table -->";
        let shown = readme
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table.trim())
            .expect("the README marks its settings table");
        assert!(
            shown == expected.trim(),
            "README.md's settings table is out of date; put this between the markers:\n\n{expected}"
        );
        for name in setting_names() {
            assert!(shown.contains(&format!("`{name}`")), "{name}");
        }
    }

    #[test]
    fn wrapping_keeps_every_word_in_order() {
        let text = "one two three four five six seven eight nine ten";
        let lines = wrap(text, 9);
        assert!(lines.iter().all(|line| line.len() <= 9), "{lines:?}");
        assert_eq!(lines.join(" "), text);
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            ["averyveryverylongword", "x"]
        );
    }
}
