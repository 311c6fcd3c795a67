//! Revocation: an in-memory index of GateTokens, kept by a kube-runtime watcher on the namespaces
//! named by `KUBE_GATEWAY_REVOCATION_NAMESPACES`. GateTokens are read through the API crate's
//! types (the operator's own contract); each object is stripped of `managedFields` and
//! `status.token` as it arrives and reduced to a small [`Entry`], so the gateway never holds
//! issued tokens. Waiters (open sessions, unknown `jti`s) are woken per `jti`, not all at once.
//!
//! A token's `jti` is the UID of the GateToken it was minted for. With the watch on:
//! * a `jti` whose GateToken has `spec.revoked: true`, or is in phase `Revoked` or `Completed`,
//!   is refused;
//! * a `jti` whose GateToken was **deleted** is refused: it goes on a deny list until the token's
//!   expiry (`status.data.exp`), whether the deletion was seen as a watch event or inferred from a
//!   re-list that no longer contains it;
//! * **fail closed**: once every watched namespace has been listed, a `jti` that names no known
//!   GateToken is refused (after waiting briefly for the watch to catch up with a just-created
//!   one), and so is a token without a `jti`. Before the first list completes, requests get 503.
//! * While the API server is unreachable the index keeps its last known state, requests are
//!   decided from it, and `/readyz` and the `kube_gateway_revocation_*` metrics say so.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use virt_gateway_api::{GateToken, GateTokenPhase};

use crate::metrics::Metrics;
use crate::util::now_unix;

/// How long a deleted GateToken's `jti` stays denied when its expiry is unknown.
pub const UNKNOWN_EXP_DENY: u64 = 7 * 24 * 3600;

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The GateToken is marked revoked.
    Revoked,
    /// The GateToken was deleted.
    Deleted,
    /// The GateToken is Completed (expired).
    Completed,
    /// No GateToken with this `jti` in the watched namespaces.
    Unknown,
    /// The token has no `jti`.
    NoJti,
    /// The index is not synchronised yet.
    NotReady,
    /// The watch has been broken for longer than the allowed staleness: a revocation made
    /// meanwhile would go unseen, so no token is accepted until it is back (fail closed).
    Stale,
}

impl Refusal {
    /// Message for the client and the WebSocket close frame.
    pub fn message(&self) -> &'static str {
        match self {
            Self::Revoked => "token revoked",
            Self::Deleted => "token revoked (its GateToken was deleted)",
            Self::Completed => "token expired (its GateToken is Completed)",
            Self::Unknown => {
                "token revoked or unknown (no GateToken with its jti in the watched namespaces)"
            }
            Self::NoJti => "token has no jti, and this gateway enforces revocation",
            Self::NotReady => "the revocation index is not synchronised yet",
            Self::Stale => {
                "the revocation index is out of date (its watch is broken); retry shortly"
            }
        }
    }
}

/// What the index keeps of one GateToken: what a decision reads, and which watch (scope) and
/// list it came from. No string: the namespace is the index of its watch in `namespaces`, and
/// the `jti` is the map's key (16 bytes per entry besides the key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    revoked: bool,
    completed: bool,
    /// The watch (index into `Revocation::namespaces`) that delivered it.
    scope: u16,
    /// The (re-)list of that watch that last delivered it (`Index::lists`).
    listed: u32,
    exp: u64,
}

/// The fields of a GateToken that revocation decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    revoked: bool,
    completed: bool,
    exp: u64,
}

#[derive(Default)]
struct Index {
    /// Keyed by `jti` (the GateToken's UID), boxed to its exact length.
    by_jti: HashMap<Box<str>, Entry>,
    denied: HashMap<Box<str>, u64>,
    synced: HashSet<u16>,
    /// Per scope, the number of the list in progress or last completed: an entry that the
    /// latest list did not deliver (older `listed`) vanished while the watch was away.
    lists: HashMap<u16, u32>,
    healthy: bool,
    /// When the watch last went from working to broken (None while it works).
    broken_since: Option<Instant>,
    last_ok: Option<Instant>,
    last_error: Option<String>,
}

