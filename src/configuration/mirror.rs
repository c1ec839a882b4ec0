//! The mirror settings (`MIRROR_*`): where the landing zone is, how large a data file and
//! how long a pass may get. The mirror is on when a landing zone is named; its state and
//! its lateness rule are compaction's (`COMPACT_DIRECTORY`, `COMPACT_DELAY_SECS`).

use std::path::PathBuf;

use azure_core::Url;

use super::storage::origin;
use super::table::Key;
use super::vars::Vars;
use super::{check_container_name, ConfigError};
use crate::compact::CompactSettings;
use crate::domain::Segment;
use crate::mirror::MirrorSettings;

/// OneLake's DFS host; regional endpoints put `<region>-` before it.
const ONELAKE_HOST: &str = "onelake.dfs.fabric.microsoft.com";
/// The folders a mirrored database's landing zone sits in, below its item.
const ONELAKE_LANDING: [&str; 2] = ["Files", "LandingZone"];

/// Where the mirror publishes its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandingZone {
    /// `MIRROR_LOCAL_DIR`, made absolute and split as the local lake takes it: its files
    /// go under `<lake_dir>/<container>/`, so the table folders sit directly inside the
    /// folder named.
    Local {
        lake_dir: PathBuf,
        container: String,
    },
    /// `MIRROR_LANDING_ZONE`: a folder of an ADLS Gen2 filesystem (OneLake is one).
    Adls(LandingZoneUrl),
}

/// `MIRROR_LANDING_ZONE` taken apart for the ADLS client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingZoneUrl {
    /// The account the client is built for (`onelake` for OneLake; only Shared Key would
    /// use it, and the landing zone never does).
    pub account: String,
    /// The DFS endpoint, ending in `/` (as `STORAGE_DFS_ENDPOINT`).
    pub endpoint: String,
    /// The filesystem: a storage container, or OneLake's workspace.
    pub filesystem: String,
    /// The landing-zone folder inside the filesystem.
    pub directory: Vec<Segment>,
}

/// Reads the `MIRROR_*` rows. Every row is read even when the mirror is off, so a wrong
/// value is found before it is first needed.
pub(super) fn from_vars<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    compact: &CompactSettings,
    change_directory: &[Segment],
) -> Result<(MirrorSettings, Option<LandingZone>), ConfigError> {
    let url = vars.text(Key::MirrorLandingZone)?;
    let local = vars.text(Key::MirrorLocalDir)?;
    let mut settings = MirrorSettings {
        enabled: url.is_some() || local.is_some(),
        state_root: compact.root.clone(),
        landing_directory: Vec::new(),
        delay: compact.delay,
        max_rows_per_file: vars.number(Key::MirrorMaxRowsPerFile)?,
        time_budget: vars.seconds(Key::MirrorTimeBudgetSecs)?,
    };
    let (given, landing) = match (url, local) {
        (None, None) => return Ok((settings, None)),
        (Some(url), Some(local)) => {
            return Err(ConfigError::new(
                url.setting,
                format!(
                    "is set, and so is {}: the mirror publishes into one landing zone; unset one of them",
                    local.setting
                ),
            ))
        }
        (Some(url), None) => {
            let landing = parse_url(&url.text).map_err(|p| ConfigError::new(url.setting, p))?;
            (url, LandingZone::Adls(landing))
        }
        (None, Some(local)) => {
            let landing = local_dir(&local.text).map_err(|p| ConfigError::new(local.setting, p))?;
            (local, landing)
        }
    };
    if compact.delete_sources {
        return Err(ConfigError::new(
            Key::CompactDeleteSources.name(),
            format!("is true, but the mirror is on ({}): the mirror reads change files again after their hour is compacted (late changes, a rebuilt data file); set it to false and delete change files with an ADLS lifecycle rule", given.setting),
        ));
    }
    if compact.root.starts_with(change_directory) || change_directory.starts_with(&compact.root) {
        return Err(ConfigError::new(
            given.setting,
            "needs a folder beside the change directory for its state (COMPACT_DIRECTORY), and there is none: STORAGE_DIRECTORY is the container's root; set STORAGE_DIRECTORY to a folder (e.g. changes)",
        ));
    }
    if let LandingZone::Adls(url) = &landing {
        settings.landing_directory = url.directory.clone();
    }
    Ok((settings, Some(landing)))
}

