package dev.curvewatch.workers;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.DoubleSupplier;

/**
 * The worker's counters and gauges, on the Prometheus Java client (its own registry, so two
 * workers in one JVM do not share series), exposed in the Prometheus text format by
 * {@link #scrape()}. Every family is declared here with its label names; labels are passed as
 * name/value pairs. Thread-safe: the poll loop writes, the HTTP thread reads.
 */
public final class WorkerMetrics {
    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final Map<String, Counter> counters = new HashMap<>();
    private final Map<String, DoubleSupplier> gauges = new ConcurrentHashMap<>();
    private final PrometheusTextFormatWriter writer = PrometheusTextFormatWriter.create();

    public WorkerMetrics() {
        declareCounter("curvewatch_worker_records_total", "Capture records consumed, by result (accumulated, probe, dead_letter).", "result");
        declareCounter("curvewatch_worker_bytes_total", "Capture value bytes consumed.");
        declareCounter("curvewatch_worker_tokens_total", "Tokens accumulated into factors.");
        declareCounter("curvewatch_worker_dead_letters_total", "Records sent to dead letters, by reason code.", "reason");
        declareCounter("curvewatch_worker_accumulate_flops_total", "Floating-point operations of factor updates (2 x tokens x d^2 per factor, as syrk counts them).");
        declareCounter("curvewatch_worker_accumulate_seconds_total", "Time spent in factor updates; rate(flops)/rate(seconds) = GFLOP/s x 1e9.");
        declareCounter("curvewatch_worker_checkpoints_total", "Committed checkpoint transactions.");
        declareCounter("curvewatch_worker_checkpoint_seconds_total", "Time spent writing and committing checkpoints.");
        declareCounter("curvewatch_worker_checkpoint_bytes_total", "Factor chunk bytes written.");
        declareCounter("curvewatch_worker_checkpoint_failures_total", "Checkpoints that failed and were rolled back to the last committed one.");
        declareCounter("curvewatch_worker_restores_total", "Layers restored from a factor manifest.");
        declareCounter("curvewatch_worker_rebalances_total", "Partition assignment changes, by kind (assigned, revoked, lost).", "kind");
        declareGauge("curvewatch_worker_checkpoint_last_seconds", "Duration of the last checkpoint.");
        declareGauge("curvewatch_worker_accumulate_gflops", "Factor update throughput since the previous checkpoint, GFLOP/s.");
        declareGauge("curvewatch_worker_lag_records", "Records between the worker's position and the end of its capture partitions.");
        declareGauge("curvewatch_worker_owned_partitions", "Capture partitions assigned to this worker.");
        declareGauge("curvewatch_worker_owned_layers", "Run/layer accumulators held in memory.");
        declareGauge("curvewatch_worker_factor_bytes", "Bytes of factor sums held in memory.");
        declareGauge("curvewatch_worker_up", "1 while the poll loop runs.");
    }

    private void declareCounter(String name, String help, String... labelNames) {
        counters.put(name, Counter.builder().name(name).help(help).labelNames(labelNames).register(registry));
    }

    /** A gauge family whose value is read, at scrape time, from the supplier {@link #gauge(String, DoubleSupplier)} set last. */
    private void declareGauge(String name, String help) {
        GaugeWithCallback.builder().name(name).help(help).callback(cb -> {
            DoubleSupplier s = gauges.get(name);
            if (s != null) {
                double v;
                try {
                    v = s.getAsDouble();
                } catch (RuntimeException e) {
                    v = Double.NaN; // a failing gauge must not fail the whole scrape
                }
                cb.call(v);
            }
        }).register(registry);
    }

    private Counter family(String name) {
        Counter c = counters.get(name);
        if (c == null) {
            throw new IllegalArgumentException("no counter family " + name);
        }
        return c;
    }

    /** Adds to a counter; {@code labels} are name/value pairs in the family's label order. */
    public void inc(String name, double amount, String... labels) {
        Counter c = family(name);
        if (labels.length == 0) {
            c.inc(amount);
        } else {
            c.labelValues(values(labels)).inc(amount);
        }
    }

    /** Sets (or replaces) the supplier a declared gauge reads at scrape time. */
    public void gauge(String name, DoubleSupplier value) {
        gauges.put(name, value);
    }

    /** Current value of a counter series (0 if never incremented); for tests and the benchmark. */
    public double counter(String name, String... labels) {
        Counter c = family(name);
        return labels.length == 0 ? c.get() : c.labelValues(values(labels)).get();
    }

    public double gaugeValue(String name) {
        DoubleSupplier s = gauges.get(name);
        return s == null ? Double.NaN : s.getAsDouble();
    }

    /** Text exposition (format 0.0.4) of every series. */
    public String scrape() {
        ByteArrayOutputStream out = new ByteArrayOutputStream(8192);
        try {
            writer.write(out, registry.scrape());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    /** The content type of {@link #scrape()}. */
    public static String contentType() {
        return PrometheusTextFormatWriter.CONTENT_TYPE;
    }

    private static String[] values(String[] nameValuePairs) {
        String[] v = new String[nameValuePairs.length / 2];
        for (int i = 0; i < v.length; i++) {
            v[i] = nameValuePairs[2 * i + 1];
        }
        return v;
    }
}
