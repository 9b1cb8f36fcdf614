package dev.curvewatch.workers.internal;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The workers check each capture's partition against the golden partitions that Kafka's Java
 * producer chooses and the Python client computes (integration-tests' {@code golden/partitions.json},
 * read there by PartitioningGoldenTest and by clients/python's tests/test_partitioning.py). Here, in
 * the workers' own module, because {@link CaptureValidator} is internal to it.
 */
class CaptureValidatorGoldenTest {
    static final Path GOLDEN = Path.of("..", "integration-tests", "src", "test", "resources", "golden", "partitions.json");

    @Test
    void theWorkersExpectTheGoldenPartitionOfEveryKey() throws Exception {
        assertTrue(Files.isRegularFile(GOLDEN), "the golden file at " + GOLDEN.toAbsolutePath());
        JsonNode golden = new ObjectMapper().readTree(GOLDEN.toFile());
        JsonNode counts = golden.get("partition_counts");
        JsonNode keys = golden.get("keys");
        assertTrue(keys.size() > 200 && counts.size() > 10, "keys " + keys.size() + ", counts " + counts.size());
        for (JsonNode e : keys) {
            String key = e.get("key").asText();
            for (int i = 0; i < counts.size(); i++) {
                int n = counts.get(i).asInt();
                assertEquals(e.get("partitions").get(i).asInt(), CaptureValidator.partitionForKey(key, n), key + " of " + n);
            }
        }
    }
}
