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
 * {@code curvewatch demo} end to end at its default size: real broker, in-process worker, DJL
 * trainer; the summary it writes must show the worker's factors equal to the trainer's and an
 * edit, calibrated on held-out probes only, that removes the memorized labels.
 */
@Tag("integration")
class DemoCommandIT {
    @Test
    void demoRunsThePipelineAndRemovesMemorizedLabels(@TempDir Path dir) throws Exception {
        int code = Curvewatch.commandLine().execute("demo", "--data-dir", dir.toString(), "--run-id", "it-demo");
        assertEquals(0, code);
        Path summaryFile = dir.resolve("runs/it-demo/summary.json");
        assertTrue(Files.isRegularFile(summaryFile), "no summary at " + summaryFile);
        assertTrue(Files.size(dir.resolve("runs/it-demo/edited.safetensors")) > 0);
        JsonNode s = new ObjectMapper().readTree(summaryFile.toFile());

        assertEquals(0, s.at("/training/dropped_captures").asLong());
        assertEquals(0, s.at("/training/failed_records").asLong());
        for (String layer : new String[] {"fc1", "fc2"}) {
            JsonNode f = s.at("/factors/" + layer);
            // 30 epochs x 2000 examples, one token per example; probes are not accumulated
            assertEquals(60_000, f.get("tokens").asLong(), layer);
            // same captures in the same order through the same FP64 accumulator: equal up to rounding
            assertTrue(f.get("relative_error_A_vs_trainer").asDouble() <= 1e-12, f.toString());
            assertTrue(f.get("relative_error_G_vs_trainer").asDouble() <= 1e-12, f.toString());
        }
        // the streams app registered the run from the trainer's RunInfo
        assertEquals("djl-trainer", s.at("/registry/source").asText(), s.at("/registry").toString());
        assertEquals(2, s.at("/registry/layers").size());
        JsonNode before = s.at("/edit/before");
        JsonNode after = s.at("/edit/after");
        // the fine-tune memorized the flipped labels, and the edit (DESIGN §6 targets) removes that
        assertTrue(before.get("flipped_memorized").asDouble() >= 0.9, before.toString());
        assertTrue(after.get("flipped_memorized").asDouble() <= 0.05, after.toString());
        assertTrue(after.get("flipped_true").asDouble() >= 0.9, after.toString());
        assertTrue(after.get("test_accuracy").asDouble() >= before.get("test_accuracy").asDouble() - 0.005,
                "test accuracy " + before.get("test_accuracy") + " -> " + after.get("test_accuracy"));
    }
}
