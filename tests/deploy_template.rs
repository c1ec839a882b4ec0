//! `deploy/`: the ARM template, the deployment script and their documentation, checked
//! without Azure. The template's app settings are held to the handler's own settings
//! table and started through `Settings::from_lookup`; checkov scans the template, with
//! exactly the exceptions `deploy/README.md` lists.
//!
//! ARM expressions (`[format('lake{0}', uniqueString(resourceGroup().id))]`) are parsed
//! and the few functions the settings use are evaluated here (see [`arm`]); functions
//! only Azure can answer (`reference`, `listKeys`) leave a value unknown.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use mongo_lake_ingest::configuration::{
    setting_names, Key, Kind, Settings, StorageSettings, SETTINGS,
};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn template() -> Value {
    serde_json::from_str(&read("deploy/azuredeploy.json")).expect("azuredeploy.json is JSON")
}

/// The resources of `kind`.
fn resources<'a>(template: &'a Value, kind: &str) -> Vec<&'a Value> {
    template["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|resource| resource["type"] == kind)
        .collect()
}

fn one<'a>(template: &'a Value, kind: &str) -> &'a Value {
    let found = resources(template, kind);
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// The Function App's app settings, name and template value, in order.
fn app_settings(template: &Value) -> Vec<(String, Value)> {
    one(template, "Microsoft.Web/sites")["properties"]["siteConfig"]["appSettings"]
        .as_array()
        .expect("appSettings is a literal array")
        .iter()
        .map(|setting| {
            let name = setting["name"]
                .as_str()
                .expect("a setting's name is literal");
            (name.to_owned(), setting["value"].clone())
        })
        .collect()
}

/// The first code span of each row of the Markdown table between `<!-- {marker}` and
/// `<!-- end of {marker}` in `deploy/README.md`.
fn documented(marker: &str) -> Vec<String> {
    let text = read("deploy/README.md");
    let start = text
        .find(&format!("<!-- {marker}"))
        .unwrap_or_else(|| panic!("deploy/README.md has no <!-- {marker} table"));
    let end = text[start..]
        .find(&format!("<!-- end of {marker}"))
        .expect("the table's end marker")
        + start;
    text[start..end]
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| line[3..].split('`').next().expect("a code span").to_owned())
        .collect()
}

#[test]
fn the_template_has_the_arm_deployment_structure() {
    let template = template();
    assert_eq!(
        template["$schema"],
        "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
    );
    let version = template["contentVersion"].as_str().expect("contentVersion");
    assert_eq!(version.split('.').count(), 4, "contentVersion is a.b.c.d");
    assert!(version.split('.').all(|part| part.parse::<u32>().is_ok()));
    let resources = template["resources"].as_array().expect("resources array");
    assert!(!resources.is_empty());
    for resource in resources {
        for field in ["type", "apiVersion", "name"] {
            assert!(
                resource[field]
                    .as_str()
                    .is_some_and(|text| !text.is_empty()),
                "a resource without {field}: {resource}"
            );
        }
        let api = resource["apiVersion"].as_str().unwrap_or_default();
        let date = api.strip_suffix("-preview").unwrap_or(api);
        assert!(
            date.len() == 10 && date.split('-').all(|part| part.parse::<u32>().is_ok()),
            "apiVersion {api} is not a date"
        );
    }
    const TYPES: [&str; 7] = [
        "string",
        "securestring",
        "int",
        "bool",
        "object",
        "secureObject",
        "array",
    ];
    for (name, parameter) in template["parameters"].as_object().expect("parameters") {
        let kind = parameter["type"].as_str().unwrap_or_default();
        assert!(TYPES.contains(&kind), "parameter {name}: type {kind:?}");
    }
    for (name, output) in template["outputs"].as_object().expect("outputs") {
        assert!(
            output["type"].is_string() && !output["value"].is_null(),
            "output {name}"
        );
    }
}

