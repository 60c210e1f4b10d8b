//! The shared copy: what every worker VM of one Envoy process reads and writes in proxy-wasm
//! shared data. Its keys, the encodings stored under them, and the operations on them, each a
//! read and a compare-and-swap; and [`LocalCopy`], a VM's decoded copy, revalidated against a
//! version key. What the values mean (when a fetch is due, who holds the lease) is
//! [`crate::policy`]'s.
//!
//! Shared-data keys (per issuer and document, under a prefix derived from the issuer's upstream
//! configuration, so that each issuer has its own copy, schedule and lease):
//! - `copy`: the encoded [`StoredCopy`];
//! - `version`: an empty value written after `copy`; its CAS, which every write changes, is the
//!   copy's version. Read on every request: the host copies nothing into the VM for an empty
//!   value, and that copy (a call from the host back into the VM to allocate) is what a
//!   shared-data read costs;
//! - `schedule`: the encoded [`Schedule`], only ever changed with compare-and-swap;
//!
//! per issuer `issuer_mismatch`: `1` while its API server's last discovery document named
//! another issuer (see [`Shared::set_mismatched`]); and per plugin configuration `started/...`
//! ([`start_key`]): when a VM of the process last logged the start line.

use crate::config::{Config, IssuerConfig};
use crate::document::Document;
use crate::host::SharedStore;
use crate::policy::Schedule;
use crate::upstream::Fetched;
use std::time::Duration;

/// FNV-1a, 64 bit: a stable fingerprint for keys and entity tags (not a security function:
/// the bodies come from the API server, not from clients).
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A strong entity tag for a body.
pub fn etag(body: &[u8]) -> String {
    format!("\"{:016x}-{:x}\"", fnv1a64(&[body]), body.len())
}

/// The shared-data keys of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub copy: String,
    /// Its CAS is the copy's version (see the module's doc).
    pub version: String,
    pub schedule: String,
}

impl Keys {
    /// Two issuers, or two plugin configurations, that fetch, check or publish differently never
    /// share a copy, even in one VM id.
    pub fn new(issuer: &IssuerConfig, doc: Document) -> Keys {
        let base = format!("{}/{}", issuer_prefix(issuer), doc.name());
        Keys {
            copy: format!("{base}/copy"),
            version: format!("{base}/version"),
            schedule: format!("{base}/schedule"),
        }
    }
}

/// The shared-data key of an issuer's mismatch flag ([`Shared::mismatched`]).
pub fn mismatch_key(issuer: &IssuerConfig) -> String {
    format!("{}/issuer_mismatch", issuer_prefix(issuer))
}

fn issuer_prefix(issuer: &IssuerConfig) -> String {
    let fp = fnv1a64(&[
        issuer.cluster.as_bytes(),
        issuer.authority.as_bytes(),
        issuer.jwks_uri.as_deref().unwrap_or_default().as_bytes(),
        issuer.token.as_ref().map_or(&b""[..], |_| &b"token"[..]),
        issuer.url.as_deref().unwrap_or_default().as_bytes(),
    ]);
    format!("kube-oidc-discovery/{fp:016x}")
}

/// The shared-data key where the VMs of a process note when one logged the start line of this
/// configuration ([`crate::startup::first_to_start`]). The Debug form redacts the token but
/// names its variable.
pub fn start_key(cfg: &Config) -> String {
    let fp = fnv1a64(&[format!("{cfg:?}").as_bytes()]);
    format!("kube-oidc-discovery/started/{fp:016x}")
}

/// A document as stored in shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    pub fetched_at_ms: u64,
    pub etag: String,
    pub content_type: String,
    pub cache_control: Option<String>,
    pub body: Vec<u8>,
}

const COPY_MAGIC: &str = "kod1";

impl StoredCopy {
    pub fn new(fetched: Fetched, now_ms: u64) -> StoredCopy {
        StoredCopy {
            fetched_at_ms: now_ms,
            etag: etag(&fetched.body),
            content_type: fetched.content_type,
            cache_control: fetched.cache_control,
            body: fetched.body,
        }
    }

