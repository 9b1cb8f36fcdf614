package dev.curvewatch.service.internal;

import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.SnapshotStatus;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.WeightAssembler;
import dev.curvewatch.service.ServiceConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.MockConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The edit-request loop on Kafka's MockConsumer/MockProducer: no record stops it, a rewind holds back only its own partition. */
class EditRequestsTest {
    static final ServiceConfig CONFIG = ServiceConfig.of(Map.of("topic.prefix", "t.", "poll.timeout.ms", "20", "edit.wait.ms", "600000"));
    static final String TOPIC = CONFIG.topics().editRequests();
    /**
     * The waiting request goes on the partition a poll hands out first (MockConsumer groups a poll's
     * records in a HashMap: this is its order), so the old loop's break would have skipped the other.
     */
    final TopicPartition p0;
    final TopicPartition p1;

    {
        List<TopicPartition> order = new java.util.ArrayList<>(new java.util.HashMap<>(Map.of(
                new TopicPartition(TOPIC, 0), 0, new TopicPartition(TOPIC, 1), 0)).keySet());
        p0 = order.get(0);
        p1 = order.get(1);
    }
    final Registry registry = new Registry(new SignalHistory(10), 10, 10, 10);
    final MockProducer<String, byte[]> producer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
    final MockConsumer<byte[], byte[]> consumer = new MockConsumer<>("earliest");

    static RunInfo run(String id, int dIn, int dOut) {
        return RunInfo.newBuilder().setRunId(id).setModel("m").setSource("t").setCreatedMs(1)
                .setLayers(List.of(LayerInfo.newBuilder().setName("fc").setDIn(dIn).setDOut(dOut).build())).build();
    }

    static ConsumerRecord<byte[], byte[]> request(TopicPartition tp, long offset, String run, String key) {
        EditRequest r = EditRequest.newBuilder().setIdempotencyKey(key).setRunId(run).setLayers(List.of(new LayerRho("fc", 0.9)))
                .setRequester("test").setCreatedMs(1).build();
        return new ConsumerRecord<>(tp.topic(), tp.partition(), offset, run.getBytes(StandardCharsets.UTF_8),
                new AvroSerializer<>(EditRequest.class).serialize(null, r));
    }

    /** A layer with eigenbases of d_out x d_in and, optionally, a weight of its own sides. */
    LayerState layerWithBases(String run, int dIn, int dOut) {
        registry.register(run(run, dIn, dOut), 1);
        LayerState l = registry.existing(run, "fc").orElseThrow();
        LayerRefresh.Outcome o = LayerRefreshTest.refresher().refresh(new LayerRefresh.Input(run, "fc", 1, 5, 100, dIn, dOut,
                LayerRefreshTest.spd(dIn, 1, 0), LayerRefreshTest.spd(dOut, 2, 0)), null, null);
        l.refreshed(o, 1);
        return l;
    }

    Map<String, DeadLetter> deadLetters() {
        AvroDeserializer<DeadLetter> d = new AvroDeserializer<>(DeadLetter.class);
        Map<String, DeadLetter> out = new java.util.LinkedHashMap<>();
        producer.history().stream().filter(r -> r.topic().equals(CONFIG.topics().deadLetters())).map(r -> d.decode(r.value()))
                .forEach(dl -> out.put(dl.getPartition() + "@" + dl.getOffset(), dl));
        return out;
    }

    /** The SnapshotEvents published, by idempotency key (the latest of each). */
    Map<String, SnapshotEvent> snapshotEvents() {
        AvroDeserializer<SnapshotEvent> d = new AvroDeserializer<>(SnapshotEvent.class);
        Map<String, SnapshotEvent> out = new java.util.LinkedHashMap<>();
        producer.history().stream().filter(r -> r.topic().equals(CONFIG.topics().snapshots())).map(r -> d.decode(r.value()))
                .forEach(e -> out.put(e.getIdempotencyKey(), e));
        return out;
    }

