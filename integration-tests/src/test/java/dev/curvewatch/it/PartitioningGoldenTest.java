package dev.curvewatch.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The golden partitions of {@code golden/partitions.json} (many keys, non-ASCII ones among them, and
 * many partition counts) are what Kafka's Java producer chooses for a key; the workers check
 * captures against that same partitioner ({@code CaptureValidatorTest}, in their module: its class
 * is internal). The Python client's {@code tests/test_partitioning.py} reads the same
 * file, so the two sides cannot drift apart unnoticed (issue 11: librdkafka's default partitioner
 * is not Java's, and a watched layer's captures were all dead-lettered).
 */
class PartitioningGoldenTest {
    @Test
    void goldenPartitionsAreThoseOfTheJavaProducerAndTheWorkers() throws Exception {
        JsonNode golden;
        try (InputStream in = getClass().getResourceAsStream("/golden/partitions.json")) {
            assertNotNull(in, "golden/partitions.json on the test classpath");
            golden = new ObjectMapper().readTree(in);
        }
        JsonNode counts = golden.get("partition_counts");
        JsonNode keys = golden.get("keys");
        assertTrue(keys.size() > 200, "many keys: " + keys.size());
        int nonAscii = 0;
        for (JsonNode e : keys) {
            String key = e.get("key").asText();
            byte[] bytes = key.getBytes(StandardCharsets.UTF_8);
            nonAscii += bytes.length != key.length() ? 1 : 0;
            assertEquals(e.get("utf8_hex").asText(), HexFormat.of().formatHex(bytes), key);
            assertEquals(e.get("murmur2").asInt(), Utils.murmur2(bytes), key);
            for (int i = 0; i < counts.size(); i++) {
                int n = counts.get(i).asInt();
                int expected = e.get("partitions").get(i).asInt();
                // the producer's default partitioner for a keyed record, and the workers' check of captures
                assertEquals(expected, BuiltInPartitioner.partitionForKey(bytes, n), key + " of " + n);
            }
        }
        assertTrue(nonAscii >= 10, "non-ASCII keys: " + nonAscii);
    }
}
