//! Prometheus metrics. Every label set is bounded: outcomes, reason codes, directions, kinds. No
//! path or token id is ever a label. One exception names objects: the shared-console viewer gauge
//! is labelled by the VMI's namespace and name, and its series are removed when that console's
//! upstream connection closes, so its size is bounded by the consoles open at once (each a
//! verified token's VM), not by history.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use crate::outcome::{Decision, Outcome, Reason};

/// The series every allowed API request touches, resolved on first use: `Family::get_or_create`
/// takes a lock and SipHashes the label strings, three times per request (~3 % of the proxy's
/// instructions). A resolved `Counter`/`Histogram` shares the family's series (same `Arc`).
#[derive(Default)]
struct HotSeries {
    api_allowed: OnceLock<Counter>,
    api_latency: OnceLock<Histogram>,
    cache_hit: OnceLock<Counter>,
}

/// A label set of one pair.
pub type L1 = [(&'static str, &'static str); 1];

/// The labels of a console's viewer gauge: `namespace`, `vmi`, `role`.
pub type ConsoleLabels = [(&'static str, String); 3];

/// All gateway metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests by kind (api, websocket, auth) and outcome (allowed, denied, error) and reason.
    pub requests: Family<[(&'static str, &'static str); 3], Counter>,
    /// Request latency (to the end of the response head for streams) by kind.
    pub latency: Family<L1, Histogram>,
    /// Open WebSocket sessions.
    pub websocket_sessions: Gauge,
    /// WebSocket sessions closed, by reason.
    pub websocket_closed: Family<L1, Counter>,
    /// Bytes piped through WebSockets, by direction.
    pub websocket_bytes: Family<L1, Counter>,
    /// Console input dropped at the gateway, by kind (key, pointer, clipboard, resize): an
    /// observer's, or a controller's whose control another took.
    pub console_input_dropped: Family<L1, Counter>,
    /// Viewers of each open shared console, by namespace, VMI and role (control, observe).
    pub console_viewers: Family<ConsoleLabels, Gauge>,
    /// Bytes between the gateway and shared-console viewers, by direction (to_viewer,
    /// from_viewer).
    pub console_bytes: Family<L1, Counter>,
    /// Upstream VNC connections of shared consoles, by result (opened, failed).
    pub console_upstream_connections: Family<L1, Counter>,
    /// Token cache lookups by result (hit, miss).
    pub token_cache: Family<L1, Counter>,
    /// Key file reloads by result.
    pub key_reloads: Family<L1, Counter>,
    /// Verification keys loaded.
    pub verification_keys: Gauge,
    /// Serving certificate reloads by result.
    pub cert_reloads: Family<L1, Counter>,
    /// ServiceAccount token reloads by result.
    pub sa_token_reloads: Family<L1, Counter>,
    /// Seconds since the revocation watch last delivered data (an event or a list).
    pub revocation_index_age: Gauge<f64, AtomicU64>,
    /// 1 while the revocation watch is healthy (its last attempt succeeded).
    pub revocation_watch_up: Gauge,
    /// 1 once every watched namespace has been listed.
    pub revocation_synced: Gauge,
    /// GateTokens in the revocation index.
    pub revocation_index_entries: Gauge,
    /// Token ids on the deny list (deleted GateTokens not yet expired).
    pub revocation_denylist_entries: Gauge,
    /// Revocation watch errors.
    pub revocation_watch_errors: Counter,
    /// Audit records of anonymous refusals not written (over `--audit-unauthenticated-rate`).
    pub audit_suppressed: Counter,
    /// Sessions woken by GateToken events (one per waiter of a changed `jti`): with per-`jti`
    /// channels, revoking N tokens wakes only their sessions, whatever else is open.
    pub revocation_wakeups: Counter,
    hot: HotSeries,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `kube_gateway` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kube_gateway");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests by kind, outcome and reason",
            requests.clone(),
        );
        let latency = Family::<L1, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer (for streams: to the response head) by kind",
            latency.clone(),
        );
        let websocket_sessions = Gauge::default();
        registry.register(
            "websocket_sessions",
            "Open WebSocket sessions",
            websocket_sessions.clone(),
        );
        let websocket_closed = Family::default();
        registry.register(
            "websocket_sessions_closed",
            "WebSocket sessions closed, by reason",
            websocket_closed.clone(),
        );
        let websocket_bytes = Family::default();
        registry.register(
            "websocket_bytes",
            "Bytes piped through WebSocket sessions, by direction",
            websocket_bytes.clone(),
        );
        let console_input_dropped = Family::default();
        registry.register(
            "console_input_dropped",
            "Console input dropped at the gateway (observers', controllers' without control), by kind",
            console_input_dropped.clone(),
        );
        let console_viewers = Family::default();
        registry.register(
            "console_viewers",
            "Viewers of each open shared console, by namespace, VMI and role",
            console_viewers.clone(),
        );
        let console_bytes = Family::default();
        registry.register(
            "console_bytes",
            "Bytes between the gateway and shared-console viewers, by direction",
            console_bytes.clone(),
        );
        let console_upstream_connections = Family::default();
        registry.register(
            "console_upstream_connections",
            "Upstream VNC connections of shared consoles, by result",
            console_upstream_connections.clone(),
        );
        let token_cache = Family::default();
        registry.register(
            "token_cache_lookups",
            "Verified-token cache lookups by result",
            token_cache.clone(),
        );
        let key_reloads = Family::default();
        registry.register(
            "key_reloads",
            "Verification key file reloads by result",
            key_reloads.clone(),
        );
        let verification_keys = Gauge::default();
        registry.register(
            "verification_keys",
            "Verification keys loaded",
            verification_keys.clone(),
        );
        let cert_reloads = Family::default();
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads by result",
            cert_reloads.clone(),
        );
        let sa_token_reloads = Family::default();
        registry.register(
            "serviceaccount_token_reloads",
            "ServiceAccount token file reloads by result",
            sa_token_reloads.clone(),
        );
        let revocation_index_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "revocation_index_age_seconds",
            "Seconds since the revocation watch last delivered data",
            revocation_index_age.clone(),
        );
        let revocation_watch_up = Gauge::default();
        registry.register(
            "revocation_watch_up",
            "1 while the revocation watch is healthy",
            revocation_watch_up.clone(),
        );
        let revocation_synced = Gauge::default();
        registry.register(
            "revocation_synced",
            "1 once every watched namespace has been listed",
            revocation_synced.clone(),
        );
        let revocation_index_entries = Gauge::default();
        registry.register(
            "revocation_index_entries",
            "GateTokens in the revocation index",
            revocation_index_entries.clone(),
        );
        let revocation_denylist_entries = Gauge::default();
        registry.register(
            "revocation_denylist_entries",
            "Token ids of deleted GateTokens refused until they expire",
            revocation_denylist_entries.clone(),
        );
        let revocation_watch_errors = Counter::default();
        registry.register(
            "revocation_watch_errors",
            "Revocation watch errors",
            revocation_watch_errors.clone(),
        );
        let audit_suppressed = Counter::default();
        registry.register(
            "audit_suppressed",
            "Audit records of refusals without a verified token not written (rate limit)",
            audit_suppressed.clone(),
        );
        let revocation_wakeups = Counter::default();
        registry.register(
            "revocation_wakeups",
            "Session waiters woken by GateToken events",
            revocation_wakeups.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            websocket_sessions,
            websocket_closed,
            websocket_bytes,
            console_input_dropped,
            console_viewers,
            console_bytes,
            console_upstream_connections,
            token_cache,
            key_reloads,
            verification_keys,
            cert_reloads,
            sa_token_reloads,
            revocation_index_age,
            revocation_watch_up,
            revocation_synced,
            revocation_index_entries,
            revocation_denylist_entries,
            revocation_watch_errors,
            audit_suppressed,
            revocation_wakeups,
            hot: HotSeries::default(),
        }
    }

    /// Counts one request of `kind` (`api`, `websocket`, `auth`) with its outcome.
    pub fn request(&self, kind: &'static str, outcome: &Outcome) {
        if kind == "api" && outcome.decision == Decision::Allow && outcome.reason == Reason::Ok {
            let labels = [
                ("kind", kind),
                ("outcome", Decision::Allow.metric_label()),
                ("reason", Reason::Ok.as_str()),
            ];
            self.hot
                .api_allowed
                .get_or_init(|| self.requests.get_or_create(&labels).clone())
                .inc();
            return;
        }
        self.requests
            .get_or_create(&[
                ("kind", kind),
                ("outcome", outcome.decision.metric_label()),
                ("reason", outcome.reason.as_str()),
            ])
            .inc();
    }

    /// Observes the latency of one request of `kind`.
    pub fn observe_latency(&self, kind: &'static str, seconds: f64) {
        if kind == "api" {
            self.hot
                .api_latency
                .get_or_init(|| self.latency.get_or_create(&[("kind", kind)]).clone())
                .observe(seconds);
        } else {
            self.latency
                .get_or_create(&[("kind", kind)])
                .observe(seconds);
        }
    }

    /// Counts a token-cache lookup: a hit, or a miss.
    pub fn token_cache(&self, hit: bool) {
        if hit {
            self.hot
                .cache_hit
                .get_or_init(|| self.token_cache.get_or_create(&[("result", "hit")]).clone())
                .inc();
        } else {
            self.token_cache.get_or_create(&[("result", "miss")]).inc();
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
