package dev.curvewatch.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The loop flags of {@code curvewatch train}. */
class TrainCommandTest {

    private static TrainCommand parse(String... args) {
        TrainCommand t = new TrainCommand();
        new CommandLine(t).parseArgs(args);
        return t;
    }

    @Test
    void loopFlagsParse() {
        TrainCommand defaults = parse();
        assertTrue(defaults.answerCandidates, "answering is on by default");
        assertEquals(0, defaults.injectNoiseAtEpoch);
        assertNull(defaults.snapshotDir);
        assertFalse(defaults.applySnapshots);
        TrainCommand t = parse("--no-answer-candidates", "--inject-noise-at-epoch", "7", "--snapshot-dir", "/tmp/s",
                "--apply-snapshots");
        assertFalse(t.answerCandidates);
        assertEquals(7, t.injectNoiseAtEpoch);
        assertEquals(Path.of("/tmp/s"), t.snapshotDir);
        assertTrue(t.applySnapshots);
        assertTrue(parse("--answer-candidates").answerCandidates);
    }

    @Test
    void snapshotFlagsNeedABrokerAndApplyNeedsADirectory() {
        assertEquals(2, new CommandLine(new TrainCommand()).execute("--snapshot-dir", "/tmp/s"));
        assertEquals(2, new CommandLine(new TrainCommand()).execute("--bootstrap", "127.0.0.1:1", "--apply-snapshots"));
        assertEquals(2, new CommandLine(new TrainCommand()).execute("--inject-noise-at-epoch", "-1"));
    }

    @Test
    void injectedRunReportsTheStepOfTheInjection(@TempDir Path dir) throws Exception {
        Path json = dir.resolve("summary.json");
        int code = new CommandLine(new TrainCommand()).execute("--hidden", "16", "--epochs", "2",
                "--inject-noise-at-epoch", "1", "--json", json.toString());
        assertEquals(0, code);
        @SuppressWarnings("unchecked")
        Map<String, Object> summary = new ObjectMapper().readValue(json.toFile(), Map.class);
        assertEquals(40, ((Number) summary.get("steps")).intValue());
        assertEquals(20, ((Number) summary.get("noise_injected_at_step")).intValue());
        assertEquals(false, summary.get("answering_candidates"), "offline: nothing to answer");
    }
}