    /// Header lines, a blank line, then the body (header values never contain a newline).
    pub fn encode(&self) -> Vec<u8> {
        let head = format!(
            "{COPY_MAGIC}\n{}\n{}\n{}\n{}\n\n",
            self.fetched_at_ms,
            self.etag,
            self.content_type,
            self.cache_control.as_deref().unwrap_or_default()
        );
        let mut out = Vec::with_capacity(head.len() + self.body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<StoredCopy> {
        let mut rest = bytes;
        let mut field = || -> Option<String> {
            let nl = rest.iter().position(|&b| b == b'\n')?;
            let (line, tail) = rest.split_at(nl);
            rest = tail.get(1..)?;
            String::from_utf8(line.to_vec()).ok()
        };
        if field()? != COPY_MAGIC {
            return None;
        }
        let fetched_at_ms = number(&field()?)?;
        let etag = field()?;
        let content_type = field()?;
        let cache_control = Some(field()?).filter(|s| !s.is_empty());
        if !field()?.is_empty() {
            return None;
        }
        Some(StoredCopy {
            fetched_at_ms,
            etag,
            content_type,
            cache_control,
            body: rest.to_vec(),
        })
    }
}

/// A number exactly as `to_string` writes it: `str::parse` also takes `+7` and `007`, and then
/// bytes that are no encoding of ours would decode.
fn number<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
    let n: T = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

/// The schedule's encoding in shared data (its meaning is [`crate::policy`]'s).
impl Schedule {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{} {} {} {}",
            self.next_due_ms, self.failures, self.lease_until_ms, self.last_error
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Schedule> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut it = text.split(' ');
        let s = Schedule {
            next_due_ms: number(it.next()?)?,
            failures: number(it.next()?)?,
            lease_until_ms: number(it.next()?)?,
            last_error: number(it.next()?)?,
        };
        it.next().is_none().then_some(s)
    }
}

/// Shared-data operations for one plugin configuration.
pub struct Shared<'s, S: SharedStore> {
    pub store: &'s S,
}

impl<S: SharedStore> Shared<'_, S> {
    pub fn schedule(&self, keys: &Keys) -> (Schedule, Option<u32>) {
        match self.store.get(&keys.schedule) {
            Some((bytes, cas)) => (Schedule::decode(&bytes).unwrap_or_default(), Some(cas)),
            None => (Schedule::default(), None),
        }
    }

    /// Creates the schedule if it does not exist yet (at plugin start), so that later changes
    /// can all be compare-and-swap: proxy-wasm ignores the CAS token for a missing key.
    pub fn ensure_schedule(&self, keys: &Keys) {
        if self.store.get(&keys.schedule).is_none() {
            let _ = self
                .store
                .set(&keys.schedule, &Schedule::default().encode(), None);
        }
    }

    /// Takes the fetch lease if a fetch is due and nobody holds it. True: this VM must fetch.
    pub fn try_lease(&self, keys: &Keys, now_ms: u64, lease: Duration) -> bool {
        let (schedule, cas) = self.schedule(keys);
        let Some(cas) = cas else {
            self.ensure_schedule(keys);
            return false;
        };
        let Some(taken) = schedule.take_lease(now_ms, lease) else {
            return false;
        };
        self.store
            .set(&keys.schedule, &taken.encode(), Some(cas))
            .is_ok()
    }

    /// Releases the lease after a fetch and schedules the next one. `Err(status)` is a failure.
    pub fn finish(
        &self,
        keys: &Keys,
        now_ms: u64,
        outcome: Result<(), u16>,
        next_in: impl Fn(u32) -> Duration,
    ) {
        for _ in 0..8 {
            let (schedule, cas) = self.schedule(keys);
            let next = schedule.finished(now_ms, outcome, &next_in);
            if self.store.set(&keys.schedule, &next.encode(), cas).is_ok() {
                return;
            }
        }
    }

    /// Stores a new copy: the copy first, then a new version, so a reader that sees the new
    /// version always finds a copy at least that new.
    pub fn store_copy(&self, keys: &Keys, copy: &StoredCopy) {
        let _ = self.store.set(&keys.copy, &copy.encode(), None);
        let _ = self.store.set(&keys.version, b"", None);
    }

    /// Drops a copy (shared data cannot delete a key): readers find none, and it has no age.
    pub fn drop_copy(&self, keys: &Keys) {
        let _ = self.store.set(&keys.copy, b"", None);
        let _ = self.store.set(&keys.version, b"", None);
    }

    /// Makes a fetch due now, unless one is in flight (its result will do).
    pub fn make_due(&self, keys: &Keys, now_ms: u64) {
        let (schedule, Some(cas)) = self.schedule(keys) else {
            return;
        };
        if let Some(due) = schedule.made_due(now_ms) {
            let _ = self.store.set(&keys.schedule, &due.encode(), Some(cas));
        }
    }

    /// Whether an issuer's API server last answered with another issuer's discovery document.
    pub fn mismatched(&self, key: &str) -> bool {
        self.store.get(key).is_some_and(|(v, _)| v == b"1")
    }

    /// Records whether the issuer's last discovery document named another issuer; true when it
    /// changed.
    pub fn set_mismatched(&self, key: &str, mismatched: bool) -> bool {
        if self.mismatched(key) == mismatched {
            return false;
        }
        let value: &[u8] = if mismatched { b"1" } else { b"0" };
        self.store.set(key, value, None).is_ok()
    }

    /// The copy's version: the CAS of its (empty) version key.
    pub fn version(&self, keys: &Keys) -> Option<u32> {
        self.store.get(&keys.version).map(|(_, cas)| cas)
    }

    pub fn load_copy(&self, keys: &Keys) -> Option<StoredCopy> {
        self.store
            .get(&keys.copy)
            .and_then(|(b, _)| StoredCopy::decode(&b))
    }
}

