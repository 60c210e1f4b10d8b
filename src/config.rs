//! Plugin configuration: parsed from JSON, then validated and compiled into [`Config`].

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

pub const DEFAULT_CLUSTER: &str = "kubernetes";
pub const DEFAULT_AUTHORITY: &str = "kubernetes.default.svc";
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_REFRESH_INTERVAL_S: u64 = 60;
pub const DEFAULT_MAX_STALE_S: u64 = 86_400;

const TIMEOUT_MS: (u64, u64) = (1, 60_000);
const REFRESH_INTERVAL_S: (u64, u64) = (5, 86_400);
const MAX_STALE_S: (u64, u64) = (1, 31_536_000);

/// Puts one key's JSON value into its field of [`RawConfig`]; gets the key to name it in errors.
type Setter = fn(&mut RawConfig, &'static str, Value) -> Result<(), ConfigError>;

/// Every key of the plugin configuration, in the order the docs list them, with its field. The
/// parser and the unknown-key message both read this one table, so they cannot drift apart.
const FIELDS: [(&str, Setter); 8] = [
    ("cluster", |r, k, v| field(k, v).map(|x| r.cluster = x)),
    ("authority", |r, k, v| field(k, v).map(|x| r.authority = x)),
    ("hosts", |r, k, v| field(k, v).map(|x| r.hosts = x)),
    ("token_env", |r, k, v| field(k, v).map(|x| r.token_env = x)),
    ("timeout_ms", |r, k, v| {
        field(k, v).map(|x| r.timeout_ms = x)
    }),
    ("jwks_uri", |r, k, v| field(k, v).map(|x| r.jwks_uri = x)),
    ("refresh_interval_s", |r, k, v| {
        field(k, v).map(|x| r.refresh_interval_s = x)
    }),
    ("max_stale_s", |r, k, v| {
        field(k, v).map(|x| r.max_stale_s = x)
    }),
];

/// The keys of the plugin configuration, in the order the docs list them.
pub fn keys() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().map(|(key, _)| *key)
}

/// The configuration as written by the operator. Every field is optional; unknown keys are errors.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub cluster: Option<String>,
    pub authority: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub token_env: Option<String>,
    pub timeout_ms: Option<u64>,
    pub jwks_uri: Option<String>,
    pub refresh_interval_s: Option<u64>,
    pub max_stale_s: Option<u64>,
}

/// The service-account token, and the VM environment variable it came from. Its `Debug` never
/// shows the value, so it cannot reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    var: String,
    value: String,
}

impl Token {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.value)
    }

    /// The variable named by `token_env` (a name, not a secret).
    pub fn var(&self) -> &str {
        &self.var
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<redacted> from {:?})", self.var)
    }
}

/// The validated configuration the filter runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub cluster: String,
    pub authority: String,
    /// Lower-case host names without port; empty means every host.
    pub hosts: Vec<String>,
    pub token: Option<Token>,
    pub timeout: Duration,
    pub jwks_uri: Option<String>,
    pub refresh_interval: Duration,
    pub max_stale: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: DEFAULT_CLUSTER.to_string(),
            authority: DEFAULT_AUTHORITY.to_string(),
            hosts: Vec::new(),
            token: None,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            jwks_uri: None,
            refresh_interval: Duration::from_secs(DEFAULT_REFRESH_INTERVAL_S),
            max_stale: Duration::from_secs(DEFAULT_MAX_STALE_S),
        }
    }
}

