//! Plugin configuration: parsed from JSON into [`RawConfig`], then validated and compiled into
//! [`Config`].
//!
//! Two forms. The single-issuer form: top-level `cluster`, `hosts`, ... for one API server whose
//! documents are served at the root paths of `hosts`. The `issuers` form: one entry per API
//! server, each served on the host and under the path of its issuer URL. `timeout_ms`,
//! `refresh_interval_s` and `max_stale_s` are global in both. Every error names its key, in the
//! `issuers` form with its entry: `issuers[2].cluster`.

use crate::classify::{strip_port, IssuerId, Scope};
use crate::issuer_url::{self, IssuerUrl};
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};
use std::fmt;
use std::time::Duration;

pub const DEFAULT_CLUSTER: &str = "kubernetes";
pub const DEFAULT_AUTHORITY: &str = "kubernetes.default.svc";
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_REFRESH_INTERVAL_S: u64 = 60;
pub const DEFAULT_MAX_STALE_S: u64 = 86_400;
/// Most entries of `issuers`: each one costs a few dozen metrics and two fetches per interval.
pub const MAX_ISSUERS: usize = 64;
/// Longest `name` of an `issuers` entry (it is part of every metric name of the entry).
pub const MAX_NAME_LEN: usize = 32;

/// The bounds of the integer keys, inclusive.
pub const TIMEOUT_MS: (u64, u64) = (1, 60_000);
pub const REFRESH_INTERVAL_S: (u64, u64) = (5, 86_400);
pub const MAX_STALE_S: (u64, u64) = (1, 31_536_000);

/// Where a key may stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The top level of the single-issuer form only (`hosts`).
    Single,
    /// The top level of the single-issuer form, or an `issuers` entry.
    SingleOrEntry,
    /// An `issuers` entry only (`name`).
    Entry,
    /// The top level of either form (`issuers` itself, and the global keys).
    Top,
}

impl Place {
    const fn at_top(self) -> bool {
        !matches!(self, Place::Entry)
    }

    const fn in_entry(self) -> bool {
        matches!(self, Place::SingleOrEntry | Place::Entry)
    }

    /// A key of the single-issuer form, which cannot stand next to `issuers`.
    const fn single_form(self) -> bool {
        matches!(self, Place::Single | Place::SingleOrEntry)
    }
}

/// Puts one key's JSON value into its field of a raw record; gets the key to name it in errors.
type Setter = fn(&mut RawConfig, Key, Value) -> Result<(), ConfigError>;

/// Every key, in the order the docs list them, with where it may stand and the field it fills.
/// The parser, the unknown-key messages and the `issuers` form's exclusions all read this one
/// table, so they cannot drift apart.
const KEYS: [(&str, Place, Setter); 11] = [
    ("name", Place::Entry, |r, k, v| {
        field(k, v).map(|x| r.name = x)
    }),
    ("issuer", Place::SingleOrEntry, |r, k, v| {
        field(k, v).map(|x| r.issuer = x)
    }),
    ("cluster", Place::SingleOrEntry, |r, k, v| {
        field(k, v).map(|x| r.cluster = x)
    }),
    ("authority", Place::SingleOrEntry, |r, k, v| {
        field(k, v).map(|x| r.authority = x)
    }),
    ("hosts", Place::Single, |r, k, v| {
        field(k, v).map(|x| r.hosts = x)
    }),
    ("token_env", Place::SingleOrEntry, |r, k, v| {
        field(k, v).map(|x| r.token_env = x)
    }),
    ("jwks_uri", Place::SingleOrEntry, |r, k, v| {
        field(k, v).map(|x| r.jwks_uri = x)
    }),
    ("issuers", Place::Top, |r, k, v| {
        entries(k, v).map(|x| r.issuers = x)
    }),
    ("timeout_ms", Place::Top, |r, k, v| {
        field(k, v).map(|x| r.timeout_ms = x)
    }),
    ("refresh_interval_s", Place::Top, |r, k, v| {
        field(k, v).map(|x| r.refresh_interval_s = x)
    }),
    ("max_stale_s", Place::Top, |r, k, v| {
        field(k, v).map(|x| r.max_stale_s = x)
    }),
];

/// The keys that may stand in an `issuers` entry (`entry`), or at the top level, with their
/// positions in [`KEYS`].
fn keys_of(entry: bool) -> impl Iterator<Item = (usize, &'static (&'static str, Place, Setter))> {
    KEYS.iter().enumerate().filter(move |(_, (_, place, _))| {
        if entry {
            place.in_entry()
        } else {
            place.at_top()
        }
    })
}

/// The top-level keys, in the order the docs list them.
pub fn keys() -> impl Iterator<Item = &'static str> {
    keys_of(false).map(|(_, (key, _, _))| *key)
}

/// The keys of an `issuers` entry, in the order the docs list them.
pub fn entry_keys() -> impl Iterator<Item = &'static str> {
    keys_of(true).map(|(_, (key, _, _))| *key)
}

/// A key as errors name it: `cluster` at the top level, `issuers[2].cluster` in an entry
/// (counted from 0, as JSON tools do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub entry: Option<usize>,
    pub name: &'static str,
}

impl Key {
    pub const fn top(name: &'static str) -> Key {
        Key { entry: None, name }
    }

