package dev.curvewatch.workers;

import dev.curvewatch.metrics.MetricFamilies;

import java.util.function.DoubleSupplier;

/**
 * The worker's counter and gauge families: their names, help texts and labels, declared on
 * {@code metrics}' {@link MetricFamilies} (a registry per worker, so two workers in one JVM do not
 * share series; undeclared names refused; a throwing gauge reads NaN), exposed in the Prometheus
 * text format by {@link #scrape()}. Labels are passed as name/value pairs, checked against the
 * family's label names. Thread-safe: the poll loop writes, the HTTP thread reads.
 */
public final class WorkerMetrics {
    private final MetricFamilies families = new MetricFamilies()
            .declareCounter("curvewatch_worker_records_total", "Capture records consumed, by result (accumulated, probe, dead_letter).", "result")
            .declareCounter("curvewatch_worker_bytes_total", "Capture value bytes consumed.")
            .declareCounter("curvewatch_worker_tokens_total", "Tokens accumulated into factors.")
            .declareCounter("curvewatch_worker_dead_letters_total", "Records sent to dead letters, by reason code.", "reason")
            .declareCounter("curvewatch_worker_accumulate_flops_total", "Floating-point operations of factor updates (2 x tokens x d^2 per factor, as syrk counts them).")
            .declareCounter("curvewatch_worker_accumulate_seconds_total", "Time spent in factor updates; rate(flops)/rate(seconds) = GFLOP/s x 1e9.")
            .declareCounter("curvewatch_worker_checkpoints_total", "Committed checkpoint transactions.")
            .declareCounter("curvewatch_worker_checkpoint_seconds_total", "Time spent writing and committing checkpoints.")
            .declareCounter("curvewatch_worker_checkpoint_bytes_total", "Factor chunk bytes written.")
            .declareCounter("curvewatch_worker_checkpoint_failures_total", "Checkpoints that failed and were rolled back to the last committed one.")
            .declareCounter("curvewatch_worker_restores_total", "Layers restored from a factor manifest.")
            .declareCounter("curvewatch_worker_unknown_run_deferrals_total", "Captures whose run was not yet registered, each counted once when its partition was first paused on it.")
            .declareCounter("curvewatch_worker_rebalances_total", "Partition assignment changes, by kind (assigned, revoked, lost).", "kind")
            .declareGauge("curvewatch_worker_checkpoint_last_seconds", "Duration of the last checkpoint.")
            .declareGauge("curvewatch_worker_accumulate_gflops", "Factor update throughput since the previous checkpoint, GFLOP/s.")
            .declareGauge("curvewatch_worker_lag_records", "Records between the worker's position and the end of its capture partitions.")
            .declareGauge("curvewatch_worker_owned_partitions", "Capture partitions assigned to this worker.")
            .declareGauge("curvewatch_worker_owned_layers", "Run/layer accumulators held in memory.")
            .declareGauge("curvewatch_worker_factor_bytes", "Bytes of factor sums held in memory.")
            .declareGauge("curvewatch_worker_deferred_partitions", "Capture partitions paused on a capture of a run not yet registered.")
            .declareGauge("curvewatch_worker_up", "1 while the poll loop runs.");

    /** Adds to a counter; {@code labels} are name/value pairs in the family's label order. */
    public void inc(String name, double amount, String... labels) {
        families.inc(name, amount, families.labelValues(name, labels));
    }

    /** Sets (or replaces) the supplier a declared gauge reads at scrape time. */
    public void gauge(String name, DoubleSupplier value) {
        families.gauge(name, value);
    }

    /** Current value of a counter series (0 if never incremented); for tests and the benchmark. */
    public double counter(String name, String... labels) {
        return families.counter(name, families.labelValues(name, labels));
    }

    public double gaugeValue(String name) {
        return families.gaugeValue(name);
    }

    /** Text exposition (format 0.0.4) of every series. */
    public String scrape() {
        return families.scrape();
    }

    /** The content type of {@link #scrape()}. */
    public static String contentType() {
        return MetricFamilies.contentType();
    }
}
