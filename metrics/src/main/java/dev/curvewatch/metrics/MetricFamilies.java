package dev.curvewatch.metrics;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.DoubleSupplier;

/**
 * The counter and gauge families of one component on the Prometheus Java client, in a registry of
 * the component's own (a worker, the streams app and the service share one JVM in the demo, and
 * must not share series). The component declares every family, with its help text and label
 * names, before it counts anything; a name that was not declared is refused, so a typo is an
 * error instead of a series nobody scrapes. Gauges are read at scrape time from the supplier set
 * last; one whose supplier throws reads NaN, so one broken gauge does not fail the whole scrape.
 * Thread-safe: the component's threads count while an HTTP thread scrapes.
 */
public final class MetricFamilies {
    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final Map<String, Counter> counters = new ConcurrentHashMap<>();
    private final Map<String, List<String>> labelNames = new ConcurrentHashMap<>();
    private final Map<String, DoubleSupplier> gaugeSuppliers = new ConcurrentHashMap<>();
    private final Set<String> gaugeNames = ConcurrentHashMap.newKeySet();
    private final PrometheusTextFormatWriter writer = PrometheusTextFormatWriter.create();

    /** Declares a counter family; {@link #inc} then takes one value per label name, in this order. */
    public MetricFamilies declareCounter(String name, String help, String... labels) {
        counters.put(name, Counter.builder().name(name).help(help).labelNames(labels).register(registry));
        labelNames.put(name, List.of(labels)); // second: a name that has label names always has its counter
        return this;
    }

    /** Declares a gauge family without labels, read at scrape time from the supplier {@link #gauge} set last (absent until one is). */
    public MetricFamilies declareGauge(String name, String help) {
        gaugeNames.add(name);
        GaugeWithCallback.builder().name(name).help(help).callback(cb -> {
            DoubleSupplier s = gaugeSuppliers.get(name);
            if (s != null) {
                cb.call(read(s));
            }
        }).register(registry);
        return this;
    }

    /** Adds {@code amount} (>= 0) to a declared counter's series; {@code labelValues} in the family's label order. */
    public void inc(String name, double amount, String... labelValues) {
        Counter c = counterFamily(name, labelValues);
        if (labelValues.length == 0) {
            c.inc(amount);
        } else {
            c.labelValues(labelValues).inc(amount);
        }
    }

    /** Current value of a counter series (0 if never incremented). */
    public double counter(String name, String... labelValues) {
        Counter c = counterFamily(name, labelValues);
        return labelValues.length == 0 ? c.get() : c.labelValues(labelValues).get();
    }

    /**
     * The label values of name/value pairs ({@code "reason", "NON_FINITE"}), checked against the
     * family's label names: for callers that name each label where they count.
     */
    public String[] labelValues(String name, String... nameValuePairs) {
        List<String> declared = declaredLabels(name);
        String[] values = new String[nameValuePairs.length / 2];
        String[] names = new String[values.length];
        for (int i = 0; i < values.length; i++) {
            names[i] = nameValuePairs[2 * i];
            values[i] = nameValuePairs[2 * i + 1];
        }
        if (nameValuePairs.length % 2 != 0 || !declared.equals(Arrays.asList(names))) {
            throw new IllegalArgumentException(name + " has the labels " + declared + ", got the name/value pairs "
                    + Arrays.toString(nameValuePairs));
        }
        return values;
    }

    /** Sets (or replaces) the supplier a declared gauge reads at scrape time. */
    public void gauge(String name, DoubleSupplier value) {
        requireGauge(name);
        gaugeSuppliers.put(name, value);
    }

    /** A declared gauge's value as a scrape would read it: NaN while no supplier is set or when it throws. */
    public double gaugeValue(String name) {
        requireGauge(name);
        DoubleSupplier s = gaugeSuppliers.get(name);
        return s == null ? Double.NaN : read(s);
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

    private Counter counterFamily(String name, String[] labelValues) {
        List<String> declared = declaredLabels(name);
        if (labelValues.length != declared.size()) {
            throw new IllegalArgumentException(name + " has the labels " + declared + ", got the values " + Arrays.toString(labelValues));
        }
        return counters.get(name);
    }

    private List<String> declaredLabels(String name) {
        List<String> declared = labelNames.get(name);
        if (declared == null) {
            throw new IllegalArgumentException("no counter family " + name);
        }
        return declared;
    }

    private void requireGauge(String name) {
        if (!gaugeNames.contains(name)) {
            throw new IllegalArgumentException("no gauge family " + name);
        }
    }

    private static double read(DoubleSupplier s) {
        try {
            return s.getAsDouble();
        } catch (RuntimeException e) {
            return Double.NaN; // a failing gauge must not fail the whole scrape
        }
    }
}