    pub const fn of(entry: usize, name: &'static str) -> Key {
        Key {
            entry: Some(entry),
            name,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            Some(i) => write!(f, "issuers[{i}].{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// One JSON object of the configuration as written by the operator: the top level, or an entry
/// of `issuers` (which holds only the keys an entry may have, [`entry_keys`]). Every field is
/// optional; unknown keys are errors. Numbers stay as written until compiled.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub cluster: Option<String>,
    pub authority: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub token_env: Option<String>,
    pub jwks_uri: Option<String>,
    pub issuers: Option<Vec<RawConfig>>,
    pub timeout_ms: Option<Number>,
    pub refresh_interval_s: Option<Number>,
    pub max_stale_s: Option<Number>,
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
    /// One entry in the single-issuer form; the `issuers` entries, in order, otherwise.
    pub issuers: Vec<IssuerConfig>,
    pub timeout: Duration,
    pub refresh_interval: Duration,
    pub max_stale: Duration,
}

/// One API server and where its documents are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The entry's name, in its metric names and log lines; None in the single-issuer form.
    pub name: Option<String>,
    /// The issuer URL: a fetched discovery document must name exactly this `issuer`. None (the
    /// single-issuer form without `issuer`): not checked.
    pub url: Option<String>,
    /// Where its documents are served.
    pub scope: Scope,
    pub cluster: String,
    pub authority: String,
    pub token: Option<Token>,
    /// The `jwks_uri` of the served discovery document; None: the API server's own.
    pub jwks_uri: Option<String>,
}

impl Default for IssuerConfig {
    /// The single-issuer form's defaults.
    fn default() -> Self {
        IssuerConfig {
            name: None,
            url: None,
            scope: Scope::default(),
            cluster: DEFAULT_CLUSTER.to_string(),
            authority: DEFAULT_AUTHORITY.to_string(),
            token: None,
            jwks_uri: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            issuers: vec![IssuerConfig::default()],
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
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
    /// `entry`: the `issuers` entry it is in; None at the top level.
    UnknownKey {
        entry: Option<usize>,
        key: String,
    },
    /// A value of the wrong JSON type; serde's message says what was expected.
    Type {
        key: Key,
        why: String,
    },
    Missing(Key),
    Empty(Key),
    /// An integer key whose value is not an integer in `min..=max` (fractional, negative or
    /// out of range), as written.
    OutOfRange {
        key: Key,
        min: u64,
        max: u64,
        got: Number,
    },
    Invalid {
        key: Key,
        why: &'static str,
    },
    /// An `issuers` entry's `name` that is not 1 to [`MAX_NAME_LEN`] of a-z, 0-9, `_` and `-`.
    Name(Key),
    /// A single-issuer key next to `issuers`.
    NotWithIssuers(&'static str),
    /// `issuers` with no entry, or more than [`MAX_ISSUERS`].
    IssuerCount(usize),
    /// An entry that cannot stand next to an earlier one, `other`.
    Conflict {
        key: Key,
        other: usize,
        why: &'static str,
    },
    /// `token_env` names a variable that is unset or blank in the VM environment.
    TokenMissing {
        key: Key,
        var: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        match self {
            ConfigError::Syntax(msg) => write!(f, "not a JSON object: {msg}"),
            ConfigError::UnknownKey { entry: None, key } => write!(
                f,
                "unknown key {key:?}, expected one of {}",
                keys().collect::<Vec<_>>().join(", ")
            ),
            ConfigError::UnknownKey {
                entry: Some(i),
                key,
            } => write!(
                f,
                "unknown key {key:?} in issuers[{i}], expected one of {}",
                entry_keys().collect::<Vec<_>>().join(", ")
            ),
            ConfigError::Type { key, why } => write!(f, "`{key}`: {why}"),
            ConfigError::Missing(key) => write!(f, "`{key}` is required"),
            ConfigError::Empty(key) => write!(f, "`{key}` must not be empty"),
            ConfigError::OutOfRange { key, min, max, got } => {
                write!(f, "`{key}` must be an integer in {min}..={max}, got ")?;
                // core's formatting: serde_json's own would add two number formatters to the
                // filter
                match (got.as_u64(), got.as_i64(), got.as_f64()) {
                    (Some(n), _, _) => write!(f, "{n}"),
                    (_, Some(n), _) => write!(f, "{n}"),
                    (_, _, n) => write!(f, "{}", n.unwrap_or_default()),
                }
            }
            ConfigError::Invalid { key, why } => write!(f, "`{key}` {why}"),
            ConfigError::Name(key) => write!(
                f,
                "`{key}` must be 1 to {MAX_NAME_LEN} of a-z, 0-9, `_` and `-`"
            ),
            ConfigError::NotWithIssuers(key) => write!(
                f,
                "`{key}` cannot be used with `issuers`: each entry has its own (and its hosts come from its issuer URL)"
            ),
            ConfigError::IssuerCount(got) => write!(
                f,
                "`issuers` must have 1 to {MAX_ISSUERS} entries, got {got}"
            ),
            ConfigError::Conflict { key, other, why } => {
                write!(f, "`{key}` {why} issuers[{other}]")
            }
            ConfigError::TokenMissing { key, var } => write!(
                f,
                "`{key}` names the VM environment variable {var:?}, which is unset or empty"
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
        let map: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        record(map, None)
    }

    /// Validates every field and resolves the tokens through `env` (the VM environment).
    pub fn compile(mut self, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let (timeout_ms, refresh_interval_s, max_stale_s) = (
            self.timeout_ms.take(),
            self.refresh_interval_s.take(),
            self.max_stale_s.take(),
        );
        let issuers = match self.issuers.take() {
            None => vec![self.compile_issuer(None, &env)?],
            Some(entries) => compile_issuers(entries, &env)?,
        };
        Ok(Config {
            issuers,
            timeout: Duration::from_millis(integer(
                Key::top("timeout_ms"),
                timeout_ms,
                DEFAULT_TIMEOUT_MS,
                TIMEOUT_MS,
            )?),
            refresh_interval: Duration::from_secs(integer(
                Key::top("refresh_interval_s"),
                refresh_interval_s,
                DEFAULT_REFRESH_INTERVAL_S,
                REFRESH_INTERVAL_S,
            )?),
            max_stale: Duration::from_secs(integer(
                Key::top("max_stale_s"),
                max_stale_s,
                DEFAULT_MAX_STALE_S,
                MAX_STALE_S,
            )?),
        })
    }

    /// One API server as either form describes it: the top level of the single-issuer form
    /// (`entry` None), or `issuers[entry]`.
    fn compile_issuer(
        self,
        entry: Option<usize>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<IssuerConfig, ConfigError> {
        let key = |name| Key { entry, name };
        let in_issuers = entry.is_some();
        let name = match (in_issuers, self.name) {
            (false, _) => None,
            (true, None) => return Err(ConfigError::Missing(key("name"))),
            (true, Some(n)) => Some(compile_name(key("name"), n)?),
        };
        let (url, scope) = match (in_issuers, self.issuer) {
            (true, None) => return Err(ConfigError::Missing(key("issuer"))),
            (false, None) => (None, Scope::default()),
            (_, Some(url)) => {
                let parsed = IssuerUrl::parse(&url).map_err(|why| ConfigError::Invalid {
                    key: key("issuer"),
                    why,
                })?;
                let scope = Scope {
                    hosts: vec![parsed.host],
                    prefix: parsed.prefix.to_string(),
                };
                (Some(url), scope)
            }
        };
        // The single-issuer form serves the root paths of `hosts`; `issuer` is only checked.
        let scope = if in_issuers {
            scope
        } else {
            Scope {
                hosts: self
                    .hosts
                    .unwrap_or_default()
                    .iter()
                    .map(|h| compile_host(key("hosts"), h))
                    .collect::<Result<_, _>>()?,
                prefix: String::new(),
            }
        };
        let cluster = match (in_issuers, self.cluster) {
            (true, None) => return Err(ConfigError::Missing(key("cluster"))),
            (_, cluster) => non_empty(key("cluster"), cluster, DEFAULT_CLUSTER)?,
        };
        let authority = non_empty(key("authority"), self.authority, DEFAULT_AUTHORITY)?;
        if authority.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(ConfigError::Invalid {
                key: key("authority"),
                why: "must be a host name, optionally with a port",
            });
        }
        let token = match self.token_env {
            None => None,
            Some(var) => Some(compile_token(key("token_env"), var, env)?),
        };
        let jwks_uri = match (self.jwks_uri, &url) {
            (Some(uri), _) => Some(compile_jwks_uri(key("jwks_uri"), uri)?),
            // where this filter serves the key set, not the API server's private address
            (None, Some(url)) if in_issuers => Some(issuer_url::default_jwks_uri(url)),
            (None, _) => None,
        };
        Ok(IssuerConfig {
            name,
            url,
            scope,
            cluster,
            authority,
            token,
            jwks_uri,
        })
    }
}

impl Config {
    /// The issuer at this position.
    pub fn issuer(&self, id: IssuerId) -> Option<&IssuerConfig> {
        self.issuers.get(id.0)
    }

    /// Parses and compiles in one step.
    pub fn from_json(
        bytes: &[u8],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        RawConfig::parse(bytes)?.compile(env)
    }
}

/// Fills a raw record from a JSON object key by key, so that every type error names its key
/// (serde's own messages give only a line and column).
/// At the top level, a key of the single-issuer form next to `issuers` is an error (the first
/// such key in the table's order is named).
fn record(map: Map<String, Value>, entry: Option<usize>) -> Result<RawConfig, ConfigError> {
    let mut raw = RawConfig::default();
    // the position in KEYS of the first single-form key given a value
    let mut single_form = KEYS.len();
    for (key, value) in map {
        let found = keys_of(entry.is_some()).find(|(_, (name, _, _))| *name == key);
        let Some((i, (name, place, set))) = found else {
            return Err(ConfigError::UnknownKey { entry, key });
        };
        if place.single_form() && !value.is_null() {
            single_form = single_form.min(i);
        }
        set(&mut raw, Key { entry, name }, value)?;
    }
    match KEYS.get(single_form) {
        Some((key, _, _)) if entry.is_none() && raw.issuers.is_some() => {
            Err(ConfigError::NotWithIssuers(key))
        }
        _ => Ok(raw),
    }
}

/// One value; `null` means absent, as if the key were not there.
fn field<T: DeserializeOwned>(key: Key, v: Value) -> Result<Option<T>, ConfigError> {
    serde_json::from_value(v).map_err(|e| ConfigError::Type {
        key,
        why: e.to_string(),
    })
}

/// The `issuers` array, each entry an object of [`entry_keys`].
fn entries(key: Key, v: Value) -> Result<Option<Vec<RawConfig>>, ConfigError> {
    let Some(items) = field::<Vec<Value>>(key, v)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(items.len().min(MAX_ISSUERS + 1));
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(ConfigError::Type {
                key,
                why: format!("issuers[{i}] is not a JSON object"),
            });
        };
        out.push(record(map, Some(i))?);
    }
    Ok(Some(out))
}

fn compile_issuers(
    entries: Vec<RawConfig>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<IssuerConfig>, ConfigError> {
    if !(1..=MAX_ISSUERS).contains(&entries.len()) {
        return Err(ConfigError::IssuerCount(entries.len()));
    }
    let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(entries.len());
    for (i, raw) in entries.into_iter().enumerate() {
        let new = raw.compile_issuer(Some(i), env)?;
        if let Some(e) = conflict(&issuers, i, &new) {
            return Err(e);
        }
        issuers.push(new);
    }
    Ok(issuers)
}

/// The first earlier entry `new` (at position `i`) cannot stand next to: the same name, the
/// same issuer, or the same document paths (same host, any port, same path but for one
/// trailing slash).
fn conflict(earlier: &[IssuerConfig], i: usize, new: &IssuerConfig) -> Option<ConfigError> {
    // Prometheus shows `-` as `_`: `prod-a` and `prod_a` would give the same metric names.
    let metric_name = |n: &Option<String>| n.as_deref().map(|n| n.replace('-', "_"));
    earlier.iter().enumerate().find_map(|(other, old)| {
        let (key, why) = if metric_name(&old.name) == metric_name(&new.name) {
            (
                "name",
                "is the name (`-` and `_` alike, as Prometheus shows them) of",
            )
        } else if old.url == new.url {
            ("issuer", "is the issuer of")
        } else if old.scope == new.scope {
            ("issuer", "has the same document paths as")
        } else {
            return None;
        };
        Some(ConfigError::Conflict {
            key: Key::of(i, key),
            other,
            why,
        })
    })
}

fn compile_name(key: Key, name: String) -> Result<String, ConfigError> {
    let valid = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(name)
    } else {
        Err(ConfigError::Name(key))
    }
}

fn compile_token(
    key: Key,
    var: String,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Token, ConfigError> {
    if var.trim().is_empty() {
        return Err(ConfigError::Empty(key));
    }
    let value = env(&var).map(|v| v.trim().to_string()).unwrap_or_default();
    if value.is_empty() {
        return Err(ConfigError::TokenMissing { key, var });
    }
    if value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(ConfigError::Invalid {
            key,
            why: "names a variable whose value is not a valid bearer token",
        });
    }
    Ok(Token { var, value })
}

fn non_empty(key: Key, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    match v {
        None => Ok(default.to_string()),
        Some(s) if s.trim().is_empty() => Err(ConfigError::Empty(key)),
        Some(s) => Ok(s),
    }
}

/// An integer key: any JSON number that is an exact integer within `min..=max`; `default` when
/// absent. istiod hands a WasmPlugin's `pluginConfig` over as a protobuf Struct, in which every
/// number is a double, so `60` may arrive as `60.0` or `6e1`, and `31536000` as `3.1536e+07`.
fn integer(
    key: Key,
    v: Option<Number>,
    default: u64,
    (min, max): (u64, u64),
) -> Result<u64, ConfigError> {
    let Some(number) = v else {
        return Ok(default);
    };
    // Every bound is far below 2^53, where a double holds each integer exactly.
    let whole = number.as_u64().or_else(|| {
        let f = number.as_f64()?;
        (f.fract() == 0.0 && (0.0..=max as f64).contains(&f)).then_some(f as u64)
    });
    match whole {
        Some(got) if (min..=max).contains(&got) => Ok(got),
        _ => Err(ConfigError::OutOfRange {
            key,
            min,
            max,
            got: number,
        }),
    }
}

/// Host names are compared lower-case and without port, like the request's `:authority`.
fn compile_host(key: Key, host: &str) -> Result<String, ConfigError> {
    let h = strip_port(host.trim()).to_ascii_lowercase();
    let valid = !h.is_empty()
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    if valid {
        Ok(h)
    } else {
        Err(ConfigError::Invalid {
            key,
            why: "entries must be non-empty host names",
        })
    }
}

fn compile_jwks_uri(key: Key, uri: String) -> Result<String, ConfigError> {
    let rest = uri.strip_prefix("https://").ok_or(ConfigError::Invalid {
        key,
        why: "must be an https:// URL",
    })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || uri.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(ConfigError::Invalid {
            key,
            why: "must be an https:// URL with a host",
        });
    }
    Ok(uri)
}

#[cfg(test)]
impl Config {
    /// Refresh every 60 s, stale for 100 s more, a 2 s timeout: the numbers the policy and
    /// shared-data tests reason with.
    pub(crate) fn for_tests() -> Config {
        Config::from_json(
            br#"{"refresh_interval_s":60,"max_stale_s":100,"timeout_ms":2000}"#,
            |_| None,
        )
        .unwrap()
    }
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

    /// The only issuer of a single-issuer configuration.
    fn single(cfg: &Config) -> &IssuerConfig {
        assert_eq!(cfg.issuers.len(), 1);
        &cfg.issuers[0]
    }

    #[test]
    fn empty_configuration_means_defaults() {
        for json in ["", "  \n", "{}", r#"{"issuers":null}"#] {
            assert_eq!(
                Config::from_json(json.as_bytes(), no_env).unwrap(),
                Config::default()
            );
        }
        let d = Config::default();
        let i = single(&d);
        assert_eq!(i.cluster, "kubernetes");
        assert_eq!(i.authority, "kubernetes.default.svc");
        assert_eq!(d.timeout, Duration::from_millis(5000));
        assert_eq!(d.refresh_interval, Duration::from_secs(60));
        assert_eq!(d.max_stale, Duration::from_secs(86400));
        assert!(i.scope.hosts.is_empty() && i.scope.prefix.is_empty());
        assert!(i.token.is_none() && i.jwks_uri.is_none() && i.url.is_none() && i.name.is_none());
    }

    #[test]
    fn full_configuration_compiles() {
        let json = r#"{"cluster":"outbound|443||kubernetes.default.svc.cluster.local",
            "authority":"kubernetes.default.svc","hosts":["OIDC.Example.com:443","b.example"],
            "token_env":"TOK","timeout_ms":1500,"jwks_uri":"https://oidc.example.com/openid/v1/jwks",
            "issuer":"https://kubernetes.default.svc.cluster.local",
            "refresh_interval_s":5,"max_stale_s":10}"#;
        let cfg = Config::from_json(json.as_bytes(), |k| {
            (k == "TOK").then(|| " abc.def \n".to_string())
        })
        .unwrap();
        let i = single(&cfg);
        assert_eq!(
            i.cluster,
            "outbound|443||kubernetes.default.svc.cluster.local"
        );
        assert_eq!(i.scope.hosts, vec!["oidc.example.com", "b.example"]);
        assert_eq!(
            i.scope.prefix, "",
            "the single-issuer form serves the root paths"
        );
        assert_eq!(i.token.as_ref().unwrap().bearer(), "Bearer abc.def");
        assert_eq!(
            i.url.as_deref(),
            Some("https://kubernetes.default.svc.cluster.local")
        );
        assert_eq!(cfg.timeout, Duration::from_millis(1500));
        assert_eq!(cfg.refresh_interval, Duration::from_secs(5));
        assert_eq!(cfg.max_stale, Duration::from_secs(10));
    }

    #[test]
    fn the_single_issuer_form_checks_an_issuer_but_serves_the_root_paths() {
        let cfg = Config::from_json(
            br#"{"hosts":["oidc.example.com"],"issuer":"https://oidc.example.com/clusters/prod"}"#,
            no_env,
        )
        .unwrap();
        let i = single(&cfg);
        assert_eq!(i.scope.prefix, "");
        assert_eq!(i.jwks_uri, None, "no default jwks_uri in this form");
        assert!(err(r#"{"issuer":"http://x"}"#).contains("`issuer` must be an https:// URL"));
        assert!(err(r#"{"issuer":"https://x/?a"}"#).contains("`issuer` must have no query"));
    }

    /// The issue's example.
    const FLEET: &str = r#"{"issuers": [
        {"name": "prod", "issuer": "https://oidc.example.com/clusters/prod",
         "cluster": "outbound|443||api.prod.example.internal", "authority": "api.prod.example.internal",
         "token_env": "KOD_TOKEN_PROD"},
        {"name": "dev", "issuer": "https://oidc.example.com/clusters/dev/", "cluster": "dev-api"},
        {"name": "edge", "issuer": "https://Edge-OIDC.example.com:8443", "cluster": "edge-api",
         "jwks_uri": "https://keys.example.com/edge/jwks"}
       ],
       "timeout_ms": 5000, "refresh_interval_s": 60, "max_stale_s": 86400}"#;

    fn fleet(json: &str) -> Result<Config, ConfigError> {
        Config::from_json(json.as_bytes(), |k| {
            (k == "KOD_TOKEN_PROD").then(|| "prod-token".to_string())
        })
    }

    #[test]
    fn the_issuers_form_compiles_each_entry() {
        let cfg = fleet(FLEET).unwrap();
        let [prod, dev, edge] = &cfg.issuers[..] else {
            panic!("{cfg:?}")
        };
        assert_eq!(prod.name.as_deref(), Some("prod"));
        assert_eq!(
            prod.url.as_deref(),
            Some("https://oidc.example.com/clusters/prod")
        );
        assert_eq!(prod.scope.hosts, ["oidc.example.com"]);
        assert_eq!(prod.scope.prefix, "/clusters/prod");
        assert_eq!(prod.cluster, "outbound|443||api.prod.example.internal");
        assert_eq!(prod.authority, "api.prod.example.internal");
        assert_eq!(prod.token.as_ref().unwrap().bearer(), "Bearer prod-token");
        assert_eq!(
            prod.jwks_uri.as_deref(),
            Some("https://oidc.example.com/clusters/prod/openid/v1/jwks")
        );
        assert_eq!(
            dev.scope.prefix, "/clusters/dev",
            "one trailing slash dropped"
        );
        assert_eq!(
            dev.url.as_deref(),
            Some("https://oidc.example.com/clusters/dev/"),
            "the issuer is checked byte for byte, trailing slash included"
        );
        assert_eq!(
            dev.jwks_uri.as_deref(),
            Some("https://oidc.example.com/clusters/dev/openid/v1/jwks")
        );
        assert_eq!(dev.authority, "kubernetes.default.svc");
        assert!(dev.token.is_none());
        assert_eq!(
            edge.scope.hosts,
            ["edge-oidc.example.com"],
            "lower-case, no port"
        );
        assert_eq!(edge.scope.prefix, "");
        assert_eq!(
            edge.jwks_uri.as_deref(),
            Some("https://keys.example.com/edge/jwks")
        );
        assert_eq!(cfg.refresh_interval, Duration::from_secs(60));
    }

    /// FLEET with entry `i`'s `key` set to `value` (JSON), or removed when `value` is None.
    fn change(i: usize, key: &str, value: Option<&str>) -> String {
        let mut v: Value = serde_json::from_str(FLEET).unwrap();
        let entry = v["issuers"][i].as_object_mut().unwrap();
        match value {
            Some(x) => entry.insert(key.into(), serde_json::from_str(x).unwrap()),
            None => entry.remove(key),
        };
        v.to_string()
    }

    fn fleet_err(json: &str) -> String {
        fleet(json).unwrap_err().to_string()
    }

    #[test]
    fn entry_errors_name_the_entry_and_the_key() {
        let cases = [
            (
                change(2, "cluster", None),
                "`issuers[2].cluster` is required",
            ),
            (
                change(1, "cluster", Some(r#""""#)),
                "`issuers[1].cluster` must not be empty",
            ),
            (change(0, "name", None), "`issuers[0].name` is required"),
            (change(1, "issuer", None), "`issuers[1].issuer` is required"),
            (
                change(1, "name", Some(r#""Dev""#)),
                "`issuers[1].name` must be 1 to 32 of a-z, 0-9, `_` and `-`",
            ),
            (
                change(1, "name", Some(r#""""#)),
                "`issuers[1].name` must be 1 to 32",
            ),
            (
                change(1, "name", Some(&format!("\"{}\"", "a".repeat(33)))),
                "`issuers[1].name` must be",
            ),
            (
                change(1, "name", Some(r#""d.v""#)),
                "`issuers[1].name` must be",
            ),
            (
                change(2, "name", Some("7")),
                "`issuers[2].name`: invalid type: integer `7`",
            ),
            (
                change(
                    1,
                    "issuer",
                    Some(r#""http://oidc.example.com/clusters/dev""#),
                ),
                "`issuers[1].issuer` must be an https:// URL",
            ),
            (
                change(
                    1,
                    "issuer",
                    Some(r#""https://oidc.example.com/clusters/dev?x=1""#),
                ),
                "`issuers[1].issuer` must have no query or fragment",
            ),
            (
                change(
                    1,
                    "issuer",
                    Some(r#""https://oidc.example.com/clusters/dev#x""#),
                ),
                "`issuers[1].issuer` must have no query or fragment",
            ),
            (
                change(1, "issuer", Some(r#""https://oidc.example.com//dev""#)),
                "`issuers[1].issuer` must have no empty",
            ),
            (
                change(2, "jwks_uri", Some(r#""http://keys.example.com/jwks""#)),
                "`issuers[2].jwks_uri` must be an https:// URL",
            ),
            (
                change(1, "authority", Some(r#""a/b""#)),
                "`issuers[1].authority` must be a host name",
            ),
            (
                change(1, "token_env", Some(r#""NOPE""#)),
                r#"`issuers[1].token_env` names the VM environment variable "NOPE", which is unset or empty"#,
            ),
            (
                change(1, "token_env", Some(r#"" ""#)),
                "`issuers[1].token_env` must not be empty",
            ),
            (
                change(1, "hosts", Some(r#"["oidc.example.com"]"#)),
                r#"unknown key "hosts" in issuers[1], expected one of name, issuer, cluster, authority, token_env, jwks_uri"#,
            ),
        ];
        for (json, want) in cases {
            let got = fleet_err(&json);
            assert!(got.starts_with("invalid configuration: "), "{got}");
            assert!(got.contains(want), "want {want:?}, got {got:?}");
        }
        assert!(err(r#"{"issuers":[1]}"#).contains("`issuers`: issuers[0] is not a JSON object"));
        assert!(err(r#"{"issuers":{"name":"a"}}"#).contains("`issuers`: invalid type: map"));
    }

    #[test]
    fn the_issuers_form_excludes_the_single_issuer_keys_but_not_the_global_ones() {
        let single = KEYS.iter().filter(|(_, place, _)| place.single_form());
        let single: Vec<&str> = single.map(|(key, _, _)| *key).collect();
        assert_eq!(
            single,
            [
                "issuer",
                "cluster",
                "authority",
                "hosts",
                "token_env",
                "jwks_uri"
            ]
        );
        for key in single {
            let mut v: Value = serde_json::from_str(FLEET).unwrap();
            let value = if key == "hosts" {
                json_list()
            } else {
                Value::from("https://x")
            };
            v[key] = value;
            let got = fleet_err(&v.to_string());
            assert!(
                got.contains(&format!("`{key}` cannot be used with `issuers`")),
                "{got}"
            );
        }
        assert!(
            fleet(&FLEET.replace("\"timeout_ms\": 5000", "\"timeout_ms\": 0"))
                .unwrap_err()
                .to_string()
                .contains("`timeout_ms` must be an integer in 1..=60000")
        );
    }

    fn json_list() -> Value {
        serde_json::json!(["oidc.example.com"])
    }

    #[test]
    fn the_issuers_form_has_1_to_64_entries() {
        assert!(err(r#"{"issuers":[]}"#).contains("`issuers` must have 1 to 64 entries, got 0"));
        let entry = |i: usize| {
            format!(
                r#"{{"name":"c{i}","issuer":"https://oidc.example.com/c/{i}","cluster":"api{i}"}}"#
            )
        };
        let list = |n: usize| {
            let all: Vec<String> = (0..n).map(entry).collect();
            format!(r#"{{"issuers":[{}]}}"#, all.join(","))
        };
        let cfg = Config::from_json(list(64).as_bytes(), no_env).unwrap();
        assert_eq!(cfg.issuers.len(), 64);
        assert!(err(&list(65)).contains("`issuers` must have 1 to 64 entries, got 65"));
    }

    #[test]
    fn names_issuers_and_document_paths_are_unique() {
        // next to {"name":"prod-a","issuer":PROD}: the second entry's error, or None
        const PROD: &str = "https://oidc.example.com/clusters/prod";
        let second = |name: &str, issuer: &str| {
            let json = format!(
                r#"{{"issuers":[{{"name":"prod-a","issuer":"{PROD}","cluster":"a"}},
                                {{"name":"{name}","issuer":"{issuer}","cluster":"b"}}]}}"#
            );
            Config::from_json(json.as_bytes(), no_env)
                .err()
                .map(|e| e.to_string())
        };
        let same_name = "`issuers[1].name` is the name (`-` and `_` alike, as Prometheus shows them) of issuers[0]";
        let same_paths = "`issuers[1].issuer` has the same document paths as issuers[0]";
        for (name, issuer, want) in [
            ("prod-a", "https://oidc.example.com/x", Some(same_name)),
            ("prod_a", "https://oidc.example.com/x", Some(same_name)),
            (
                "dev",
                PROD,
                Some("`issuers[1].issuer` is the issuer of issuers[0]"),
            ),
            (
                "dev",
                "https://oidc.example.com/clusters/prod/",
                Some(same_paths),
            ),
            (
                "dev",
                "https://OIDC.example.com/clusters/prod",
                Some(same_paths),
            ),
            (
                "dev",
                "https://oidc.example.com:8443/clusters/prod",
                Some(same_paths),
            ),
            ("dev", "https://oidc.example.com/clusters/Prod", None),
            ("dev", "https://oidc.example.com/clusters", None),
            ("dev", "https://oidc.example.com", None),
            ("dev", "https://other.example.com/clusters/prod", None),
        ] {
            let got = second(name, issuer);
            assert_eq!(
                got.as_deref()
                    .map(|e| e.trim_start_matches("invalid configuration: ")),
                want,
                "{name} {issuer}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        assert!(err(r#"{"clusterr":"x"}"#).contains(r#"unknown key "clusterr""#));
        assert_eq!(
            err(r#"{"timeout_ms":"5"}"#),
            r#"invalid configuration: `timeout_ms`: invalid type: string "5", expected a JSON number"#
        );
        assert!(err(r#"{"hosts":"a"}"#).starts_with("invalid configuration: `hosts`: invalid type"));
        assert!(err(r#"{"hosts":["a",1]}"#).starts_with("invalid configuration: `hosts`:"));
        assert!(
            err(r#"{"refresh_interval_s":true}"#).contains("`refresh_interval_s`: invalid type")
        );
        assert!(err(r#"{"token_env":true}"#).contains("`token_env`: invalid type"));
        assert!(err("[1]").contains("not a JSON object"));
        // null is the same as leaving the key out
        let raw = RawConfig::parse(br#"{"cluster":null,"timeout_ms":null}"#).unwrap();
        assert!(raw.cluster.is_none() && raw.timeout_ms.is_none());
        assert!(err("not json").contains("not a JSON object"));
    }

    /// The names of a raw record's fields that its Debug form shows as `None`.
    fn none_fields(debug: &str) -> Vec<&str> {
        let mut names: Vec<&str> = debug
            .split(['{', ','])
            .filter_map(|part| part.split_once(": None").map(|(name, _)| name.trim()))
            .collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn every_key_sets_its_own_field_and_every_field_has_a_key() {
        // The raw record's Debug form names every field; each must be a key, and each key must
        // fill exactly the field of its name (a key wired to the wrong field fails here).
        let sample = |key: &str| match key {
            "hosts" => r#"["a.example"]"#,
            "issuers" => "[]",
            "timeout_ms" | "refresh_interval_s" | "max_stale_s" => "7",
            _ => r#""x""#,
        };
        let mut all: Vec<&str> = KEYS.iter().map(|(key, _, _)| *key).collect();
        all.sort_unstable();
        assert_eq!(none_fields(&format!("{:?}", RawConfig::default())), all);
        for (key, place, _) in KEYS {
            let one = format!(r#"{{"{key}":{}}}"#, sample(key));
            let raw = if place.at_top() {
                RawConfig::parse(one.as_bytes()).unwrap()
            } else {
                let json = format!(r#"{{"issuers":[{one}]}}"#);
                RawConfig::parse(json.as_bytes())
                    .unwrap()
                    .issuers
                    .unwrap()
                    .remove(0)
            };
            let debug = format!("{raw:?}");
            assert_eq!(debug.matches("Some(").count(), 1, "{key}: {debug}");
            assert!(debug.contains(&format!("{key}: Some(")), "{key}: {debug}");
        }
        // and an entry takes only an entry's keys, the top level only the top's
        assert_eq!(
            entry_keys().collect::<Vec<_>>(),
            [
                "name",
                "issuer",
                "cluster",
                "authority",
                "token_env",
                "jwks_uri"
            ]
        );
        assert!(keys().all(|k| k != "name"));
        assert!(err(r#"{"name":"a"}"#).contains(r#"unknown key "name""#));
    }

    #[test]
    fn ranges_are_enforced() {
        assert!(err(r#"{"timeout_ms":0}"#)
            .ends_with("`timeout_ms` must be an integer in 1..=60000, got 0"));
        assert!(err(r#"{"timeout_ms":60001}"#).contains("timeout_ms"));
        assert!(err(r#"{"timeout_ms":-1}"#).ends_with("got -1"));
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
    fn an_integer_may_arrive_as_any_json_number_of_its_value() {
        // istiod hands pluginConfig over as a protobuf Struct: every number is a double
        let cfg = |json: &str| Config::from_json(json.as_bytes(), no_env).unwrap();
        for (timeout, refresh, stale) in [
            ("60", "60", "31536000"),
            ("60.0", "60.0", "31536000.0"),
            ("6e1", "6E1", "3.1536e+07"),
            ("6.0e1", "600e-1", "3.1536E7"),
        ] {
            let c = cfg(&format!(
                r#"{{"timeout_ms":{timeout},"refresh_interval_s":{refresh},"max_stale_s":{stale}}}"#
            ));
            assert_eq!(c.timeout, Duration::from_millis(60), "{timeout}");
            assert_eq!(c.refresh_interval, Duration::from_secs(60), "{refresh}");
            assert_eq!(c.max_stale, Duration::from_secs(31_536_000), "{stale}");
        }
        let bounds = cfg(r#"{"timeout_ms":1.0,"refresh_interval_s":5e0,"max_stale_s":1e0}"#);
        assert_eq!(bounds.timeout, Duration::from_millis(1));
        let json = FLEET.replace("\"timeout_ms\": 5000", "\"timeout_ms\": 5e3");
        assert_eq!(fleet(&json).unwrap().timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_fractional_negative_or_out_of_range_number_names_its_key() {
        for (json, want) in [
            (
                r#"{"timeout_ms":1.5}"#,
                "`timeout_ms` must be an integer in 1..=60000, got 1.5",
            ),
            (
                r#"{"refresh_interval_s":60.000001}"#,
                "`refresh_interval_s` must be an integer in 5..=86400, got 60.000001",
            ),
            (
                r#"{"max_stale_s":-1}"#,
                "`max_stale_s` must be an integer in 1..=31536000, got -1",
            ),
            (
                r#"{"max_stale_s":-1.0}"#,
                "`max_stale_s` must be an integer in 1..=31536000, got -1",
            ),
            (
                r#"{"max_stale_s":3.1536000001e+07}"#,
                "`max_stale_s` must be an integer in 1..=31536000, got 31536000.001",
            ),
            (
                r#"{"max_stale_s":3.1536001e+07}"#,
                "`max_stale_s` must be an integer in 1..=31536000, got 31536001",
            ),
            (
                r#"{"timeout_ms":18446744073709551615}"#,
                "`timeout_ms` must be an integer in 1..=60000, got 18446744073709551615",
            ),
            (
                r#"{"timeout_ms":6.0001e4}"#,
                "`timeout_ms` must be an integer in 1..=60000, got 60001",
            ),
            (
                r#"{"refresh_interval_s":4.0}"#,
                "`refresh_interval_s` must be an integer in 5..=86400, got 4",
            ),
            (
                r#"{"timeout_ms":0.0}"#,
                "`timeout_ms` must be an integer in 1..=60000, got 0",
            ),
            (
                r#"{"timeout_ms":-0.0}"#,
                "`timeout_ms` must be an integer in 1..=60000, got -0",
            ),
        ] {
            assert_eq!(
                err(json),
                format!("invalid configuration: {want}"),
                "{json}"
            );
        }
        let far = format!("got 1{}", "0".repeat(300));
        assert!(err(r#"{"timeout_ms":1e300}"#).ends_with(&far));
        let fractional = Config::from_json(br#"{"timeout_ms":2.5}"#, no_env);
        assert!(matches!(
            fractional,
            Err(ConfigError::OutOfRange { key, .. }) if key == Key::top("timeout_ms")
        ));
    }

    #[test]
    fn token_env_must_name_a_set_variable_and_never_shows_the_token() {
        assert!(err(r#"{"token_env":"NOPE"}"#).contains("`token_env`"));
        assert!(err(r#"{"token_env":""}"#).contains("`token_env`"));
        let blank = Config::from_json(br#"{"token_env":"T"}"#, |_| Some("  \n".into()));
        assert!(
            matches!(blank, Err(ConfigError::TokenMissing { key, var }) if var == "T" && key == Key::top("token_env"))
        );
        let cfg = Config::from_json(br#"{"token_env":"T"}"#, |_| Some("s3cr3t".into())).unwrap();
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        assert!(format!("{cfg:?}").contains(r#"Token(<redacted> from "T")"#));
        assert_eq!(single(&cfg).token.as_ref().map(Token::var), Some("T"));
        let bad = Config::from_json(br#"{"token_env":"T"}"#, |_| Some("a b".into()));
        assert!(bad.unwrap_err().to_string().contains("token_env"));
        let cfg = fleet(FLEET).unwrap();
        assert!(!format!("{cfg:?}").contains("prod-token"));
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