#[test]
fn every_reference_is_declared_and_every_parameter_and_variable_is_used() {
    let template = template();
    let mut used = BTreeSet::new();
    arm::each_expression(&template, &mut |expression| {
        expression.each_call(&mut |name, args| {
            if let ("parameters" | "variables", [arm::Expr::Text(key)]) = (name, args) {
                used.insert((name.to_owned(), key.clone()));
            }
        })
    });
    let declared: BTreeSet<(String, String)> = ["parameters", "variables"]
        .into_iter()
        .flat_map(|section| {
            template[section]
                .as_object()
                .expect("section")
                .keys()
                .map(move |key| (section.to_owned(), key.clone()))
        })
        .collect();
    let undeclared: Vec<_> = used.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "referenced, not declared: {undeclared:?}"
    );
    let unused: Vec<_> = declared.difference(&used).collect();
    assert!(unused.is_empty(), "declared, never used: {unused:?}");
}

#[test]
fn every_app_setting_is_the_handlers_or_a_documented_host_setting() {
    let template = template();
    let handler: BTreeSet<&str> = setting_names().collect();
    let host: BTreeSet<String> = documented("host settings").into_iter().collect();
    let set: Vec<String> = app_settings(&template)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for name in &set {
        assert!(
            handler.contains(name.as_str()) || host.contains(name),
            "{name} is neither a setting the handler reads nor a host setting in deploy/README.md"
        );
        assert!(
            !(handler.contains(name.as_str()) && host.contains(name)),
            "{name} is the handler's: not a host setting"
        );
    }
    for name in &host {
        assert!(
            set.contains(name),
            "deploy/README.md documents {name}, the template does not set it"
        );
    }
    let unique: BTreeSet<&String> = set.iter().collect();
    assert_eq!(unique.len(), set.len(), "a setting is set twice");
}

/// The identity route, as the handler's table names it: an account, a container, and
/// `STORAGE_AUTH=identity`; no secret of the table in plain text, none of the other
/// credentials.
#[test]
fn the_identity_route_is_set_and_no_secret_is_in_plain_text() {
    let template = template();
    let settings = app_settings(&template);
    let value = |key: Key| {
        settings
            .iter()
            .find(|(name, _)| key.setting().names().any(|alias| alias == name))
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("{} is not set", key.name()))
    };
    assert_eq!(value(Key::StorageAuth), "identity");
    let lake = resources(&template, "Microsoft.Storage/storageAccounts")
        .into_iter()
        .find(|account| account["properties"]["isHnsEnabled"] == true)
        .expect("an ADLS Gen2 account");
    assert_eq!(value(Key::StorageAccountName), lake["name"]);
    let container = one(
        &template,
        "Microsoft.Storage/storageAccounts/blobServices/containers",
    );
    let env = arm::Env::new(&template);
    let container_name = env.string(&container["name"]).expect("evaluable");
    let account = env.string(&lake["name"]).expect("evaluable");
    assert_eq!(
        container_name,
        format!(
            "{account}/default/{}",
            env.string(&value(Key::StorageContainer)).unwrap()
        )
    );
    for credential in [
        Key::StorageAccountKey,
        Key::StorageSasToken,
        Key::StorageConnectionString,
        Key::AzureClientSecret,
    ] {
        assert!(
            !settings
                .iter()
                .any(|(name, _)| credential.setting().names().any(|alias| alias == name)),
            "{} is set: the template's route is the managed identity",
            credential.name()
        );
    }
    for setting in SETTINGS
        .iter()
        .filter(|row| matches!(row.kind, Kind::Secret))
    {
        if let Some((name, value)) = settings
            .iter()
            .find(|(name, _)| setting.names().any(|n| n == name))
        {
            let text = env.string(value).unwrap_or_default();
            assert!(
                text.starts_with("@Microsoft.KeyVault("),
                "{name} is a secret: only as a Key Vault reference"
            );
        }
    }
}