    static void await(String what, BooleanSupplier done) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!done.getAsBoolean()) {
            assertTrue(System.nanoTime() < deadline, "within 20 s: " + what);
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
        }
    }

    long committed(TopicPartition tp) {
        OffsetAndMetadata m = consumer.committed(Set.of(tp)).get(tp);
        return m == null ? -1 : m.offset();
    }

    @Test
    void noRecordStopsTheLoopAndARewindHoldsBackOnlyItsPartition(@TempDir Path dir) throws Exception {
        // run-w: bases are still being computed (after a restart): its request waits, rewinding partition 0
        registry.register(run("run-w", 3, 2), 1);
        LayerState waiting = registry.existing("run-w", "fc").orElseThrow();
        waiting.manifest(LayerStateTest.manifest(1), 0);
        waiting.start(0);
        waiting.weight(new WeightAssembler.Assembled("run-w", "fc", 9, 2, 3, new float[6], null));
        // run-s: the run re-registered fc as 2 x 4 and its new factors were refreshed, but the latest weight is still 2 x 3
        LayerState stale = layerWithBases("run-s", 4, 2);
        stale.weight(new WeightAssembler.Assembled("run-s", "fc", 9, 2, 3, new float[6], null));
        // run-x: a state nobody foresaw (a weight without values): an unexpected NullPointerException
        LayerState odd = layerWithBases("run-x", 4, 2);
        odd.weight(new WeightAssembler.Assembled("run-x", "fc", 9, 2, 4, null, null));
        registry.caughtUp();

        consumer.schedulePollTask(() -> {
            consumer.rebalance(List.of(p0, p1));
            consumer.updateBeginningOffsets(Map.of(p0, 0L, p1, 0L));
            consumer.addRecord(request(p0, 0, "run-w", "k-wait"));
            consumer.addRecord(request(p1, 0, "no-such-run", "k-unknown"));
            consumer.addRecord(request(p1, 1, "run-s", "k-stale"));
            consumer.addRecord(request(p1, 2, "run-x", "k-odd"));
        });
        Outputs out = new Outputs(producer, CONFIG.topics(), registry, new AlertEvaluator(List.of()), new ServiceMetrics(), null,
                "service:test", 1 << 20);
        EditRequests edits = new EditRequests(CONFIG, registry, out, new ServiceMetrics(), new SnapshotStore(dir), consumer);
        Thread t = new Thread(edits, "test-edits");
        t.start();
        try {
            // the old loop broke out of the whole poll at p0's rewind: p1's records were skipped, and for good once committed past
            await("p1's three records handled and committed", () -> committed(p1) == 3);
            Map<String, DeadLetter> dls = deadLetters();
            String at = p1.partition() + "@";
            assertEquals("UNKNOWN_RUN", dls.get(at + 0).getReasonCode());
            assertEquals("SHAPE_MISMATCH", dls.get(at + 1).getReasonCode(), dls.get(at + 1).getReason());
            assertTrue(dls.get(at + 1).getReason().contains("2 x 3 with 6 values") && dls.get(at + 1).getReason().contains("registered as 2 x 4"),
                    dls.get(at + 1).getReason());
            assertEquals("MALFORMED", dls.get(at + 2).getReasonCode());
            assertTrue(dls.get(at + 2).getReason().contains("NullPointerException"), dls.get(at + 2).getReason());
            // each also ends in a FAILED SnapshotEvent the caller can read, with the same reason, and answers nothing
            Map<String, SnapshotEvent> failed = snapshotEvents();
            for (String k : List.of("k-unknown", "k-stale", "k-odd")) {
                SnapshotEvent e = failed.get(k);
                assertEquals(SnapshotStatus.FAILED, e.getStatus(), k);
                assertEquals("", e.getUri());
                assertEquals(0, e.getSizeBytes());
                assertFalse(registry.answered(e.getRunId(), k), "a FAILED event does not answer " + k);
            }
            assertEquals(dls.get(at + 1).getReason(), failed.get("k-stale").getReason());
            assertTrue(failed.get("k-unknown").getReason().startsWith("UNKNOWN_RUN: "), failed.get("k-unknown").getReason());
            assertEquals(-1, committed(p0), "the waiting request is not committed");
            assertTrue(consumer.paused().contains(p0) || consumer.position(p0) == 0, "p0 rewound to the waiting request");
            assertNull(dls.get(p0.partition() + "@0"), "it waits (edit.wait.ms), no dead letter yet");
            assertTrue(t.isAlive(), "the edit thread goes on");
            assertNull(edits.failure());

            // and goes on: the bases arrive, the waiting request is served next
            waiting.refreshed(LayerRefreshTest.refresher().refresh(new LayerRefresh.Input("run-w", "fc", 1, 5, 100, 3, 2,
                    LayerRefreshTest.spd(3, 1, 0), LayerRefreshTest.spd(2, 2, 0)), null, null), 2);
            waiting.finished();
            // a broker serves the rewound record again from the log; MockConsumer needs it handed in again
            consumer.schedulePollTask(() -> consumer.addRecord(request(p0, 0, "run-w", "k-wait")));
            await("p0's request served", () -> committed(p0) == 1);
            assertTrue(registry.answered("run-w", "k-wait"));
            assertEquals(SnapshotStatus.WRITTEN, snapshotEvents().get("k-wait").getStatus(), "a written SnapshotEvent");
        } finally {
            edits.requestStop();
            t.join(10_000);
        }
        assertTrue(!t.isAlive());
        assertNull(edits.failure());
    }
}
