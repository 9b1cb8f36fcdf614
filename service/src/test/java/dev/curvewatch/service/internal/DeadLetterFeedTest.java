package dev.curvewatch.service.internal;

import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.DeadLetters;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.service.DeadLetterSummary;
import dev.curvewatch.service.LayerStatus;
import dev.curvewatch.service.ServiceConfig;
import io.vertx.core.json.JsonObject;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.MockConsumer;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Dead letters of every component counted against the run and layer their key names, bounded, and shown as why a layer has no factors. */
class DeadLetterFeedTest {
    static final ServiceConfig CONFIG = ServiceConfig.of(Map.of("bootstrap", "unused:1", "topic.prefix", "t."));
    final Registry registry = new Registry(new SignalHistory(10), 10, 10, 10);
    final ServiceMetrics metrics = new ServiceMetrics();
    final DeadLetterFeed feed = new DeadLetterFeed(CONFIG, registry, metrics, new MockConsumer<>("earliest"));
    long offset;

    ConsumerRecord<byte[], byte[]> deadLetter(String topic, String key, RejectReason reason, String message, String component) {
        byte[] k = key == null ? null : key.getBytes(StandardCharsets.UTF_8);
        DeadLetter dl = DeadLetters.of(topic, 1, 7, k, new byte[]{1, 2, 3}, 1 << 20, new InvalidRecordException(reason, message), component);
        return new ConsumerRecord<>("t.dead-letters", 0, offset++, k, new AvroSerializer<>(DeadLetter.class).serialize(null, dl));
    }

    void register() {
        registry.register(RunInfo.newBuilder().setRunId("lm").setModel("m").setSource("t").setCreatedMs(1)
                .setLayers(List.of(LayerInfo.newBuilder().setName("blocks.0.mlp.fc").setDIn(128).setDOut(512).build(),
                        LayerInfo.newBuilder().setName("blocks.1.mlp.fc").setDIn(128).setDOut(512).build())).build(), 1);
    }

    @Test
    void aLayerWhoseCapturesAreAllDeadLetteredSaysSoInsteadOfWaitingForFactors() {
        register();
        assertEquals("waiting for factors", registry.layer("lm", "blocks.1.mlp.fc").orElseThrow().status());
        for (int i = 0; i < 1560; i++) {
            feed.accept(deadLetter("t.captures", "lm/blocks.1.mlp.fc", RejectReason.KEY_MISMATCH,
                    "key 'lm/blocks.1.mlp.fc' belongs to partition 2 of 4 (default partitioner), found in partition 1", "worker:w1"));
        }
        LayerStatus s = registry.layer("lm", "blocks.1.mlp.fc").orElseThrow();
        assertEquals(1560, s.deadLetters().total());
        assertEquals(Map.of("KEY_MISMATCH", 1560L), s.deadLetters().byReason());
        assertEquals(Map.of("captures", 1560L), s.deadLetters().byTopic());
        assertTrue(s.status().startsWith("no factors: 1560 dead letter(s), the latest from captures: KEY_MISMATCH: key 'lm/blocks.1.mlp.fc'"),
                s.status());
        assertEquals("worker:w1", s.deadLetters().lastComponent());
        assertEquals(DeadLetterSummary.NONE, registry.layer("lm", "blocks.0.mlp.fc").orElseThrow().deadLetters(), "the other layer has none");
        JsonObject layer = Json.layer(registry.existing("lm", "blocks.1.mlp.fc").orElseThrow());
        assertEquals(1560L, layer.getJsonObject("dead_letters").getLong("total"));
        assertEquals(1560L, layer.getJsonObject("dead_letters").getJsonObject("by_reason").getLong("KEY_MISMATCH"));
        assertEquals(1560.0, metrics.counter("curvewatch_service_dead_letters_read_total", "attributed"));
    }

    @Test
    void keysWithoutALayerCountForTheRunAndUnknownRunsAreNotCreated() {
        register();
        feed.accept(deadLetter("t.probe-results", "lm", RejectReason.INVALID_FIELD, "chosen 12 was not evaluated", "service:s"));
        feed.accept(deadLetter("t.factors", "lm/blocks.0.mlp.fc/manifest", RejectReason.OVERSIZED, "d_in 50000", "service:s"));
        feed.accept(deadLetter("t.captures", "lm/not-watched", RejectReason.UNKNOWN_LAYER, "not watched", "worker:w1"));
        feed.accept(deadLetter("t.captures", "other-run/fc", RejectReason.UNKNOWN_RUN, "not registered", "worker:w1"));
        feed.accept(deadLetter("t.alerts.raw", "0123456789abcdef0123456789abcdef", RejectReason.INVALID_FIELD, "x", "streams:a"));
        feed.accept(deadLetter("t.captures", null, RejectReason.MALFORMED, "no key", "worker:w1"));
        feed.accept(new ConsumerRecord<>("t.dead-letters", 0, offset++, null, new byte[]{9, 9, 9}));
        DeadLetterSummary run = registry.run("lm").orElseThrow().deadLetters();
        assertEquals(2, run.total(), "the probe result and the capture of a layer the run does not watch");
        assertEquals(Map.of("probe-results", 1L, "captures", 1L), run.byTopic());
        assertEquals(1, registry.layer("lm", "blocks.0.mlp.fc").orElseThrow().deadLetters().total());
        assertEquals(List.of("lm"), registry.runIds(), "a dead letter never adds a run");
        assertEquals(3.0, metrics.counter("curvewatch_service_dead_letters_read_total", "unattributed"));
        assertEquals(1.0, metrics.counter("curvewatch_service_dead_letters_read_total", "undecodable"));
        assertEquals(new DeadLetterFeed.Owner("a", "b"), DeadLetterFeed.owner("a/b/A/0"));
        assertNull(DeadLetterFeed.owner("no run/x"));
        assertNull(DeadLetterFeed.owner(""));
    }

    @Test
    void memoryStaysBoundedWhateverTheRecordsSay() {
        register();
        for (int i = 0; i < 100; i++) {
            feed.accept(deadLetter("t.topic-" + i, "lm/blocks.0.mlp.fc", RejectReason.values()[i % RejectReason.values().length],
                    "x".repeat(10_000), "c"));
        }
        DeadLetterSummary s = registry.layer("lm", "blocks.0.mlp.fc").orElseThrow().deadLetters();
        assertEquals(100, s.total());
        assertTrue(s.byTopic().size() <= DeadLetterStats.MAX_KEYS, s.byTopic().keySet().toString());
        assertTrue(s.byReason().size() <= DeadLetterStats.MAX_KEYS);
        assertEquals(100L, s.byTopic().values().stream().mapToLong(Long::longValue).sum(), "nothing lost: the rest count as OTHER");
        assertTrue(s.lastReason().length() <= DeadLetterStats.MAX_REASON_CHARS + 3);
    }
}