/// A configuration error; each names the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Not JSON, or not a JSON object.
    Syntax(String),
    UnknownKey(String),
    /// A value of the wrong JSON type; serde's message says what was expected.
    Type {
        key: &'static str,
        why: String,
    },
    Empty(&'static str),
    OutOfRange {
        key: &'static str,
        min: u64,
        max: u64,
        got: u64,
    },
    Invalid {
        key: &'static str,
        why: &'static str,
    },
    /// `token_env` names a variable that is unset or blank in the VM environment.
    TokenMissing(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax(msg) => {
                write!(f, "invalid configuration: not a JSON object: {msg}")
            }
            ConfigError::UnknownKey(key) => write!(
                f,
                "invalid configuration: unknown key {key:?}, expected one of {}",
                keys().collect::<Vec<_>>().join(", ")
            ),
            ConfigError::Type { key, why } => write!(f, "invalid configuration: `{key}`: {why}"),
            ConfigError::Empty(key) => write!(f, "invalid configuration: `{key}` must not be empty"),
            ConfigError::OutOfRange { key, min, max, got } => write!(
                f,
                "invalid configuration: `{key}` must be in {min}..={max}, got {got}"
            ),
            ConfigError::Invalid { key, why } => {
                write!(f, "invalid configuration: `{key}` {why}")
            }
            ConfigError::TokenMissing(var) => write!(
                f,
                "invalid configuration: `token_env` names the VM environment variable {var:?}, which is unset or empty"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl RawConfig {
    /// Parses the plugin configuration. An empty configuration means all defaults.
    pub fn parse(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(RawConfig::default());
        }
        // Parsed as a map first, then key by key, so that every type error names its key
        // (serde's own messages give only a line and column).
        let map: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let mut raw = RawConfig::default();
        for (key, value) in map {
            let Some((name, set)) = FIELDS.iter().find(|(name, _)| *name == key) else {
                return Err(ConfigError::UnknownKey(key));
            };
            set(&mut raw, name, value)?;
        }
        Ok(raw)
    }

    /// Validates every field and resolves the token through `env` (the VM environment).
    pub fn compile(self, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let cluster = non_empty("cluster", self.cluster, DEFAULT_CLUSTER)?;
        let authority = non_empty("authority", self.authority, DEFAULT_AUTHORITY)?;
        if authority.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(ConfigError::Invalid {
                key: "authority",
                why: "must be a host name, optionally with a port",
            });
        }
        let hosts = self
            .hosts
            .unwrap_or_default()
            .iter()
            .map(|h| compile_host(h))
            .collect::<Result<Vec<_>, _>>()?;
        let token = match self.token_env {
            None => None,
            Some(var) if var.trim().is_empty() => return Err(ConfigError::Empty("token_env")),
            Some(var) => {
                let value = env(&var).map(|v| v.trim().to_string()).unwrap_or_default();
                if value.is_empty() {
                    return Err(ConfigError::TokenMissing(var));
                }
                if value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                    return Err(ConfigError::Invalid {
                        key: "token_env",
                        why: "names a variable whose value is not a valid bearer token",
                    });
                }
                Some(Token { var, value })
            }
        };
        let jwks_uri = match self.jwks_uri {
            None => None,
            Some(uri) => Some(compile_jwks_uri(uri)?),
        };
        Ok(Config {
            cluster,
            authority,
            hosts,
            token,
            timeout: Duration::from_millis(in_range(
                "timeout_ms",
                self.timeout_ms,
                DEFAULT_TIMEOUT_MS,
                TIMEOUT_MS,
            )?),
            jwks_uri,
            refresh_interval: Duration::from_secs(in_range(
                "refresh_interval_s",
                self.refresh_interval_s,
                DEFAULT_REFRESH_INTERVAL_S,
                REFRESH_INTERVAL_S,
            )?),
            max_stale: Duration::from_secs(in_range(
                "max_stale_s",
                self.max_stale_s,
                DEFAULT_MAX_STALE_S,
                MAX_STALE_S,
            )?),
        })
    }
}

impl Config {
    /// Parses and compiles in one step.
    pub fn from_json(
        bytes: &[u8],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        RawConfig::parse(bytes)?.compile(env)
    }
}

/// One value; `null` means absent, as if the key were not there.
fn field<T: DeserializeOwned>(key: &'static str, v: Value) -> Result<Option<T>, ConfigError> {
    serde_json::from_value(v).map_err(|e| ConfigError::Type {
        key,
        why: e.to_string(),
    })
}

fn non_empty(key: &'static str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    match v {
        None => Ok(default.to_string()),
        Some(s) if s.trim().is_empty() => Err(ConfigError::Empty(key)),
        Some(s) => Ok(s),
    }
}

