package dev.curvewatch.deploy;

import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.TopicSpec;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Strimzi manifests (deploy/strimzi, not runnable here) against the topic catalogue: every
 * topic with its partitions and configs, replicated 3 times with min.insync.replicas 2, as
 * LocalKafkaCluster creates them.
 */
class StrimziManifestsTest {
    /** KafkaTopic documents of topics.yaml, by topicName: "partitions", "replicas" and the config keys. */
    static Map<String, Map<String, String>> topics(String yaml) {
        Map<String, Map<String, String>> out = new HashMap<>();
        for (String doc : yaml.split("\n---\n")) {
            Map<String, String> fields = new HashMap<>();
            for (String line : doc.split("\n")) {
                String t = line.trim();
                int colon = t.indexOf(':');
                if (t.startsWith("#") || colon < 1 || colon == t.length() - 1) {
                    continue;
                }
                fields.put(t.substring(0, colon).trim(), t.substring(colon + 1).trim());
            }
            if ("KafkaTopic".equals(fields.get("kind"))) {
                out.put(fields.get("topicName"), fields);
            }
        }
        return out;
    }

    @Test
    void everyCatalogueTopicIsThereAsLocalKafkaClusterCreatesIt() throws IOException {
        Path yaml = Path.of("strimzi", "topics.yaml");
        Map<String, Map<String, String>> topics = topics(Files.readString(yaml));
        var specs = CurvewatchTopics.withDefaultPrefix().specs(4);
        assertEquals(specs.size(), topics.size(), "topics in " + yaml + ": " + topics.keySet());
        for (TopicSpec spec : specs) {
            Map<String, String> t = topics.get(spec.name());
            assertNotNull(t, spec.name() + " is missing from " + yaml);
            assertEquals(Integer.toString(spec.partitions()), t.get("partitions"), spec.name());
            assertEquals("3", t.get("replicas"), spec.name());
            assertEquals("2", t.get("min.insync.replicas"), spec.name());
            for (Map.Entry<String, String> c : spec.configs().entrySet()) {
                assertEquals(c.getValue(), t.get(c.getKey()), spec.name() + " " + c.getKey());
            }
        }
    }

    @Test
    void theClusterAndUsersAreReplicatedAndScoped() throws IOException {
        String kafka = Files.readString(Path.of("strimzi", "kafka.yaml"));
        for (String setting : new String[]{"replicas: 3", "default.replication.factor: 3", "min.insync.replicas: 2",
                "transaction.state.log.replication.factor: 3", "transaction.state.log.min.isr: 2", "message.max.bytes: 16777216"}) {
            assertTrue(kafka.contains(setting), "kafka.yaml lacks " + setting);
        }
        String users = Files.readString(Path.of("strimzi", "users.yaml"));
        for (String user : new String[]{"curvewatch-worker", "curvewatch-service", "curvewatch-streams", "curvewatch-trainer", "curvewatch-sinks"}) {
            assertTrue(users.contains("name: " + user + "\n"), "users.yaml lacks " + user);
        }
        assertTrue(users.contains("{type: transactionalId, name: curvewatch-worker-, patternType: prefix}"), "workers' transactions");
    }
}
