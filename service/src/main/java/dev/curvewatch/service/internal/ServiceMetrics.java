package dev.curvewatch.service.internal;

import dev.curvewatch.metrics.MetricFamilies;

import java.util.function.DoubleSupplier;

/**
 * The service's counter and gauge families: their names, help texts and labels, declared on
 * {@code metrics}' {@link MetricFamilies} (its own registry, undeclared names refused, a throwing
 * gauge reads NaN), as the workers' WorkerMetrics. Labels are passed as values in the family's
 * label order; {@link #scrape()} is the text format served at /metrics. Thread-safe.
 */
public final class ServiceMetrics {
    private final MetricFamilies families = new MetricFamilies()
            .declareCounter("curvewatch_service_refreshes_total", "Layer refreshes, by result (ok, failed, silent: recomputed after a restart without republishing).", "result")
            .declareCounter("curvewatch_service_refresh_seconds_total", "Time spent in eigendecompositions of refreshes.")
            .declareCounter("curvewatch_service_refresh_latency_seconds_total", "Sum over refreshes of the time from the factors manifest being read to its signals being sent.")
            .declareCounter("curvewatch_service_signals_total", "Signals published.")
            .declareCounter("curvewatch_service_scores_total", "ExampleScores records published.")
            .declareCounter("curvewatch_service_candidates_total", "EditCandidates sent to trainers (acknowledged by Kafka).")
            .declareCounter("curvewatch_service_candidate_parts_total", "Records the sent EditCandidates took (a candidate above candidate.part.max.bytes travels in row parts).")
            .declareCounter("curvewatch_service_candidates_failed_total", "EditCandidates Kafka refused (dropped, not outstanding).")
            .declareCounter("curvewatch_service_candidates_deferred_total", "Refreshes that sent no candidate, by why (outstanding: the layer's previous one is still out; paced: too few trainer steps or too little drift since it, calibration.min.steps/max.steps/min.drift).", "why")
            .declareCounter("curvewatch_service_candidates_declined_total", "Candidates the trainer declined (ProbeResult.declined): the calibration ended at once and the layer backed off.")
            .declareCounter("curvewatch_service_probe_results_total", "Probe results received, by result (calibrated, dead_letter).", "result")
            .declareCounter("curvewatch_service_calibration_timeouts_total", "Candidates not answered within calibration.timeout.ms.")
            .declareCounter("curvewatch_service_alerts_total", "Alerts published to alerts.raw, by status.", "status")
            .declareCounter("curvewatch_service_dead_letters_total", "Records sent to dead letters, by reason code.", "reason")
            .declareCounter("curvewatch_service_dead_letters_read_total", "Dead letters of every component read back from topic dead-letters, by result (attributed: counted against a run or layer held; unattributed; undecodable).", "result")
            .declareCounter("curvewatch_service_snapshots_total", "Edit requests handled, by result (written, duplicate, failed: a FAILED SnapshotEvent and a dead letter).", "result")
            .declareCounter("curvewatch_service_edit_requests_total", "Edit requests published by POST /api/runs/{run}/edits.")
            .declareCounter("curvewatch_service_http_requests_total", "HTTP responses, by status code.", "code")
            .declareCounter("curvewatch_service_live_dropped_total", "Live events not written to a slow SSE/WebSocket client.")
            .declareCounter("curvewatch_service_live_refused_total", "SSE/WebSocket clients answered 503: live.clients.max were connected.")
            .declareCounter("curvewatch_service_records_total", "Records read, by topic kind.", "topic")
            .declareGauge("curvewatch_service_refresh_latency_last_seconds", "Factors manifest read -> signals sent, of the latest refresh.")
            .declareGauge("curvewatch_service_runs", "Runs held in memory.")
            .declareGauge("curvewatch_service_owned_runs", "Runs this instance owns (refreshes, calibrates, alerts on, edits): its share of the edit-requests partitions.")
            .declareGauge("curvewatch_service_layers", "Layers held in memory.")
            .declareGauge("curvewatch_service_factor_bytes", "Factor chunk bytes held (one copy per layer).")
            .declareGauge("curvewatch_service_parked_weight_bytes", "Weight record bytes of unregistered runs held back (bounded by weights.parked.max.bytes).")
            .declareGauge("curvewatch_service_live_clients", "Connected SSE and WebSocket clients.")
            .declareGauge("curvewatch_service_caught_up", "1 once the start-up catch-up is done.")
            .declareGauge("curvewatch_service_firing_rules", "Rule/run/layer combinations firing now.")
            .declareGauge("curvewatch_service_up", "1 while the ingest loop runs.");

    /** Adds to a counter; {@code labelValues} in the family's label order. */
    public void inc(String name, double amount, String... labelValues) {
        families.inc(name, amount, labelValues);
    }

    public void inc(String name, String... labelValues) {
        families.inc(name, 1, labelValues);
    }

    public double counter(String name, String... labelValues) {
        return families.counter(name, labelValues);
    }

    /** Sets the supplier a declared gauge reads at scrape time. */
    public void gauge(String name, DoubleSupplier value) {
        families.gauge(name, value);
    }

    public String scrape() {
        return families.scrape();
    }

    public static String contentType() {
        return MetricFamilies.contentType();
    }
}