fn in_range(
    key: &'static str,
    v: Option<u64>,
    default: u64,
    (min, max): (u64, u64),
) -> Result<u64, ConfigError> {
    let got = v.unwrap_or(default);
    if (min..=max).contains(&got) {
        Ok(got)
    } else {
        Err(ConfigError::OutOfRange { key, min, max, got })
    }
}

/// Host names are compared lower-case and without port, like the request's `:authority`.
fn compile_host(host: &str) -> Result<String, ConfigError> {
    let h = crate::classify::strip_port(host.trim()).to_ascii_lowercase();
    let valid = !h.is_empty()
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    if valid {
        Ok(h)
    } else {
        Err(ConfigError::Invalid {
            key: "hosts",
            why: "entries must be non-empty host names",
        })
    }
}

fn compile_jwks_uri(uri: String) -> Result<String, ConfigError> {
    let rest = uri.strip_prefix("https://").ok_or(ConfigError::Invalid {
        key: "jwks_uri",
        why: "must be an https:// URL",
    })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || uri.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(ConfigError::Invalid {
            key: "jwks_uri",
            why: "must be an https:// URL with a host",
        });
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn err(json: &str) -> String {
        Config::from_json(json.as_bytes(), no_env)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn empty_configuration_means_defaults() {
        for json in ["", "  \n", "{}"] {
            assert_eq!(
                Config::from_json(json.as_bytes(), no_env).unwrap(),
                Config::default()
            );
        }
        let d = Config::default();
        assert_eq!(d.cluster, "kubernetes");
        assert_eq!(d.authority, "kubernetes.default.svc");
        assert_eq!(d.timeout, Duration::from_millis(5000));
        assert_eq!(d.refresh_interval, Duration::from_secs(60));
        assert_eq!(d.max_stale, Duration::from_secs(86400));
        assert!(d.hosts.is_empty() && d.token.is_none() && d.jwks_uri.is_none());
    }

    #[test]
    fn full_configuration_compiles() {
        let json = r#"{"cluster":"outbound|443||kubernetes.default.svc.cluster.local",
            "authority":"kubernetes.default.svc","hosts":["OIDC.Example.com:443","b.example"],
            "token_env":"TOK","timeout_ms":1500,"jwks_uri":"https://oidc.example.com/openid/v1/jwks",
            "refresh_interval_s":5,"max_stale_s":10}"#;
        let cfg = Config::from_json(json.as_bytes(), |k| {
            (k == "TOK").then(|| " abc.def \n".to_string())
        })
        .unwrap();
        assert_eq!(
            cfg.cluster,
            "outbound|443||kubernetes.default.svc.cluster.local"
        );
        assert_eq!(cfg.hosts, vec!["oidc.example.com", "b.example"]);
        assert_eq!(cfg.token.as_ref().unwrap().bearer(), "Bearer abc.def");
        assert_eq!(cfg.timeout, Duration::from_millis(1500));
        assert_eq!(cfg.refresh_interval, Duration::from_secs(5));
        assert_eq!(cfg.max_stale, Duration::from_secs(10));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        assert!(err(r#"{"clusterr":"x"}"#).contains(r#"unknown key "clusterr""#));
        assert_eq!(
            err(r#"{"timeout_ms":"5"}"#),
            r#"invalid configuration: `timeout_ms`: invalid type: string "5", expected u64"#
        );
        assert!(err(r#"{"hosts":"a"}"#).starts_with("invalid configuration: `hosts`: invalid type"));
        assert!(err(r#"{"hosts":["a",1]}"#).starts_with("invalid configuration: `hosts`:"));
        assert!(err(r#"{"refresh_interval_s":1.5}"#).contains("`refresh_interval_s`: invalid type"));
        assert!(err(r#"{"max_stale_s":-1}"#).contains("`max_stale_s`: invalid value"));
        assert!(err(r#"{"token_env":true}"#).contains("`token_env`: invalid type"));
        assert!(err("[1]").contains("not a JSON object"));
        // null is the same as leaving the key out
        let raw = RawConfig::parse(br#"{"cluster":null,"timeout_ms":null}"#).unwrap();
        assert!(raw.cluster.is_none() && raw.timeout_ms.is_none());
        assert!(err("not json").contains("not a JSON object"));
    }

    #[test]
    fn every_key_sets_its_own_field_and_every_field_has_a_key() {
        // RawConfig's Debug form names every field; each must be a key, and each key must fill
        // exactly the field of its name (a key wired to the wrong field fails here).
        let fields = format!("{:?}", RawConfig::default());
        let mut names: Vec<&str> = fields
            .split(['{', ','])
            .filter_map(|part| part.split_once(": None").map(|(name, _)| name.trim()))
            .collect();
        let mut listed: Vec<&str> = keys().collect();
        names.sort_unstable();
        listed.sort_unstable();
        assert_eq!(names, listed);
        let sample = |key: &str| match key {
            "hosts" => r#"["a.example"]"#,
            "timeout_ms" | "refresh_interval_s" | "max_stale_s" => "7",
            _ => r#""x""#,
        };
        for key in keys() {
            let raw = RawConfig::parse(format!(r#"{{"{key}":{}}}"#, sample(key)).as_bytes());
            let debug = format!("{:?}", raw.unwrap());
            assert_eq!(debug.matches("Some(").count(), 1, "{key}: {debug}");
            assert!(debug.contains(&format!("{key}: Some(")), "{key}: {debug}");
        }
    }

    #[test]
    fn ranges_are_enforced() {
        assert!(err(r#"{"timeout_ms":0}"#).contains("`timeout_ms` must be in 1..=60000, got 0"));
        assert!(err(r#"{"timeout_ms":60001}"#).contains("timeout_ms"));
        assert!(err(r#"{"timeout_ms":-1}"#).contains("invalid"));
        assert!(err(r#"{"refresh_interval_s":4}"#).contains("refresh_interval_s"));
        assert!(err(r#"{"refresh_interval_s":86401}"#).contains("refresh_interval_s"));
        assert!(err(r#"{"max_stale_s":0}"#).contains("max_stale_s"));
        assert!(Config::from_json(
            br#"{"timeout_ms":60000,"refresh_interval_s":86400}"#,
            no_env
        )
        .is_ok());
    }

    #[test]
    fn token_env_must_name_a_set_variable_and_never_shows_the_token() {
        assert!(err(r#"{"token_env":"NOPE"}"#).contains("`token_env`"));
        assert!(err(r#"{"token_env":""}"#).contains("`token_env`"));
        let blank = Config::from_json(br#"{"token_env":"T"}"#, |_| Some("  \n".into()));
        assert!(matches!(blank, Err(ConfigError::TokenMissing(v)) if v == "T"));
        let cfg = Config::from_json(br#"{"token_env":"T"}"#, |_| Some("s3cr3t".into())).unwrap();
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        assert!(format!("{cfg:?}").contains(r#"Token(<redacted> from "T")"#));
        assert_eq!(cfg.token.as_ref().map(Token::var), Some("T"));
        let bad = Config::from_json(br#"{"token_env":"T"}"#, |_| Some("a b".into()));
        assert!(bad.unwrap_err().to_string().contains("token_env"));
    }

    #[test]
    fn strings_are_checked() {
        assert!(err(r#"{"cluster":""}"#).contains("`cluster`"));
        assert!(err(r#"{"authority":" "}"#).contains("`authority`"));
        assert!(err(r#"{"authority":"a/b"}"#).contains("`authority`"));
        assert!(err(r#"{"hosts":[""]}"#).contains("`hosts`"));
        assert!(err(r#"{"hosts":["a b"]}"#).contains("`hosts`"));
        assert!(err(r#"{"jwks_uri":"http://x/jwks"}"#).contains("`jwks_uri`"));
        assert!(err(r#"{"jwks_uri":"https:///jwks"}"#).contains("`jwks_uri`"));
    }
}
