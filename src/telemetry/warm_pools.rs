//! The warm pools' metrics: claims that found a pooled sandbox and those
//! that did not, how long a refill takes to make one, and how many each
//! template's pool holds ready.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimLabels {
    template_id: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabels {
    template_id: String,
}

/// The warm pools' families.
pub struct WarmPoolFamilies {
    claims: Family<ClaimLabels, Counter>,
    refill_seconds: Histogram,
    ready: Family<TemplateLabels, Gauge>,
}

impl WarmPoolFamilies {
    /// The families, registered in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let claims = Family::<ClaimLabels, Counter>::default();
        registry.register(
            "warm_pool_claims",
            "Creates naming a template with a warm pool, by whether they claimed a pooled \
             sandbox (hit) or found none ready and made one (miss)",
            claims.clone(),
        );
        // 50 ms to about 100 s.
        let refill_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register_with_unit(
            "warm_pool_refill",
            "How long this server took to make one pooled sandbox, setup included",
            Unit::Seconds,
            refill_seconds.clone(),
        );
        let ready = Family::<TemplateLabels, Gauge>::default();
        registry.register(
            "warm_pool_ready",
            "Pooled sandboxes ready to claim per template, as of the last refill pass of the \
             server holding the reaper's lease",
            ready.clone(),
        );
        Self {
            claims,
            refill_seconds,
            ready,
        }
    }

    /// A create from template `template_id` claimed a pooled sandbox
    /// (`hit`) or found none.
    pub fn claimed(&self, template_id: &str, hit: bool) {
        self.claims
            .get_or_create(&ClaimLabels {
                template_id: template_id.to_owned(),
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    /// A refill made one pooled sandbox in `took`.
    pub fn refilled(&self, took: Duration) {
        self.refill_seconds.observe(took.as_secs_f64());
    }

    /// Template `template_id`'s pool holds `ready` sandboxes ready to claim.
    pub fn set_ready(&self, template_id: &str, ready: u32) {
        self.ready
            .get_or_create(&TemplateLabels {
                template_id: template_id.to_owned(),
            })
            .set(i64::from(ready));
    }

    /// Template `template_id` has no pool any more.
    pub fn forget(&self, template_id: &str) {
        self.ready.remove(&TemplateLabels {
            template_id: template_id.to_owned(),
        });
    }
}
