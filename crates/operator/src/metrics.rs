//! Prometheus metrics (prometheus-client, OpenMetrics text): reconciles, errors by kind,
//! durations, signing, tokens by phase, leadership. Label sets are bounded.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use virt_gateway_api::{GateServer, GateTokenPhase};

use crate::gatetoken::CachedGateToken;

/// `controller` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `gateserver` or `gatetoken`.
    pub controller: &'static str,
}

/// `controller` and `kind` labels of errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `gateserver` or `gatetoken`.
    pub controller: &'static str,
    /// Error kind ([`crate::Error::metric_label`]).
    pub kind: &'static str,
}

/// `alg` label of signatures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlgLabels {
    /// JWS algorithm.
    pub alg: &'static str,
}

/// Label value of the GateServer controller.
pub const GATESERVER: &str = "gateserver";
/// Label value of the GateToken controller.
pub const GATETOKEN: &str = "gatetoken";

/// The operator's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Reconciles run.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconcile failures, by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations.
    pub duration: Family<ControllerLabels, Histogram>,
    /// Tokens signed.
    pub signed: Family<AlgLabels, Counter>,
    /// Time to sign one token (on the signing pool, excluding the wait for a slot).
    pub sign_duration: Histogram,
    /// Signing keys generated.
    pub keys_generated: Counter,
    /// 1 while this replica holds the leader Lease (or runs without leader election).
    pub leader: Gauge,
    stores: Arc<StoreCollector>,
}

#[derive(Debug, Default)]
struct StoreCollector {
    tokens: OnceLock<Store<CachedGateToken>>,
    servers: OnceLock<Store<GateServer>>,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(store) = self.tokens.get() {
            let mut counts = [0i64; GateTokenPhase::ALL.len()];
            for token in store.state() {
                let phase = token.phase().unwrap_or(GateTokenPhase::New);
                if let Some(i) = GateTokenPhase::ALL.iter().position(|p| *p == phase) {
                    counts[i] += 1;
                }
            }
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "virt_gateway_operator_gatetokens",
                "GateTokens in the operator's cache, by phase (\"\" is new)",
                None,
                gauge.metric_type(),
            )?;
            for (phase, count) in GateTokenPhase::ALL.iter().zip(counts) {
                let labels = [("phase", phase.as_str())];
                ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(store) = self.servers.get() {
            let gauge = ConstGauge::new(store.state().len() as i64);
            let metric = encoder.encode_descriptor(
                "virt_gateway_operator_gateservers",
                "GateServers in the operator's cache",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// New metrics, registered in `registry` under the `virt_gateway_operator` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            signed: Family::default(),
            sign_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            keys_generated: Counter::default(),
            leader: Gauge::default(),
            stores: Arc::default(),
        };
        let r = registry.sub_registry_with_prefix("virt_gateway_operator");
        r.register(
            "reconciles",
            "Reconciles run, by controller",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciles, by controller and error kind",
            m.errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile duration, by controller",
            m.duration.clone(),
        );
        r.register(
            "tokens_signed",
            "JWTs signed, by algorithm",
            m.signed.clone(),
        );
        r.register(
            "sign_duration_seconds",
            "Time to sign one JWT on the signing pool",
            m.sign_duration.clone(),
        );
        r.register(
            "keys_generated",
            "Signing key pairs generated",
            m.keys_generated.clone(),
        );
        r.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        registry.register_collector(Box::new(m.stores.clone()));
        m
    }

    /// Lets the `gatetokens` and `gateservers` gauges read the controllers' caches.
    pub fn observe_stores(&self, tokens: Store<CachedGateToken>, servers: Store<GateServer>) {
        let _ = self.stores.tokens.set(tokens);
        let _ = self.stores.servers.set(servers);
    }

    /// Records one reconcile.
    pub fn reconciled(&self, controller: &'static str, took: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records one failed reconcile.
    pub fn failed(&self, controller: &'static str, kind: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { controller, kind })
            .inc();
    }
}

/// Encodes the registry in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_encodes() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry);
        m.reconciled(GATETOKEN, Duration::from_millis(3));
        m.failed(GATESERVER, "forbidden");
        m.signed.get_or_create(&AlgLabels { alg: "RS256" }).inc();
        let text = encode(&registry);
        assert!(
            text.contains("virt_gateway_operator_reconciles_total{controller=\"gatetoken\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "virt_gateway_operator_reconcile_errors_total{controller=\"gateserver\",kind=\"forbidden\"} 1"
        ));
        assert!(text.contains("virt_gateway_operator_tokens_signed_total{alg=\"RS256\"} 1"));
        assert!(text.contains("virt_gateway_operator_leader 0"));
    }
}
