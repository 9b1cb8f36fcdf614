package dev.curvewatch.workers;

import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.DoubleAdder;
import java.util.function.DoubleSupplier;

/**
 * The worker's counters and gauges, exposed in the Prometheus text format (version 0.0.4) by
 * {@link #scrape()}. Hand-rolled rather than a client library: a dozen series, no histograms,
 * and no extra dependency for the trainer-side users of this module. Thread-safe; the poll loop
 * writes, the HTTP thread reads.
 */
public final class WorkerMetrics {
    private record Family(String help, String type) {
    }

    private final Map<String, Family> families = new ConcurrentHashMap<>();
    /** series name including labels -> value */
    private final Map<String, DoubleAdder> counters = new ConcurrentHashMap<>();
    private final Map<String, DoubleSupplier> gauges = new ConcurrentHashMap<>();

    public WorkerMetrics() {
        describe("curvewatch_worker_records_total", "counter", "Capture records consumed, by result (accumulated, probe, dead_letter).");
        describe("curvewatch_worker_bytes_total", "counter", "Capture value bytes consumed.");
        describe("curvewatch_worker_tokens_total", "counter", "Tokens accumulated into factors.");
        describe("curvewatch_worker_dead_letters_total", "counter", "Records sent to dead letters, by reason code.");
        describe("curvewatch_worker_accumulate_flops_total", "counter", "Floating-point operations of factor updates (2 x tokens x d^2 per factor, as syrk counts them).");
        describe("curvewatch_worker_accumulate_seconds_total", "counter", "Time spent in factor updates; rate(flops)/rate(seconds) = GFLOP/s x 1e9.");
        describe("curvewatch_worker_checkpoints_total", "counter", "Committed checkpoint transactions.");
        describe("curvewatch_worker_checkpoint_seconds_total", "counter", "Time spent writing and committing checkpoints.");
        describe("curvewatch_worker_checkpoint_bytes_total", "counter", "Factor chunk bytes written.");
        describe("curvewatch_worker_checkpoint_failures_total", "counter", "Checkpoints that failed and were rolled back to the last committed one.");
        describe("curvewatch_worker_restores_total", "counter", "Layers restored from a factor manifest.");
        describe("curvewatch_worker_rebalances_total", "counter", "Partition assignment changes, by kind (assigned, revoked, lost).");
        describe("curvewatch_worker_checkpoint_last_seconds", "gauge", "Duration of the last checkpoint.");
        describe("curvewatch_worker_accumulate_gflops", "gauge", "Factor update throughput since the previous checkpoint, GFLOP/s.");
        describe("curvewatch_worker_lag_records", "gauge", "Records between the worker's position and the end of its capture partitions.");
        describe("curvewatch_worker_owned_partitions", "gauge", "Capture partitions assigned to this worker.");
        describe("curvewatch_worker_owned_layers", "gauge", "Run/layer accumulators held in memory.");
        describe("curvewatch_worker_factor_bytes", "gauge", "Bytes of factor sums held in memory.");
        describe("curvewatch_worker_up", "gauge", "1 while the poll loop runs.");
    }

    private void describe(String name, String type, String help) {
        families.put(name, new Family(help, type));
    }

    private static String series(String name, String... labels) {
        if (labels.length == 0) {
            return name;
        }
        StringBuilder sb = new StringBuilder(name).append('{');
        for (int i = 0; i < labels.length; i += 2) {
            if (i > 0) {
                sb.append(',');
            }
            sb.append(labels[i]).append("=\"").append(labels[i + 1].replace("\\", "\\\\").replace("\"", "\\\"")).append('"');
        }
        return sb.append('}').toString();
    }

    public void inc(String name, double amount, String... labels) {
        counters.computeIfAbsent(series(name, labels), k -> new DoubleAdder()).add(amount);
    }

    public void gauge(String name, DoubleSupplier value, String... labels) {
        gauges.put(series(name, labels), value);
    }

    /** Current value of a counter series (0 if never incremented); for tests and the benchmark. */
    public double counter(String name, String... labels) {
        DoubleAdder a = counters.get(series(name, labels));
        return a == null ? 0 : a.sum();
    }

    public double gaugeValue(String name, String... labels) {
        DoubleSupplier s = gauges.get(series(name, labels));
        return s == null ? Double.NaN : s.getAsDouble();
    }

    /** Text exposition of every series. */
    public String scrape() {
        Map<String, Double> all = new TreeMap<>();
        counters.forEach((k, v) -> all.put(k, v.sum()));
        gauges.forEach((k, v) -> {
            double d;
            try {
                d = v.getAsDouble();
            } catch (RuntimeException e) {
                d = Double.NaN;
            }
            all.put(k, d);
        });
        StringBuilder out = new StringBuilder(4096);
        String current = null;
        for (Map.Entry<String, Double> e : all.entrySet()) {
            String key = e.getKey();
            int brace = key.indexOf('{');
            String name = brace < 0 ? key : key.substring(0, brace);
            if (!name.equals(current)) {
                Family f = families.get(name);
                if (f != null) {
                    out.append("# HELP ").append(name).append(' ').append(f.help()).append('\n');
                    out.append("# TYPE ").append(name).append(' ').append(f.type()).append('\n');
                }
                current = name;
            }
            out.append(key).append(' ').append(format(e.getValue())).append('\n');
        }
        return out.toString();
    }

    private static String format(double v) {
        if (Double.isNaN(v)) {
            return "NaN";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "+Inf" : "-Inf";
        }
        if (v == Math.rint(v) && Math.abs(v) < 1e15) {
            return Long.toString((long) v);
        }
        return Double.toString(v);
    }
}