/// A local folder as its absolute parent and its name.
fn local_dir(text: &str) -> Result<LandingZone, String> {
    let dir = PathBuf::from(text.trim());
    let absolute = std::path::absolute(&dir)
        .map_err(|error| format!("{dir:?} cannot be made absolute: {error}"))?;
    match (
        absolute.parent(),
        absolute.file_name().and_then(|name| name.to_str()),
    ) {
        (Some(parent), Some(name)) => Ok(LandingZone::Local {
            lake_dir: parent.to_owned(),
            container: name.to_owned(),
        }),
        _ => Err(format!(
            "{dir:?} does not end in a folder's name (a UTF-8 name; not the root, not `..`)"
        )),
    }
}

/// An https DFS URL of a folder: OneLake (`/<workspace>/<item>/Files/LandingZone`), an
/// account's DFS endpoint (`/<filesystem>/<folder>...`), or, for tests, a DFS server on
/// this machine with the account in the path (`http://127.0.0.1:<port>/<account>/...`).
/// Messages show the URL's origin only: a pasted SAS URL must not reach the logs.
fn parse_url(text: &str) -> Result<LandingZoneUrl, String> {
    let text = text.trim();
    let shown = origin(text);
    let url = Url::parse(text).map_err(|error| format!("{shown} is not a valid URL: {error}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "the URL ({shown}) must not have a query or fragment: the landing zone takes Microsoft Entra ID only, never a SAS"
        ));
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let loopback = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    if url.scheme() != "https" && !(loopback && url.scheme() == "http") {
        return Err(format!("{shown} is not an https:// URL"));
    }
    let mut folders: Vec<&str> = url
        .path_segments()
        .map(|parts| parts.filter(|part| !part.is_empty()).collect())
        .unwrap_or_default();
    let port = url
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let base = format!("{}://{host}{port}/", url.scheme());
    let (account, endpoint) = if host == ONELAKE_HOST || host.ends_with(&format!("-{ONELAKE_HOST}"))
    {
        let landing_zone = folders.len() == 4 && folders[2..] == ONELAKE_LANDING;
        if !landing_zone {
            return Err(format!(
                "a OneLake URL must name a mirrored database's landing zone: {shown}/<workspace>/<item>/Files/LandingZone"
            ));
        }
        ("onelake".to_owned(), base)
    } else if let Some(account) = host
        .split_once('.')
        .filter(|(_, rest)| rest.starts_with("dfs.core."))
        .map(|(account, _)| account.to_owned())
    {
        (account, base)
    } else if loopback && !folders.is_empty() {
        let account = folders.remove(0).to_owned();
        let endpoint = format!("{base}{account}/");
        (account, endpoint)
    } else {
        return Err(format!(
            "{shown} is neither OneLake ({ONELAKE_HOST}) nor an ADLS Gen2 DFS endpoint (<account>.dfs.core.windows.net)"
        ));
    };
    let Some((filesystem, directory)) = folders.split_first() else {
        return Err(format!(
            "the URL ({shown}) names no filesystem: add /<filesystem>/<folder>"
        ));
    };
    if !host.contains(ONELAKE_HOST) {
        check_container_name(filesystem)?;
    }
    let workspace = Segment::literal(filesystem).map_err(|problem| {
        format!("{filesystem:?} {problem} (use the workspace's and item's IDs, as the portal's landing zone URL does)")
    })?;
    let directory = directory
        .iter()
        .map(|part| Segment::literal(part).map_err(|problem| format!("folder {part:?} {problem}")))
        .collect::<Result<Vec<Segment>, String>>()?;
    Ok(LandingZoneUrl {
        account,
        endpoint,
        filesystem: workspace.to_string(),
        directory,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error_setting, settings};
    use super::*;
    use crate::mirror::{DEFAULT_MAX_ROWS_PER_FILE, DEFAULT_MIRROR_TIME_BUDGET};
    use std::time::Duration;

    const ONELAKE: &str = "https://onelake.dfs.fabric.microsoft.com/0a1b2c3d-0000-4000-8000-0123456789ab/5e6f7a8b-0000-4000-8000-0123456789ab/Files/LandingZone";

    fn landing(vars: &[(&str, &str)]) -> LandingZoneUrl {
        match settings(vars).expect("valid").landing_zone {
            Some(LandingZone::Adls(url)) => url,
            other => panic!("expected an ADLS landing zone, got {other:?}"),
        }
    }

    fn joined(segments: &[Segment]) -> String {
        segments
            .iter()
            .map(Segment::as_str)
            .collect::<Vec<_>>()
            .join("/")
    }

    fn refusal(url: &str) -> String {
        let error = settings(&[("MIRROR_LANDING_ZONE", url)]).expect_err(url);
        assert_eq!(error.setting, "MIRROR_LANDING_ZONE", "{error}");
        error.to_string()
    }

    #[test]
    fn off_by_default_with_compactions_root_and_delay() {
        let s = settings(&[("COMPACT_DELAY_SECS", "120")]).expect("valid");
        assert_eq!(s.landing_zone, None);
        assert!(!s.mirror.enabled);
        assert_eq!(joined(&s.mirror.state_root), "changes-hourly");
        assert_eq!(s.mirror.delay, Duration::from_secs(120));
        assert_eq!(s.mirror.max_rows_per_file as u64, DEFAULT_MAX_ROWS_PER_FILE);
        assert_eq!(s.mirror.time_budget, DEFAULT_MIRROR_TIME_BUDGET);
    }

    #[test]
    fn every_setting_is_read() {
        let s = settings(&[
            ("MIRROR_LOCAL_DIR", " /srv/LandingZone "),
            ("MIRROR_MAX_ROWS_PER_FILE", "1000"),
            ("MIRROR_TIME_BUDGET_SECS", "20"),
            ("COMPACT_DIRECTORY", "state/hourly"),
        ])
        .expect("valid");
        assert!(s.mirror.enabled);
        assert_eq!(
            s.landing_zone,
            Some(LandingZone::Local {
                lake_dir: PathBuf::from("/srv"),
                container: "LandingZone".to_owned()
            })
        );
        let relative = settings(&[("MIRROR_LOCAL_DIR", "lz")]).expect("valid");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            relative.landing_zone,
            Some(LandingZone::Local {
                lake_dir: cwd,
                container: "lz".to_owned()
            })
        );
        for unnamed in ["/", "lz/.."] {
            assert_eq!(
                error_setting(&[("MIRROR_LOCAL_DIR", unnamed)]),
                "MIRROR_LOCAL_DIR",
                "{unnamed}"
            );
        }
        assert_eq!(s.mirror.max_rows_per_file, 1000);
        assert_eq!(s.mirror.time_budget, Duration::from_secs(20));
        assert_eq!(joined(&s.mirror.state_root), "state/hourly");
        // The mirror runs whether or not compaction does: its state root is the same.
        let s =
            settings(&[("MIRROR_LOCAL_DIR", "x"), ("COMPACT_ENABLED", "false")]).expect("valid");
        assert!(s.mirror.enabled && !s.compact.enabled);
        for (name, value) in [
            ("MIRROR_MAX_ROWS_PER_FILE", "0"),
            ("MIRROR_MAX_ROWS_PER_FILE", "1000001"),
            ("MIRROR_TIME_BUDGET_SECS", "0"),
        ] {
            assert_eq!(error_setting(&[(name, value)]), name, "{value}");
        }
    }

    #[test]
    fn onelake_and_adls_urls_are_taken_apart() {
        let url = landing(&[("MIRROR_LANDING_ZONE", ONELAKE)]);
        assert_eq!(url.account, "onelake");
        assert_eq!(url.endpoint, "https://onelake.dfs.fabric.microsoft.com/");
        assert_eq!(url.filesystem, "0a1b2c3d-0000-4000-8000-0123456789ab");
        assert_eq!(
            joined(&url.directory),
            "5e6f7a8b-0000-4000-8000-0123456789ab/Files/LandingZone"
        );
        let named = landing(&[(
            "MIRROR_LANDING_ZONE",
            "https://westus-onelake.dfs.fabric.microsoft.com/Sales/Orders.MountedRelationalDatabase/Files/LandingZone/",
        )]);
        assert_eq!(
            named.endpoint,
            "https://westus-onelake.dfs.fabric.microsoft.com/"
        );
        assert_eq!(named.filesystem, "Sales");
        assert_eq!(
            joined(&named.directory),
            "Orders.MountedRelationalDatabase/Files/LandingZone"
        );

        let url = landing(&[(
            "MIRROR_LANDING_ZONE",
            "https://lakeacct.dfs.core.windows.net/mirror/fabric/LandingZone",
        )]);
        assert_eq!(url.account, "lakeacct");
        assert_eq!(url.endpoint, "https://lakeacct.dfs.core.windows.net/");
        assert_eq!(url.filesystem, "mirror");
        assert_eq!(joined(&url.directory), "fabric/LandingZone");

        // A DFS server on this machine (tests), the account in the path.
        let url = landing(&[(
            "MIRROR_LANDING_ZONE",
            "http://127.0.0.1:10004/devstoreaccount1/landing/zone",
        )]);
        assert_eq!(url.account, "devstoreaccount1");
        assert_eq!(url.endpoint, "http://127.0.0.1:10004/devstoreaccount1/");
        assert_eq!(url.filesystem, "landing");
        assert_eq!(joined(&url.directory), "zone");
    }

    #[test]
    fn other_urls_are_refused_in_one_line_naming_the_setting() {
        let onelake_root =
            "https://onelake.dfs.fabric.microsoft.com/ws/db.MountedRelationalDatabase";
        for (url, says) in [
            ("onelake.dfs.fabric.microsoft.com/ws", "is not a valid URL"),
            (
                "http://lakeacct.dfs.core.windows.net/fs/dir",
                "is not an https:// URL",
            ),
            (
                "https://lakeacct.blob.core.windows.net/fs/dir",
                "is neither OneLake",
            ),
            ("https://example.com/fs/dir", "is neither OneLake"),
            (onelake_root, "/<workspace>/<item>/Files/LandingZone"),
            (
                "https://lakeacct.dfs.core.windows.net/",
                "names no filesystem",
            ),
            (
                "https://lakeacct.dfs.core.windows.net/Bad_FS/dir",
                "not a valid container name",
            ),
            (
                "https://lakeacct.dfs.core.windows.net/files/a%20b",
                "folder \"a%20b\"",
            ),
            (
                "https://onelake.dfs.fabric.microsoft.com/My%20Space/db/Files/LandingZone",
                "workspace's and item's IDs",
            ),
        ] {
            let error = refusal(url);
            assert!(error.contains(says), "{url}: {error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        let error = refusal("https://lakeacct.dfs.core.windows.net/fs/dir?sv=1&sig=SECRET");
        assert!(error.contains("never a SAS"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
    }

    #[test]
    fn contradictions_stop_start_up() {
        let error = settings(&[("MIRROR_LANDING_ZONE", ONELAKE), ("MIRROR_LOCAL_DIR", "lz")])
            .expect_err("both");
        assert_eq!(error.setting, "MIRROR_LANDING_ZONE");
        assert!(error.problem.contains("MIRROR_LOCAL_DIR"), "{error}");

        let error = settings(&[
            ("MIRROR_LOCAL_DIR", "lz"),
            ("COMPACT_DELETE_SOURCES", "true"),
        ])
        .expect_err("deleting sources");
        assert_eq!(error.setting, "COMPACT_DELETE_SOURCES");
        assert!(error.problem.contains("MIRROR_LOCAL_DIR"), "{error}");
        assert!(
            settings(&[("COMPACT_DELETE_SOURCES", "true")]).is_ok(),
            "compaction alone may delete"
        );

        let error = settings(&[("MIRROR_LANDING_ZONE", ONELAKE), ("STORAGE_DIRECTORY", "/")])
            .expect_err("no room for state");
        assert_eq!(error.setting, "MIRROR_LANDING_ZONE");
        assert!(
            error.problem.contains("set STORAGE_DIRECTORY to a folder"),
            "{error}"
        );
        // COMPACT_DIRECTORY cannot help there: any folder is inside the container's root.
        let error = settings(&[
            ("MIRROR_LANDING_ZONE", ONELAKE),
            ("STORAGE_DIRECTORY", "/"),
            ("COMPACT_DIRECTORY", "state"),
        ])
        .expect_err("still no room");
        assert_eq!(error.setting, "COMPACT_DIRECTORY");
    }
}