/// The health of the watch, for `/readyz`.
#[derive(Clone, Debug)]
pub struct RevocationHealth {
    /// Every watched namespace has been listed at least once.
    pub synced: bool,
    /// The watch has been broken for longer than the allowed staleness (tokens are refused).
    pub stale: bool,
    /// The last watch attempt succeeded.
    pub healthy: bool,
    /// Seconds since the watch last delivered data.
    pub age_secs: Option<f64>,
    /// The last watch error.
    pub last_error: Option<String>,
    /// GateTokens in the index.
    pub entries: usize,
}

/// The wake-up channels, keyed by `jti`.
#[derive(Default)]
struct Waiters {
    by_jti: HashMap<String, watch::Sender<()>>,
    /// Size at which channels without receivers are next swept out.
    sweep_at: usize,
}

impl Waiters {
    fn sweep(&mut self) {
        self.by_jti.retain(|_, s| s.receiver_count() > 0);
        self.sweep_at = (self.by_jti.len() * 2).max(64);
    }
}

/// The revocation index.
pub struct Revocation {
    namespaces: Vec<String>,
    index: Mutex<Index>,
    /// One channel per `jti` somebody waits on; dropped when nobody does any more.
    waiters: Mutex<Waiters>,
    grace: Duration,
    max_staleness: Duration,
    metrics: Arc<Metrics>,
}

/// GateTokens per page of the watch's (re-)list: each page is read and decoded whole, objects with
/// their issued JWTs and `managedFields` (~4 KB each), before the index keeps 16 bytes of each; a
/// smaller page than kube's 500 keeps that transient, and the heap it leaves behind, small.
const LIST_PAGE: u32 = 100;

/// Default of `--revocation-max-staleness`.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(5);

/// Drops what the gateway must not keep of a GateToken: the issued token and `managedFields`.
pub fn strip(token: &mut GateToken) {
    token.metadata.managed_fields = None;
    token.metadata.annotations = None;
    if let Some(status) = token.status.as_mut() {
        status.token.clear();
        status.conditions.clear();
    }
}

/// The `jti` (the object's UID) and decision fields of a GateToken, from the operator's status
/// types.
fn fields_of(token: &GateToken) -> Option<(&str, Fields)> {
    let uid = token.metadata.uid.as_deref()?;
    let status = token.status.as_ref();
    let phase = status.and_then(|s| s.parsed_phase().ok());
    let exp = status
        .and_then(|s| u64::try_from(s.data.exp).ok())
        .unwrap_or(0);
    Some((
        uid,
        Fields {
            // Deleting (a finalizer holds it) counts as revoked (review §12).
            revoked: token.spec.revoked
                || phase == Some(GateTokenPhase::Revoked)
                || token.metadata.deletion_timestamp.is_some(),
            completed: phase == Some(GateTokenPhase::Completed),
            exp,
        },
    ))
}

