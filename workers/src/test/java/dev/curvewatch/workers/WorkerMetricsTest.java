package dev.curvewatch.workers;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class WorkerMetricsTest {
    @Test
    void textExposition() {
        WorkerMetrics m = new WorkerMetrics();
        m.inc("curvewatch_worker_dead_letters_total", 1, "reason", "NON_FINITE");
        m.inc("curvewatch_worker_dead_letters_total", 2, "reason", "NON_FINITE");
        m.inc("curvewatch_worker_tokens_total", 1.5);
        m.gauge("curvewatch_worker_lag_records", () -> 42);
        String text = m.scrape();
        assertTrue(text.contains("# TYPE curvewatch_worker_dead_letters_total counter\n"), text);
        // the Prometheus client writes every value as a double
        assertTrue(text.contains("curvewatch_worker_dead_letters_total{reason=\"NON_FINITE\"} 3.0\n"), text);
        assertTrue(text.contains("curvewatch_worker_tokens_total 1.5\n"), text);
        assertTrue(text.contains("# TYPE curvewatch_worker_lag_records gauge\n"), text);
        assertTrue(text.contains("curvewatch_worker_lag_records 42.0\n"), text);
        assertEquals(3, m.counter("curvewatch_worker_dead_letters_total", "reason", "NON_FINITE"));
        // a gauge whose supplier throws reads NaN instead of failing the scrape
        m.gauge("curvewatch_worker_up", () -> {
            throw new IllegalStateException("closed");
        });
        assertTrue(m.scrape().contains("curvewatch_worker_up NaN\n"), m.scrape());
        assertThrows(IllegalArgumentException.class, () -> m.inc("curvewatch_worker_no_such_total", 1));
    }
}