/// A VM's decoded copy of one document, valid while the shared version is unchanged.
#[derive(Debug, Default)]
pub struct LocalCopy {
    version: u32,
    copy: Option<StoredCopy>,
}

impl LocalCopy {
    /// The current copy: one small shared-data read when unchanged, a reload when changed.
    pub fn current<S: SharedStore>(
        &mut self,
        shared: &Shared<'_, S>,
        keys: &Keys,
    ) -> Option<&StoredCopy> {
        let Some(version) = shared.version(keys) else {
            self.copy = None;
            return None;
        };
        if self.copy.is_none() || version != self.version {
            self.copy = shared.load_copy(keys);
            self.version = version;
        }
        self.copy.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::MemStore;
    use crate::host::CasMismatch;
    use crate::policy::{cold, Cold};

    fn fetched(body: &str) -> Fetched {
        Fetched {
            body: body.as_bytes().to_vec(),
            content_type: "application/json".into(),
            cache_control: Some("public, max-age=3600".into()),
        }
    }

    #[test]
    fn copy_round_trips() {
        let c = StoredCopy::new(fetched("{\"keys\":[]}\n\nx"), 42);
        assert_eq!(StoredCopy::decode(&c.encode()), Some(c.clone()));
        let none = StoredCopy {
            cache_control: None,
            ..c
        };
        assert_eq!(StoredCopy::decode(&none.encode()), Some(none));
        assert_eq!(StoredCopy::decode(b"kod1\n1\n"), None);
        assert_eq!(StoredCopy::decode(b"kod1\n01\ne\nt\n\n\n"), None);
        assert!(StoredCopy::decode(b"kod1\n1\ne\nt\n\n\n").is_some());
        assert_eq!(StoredCopy::decode(b"xxx"), None);
    }

    #[test]
    fn etag_is_strong_and_changes_with_the_body() {
        let a = etag(b"{\"keys\":[1]}");
        assert!(a.starts_with('"') && a.ends_with('"') && !a.starts_with("W/"));
        assert_eq!(a, etag(b"{\"keys\":[1]}"));
        assert_ne!(a, etag(b"{\"keys\":[2]}"));
    }

    fn issuer(json: &str) -> IssuerConfig {
        Config::from_json(json.as_bytes(), |_| None)
            .unwrap()
            .issuers
            .remove(0)
    }

    #[test]
    fn keys_differ_by_upstream_configuration() {
        let a = Keys::new(&issuer("{}"), Document::Jwks);
        assert_eq!(a, Keys::new(&issuer("{}"), Document::Jwks));
        assert_ne!(a.copy, Keys::new(&issuer("{}"), Document::Discovery).copy);
        for other in [
            r#"{"cluster":"other"}"#,
            r#"{"authority":"api.internal"}"#,
            r#"{"jwks_uri":"https://oidc.example.com/openid/v1/jwks"}"#,
            r#"{"issuer":"https://kubernetes.default.svc.cluster.local"}"#,
        ] {
            assert_ne!(
                a.copy,
                Keys::new(&issuer(other), Document::Jwks).copy,
                "{other}"
            );
        }
        // the serving side alone shares the copy: hosts, or the entry's name
        assert_eq!(
            a,
            Keys::new(&issuer(r#"{"hosts":["a.example"]}"#), Document::Jwks)
        );
    }

    #[test]
    fn each_issuer_has_its_own_keys() {
        let cfg = Config::from_json(
            br#"{"issuers":[{"name":"a","issuer":"https://o.example/a","cluster":"api"},
                            {"name":"b","issuer":"https://o.example/b","cluster":"api"}]}"#,
            |_| None,
        )
        .unwrap();
        let keys: Vec<Keys> = cfg
            .issuers
            .iter()
            .map(|i| Keys::new(i, Document::Jwks))
            .collect();
        assert_ne!(keys[0].copy, keys[1].copy);
        assert_ne!(keys[0].schedule, keys[1].schedule);
    }

    #[test]
    fn schedule_round_trips_and_rejects_garbage() {
        let s = Schedule {
            next_due_ms: 5,
            failures: 2,
            lease_until_ms: 9,
            last_error: 504,
        };
        assert_eq!(Schedule::decode(&s.encode()), Some(s));
        assert_eq!(Schedule::decode(b"1 2 3"), None);
        assert_eq!(Schedule::decode(b"1 2 3 4 5"), None);
        // found by fuzz/fuzz_targets/shared_data.rs: only the exact encoding decodes
        assert_eq!(Schedule::decode(b"0 000 00 0"), None);
        assert_eq!(Schedule::decode(b"+1 2 3 4"), None);
        assert_eq!(Schedule::decode(b"0 0 0 0"), Some(Schedule::default()));
    }

    #[test]
    fn only_one_vm_takes_the_lease() {
        let store = MemStore::default();
        let shared = Shared { store: &store };
        let keys = Keys::new(&Config::for_tests().issuers[0], Document::Jwks);
        // No schedule yet: the first attempt only creates it.
        assert!(!shared.try_lease(&keys, 10, Duration::from_secs(3)));
        assert!(shared.try_lease(&keys, 10, Duration::from_secs(3)));
        assert!(
            !shared.try_lease(&keys, 11, Duration::from_secs(3)),
            "second VM"
        );
        assert_eq!(cold(&shared.schedule(&keys).0, 11, false, 99), Cold::Wait);
        // A holder that never finishes loses the lease when it runs out.
        assert!(shared.try_lease(&keys, 3010, Duration::from_secs(3)));
    }

    #[test]
    fn a_stale_cas_loses_the_race() {
        let store = MemStore::default();
        let shared = Shared { store: &store };
        let keys = Keys::new(&Config::for_tests().issuers[0], Document::Jwks);
        shared.ensure_schedule(&keys);
        let (_, cas) = shared.schedule(&keys);
        assert!(shared.try_lease(&keys, 1, Duration::from_secs(1)));
        let late = Schedule {
            lease_until_ms: 99,
            ..Schedule::default()
        };
        assert_eq!(
            store.set(&keys.schedule, &late.encode(), cas),
            Err(CasMismatch)
        );
    }

    #[test]
    fn finish_schedules_refresh_or_backoff() {
        let store = MemStore::default();
        let shared = Shared { store: &store };
        let keys = Keys::new(&Config::for_tests().issuers[0], Document::Discovery);
        shared.ensure_schedule(&keys);
        assert!(shared.try_lease(&keys, 100, Duration::from_secs(3)));
        shared.finish(&keys, 200, Err(504), |f| Duration::from_secs(u64::from(f)));
        let (s, _) = shared.schedule(&keys);
        assert_eq!(
            s,
            Schedule {
                next_due_ms: 1200,
                failures: 1,
                lease_until_ms: 0,
                last_error: 504
            }
        );
        assert_eq!(cold(&s, 300, false, 9999), Cold::Fail(504));
        assert_eq!(cold(&s, 300, true, 9999), Cold::Fail(503), "expired copy");
        assert_eq!(cold(&s, 1200, false, 9999), Cold::Wait);
        assert_eq!(cold(&s, 1200, false, 1200), Cold::Fail(504), "deadline");
        assert!(shared.try_lease(&keys, 1200, Duration::from_secs(3)));
        shared.finish(&keys, 1300, Err(502), |f| Duration::from_secs(u64::from(f)));
        assert_eq!(shared.schedule(&keys).0.failures, 2);
        assert_eq!(shared.schedule(&keys).0.next_due_ms, 3300);
        shared.finish(&keys, 4000, Ok(()), |_| Duration::from_secs(60));
        assert_eq!(
            shared.schedule(&keys).0,
            Schedule {
                next_due_ms: 64_000,
                failures: 0,
                lease_until_ms: 0,
                last_error: 0
            }
        );
        assert_eq!(
            cold(
                &Schedule {
                    next_due_ms: 10,
                    ..Schedule::default()
                },
                5,
                false,
                99
            ),
            Cold::Fail(503)
        );
    }

    #[test]
    fn a_dropped_copy_is_gone_for_every_vm() {
        let store = MemStore::default();
        let shared = Shared { store: &store };
        let keys = Keys::new(&Config::for_tests().issuers[0], Document::Jwks);
        let mut local = LocalCopy::default();
        shared.store_copy(&keys, &StoredCopy::new(fetched("{\"keys\":[1]}"), 7));
        assert!(local.current(&shared, &keys).is_some());
        shared.drop_copy(&keys);
        assert!(local.current(&shared, &keys).is_none());
    }

    #[test]
    fn make_due_moves_the_next_fetch_to_now_unless_one_is_in_flight() {
        let store = MemStore::default();
        let shared = Shared { store: &store };
        let keys = Keys::new(&Config::for_tests().issuers[0], Document::Jwks);
        shared.ensure_schedule(&keys);
        assert!(shared.try_lease(&keys, 100, Duration::from_secs(3)));
        shared.make_due(&keys, 200);
        assert_eq!(
            shared.schedule(&keys).0.lease_until_ms,
            3100,
            "in flight: left alone"
        );
        shared.finish(&keys, 300, Ok(()), |_| Duration::from_secs(60));
        shared.make_due(&keys, 400);
        assert_eq!(shared.schedule(&keys).0.next_due_ms, 400);
        assert!(shared.try_lease(&keys, 400, Duration::from_secs(3)));
    }

    #[test]
    fn the_mismatch_flag_changes_only_when_it_must() {
        let store = MemStore::default();
        let shared = Shared { store: &store };
        let key = mismatch_key(&Config::for_tests().issuers[0]);
        assert!(!shared.mismatched(&key));
        assert!(
            !shared.set_mismatched(&key, false),
            "unchanged: nothing written"
        );
        assert!(shared.set_mismatched(&key, true));
        assert!(shared.mismatched(&key));
        assert!(!shared.set_mismatched(&key, true));
        assert!(shared.set_mismatched(&key, false));
        assert!(!shared.mismatched(&key));
    }

    #[test]
    fn local_copy_reads_only_the_version_when_unchanged() {
        let store = MemStore::default();
        let shared = Shared { store: &store };
        let keys = Keys::new(&Config::for_tests().issuers[0], Document::Jwks);
        let mut local = LocalCopy::default();
        assert!(local.current(&shared, &keys).is_none());
        shared.store_copy(&keys, &StoredCopy::new(fetched("{\"keys\":[1]}"), 7));
        assert_eq!(
            local.current(&shared, &keys).unwrap().body,
            b"{\"keys\":[1]}"
        );
        let (gets, bytes) = (store.gets.get(), store.read_bytes.get());
        assert_eq!(local.current(&shared, &keys).unwrap().fetched_at_ms, 7);
        assert_eq!(
            (store.gets.get() - gets, store.read_bytes.get() - bytes),
            (1, 0),
            "one version read, of no bytes"
        );
        shared.store_copy(&keys, &StoredCopy::new(fetched("{\"keys\":[2]}"), 8));
        assert_eq!(
            local.current(&shared, &keys).unwrap().body,
            b"{\"keys\":[2]}"
        );
    }
}