impl Revocation {
    /// An index for `namespaces` (`["*"]` = all); `grace` is how long an unknown `jti` waits.
    pub fn new(namespaces: Vec<String>, grace: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            namespaces,
            index: Mutex::new(Index::default()),
            waiters: Mutex::new(Waiters::default()),
            grace,
            max_staleness: DEFAULT_MAX_STALENESS,
            metrics,
        }
    }

    /// Refuses every token once the watch has been broken for longer than `max_staleness`.
    #[must_use]
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    fn stale(&self, index: &Index) -> bool {
        index
            .broken_since
            .is_some_and(|t| t.elapsed() > self.max_staleness)
    }

    /// A receiver that changes whenever `jti`'s entry may have changed.
    fn subscribe(&self, jti: &str) -> watch::Receiver<()> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if waiters.by_jti.len() >= waiters.sweep_at {
            waiters.sweep();
        }
        waiters
            .by_jti
            .entry(jti.to_owned())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    /// Wakes the waiters of `jtis`, and forgets channels nobody listens to any more.
    fn wake<'a>(&self, jtis: impl IntoIterator<Item = &'a str>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for jti in jtis {
            if let Some(sender) = waiters.by_jti.get(jti) {
                if sender.receiver_count() == 0 {
                    waiters.by_jti.remove(jti);
                } else {
                    // Counted before the send: a woken session on another worker can end (and
                    // drop its receiver) before a count read afterwards.
                    let woken = sender.receiver_count() as u64;
                    sender.send_replace(());
                    self.metrics.revocation_wakeups.inc_by(woken);
                }
            }
        }
    }

    /// Waiters currently registered (for tests and the metrics).
    pub fn waiting(&self) -> usize {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.sweep();
        waiters.by_jti.len()
    }

    fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> T {
        match self.index.lock() {
            Ok(mut i) => f(&mut i),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn all_synced(&self, index: &Index) -> bool {
        (0..self.namespaces.len()).all(|i| index.synced.contains(&(i as u16)))
    }

    /// Decides a `jti` from the current index, without waiting.
    pub fn check_now(&self, jti: Option<&str>) -> Result<(), Refusal> {
        let Some(jti) = jti.filter(|j| !j.is_empty()) else {
            return Err(Refusal::NoJti);
        };
        let now = now_unix();
        self.with_index(|index| {
            if self.all_synced(index) && self.stale(index) {
                return Err(Refusal::Stale);
            }
            if let Some(until) = index.denied.get(jti)
                && *until >= now
            {
                return Err(Refusal::Deleted);
            }
            match index.by_jti.get(jti) {
                Some(e) if e.revoked => Err(Refusal::Revoked),
                Some(e) if e.completed => Err(Refusal::Completed),
                Some(_) => Ok(()),
                None if !self.all_synced(index) => Err(Refusal::NotReady),
                None => Err(Refusal::Unknown),
            }
        })
    }

    /// Decides a `jti`; an unknown one waits up to the grace period for the watch to deliver it.
    pub async fn check(&self, jti: Option<&str>) -> Result<(), Refusal> {
        let first = self.check_now(jti);
        let (Err(Refusal::Unknown), Some(id)) = (&first, jti) else {
            return first;
        };
        // Subscribe, then look again: an event between the two checks is not lost.
        let mut rx = self.subscribe(id);
        let again = self.check_now(jti);
        if again != Err(Refusal::Unknown) {
            return again;
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        loop {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {
                    let again = self.check_now(jti);
                    if again != Err(Refusal::Unknown) {
                        return again;
                    }
                }
                _ => return Err(Refusal::Unknown),
            }
        }
    }

    /// Resolves when `jti` becomes refused (revoked, deleted, completed). Never resolves for a
    /// token that stays valid.
    pub async fn wait_refused(&self, jti: Option<String>) -> Refusal {
        let Some(id) = jti.as_deref() else {
            return Refusal::NoJti;
        };
        let mut rx = self.subscribe(id);
        loop {
            match self.check_now(jti.as_deref()) {
                Err(
                    r @ (Refusal::Revoked | Refusal::Deleted | Refusal::Completed | Refusal::NoJti),
                ) => return r,
                // Unknown after a re-list means it vanished while we were disconnected.
                Err(Refusal::Unknown) => return Refusal::Deleted,
                _ => {}
            }
            if rx.changed().await.is_err() {
                futures::future::pending::<()>().await;
            }
        }
    }

    /// Sets the age gauge (called when the metrics are scraped).
    pub fn refresh_metrics(&self) {
        let age = self.health().age_secs;
        self.metrics.revocation_index_age.set(age.unwrap_or(-1.0));
    }

    /// The watch health.
    pub fn health(&self) -> RevocationHealth {
        self.with_index(|index| {
            let age = index.last_ok.map(|t| t.elapsed().as_secs_f64());
            RevocationHealth {
                synced: self.all_synced(index),
                stale: self.stale(index),
                healthy: index.healthy,
                age_secs: age,
                last_error: index.last_error.clone(),
                entries: index.by_jti.len(),
            }
        })
    }

    fn update_gauges(&self, index: &Index) {
        self.metrics
            .revocation_index_entries
            .set(index.by_jti.len() as i64);
        self.metrics
            .revocation_denylist_entries
            .set(index.denied.len() as i64);
        self.metrics
            .revocation_synced
            .set(i64::from(self.all_synced(index)));
        self.metrics
            .revocation_watch_up
            .set(i64::from(index.healthy));
    }

    fn deny(index: &mut Index, jti: Box<str>, exp: u64) {
        let until = if exp > 0 {
            exp.saturating_add(virt_gateway_auth::jwt::MAX_LEEWAY.as_secs())
        } else {
            now_unix() + UNKNOWN_EXP_DENY
        };
        index.denied.insert(jti, until);
    }

    /// Applies one watcher event from namespace scope `scope` (`*` for all namespaces) and wakes
    /// the waiters of the `jti`s it touched.
    pub(crate) fn apply(&self, scope: &str, event: Event<GateToken>) {
        // One watch per entry of `namespaces` (`run`), so a scope is always found there.
        let Some(scope) = self.namespaces.iter().position(|ns| ns == scope) else {
            tracing::warn!(scope, "a revocation event from a scope that is not watched");
            return;
        };
        let scope = scope as u16;
        let touched: Vec<Box<str>> = self.with_index(|index| {
            index.healthy = true;
            index.broken_since = None;
            index.last_ok = Some(Instant::now());
            let mut touched = Vec::new();
            let list = index.lists.get(&scope).copied().unwrap_or(0);
            let entry = |f: Fields| Entry {
                revoked: f.revoked,
                completed: f.completed,
                scope,
                listed: list,
                exp: f.exp,
            };
            match event {
                Event::Apply(obj) => {
                    if let Some((jti, fields)) = fields_of(&obj) {
                        let jti: Box<str> = jti.into();
                        touched.push(jti.clone());
                        index.by_jti.insert(jti, entry(fields));
                    }
                }
                Event::Delete(obj) => {
                    if let Some((jti, fields)) = fields_of(&obj) {
                        let jti: Box<str> = jti.into();
                        index.by_jti.remove(&jti);
                        Self::deny(index, jti.clone(), fields.exp);
                        touched.push(jti);
                    }
                }
                Event::Init => {
                    index.lists.insert(scope, list.wrapping_add(1));
                }
                Event::InitApply(obj) => {
                    if let Some((jti, fields)) = fields_of(&obj) {
                        let new = entry(fields);
                        match index.by_jti.get_mut(jti) {
                            Some(old) => {
                                let changed = (old.revoked, old.completed, old.exp)
                                    != (new.revoked, new.completed, new.exp);
                                *old = new;
                                if changed {
                                    touched.push(jti.into());
                                }
                            }
                            None => {
                                touched.push(jti.into());
                                index.by_jti.insert(jti.into(), new);
                            }
                        }
                    }
                }
                Event::InitDone => {
                    let vanished: Vec<(Box<str>, u64)> = index
                        .by_jti
                        .iter()
                        .filter(|(_, e)| e.scope == scope && e.listed != list)
                        .map(|(jti, e)| (jti.clone(), e.exp))
                        .collect();
                    for (jti, exp) in vanished {
                        index.by_jti.remove(&jti);
                        Self::deny(index, jti.clone(), exp);
                        touched.push(jti);
                    }
                    index.synced.insert(scope);
                }
            }
            let now = now_unix();
            index.denied.retain(|_, until| *until >= now);
            self.update_gauges(index);
            touched
        });
        self.wake(touched.iter().map(|j| &**j));
    }

    pub(crate) fn failed(&self, error: String) {
        self.metrics.revocation_watch_errors.inc();
        self.with_index(|index| {
            if index.healthy || index.last_error.as_deref() != Some(error.as_str()) {
                tracing::warn!(error = %error, "revocation watch failed; serving from the last known state");
            }
            if index.healthy || index.broken_since.is_none() {
                index.broken_since = Some(Instant::now());
            }
            index.healthy = false;
            index.last_error = Some(error);
            self.update_gauges(index);
        });
    }

    /// Runs the watches until `shutdown`: one watcher per namespace, retried with backoff while
    /// the last known state keeps serving.
    pub async fn run(self: Arc<Self>, client: kube::Client, shutdown: CancellationToken) {
        let mut streams = Vec::new();
        for ns in &self.namespaces {
            let api: Api<GateToken> = if ns == "*" {
                Api::all(client.clone())
            } else {
                Api::namespaced(client.clone(), ns)
            };
            let scope = ns.clone();
            let stream = watcher::watcher(api, watcher::Config::default().page_size(LIST_PAGE))
                .default_backoff()
                .modify(strip)
                .map(move |item| (scope.clone(), item))
                .boxed();
            streams.push(stream);
        }
        let mut all = futures::stream::select_all(streams);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                item = all.next() => match item {
                    None => return,
                    Some((scope, Ok(event))) => self.apply(&scope, event),
                    Some((_, Err(e))) => self.failed(e.to_string()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virt_gateway_api::{GateTokenData, GateTokenSpec, GateTokenStatus};

    fn obj(ns: &str, name: &str, uid: &str, revoked: bool, phase: &str, exp: i64) -> GateToken {
        let mut token = GateToken::new(
            name,
            GateTokenSpec {
                revoked,
                ..GateTokenSpec::default()
            },
        );
        token.metadata.namespace = Some(ns.into());
        token.metadata.uid = Some(uid.into());
        token.status = Some(GateTokenStatus {
            phase: phase.into(),
            token: "eyJ.secret.token".into(),
            data: GateTokenData {
                exp,
                ..GateTokenData::default()
            },
            ..GateTokenStatus::default()
        });
        token
    }

    #[test]
    fn the_index_never_keeps_issued_tokens() {
        let mut token = obj("a", "t1", "u1", false, "Ready", 4_000_000_000);
        token.metadata.managed_fields = Some(vec![Default::default()]);
        strip(&mut token);
        assert!(token.metadata.managed_fields.is_none());
        assert_eq!(token.status.as_ref().unwrap().token, "");
        assert_eq!(token.status.as_ref().unwrap().data.exp, 4_000_000_000);
        assert_eq!(
            fields_of(&token),
            Some((
                "u1",
                Fields {
                    revoked: false,
                    completed: false,
                    exp: 4_000_000_000
                }
            ))
        );
    }

    /// The index keeps no namespace string: a re-list of one watched namespace must still deny
    /// only the tokens of that namespace that vanished, never those of another.
    #[tokio::test]
    async fn a_relist_of_one_namespace_denies_only_its_own_vanished_tokens() {
        let r = Revocation::new(
            vec!["a".into(), "b".into()],
            Duration::from_millis(10),
            Arc::new(Metrics::new()),
        );
        for (ns, uid) in [("a", "ua"), ("b", "ub")] {
            r.apply(ns, Event::Init);
            r.apply(
                ns,
                Event::InitApply(obj(ns, "t", uid, false, "Ready", 4_000_000_000)),
            );
            r.apply(ns, Event::InitDone);
        }
        r.apply(
            "a",
            Event::Apply(obj("a", "t2", "ua2", false, "Ready", 4_000_000_000)),
        );
        assert_eq!(r.check_now(Some("ua2")), Ok(()));
        // "a" is listed again while "b" is not: ua2 is in the new list, ua is not.
        r.apply("a", Event::Init);
        r.apply(
            "a",
            Event::InitApply(obj("a", "t2", "ua2", false, "Ready", 4_000_000_000)),
        );
        r.apply("a", Event::InitDone);
        assert_eq!(r.check_now(Some("ua")), Err(Refusal::Deleted));
        assert_eq!(r.check_now(Some("ua2")), Ok(()));
        assert_eq!(
            r.check_now(Some("ub")),
            Ok(()),
            "b's token is not a's to deny"
        );
        // An event from a namespace that is not watched changes nothing.
        r.apply(
            "c",
            Event::Apply(obj("c", "t", "ub", true, "Ready", 4_000_000_000)),
        );
        assert_eq!(r.check_now(Some("ub")), Ok(()));
    }

    #[tokio::test]
    async fn decisions_follow_the_index() {
        let r = Revocation::new(
            vec!["a".into()],
            Duration::from_millis(10),
            Arc::new(Metrics::new()),
        );
        assert_eq!(r.check_now(Some("u1")), Err(Refusal::NotReady));
        r.apply("a", Event::Init);
        r.apply(
            "a",
            Event::InitApply(obj("a", "t1", "u1", false, "Ready", 4_000_000_000)),
        );
        r.apply(
            "a",
            Event::InitApply(obj("a", "t2", "u2", false, "Ready", 4_000_000_000)),
        );
        r.apply("a", Event::InitDone);
        assert_eq!(r.check_now(Some("u1")), Ok(()));
        assert_eq!(r.check_now(None), Err(Refusal::NoJti));
        assert_eq!(r.check(Some("nope")).await, Err(Refusal::Unknown));
        r.apply(
            "a",
            Event::Apply(obj("a", "t1", "u1", true, "Ready", 4_000_000_000)),
        );
        assert_eq!(r.check_now(Some("u1")), Err(Refusal::Revoked));
        r.apply(
            "a",
            Event::Apply(obj("a", "t1", "u1", false, "Completed", 4_000_000_000)),
        );
        assert_eq!(r.check_now(Some("u1")), Err(Refusal::Completed));
        r.apply(
            "a",
            Event::Delete(obj("a", "t2", "u2", false, "Ready", 4_000_000_000)),
        );
        assert_eq!(r.check_now(Some("u2")), Err(Refusal::Deleted));
        // A re-list that misses an object denies it too.
        r.apply(
            "a",
            Event::Apply(obj("a", "t3", "u3", false, "Ready", 4_000_000_000)),
        );
        assert_eq!(r.check_now(Some("u3")), Ok(()));
        r.apply("a", Event::Init);
        r.apply("a", Event::InitDone);
        assert_eq!(r.check_now(Some("u3")), Err(Refusal::Deleted));
        // A failure keeps the state.
        r.failed("connection refused".into());
        assert_eq!(r.check_now(Some("u3")), Err(Refusal::Deleted));
        assert!(!r.health().healthy);
        assert!(r.health().synced);
    }

    /// Review §12: the watch broke after its first sync and the gateway kept serving from the
    /// last state forever (a revocation meanwhile went unseen); a GateToken held by a finalizer
    /// after `kubectl delete` stayed valid.
    #[tokio::test]
    async fn a_broken_watch_fails_closed_after_the_staleness_and_deleting_counts_as_revoked() {
        let r = Revocation::new(
            vec!["a".into()],
            Duration::from_millis(10),
            Arc::new(Metrics::new()),
        )
        .with_max_staleness(Duration::ZERO);
        r.apply("a", Event::Init);
        r.apply(
            "a",
            Event::InitApply(obj("a", "t1", "u1", false, "Ready", 4_000_000_000)),
        );
        r.apply("a", Event::InitDone);
        assert_eq!(r.check_now(Some("u1")), Ok(()));
        r.failed("connection refused".into());
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(r.check_now(Some("u1")), Err(Refusal::Stale));
        assert!(r.health().stale);
        // Back: served again.
        r.apply("a", Event::Init);
        assert_eq!(r.check_now(Some("u1")), Ok(()));
        assert!(!r.health().stale);
        // Deleting (finalizers pending): refused at once.
        let mut deleting = obj("a", "t1", "u1", false, "Ready", 4_000_000_000);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        r.apply("a", Event::Apply(deleting));
        assert_eq!(r.check_now(Some("u1")), Err(Refusal::Revoked));
    }

    #[tokio::test]
    async fn waiters_wake_on_revocation_and_unknown_jtis_wait_for_the_watch() {
        let r = Arc::new(Revocation::new(
            vec!["a".into()],
            Duration::from_secs(30),
            Arc::new(Metrics::new()),
        ));
        r.apply("a", Event::Init);
        r.apply(
            "a",
            Event::InitApply(obj("a", "t1", "u1", false, "Ready", 4_000_000_000)),
        );
        r.apply("a", Event::InitDone);
        let waiter = tokio::spawn({
            let r = r.clone();
            async move { r.wait_refused(Some("u1".into())).await }
        });
        let late = tokio::spawn({
            let r = r.clone();
            async move { r.check(Some("u9")).await }
        });
        tokio::task::yield_now().await;
        r.apply(
            "a",
            Event::Apply(obj("a", "t9", "u9", false, "Ready", 4_000_000_000)),
        );
        assert_eq!(late.await.unwrap(), Ok(()));
        r.apply(
            "a",
            Event::Apply(obj("a", "t1", "u1", true, "Revoked", 4_000_000_000)),
        );
        assert_eq!(waiter.await.unwrap(), Refusal::Revoked);
    }

    #[tokio::test]
    async fn wake_ups_are_keyed_by_jti() {
        let r = Arc::new(Revocation::new(
            vec!["a".into()],
            Duration::from_secs(30),
            Arc::new(Metrics::new()),
        ));
        r.apply("a", Event::Init);
        for (name, uid) in [("t1", "u1"), ("t2", "u2")] {
            r.apply(
                "a",
                Event::InitApply(obj("a", name, uid, false, "Ready", 4_000_000_000)),
            );
        }
        r.apply("a", Event::InitDone);
        let rx1 = r.subscribe("u1");
        let mut rx2 = r.subscribe("u2");
        assert_eq!(r.waiting(), 2);
        r.apply(
            "a",
            Event::Apply(obj("a", "t2", "u2", true, "Ready", 4_000_000_000)),
        );
        assert!(rx2.has_changed().unwrap(), "u2's waiter is woken");
        assert!(!rx1.has_changed().unwrap(), "u1's waiter is not");
        assert_eq!(r.metrics.revocation_wakeups.get(), 1, "one wake-up counted");
        rx2.mark_unchanged();
        drop(rx1);
        r.apply(
            "a",
            Event::Apply(obj("a", "t1", "u1", true, "Ready", 4_000_000_000)),
        );
        assert_eq!(r.waiting(), 1, "a channel nobody listens to is dropped");
    }

    #[tokio::test]
    async fn revoking_1000_of_5000_open_sessions_wakes_only_those_1000() {
        let r = Revocation::new(
            vec!["a".into()],
            Duration::from_secs(30),
            Arc::new(Metrics::new()),
        );
        r.apply("a", Event::Init);
        for i in 0..5000 {
            let (name, uid) = (format!("t{i}"), format!("u{i}"));
            r.apply(
                "a",
                Event::InitApply(obj("a", &name, &uid, false, "Ready", 4_000_000_000)),
            );
        }
        r.apply("a", Event::InitDone);
        let receivers: Vec<_> = (0..5000).map(|i| r.subscribe(&format!("u{i}"))).collect();
        for i in (0..5000).step_by(5) {
            let (name, uid) = (format!("t{i}"), format!("u{i}"));
            r.apply(
                "a",
                Event::Apply(obj("a", &name, &uid, true, "Ready", 4_000_000_000)),
            );
        }
        assert_eq!(r.metrics.revocation_wakeups.get(), 1000);
        for (i, rx) in receivers.iter().enumerate() {
            assert_eq!(rx.has_changed().unwrap(), i % 5 == 0, "session {i}");
        }
        for i in (0..5000).step_by(5) {
            assert_eq!(r.check_now(Some(&format!("u{i}"))), Err(Refusal::Revoked));
        }
        assert_eq!(r.check_now(Some("u1")), Ok(()));
    }
}
