package dev.curvewatch.workers;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
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
        assertTrue(text.contains("curvewatch_worker_dead_letters_total{reason=\"NON_FINITE\"} 3\n"), text);
        assertTrue(text.contains("curvewatch_worker_tokens_total 1.5\n"), text);
        assertTrue(text.contains("curvewatch_worker_lag_records 42\n"), text);
        assertEquals(3, m.counter("curvewatch_worker_dead_letters_total", "reason", "NON_FINITE"));
    }
}
