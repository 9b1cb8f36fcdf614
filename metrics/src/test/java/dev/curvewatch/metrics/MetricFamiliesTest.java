package dev.curvewatch.metrics;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MetricFamiliesTest {
    private static MetricFamilies families() {
        return new MetricFamilies()
                .declareCounter("thing_records_total", "Records, by result.", "result")
                .declareCounter("thing_bytes_total", "Bytes.")
                .declareGauge("thing_lag_records", "Lag.")
                .declareGauge("thing_up", "1 while up.");
    }

    @Test
    void countersAndGaugesInTheTextFormat() {
        MetricFamilies m = families();
        m.inc("thing_records_total", 1, "ok");
        m.inc("thing_records_total", 2, "ok");
        m.inc("thing_bytes_total", 1.5);
        m.gauge("thing_lag_records", () -> 42);
        String text = m.scrape();
        assertTrue(text.contains("# HELP thing_records_total Records, by result.\n"), text);
        assertTrue(text.contains("# TYPE thing_records_total counter\n"), text);
        assertTrue(text.contains("thing_records_total{result=\"ok\"} 3.0\n"), text);
        assertTrue(text.contains("thing_bytes_total 1.5\n"), text);
        assertTrue(text.contains("# TYPE thing_lag_records gauge\n"), text);
        assertTrue(text.contains("thing_lag_records 42.0\n"), text);
        assertFalse(text.contains("thing_up "), "a gauge without a supplier has no sample: " + text);
        assertEquals(3, m.counter("thing_records_total", "ok"));
        assertEquals(0, m.counter("thing_records_total", "failed"));
        assertEquals(42, m.gaugeValue("thing_lag_records"));
        assertTrue(Double.isNaN(m.gaugeValue("thing_up")));
        assertEquals("text/plain; version=0.0.4; charset=utf-8", MetricFamilies.contentType());
    }

    @Test
    void aThrowingGaugeReadsNaN() {
        MetricFamilies m = families();
        m.gauge("thing_up", () -> {
            throw new IllegalStateException("closed");
        });
        assertTrue(m.scrape().contains("thing_up NaN\n"), m.scrape());
        assertTrue(Double.isNaN(m.gaugeValue("thing_up")));
    }

    @Test
    void undeclaredNamesAndWrongLabelsAreRefused() {
        MetricFamilies m = families();
        assertEquals("no counter family thing_no_such_total",
                assertThrows(IllegalArgumentException.class, () -> m.inc("thing_no_such_total", 1)).getMessage());
        assertEquals("no gauge family thing_no_such",
                assertThrows(IllegalArgumentException.class, () -> m.gauge("thing_no_such", () -> 1)).getMessage());
        assertThrows(IllegalArgumentException.class, () -> m.gaugeValue("thing_records_total"));
        assertEquals("thing_records_total has the labels [result], got the values []",
                assertThrows(IllegalArgumentException.class, () -> m.inc("thing_records_total", 1)).getMessage());
        assertThrows(IllegalArgumentException.class, () -> m.inc("thing_bytes_total", 1, "extra"));
    }

    @Test
    void nameValuePairsAreCheckedAgainstTheLabelNames() {
        MetricFamilies m = families();
        assertArrayEquals(new String[] {"ok"}, m.labelValues("thing_records_total", "result", "ok"));
        assertArrayEquals(new String[0], m.labelValues("thing_bytes_total"));
        assertEquals("thing_records_total has the labels [result], got the name/value pairs [reason, ok]",
                assertThrows(IllegalArgumentException.class, () -> m.labelValues("thing_records_total", "reason", "ok")).getMessage());
        assertThrows(IllegalArgumentException.class, () -> m.labelValues("thing_records_total", "result"));
        assertThrows(IllegalArgumentException.class, () -> m.labelValues("thing_no_such_total", "result", "ok"));
    }

    @Test
    void twoComponentsDoNotShareSeries() {
        MetricFamilies a = families();
        MetricFamilies b = families();
        a.inc("thing_bytes_total", 5);
        assertEquals(0, b.counter("thing_bytes_total"));
    }
}
