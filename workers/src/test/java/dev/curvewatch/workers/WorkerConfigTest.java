package dev.curvewatch.workers;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Properties;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class WorkerConfigTest {
    @Test
    void fileThenEnvironmentThenFlags(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("worker.properties");
        Files.writeString(file, "checkpoint.tokens=5\ncheckpoint.interval.ms=7\ngroup.id=from-file\n"
                + "kafka.security.protocol=SASL_SSL\nkafka.sasl.jaas.config=secret\n");
        WorkerConfig c = WorkerConfig.load(file,
                Map.of("CURVEWATCH_WORKER_CHECKPOINT_INTERVAL_MS", "70", "CURVEWATCH_WORKER_GROUP_ID", "from-env"),
                Map.of("group.id", "from-flag", "bootstrap", "h:1"));
        assertEquals(5, c.checkpointTokens());
        assertEquals(70, c.checkpointIntervalMs());
        assertEquals("from-flag", c.groupId());
        Properties p = c.kafkaProperties();
        assertEquals("h:1", p.getProperty("bootstrap.servers"));
        assertEquals("SASL_SSL", p.getProperty("security.protocol"));
        assertEquals("***", c.describe().get("kafka.sasl.jaas.config"));
    }

    @Test
    void rejectsNonsense() {
        assertThrows(IllegalArgumentException.class, () -> WorkerConfig.of(Map.of("precision", "FLOAT8")));
        assertThrows(IllegalArgumentException.class, () -> WorkerConfig.of(Map.of("checkpoint.tokens", "0")));
        assertThrows(IllegalArgumentException.class, () -> WorkerConfig.of(Map.of("checkpoint.chunk.bytes", "99999999")));
        assertThrows(IllegalArgumentException.class, () -> WorkerConfig.of(Map.of("checkpoint.tokens", "many")));
        assertTrue(WorkerConfig.defaults().containsKey("unknown.run.grace.ms"));
    }
}
