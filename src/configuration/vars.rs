//! Reading settings through the table: every read names a [`Key`], so the name, the
//! alias, the default and the value check come from the key's row, never from the caller.

use std::str::FromStr;
use std::time::Duration;

use super::table::{Key, Kind, TextDefault};
use super::ConfigError;

/// A value as set, and the name it was set under (so messages name what the user wrote).
#[derive(Debug)]
pub(super) struct Given {
    pub setting: &'static str,
    pub text: String,
}

/// Looks settings up, treating empty values as unset (as an empty Azure app setting is).
pub(super) struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn new(lookup: F) -> Vars<F> {
        Vars(lookup)
    }

    fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    /// The value as set, under its name or its alias. Both set to different values is a
    /// contradiction, not a silent preference.
    pub fn given(&self, key: Key) -> Result<Option<Given>, ConfigError> {
        let setting = key.setting();
        let upper = self.raw(setting.name);
        let lower = setting
            .alias
            .and_then(|alias| Some((alias, self.raw(alias)?)));
        match (upper, lower) {
            (Some(a), Some((alias, b))) if a != b => Err(ConfigError::new(
                setting.name,
                format!(
                    "{} and {alias} are both set, to different values; keep one",
                    setting.name
                ),
            )),
            (Some(text), _) => Ok(Some(Given {
                setting: setting.name,
                text,
            })),
            (None, Some((alias, text))) => Ok(Some(Given {
                setting: alias,
                text,
            })),
            (None, None) => Ok(None),
        }
    }

    pub fn is_set(&self, key: Key) -> Result<bool, ConfigError> {
        Ok(self.given(key)?.is_some())
    }

    /// A text or secret setting: as set, else its default value, else `None`.
    pub fn text(&self, key: Key) -> Result<Option<Given>, ConfigError> {
        let given = self.given(key)?;
        Ok(match key.setting().kind {
            Kind::Text {
                default: TextDefault::Value(default),
            } => Some(given.unwrap_or_else(|| Given {
                setting: key.name(),
                text: default.to_owned(),
            })),
            Kind::Text { .. } | Kind::Secret => given,
            _ => wrong_kind(key, "text"),
        })
    }

    /// A whole number within the row's range, or the row's default.
    pub fn number<T: TryFrom<u64>>(&self, key: Key) -> Result<T, ConfigError> {
        let Kind::Number {
            min, max, default, ..
        } = key.setting().kind
        else {
            wrong_kind(key, "number")
        };
        let value = match self.given(key)? {
            None => default,
            Some(given) => {
                let value: u64 = parse(&given, "a valid number")?;
                if !(min..=max).contains(&value) {
                    let range = match max {
                        u64::MAX => format!("must be at least {min}"),
                        _ => format!("must be between {min} and {max}"),
                    };
                    return Err(ConfigError::new(given.setting, range));
                }
                value
            }
        };
        T::try_from(value)
            .map_err(|_| ConfigError::new(key.name(), format!("{value} is too large here")))
    }

    pub fn seconds(&self, key: Key) -> Result<Duration, ConfigError> {
        self.number(key).map(Duration::from_secs)
    }

    pub fn flag(&self, key: Key) -> Result<bool, ConfigError> {
        let Kind::Flag { default } = key.setting().kind else {
            wrong_kind(key, "flag")
        };
        let Some(given) = self.given(key)? else {
            return Ok(default);
        };
        match given.text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(ConfigError::new(
                given.setting,
                format!("{:?} is neither true nor false", given.text),
            )),
        }
    }

    /// One of the row's options (compared without case), or its default.
    pub fn choice(&self, key: Key) -> Result<Option<&'static str>, ConfigError> {
        let Kind::Choice { options, default } = key.setting().kind else {
            wrong_kind(key, "choice")
        };
        let Some(given) = self.given(key)? else {
            return Ok(default);
        };
        let text = given.text.trim();
        if let Some(option) = options.iter().find(|o| o.eq_ignore_ascii_case(text)) {
            return Ok(Some(option));
        }
        let quoted: Vec<String> = options.iter().map(|o| format!("{o:?}")).collect();
        let problem = match quoted.as_slice() {
            [only] => format!("{text:?} is not supported; the only value is {only}"),
            [a, b] => format!("{text:?} is neither {a} nor {b}"),
            _ => format!("{text:?} is not one of {}", quoted.join(", ")),
        };
        Err(ConfigError::new(given.setting, problem))
    }
}

/// Parses a given value, naming the setting and what was expected when it fails.
pub(super) fn parse<T: FromStr>(given: &Given, expected: &str) -> Result<T, ConfigError> {
    given
        .text
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(given.setting, format!("{:?} is not {expected}", given.text)))
}

/// A getter used on a row of another kind: a bug in the code, found by any test that
/// reads the settings.
fn wrong_kind(key: Key, getter: &str) -> ! {
    panic!("{} is not a {getter} setting in the table", key.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> Vars<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Vars::new(move |name| map.get(name).cloned())
    }

    #[test]
    fn aliases_are_read_and_named_in_messages() {
        let v = vars(&[("storage_container", "raw")]);
        let given = v.text(Key::StorageContainer).expect("ok").expect("set");
        assert_eq!(
            (given.setting, given.text.as_str()),
            ("storage_container", "raw")
        );
        let v = vars(&[("storage_container", "a"), ("STORAGE_CONTAINER", "b")]);
        let error = v.text(Key::StorageContainer).expect_err("contradiction");
        assert_eq!(error.setting, "STORAGE_CONTAINER");
    }

    #[test]
    fn unset_and_empty_take_the_tables_default() {
        for v in [vars(&[]), vars(&[("MAX_CONNECTIONS", "  ")])] {
            assert_eq!(v.number::<usize>(Key::MaxConnections), Ok(512));
            assert_eq!(
                v.text(Key::StorageDirectory).expect("ok").map(|g| g.text),
                Some("changes".to_owned())
            );
            assert!(v.text(Key::StorageFileName).expect("ok").is_none());
        }
    }

    #[test]
    fn numbers_flags_and_choices_are_checked_against_the_row() {
        let v = vars(&[
            ("STORAGE_WRITE_CONCURRENCY", "2000"),
            ("INGEST_HMAC_TOLERANCE_SECS", "five"),
            ("LOCAL_LAKE_FSYNC", "No"),
            ("LOG_FORMAT", " JSON "),
            ("STORAGE_AUTH", "password"),
        ]);
        let error = v.number::<usize>(Key::StorageWriteConcurrency);
        assert_eq!(
            error.expect_err("too many").problem,
            "must be between 1 and 1024"
        );
        let error = v.seconds(Key::IngestHmacToleranceSecs);
        assert_eq!(
            error.expect_err("not a number").problem,
            "\"five\" is not a valid number"
        );
        assert_eq!(v.flag(Key::LocalLakeFsync), Ok(false));
        assert_eq!(v.choice(Key::LogFormat), Ok(Some("json")));
        let error = v.choice(Key::StorageAuth).expect_err("unknown");
        assert_eq!(
            error.problem,
            "\"password\" is not supported; the only value is \"identity\""
        );
    }
}
