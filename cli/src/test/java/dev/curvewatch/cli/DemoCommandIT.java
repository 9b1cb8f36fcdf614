package dev.curvewatch.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code curvewatch demo} end to end at its default size: real broker, worker, streams app and
 * service in-process, the DJL trainer memorizing flipped labels from epoch 15 on. The summary it
 * writes must show the worker's factors equal to the trainer's, a memorization alert after (never
 * before) the flipped labels arrive, the flipped examples at the top of the service's per-example
 * scores, an alert-triggered edited snapshot the trainer applied, no dead
 * letters anywhere, and a final edit through the authenticated REST API that removes the memorized
 * labels (DESIGN §6 targets).
 */
@Tag("integration")
class DemoCommandIT {
    @Test
    void demoRunsTheWholeLoopAndRemovesMemorizedLabels(@TempDir Path dir) throws Exception {
        // candidates of 1-2 MB in 256 KiB parts: the service splits, the trainer reassembles (EditCandidate v2)
        int code = Curvewatch.commandLine().execute("demo", "--data-dir", dir.toString(), "--run-id", "it-demo",
                "--http-port", "0", "--service-set", "candidate.part.max.bytes=262144");
        assertEquals(0, code);
        Path summaryFile = dir.resolve("runs/it-demo/summary.json");
        assertTrue(Files.isRegularFile(summaryFile), "no summary at " + summaryFile);
        JsonNode s = new ObjectMapper().readTree(summaryFile.toFile());

        JsonNode t = s.at("/training");
        assertEquals(0, t.get("dropped_captures").asLong());
        assertEquals(0, t.get("failed_records").asLong());
        assertEquals(900, t.get("steps").asLong());
        long injected = t.get("noise_injected_at_step").asLong();
        assertEquals(300, injected, "15 clean epochs of 20 steps");
        assertTrue(t.get("candidates_answered").asLong() >= 10, "the trainer answered the service's candidates: " + t);
        assertTrue(t.get("candidate_parts_received").asLong() >= 4 * t.get("candidates_answered").asLong(),
                "every candidate came in parts: " + t);
        assertEquals(0, t.get("candidates_refused").asLong(), t.toString());
        for (String layer : new String[] {"fc1", "fc2"}) {
            JsonNode f = s.at("/factors/" + layer);
            // 45 epochs x 2000 examples, one token per example; probes are not accumulated
            assertEquals(90_000, f.get("tokens").asLong(), layer);
            // same captures in the same order through the same FP64 accumulator: equal up to rounding
            assertTrue(f.get("relative_error_A_vs_trainer").asDouble() <= 1e-12, f.toString());
            assertTrue(f.get("relative_error_G_vs_trainer").asDouble() <= 1e-12, f.toString());
        }
        assertEquals("djl-trainer", s.at("/registry/source").asText(), s.at("/registry").toString());
        assertEquals(2, s.at("/registry/layers").size());

        // the live loop: a clean baseline, then an alert after the flipped labels arrive and never before
        JsonNode loop = s.at("/loop");
        int criticalWithin3 = 0;
        for (String layer : new String[] {"fc1", "fc2"}) {
            JsonNode l = loop.at("/layers/" + layer);
            assertTrue(l.get("calibrated_refreshes_before_injection").asLong() >= 5, "clean baseline of " + layer + ": " + l);
            if (l.has("first_alert_step")) {
                assertTrue(l.get("first_alert_step").asLong() >= injected, "alert before memorization started: " + l);
                if (l.get("first_alert_severity").asText().equals("CRITICAL") && l.get("refreshes_from_injection_to_alert").asLong() <= 3) {
                    criticalWithin3++;
                }
            }
        }
        assertTrue(criticalWithin3 >= 1, "a CRITICAL memorization alert within 3 refreshes of the injection: " + loop.at("/layers"));
        // the examples the service ranks highest are the memorized ones (10% of the training set is flipped)
        int bestTop20 = 0;
        for (String layer : new String[] {"fc1", "fc2"}) {
            bestTop20 = Math.max(bestTop20, loop.at("/layers/" + layer + "/latest_top20_flipped").asInt());
        }
        assertTrue(bestTop20 >= 16, "top 20 by exact edit sensitivity, flipped: " + loop.at("/layers"));
        // the default streams rule turned it into an edit request, the service into a snapshot, the trainer applied it
        boolean ruleSnapshot = false;
        for (JsonNode snap : loop.get("snapshots")) {
            ruleSnapshot |= snap.get("idempotency_key").asText().startsWith("rule:gap-critical:");
        }
        assertTrue(ruleSnapshot, "an alert-triggered snapshot: " + loop.get("snapshots"));
        assertTrue(t.get("snapshots_applied").asLong() >= 1, t.toString());
        assertEquals(0, t.get("snapshots_refused").asLong(), t.toString());
        assertEquals(0, loop.get("dead_letters_by_topic_and_reason").size(), "no dead letters: " + loop.get("dead_letters_by_topic_and_reason"));

        // the final edit through REST: authenticated only, on the final weights, and it removes the memorized labels
        JsonNode e = s.at("/final_edit");
        assertEquals(401, e.get("status_without_token").asInt());
        assertEquals(202, e.get("status_with_token").asInt());
        assertEquals(899, e.get("snapshot_step").asLong(), "the final weights were edited");
        JsonNode before = e.get("before");
        JsonNode after = e.get("after");
        assertTrue(after.get("flipped_memorized").asDouble() <= 0.05, after.toString());
        assertTrue(after.get("flipped_true").asDouble() >= 0.9, after.toString());
        assertTrue(after.get("flipped_memorized").asDouble() <= before.get("flipped_memorized").asDouble(), e.toString());
        assertTrue(after.get("test_accuracy").asDouble() >= before.get("test_accuracy").asDouble() - 0.005,
                "test accuracy " + before.get("test_accuracy") + " -> " + after.get("test_accuracy"));
    }
}
