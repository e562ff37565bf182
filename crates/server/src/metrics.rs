//! The Prometheus recorder, installed once per process; histograms get
//! buckets fit for request latencies.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide recorder's handle (installed on first use).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Histogram samples are kept until upkeep folds them into the buckets:
            // without this, and with nobody scraping /metrics, every request's
            // sample would stay in memory.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("ferrygate-metrics".into()).spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "metrics upkeep thread did not start; histograms fold at scrape time only");
            }
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics shows Ferrygate's own only if it is this one"
                );
            }
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn histograms_render_with_buckets() {
        let handle = super::handle();
        metrics::histogram!("ferrygate_test_duration_seconds", "provider" => "p").record(0.003);
        handle.run_upkeep();
        let text = handle.render();
        assert!(text.contains("ferrygate_test_duration_seconds_bucket{provider=\"p\",le=\"0.005\"} 1"), "{text}");
    }
}
