package dev.curvewatch.schemas;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * The shared golden vectors of docs/SPEC-SHARED-RULES.md that concern this module, read from
 * {@code spec/} at the repository root (the Python client's test_spec.py reads the same files):
 * the snapshot uri grammar ({@link SnapshotUris}) and the record limits.
 */
class SharedSpecTest {
    private static final Path SPEC = Path.of("..", "spec");
    private final ObjectMapper json = new ObjectMapper();

    @TestFactory
    Stream<DynamicTest> everyGoldenUriParsesAsTheSpecSays() throws IOException {
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode v : json.readTree(SPEC.resolve("snapshot-uris.json").toFile()).get("vectors")) {
            String uri = v.get("uri").asText();
            JsonNode expect = v.get("expect");
            String name = "'" + (uri.length() > 60 ? uri.substring(0, 60) + "..." : uri).replaceAll("\\p{Cntrl}", "?") + "'";
            tests.add(DynamicTest.dynamicTest(name, () -> {
                if (expect.isTextual()) {
                    assertEquals("INVALID", expect.asText());
                    assertThrows(InvalidRecordException.class, () -> SnapshotUris.parse(uri), uri);
                } else {
                    assertEquals(new SnapshotUris.Uri(expect.get("run_id").asText(), expect.get("snapshot_id").asText()),
                            SnapshotUris.parse(uri));
                    assertEquals(uri, SnapshotUris.uriOf(expect.get("run_id").asText(), expect.get("snapshot_id").asText()));
                }
            }));
        }
        return tests.stream();
    }

    @Test
    void theRecordLimitsAreTheSpecs() throws IOException {
        JsonNode limits = json.readTree(SPEC.resolve("limits.json").toFile());
        assertEquals(limits.get("default_topic_max_message_bytes").asInt(), TopicSpec.DEFAULT_MAX_MESSAGE_BYTES);
        assertEquals(limits.get("tensor_topic_max_message_bytes").asInt(), CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES);
        assertEquals(limits.get("record_overhead_bytes").asInt(), TopicSpec.RECORD_OVERHEAD_BYTES);
        assertEquals(limits.get("id_pattern").asText(), ContractChecks.ID.pattern());
    }
}