/// The template's settings, evaluated (the Key Vault reference followed to the secret the
/// template writes), start the handler on ADLS with its managed identity.
#[test]
fn the_template_settings_start_the_handler_on_the_lake_with_identity() {
    let template = template();
    let env = arm::Env::new(&template);
    let values: Vec<(String, String)> = app_settings(&template)
        .into_iter()
        .filter_map(|(name, value)| {
            let text = env.string(&value)?;
            let text = match text.strip_prefix("@Microsoft.KeyVault(") {
                Some(reference) => env.key_vault_secret(reference),
                None => text,
            };
            Some((name, text))
        })
        .collect();
    let settings = Settings::from_lookup(|name| {
        values
            .iter()
            .find(|(set, _)| set == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap_or_else(|error| panic!("the template's settings stop the handler: {error}"));
    let StorageSettings::Adls(adls) = &settings.storage else {
        panic!("records would go to the local lake: {:?}", settings.storage);
    };
    assert!(adls.credential.is_entra(), "{}", adls.credential.kind());
    assert_eq!(
        adls.account,
        env.string(&Value::from("[parameters('lakeStorageAccountName')]"))
            .unwrap()
    );
    assert_eq!(
        adls.endpoint,
        format!("https://{}.dfs.core.windows.net/", adls.account)
    );
    assert_eq!(settings.container, "mongodb");
    assert!(settings.signing.is_some(), "requests must be signed");
    assert_eq!(
        settings.log_format,
        mongo_lake_ingest::configuration::LogFormat::Json
    );
}

/// The host reads the timer schedules; their values are the table's defaults.
#[test]
fn the_timer_schedules_are_the_tables_defaults() {
    let template = template();
    let env = arm::Env::new(&template);
    for key in [Key::CompactSchedule, Key::MirrorSchedule] {
        let Kind::Host { default } = key.setting().kind else {
            panic!("{} is read by the host", key.name());
        };
        let (_, value) = app_settings(&template)
            .into_iter()
            .find(|(name, _)| name == key.name())
            .unwrap_or_else(|| {
                panic!(
                    "{} is not set: the host cannot index its function",
                    key.name()
                )
            });
        assert_eq!(
            env.string(&value).as_deref(),
            Some(default),
            "{}",
            key.name()
        );
    }
}

#[test]
fn the_lake_is_adls_gen2_and_the_app_writes_to_its_container_only() {
    let template = template();
    let env = arm::Env::new(&template);
    let lake = resources(&template, "Microsoft.Storage/storageAccounts")
        .into_iter()
        .find(|account| account["properties"]["isHnsEnabled"] == true)
        .expect("an ADLS Gen2 account");
    assert_eq!(lake["kind"], "StorageV2");
    let properties = &lake["properties"];
    assert_eq!(properties["minimumTlsVersion"], "TLS1_2");
    assert_eq!(properties["allowBlobPublicAccess"], false);
    assert_eq!(properties["supportsHttpsTrafficOnly"], true);
    assert_eq!(properties["allowSharedKeyAccess"], false);

    let container = env
        .string(
            &one(
                &template,
                "Microsoft.Storage/storageAccounts/blobServices/containers",
            )["name"],
        )
        .expect("evaluable");
    let (account, name) = container
        .split_once("/default/")
        .expect("account/default/container");
    let contributor = resources(&template, "Microsoft.Authorization/roleAssignments")
        .into_iter()
        .find(|role| {
            env.string(&role["properties"]["roleDefinitionId"])
                .is_some_and(|id| id.ends_with("/ba92f5b4-2d11-453d-a403-e96b0029c9fe"))
        })
        .expect("a Storage Blob Data Contributor assignment");
    assert_eq!(
        env.string(&contributor["scope"]).expect("evaluable"),
        format!(
            "Microsoft.Storage/storageAccounts/{account}/blobServices/default/containers/{name}"
        )
    );
    let site = one(&template, "Microsoft.Web/sites");
    let principal = contributor["properties"]["principalId"]
        .as_str()
        .unwrap_or_default();
    let Some(arm::Expr::Member(identity, id)) = arm::expression(principal) else {
        panic!("principalId is not an expression: {principal}");
    };
    let arm::Expr::Member(reference, field) = *identity else {
        panic!("principalId is not <resource>.identity.principalId: {principal}");
    };
    assert_eq!((field.as_str(), id.as_str()), ("identity", "principalId"));
    let arm::Expr::Call(function, args) = *reference else {
        panic!("principalId is not a reference(): {principal}");
    };
    assert_eq!(function, "reference");
    assert_eq!(
        env.eval_text(&args[0]),
        env.string(&Value::from(
            "[resourceId('Microsoft.Web/sites', parameters('appName'))]"
        )),
        "the Function App's own identity"
    );

    assert_eq!(site["identity"]["type"], "SystemAssigned");
    assert_eq!(site["kind"], "functionapp,linux");
    assert_eq!(site["properties"]["httpsOnly"], true);
    let config = &site["properties"]["siteConfig"];
    assert_eq!(config["ftpsState"], "Disabled");
    assert_eq!(config["minTlsVersion"], "1.2");
    let setting = |name: &str| {
        app_settings(&template)
            .into_iter()
            .find(|(set, _)| set == name)
            .map(|(_, value)| value)
    };
    assert_eq!(
        setting("FUNCTIONS_WORKER_RUNTIME"),
        Some(Value::from("custom"))
    );
    assert_eq!(
        setting("FUNCTIONS_EXTENSION_VERSION"),
        Some(Value::from("~4"))
    );
    assert_eq!(
        template["parameters"]["planSku"]["allowedValues"],
        serde_json::json!(["Y1", "EP1", "EP2", "EP3"])
    );
    assert_eq!(template["parameters"]["planSku"]["defaultValue"], "Y1");
}

#[test]
fn the_deploy_script_parses_and_names_only_files_that_exist() {
    let script = repo().join("deploy/deploy.sh");
    let checked = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        checked.status.success(),
        "bash -n deploy/deploy.sh: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let text = read("deploy/deploy.sh");
    assert!(text.contains("set -euo pipefail"));
    let named: BTreeSet<&str> = text
        .split(|c: char| c.is_whitespace() || "\"'()=;@,".contains(c))
        .filter(|word| !word.contains('$') && !word.contains("://"))
        .filter(|word| {
            [".json", ".sh", ".md", ".toml", ".txt"]
                .iter()
                .any(|extension| word.ends_with(extension))
        })
        .collect();
    for must in [
        "deploy/azuredeploy.json",
        "host.json",
        "ingest/function.json",
        "samples/insert.json",
    ] {
        assert!(named.contains(must), "deploy.sh does not use {must}");
    }
    for path in &named {
        assert!(
            repo().join(path).is_file(),
            "deploy.sh names {path}, which does not exist"
        );
    }
    // Every function folder the host needs goes into the package.
    for entry in std::fs::read_dir(repo()).expect("repo") {
        let folder = entry.expect("entry").file_name();
        let folder = folder.to_string_lossy();
        if repo().join(&*folder).join("function.json").is_file() {
            assert!(
                named.contains(format!("{folder}/function.json").as_str()),
                "deploy.sh does not package {folder}/function.json"
            );
        }
    }
}

#[test]
fn checkov_fails_nothing_but_the_listed_exceptions() {
    let exceptions = documented("checkov exceptions");
    assert!(
        exceptions.iter().all(|id| id.starts_with("CKV")),
        "{exceptions:?}"
    );
    let failed = |skips: &[String]| -> BTreeSet<String> {
        let mut command = support::python::checkov();
        command
            .args(["--file", "deploy/azuredeploy.json", "--framework", "arm"])
            .args(["--output", "json", "--skip-download", "--quiet"])
            .current_dir(repo());
        if !skips.is_empty() {
            command.args(["--skip-check", &skips.join(",")]);
        }
        let output = command.output().expect("checkov runs");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "checkov's report is not JSON ({error}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        assert_eq!(
            report["summary"]["parsing_errors"], 0,
            "{}",
            report["summary"]
        );
        report["results"]["failed_checks"]
            .as_array()
            .map(|checks| {
                checks
                    .iter()
                    .map(|check| check["check_id"].as_str().expect("check_id").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let listed: BTreeSet<String> = exceptions.iter().cloned().collect();
    let unskipped = failed(&[]);
    let stale: Vec<_> = listed.difference(&unskipped).collect();
    assert!(
        stale.is_empty(),
        "deploy/README.md lists exceptions checkov no longer reports: {stale:?}"
    );
    let remaining = failed(&exceptions);
    assert!(
        remaining.is_empty(),
        "checkov fails {remaining:?}: fix the template, or list each with its reason in deploy/README.md"
    );
}

/// Just enough of ARM's template expression language to follow the settings: parsing all
/// of it, evaluating the functions that do not need Azure.
mod arm {
    use serde_json::{json, Value};

    #[derive(Debug, Clone)]
    pub enum Expr {
        Text(String),
        Number(i64),
        Call(String, Vec<Expr>),
        Member(Box<Expr>, String),
        Index(Box<Expr>, Box<Expr>),
    }

    impl Expr {
        /// `visit(name, args)` for every function call in the expression.
        pub fn each_call(&self, visit: &mut impl FnMut(&str, &[Expr])) {
            match self {
                Expr::Text(_) | Expr::Number(_) => {}
                Expr::Call(name, args) => {
                    visit(name, args);
                    args.iter().for_each(|arg| arg.each_call(visit));
                }
                Expr::Member(inner, _) => inner.each_call(visit),
                Expr::Index(inner, index) => {
                    inner.each_call(visit);
                    index.each_call(visit);
                }
            }
        }
    }

    /// The expression a template string holds: `[...]`, but not the escaped `[[...`.
    pub fn expression(text: &str) -> Option<Expr> {
        let inner = text.strip_prefix('[')?.strip_suffix(']')?;
        if inner.starts_with('[') {
            return None;
        }
        let mut parser = Parser { text: inner, at: 0 };
        let expr = parser.expr();
        parser.space();
        assert_eq!(parser.at, inner.len(), "trailing text in expression {text}");
        Some(expr)
    }

    /// `visit` every expression anywhere in `value`.
    pub fn each_expression(value: &Value, visit: &mut impl FnMut(&Expr)) {
        match value {
            Value::String(text) => {
                if let Some(expr) = expression(text) {
                    visit(&expr);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| each_expression(item, visit)),
            Value::Object(fields) => fields
                .values()
                .for_each(|item| each_expression(item, visit)),
            _ => {}
        }
    }

    struct Parser<'a> {
        text: &'a str,
        at: usize,
    }

    impl Parser<'_> {
        fn space(&mut self) {
            while self.text[self.at..].starts_with(' ') {
                self.at += 1;
            }
        }

        fn eat(&mut self, token: char) -> bool {
            self.space();
            let found = self.text[self.at..].starts_with(token);
            if found {
                self.at += 1;
            }
            found
        }

        fn expect(&mut self, token: char) {
            assert!(
                self.eat(token),
                "expected {token:?} at {} in {}",
                self.at,
                self.text
            );
        }

        fn word(&mut self) -> &str {
            self.space();
            let start = self.at;
            let rest = &self.text[start..];
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            self.at += len;
            &self.text[start..start + len]
        }

        fn expr(&mut self) -> Expr {
            self.space();
            let mut expr = if self.eat('\'') {
                let mut text = String::new();
                loop {
                    let rest = &self.text[self.at..];
                    let quote = rest.find('\'').expect("closing quote");
                    text.push_str(&rest[..quote]);
                    self.at += quote + 1;
                    if self.text[self.at..].starts_with('\'') {
                        text.push('\'');
                        self.at += 1;
                    } else {
                        break Expr::Text(text);
                    }
                }
            } else {
                let word = self.word().to_owned();
                assert!(
                    !word.is_empty(),
                    "expected a value at {} in {}",
                    self.at,
                    self.text
                );
                if let Ok(number) = word.parse() {
                    Expr::Number(number)
                } else {
                    self.expect('(');
                    let mut args = Vec::new();
                    if !self.eat(')') {
                        loop {
                            args.push(self.expr());
                            if self.eat(')') {
                                break;
                            }
                            self.expect(',');
                        }
                    }
                    Expr::Call(word, args)
                }
            };
            loop {
                if self.eat('.') {
                    let member = self.word().to_owned();
                    expr = Expr::Member(Box::new(expr), member);
                } else if self.eat('[') {
                    let index = self.expr();
                    self.expect(']');
                    expr = Expr::Index(Box::new(expr), Box::new(index));
                } else {
                    return expr;
                }
            }
        }
    }

    /// Evaluates expressions against the template's defaults, with fixed stand-ins for
    /// what Azure would supply at deployment (`uniqueString` gives 13 lower-case letters
    /// and digits, as it does in Azure).
    pub struct Env<'a> {
        template: &'a Value,
    }

    impl<'a> Env<'a> {
        pub fn new(template: &'a Value) -> Env<'a> {
            Env { template }
        }

        /// A template value as text: literal, or an expression that evaluates to text.
        pub fn string(&self, value: &Value) -> Option<String> {
            match self.value(value)? {
                Value::String(text) => Some(text),
                _ => None,
            }
        }

        fn value(&self, value: &Value) -> Option<Value> {
            match value {
                Value::String(text) => match expression(text) {
                    Some(expr) => self.eval(&expr),
                    None => Some(Value::String(
                        text.strip_prefix("[[")
                            .map_or(text.clone(), |rest| format!("[{rest}")),
                    )),
                },
                other => Some(other.clone()),
            }
        }

        /// The value of the secret a `VaultName=…;SecretName=…)` reference names, as the
        /// template writes it.
        pub fn key_vault_secret(&self, reference: &str) -> String {
            let fields = reference.strip_suffix(')').expect("reference ends with )");
            let field = |key: &str| {
                fields
                    .split(';')
                    .find_map(|part| part.strip_prefix(&format!("{key}=")))
                    .unwrap_or_else(|| panic!("no {key} in the Key Vault reference"))
                    .to_owned()
            };
            let name = format!("{}/{}", field("VaultName"), field("SecretName"));
            let secret = self.template["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .find(|resource| {
                    resource["type"] == "Microsoft.KeyVault/vaults/secrets"
                        && self.string(&resource["name"]).as_deref() == Some(name.as_str())
                })
                .unwrap_or_else(|| panic!("the template writes no secret {name}"));
            self.string(&secret["properties"]["value"])
                .expect("the secret's value evaluates")
        }

        fn eval(&self, expr: &Expr) -> Option<Value> {
            match expr {
                Expr::Text(text) => Some(Value::String(text.clone())),
                Expr::Number(number) => Some(json!(number)),
                Expr::Member(inner, member) => self.eval(inner)?.get(member).cloned(),
                Expr::Index(inner, index) => {
                    let inner = self.eval(inner)?;
                    match self.eval(index)? {
                        Value::Number(n) => inner.get(usize::try_from(n.as_u64()?).ok()?).cloned(),
                        Value::String(key) => inner.get(key).cloned(),
                        _ => None,
                    }
                }
                Expr::Call(name, args) => self.call(name, args),
            }
        }

        pub fn eval_text(&self, expr: &Expr) -> Option<String> {
            self.text(expr)
        }

        fn text(&self, expr: &Expr) -> Option<String> {
            match self.eval(expr)? {
                Value::String(text) => Some(text),
                Value::Number(number) => Some(number.to_string()),
                Value::Bool(flag) => Some(flag.to_string()),
                _ => None,
            }
        }

        fn call(&self, name: &str, args: &[Expr]) -> Option<Value> {
            let texts = || {
                args.iter()
                    .map(|arg| self.text(arg))
                    .collect::<Option<Vec<_>>>()
            };
            Some(match name {
                "parameters" => {
                    let parameter = &self.template["parameters"][self.text(&args[0])?];
                    self.value(&parameter["defaultValue"])?
                }
                "variables" => self.value(&self.template["variables"][self.text(&args[0])?])?,
                "format" => {
                    let texts = texts()?;
                    let mut out = texts[0].clone();
                    for (i, arg) in texts[1..].iter().enumerate() {
                        out = out.replace(&format!("{{{i}}}"), arg);
                    }
                    Value::String(out)
                }
                "concat" => Value::String(texts()?.concat()),
                "toLower" => Value::String(texts()?[0].to_lowercase()),
                "uniqueString" => {
                    texts()?;
                    Value::String("u7k2m9q4x1c3z".to_owned())
                }
                "newGuid" => Value::String("3f2b8c1e-5d4a-4e6f-9a7b-0c1d2e3f4a5b".to_owned()),
                "resourceGroup" => json!({
                    "id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/lake-rg",
                    "name": "lake-rg",
                    "location": "westeurope"
                }),
                "environment" => json!({"suffixes": {"storage": "core.windows.net"}}),
                "resourceId" => {
                    let texts = texts()?;
                    let mut kinds = texts[0].split('/');
                    let mut id = format!(
                        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/lake-rg/providers/{}",
                        kinds.next()?
                    );
                    for (kind, name) in kinds.zip(&texts[1..]) {
                        id.push_str(&format!("/{kind}/{name}"));
                    }
                    Value::String(id)
                }
                "subscriptionResourceId" => {
                    let texts = texts()?;
                    Value::String(format!(
                        "/subscriptions/00000000-0000-0000-0000-000000000000/providers/{}/{}",
                        texts[0],
                        texts[1..].join("/")
                    ))
                }
                _ => return None,
            })
        }
    }
}
