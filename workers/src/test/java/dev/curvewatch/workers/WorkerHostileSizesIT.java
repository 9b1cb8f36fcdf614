package dev.curvewatch.workers;

import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.CurvewatchTopics;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 14 item 5: a run may register layer sides up to the contract's 46,340, and one small
 * capture makes a worker allocate a layer's d² accumulators. A layer over the worker's
 * {@code max.layer.side}, or one whose factors would take the worker over its
 * {@code factors.memory.budget.bytes}, is never allocated: each of its captures is a dead letter
 * (OVERSIZED, the limit named) and the worker goes on accumulating the other layers.
 */
@Tag("integration")
class WorkerHostileSizesIT {
    @Test
    void layersOverTheSideOrTheBudgetAreDeadLettersAndTheWorkerServesTheOthers(@TempDir Path tmp) throws Exception {
        // budget: small (2 x 16² x 8 = 4 KiB) + mid1 (2 x 48² x 8 = 36 KiB) fit in 48 KiB, mid2 does not fit beside them
        LayerInfo small = TestCaptures.layer("small", 16, 16);
        LayerInfo mid1 = TestCaptures.layer("mid1", 48, 48);
        LayerInfo mid2 = TestCaptures.layer("mid2", 48, 48);
        LayerInfo huge = TestCaptures.layer("huge", 40_000, 4); // 12.8 GB of fp64 factors, from a 160 KB capture
        try (LocalKafka kafka = LocalKafka.builder().dataDir(tmp.resolve("kafka")).capturePartitions(4).start()) {
            String bs = kafka.bootstrapServers();
            CurvewatchTopics topics = WorkerTestKit.createTopics(bs, "hostile.", 4);
            Map<String, String> cfg = WorkerTestKit.workerConfig(bs, topics, "hostile-w0");
            cfg.put("factors.memory.budget.bytes", Integer.toString(48 * 1024));
            try (KafkaProducer<String, byte[]> producer = WorkerTestKit.producer(bs);
                 Worker w = Worker.start(WorkerConfig.of(cfg))) {
                WorkerTestKit.register(producer, topics, TestCaptures.run("run-h", FactorMode.CUMULATIVE, 1.0, small, mid1, mid2, huge));
                send(producer, topics, small, 0, 4);
                send(producer, topics, mid1, 0, 4);
                WorkerTestKit.awaitTokens(bs, topics, Map.of("run-h/small", 4L, "run-h/mid1", 4L), Duration.ofSeconds(60));
                send(producer, topics, huge, 0, 1);
                send(producer, topics, mid2, 0, 1);
                send(producer, topics, small, 1, 4); // the worker goes on with the layers it holds
                Map<String, FactorCheckpoint> got = WorkerTestKit.awaitTokens(bs, topics, Map.of("run-h/small", 8L, "run-h/mid1", 4L),
                        Duration.ofSeconds(60));
                assertEquals(8, got.get("run-h/small").tokenCount());
                assertTrue(!got.containsKey("run-h/mid2") && !got.containsKey("run-h/huge"), "no factors of refused layers: " + got.keySet());
                List<DeadLetter> dls = WorkerTestKit.awaitDeadLetters(bs, topics, 2, Duration.ofSeconds(30));
                assertEquals(2, dls.size(), "one dead letter per capture of a refused layer: " + dls);
                DeadLetter side = dls.stream().filter(d -> d.getReason().contains("run-h/huge")).findFirst().orElseThrow();
                assertEquals("OVERSIZED", side.getReasonCode());
                assertTrue(side.getReason().contains("max.layer.side 16384"), side.getReason());
                DeadLetter budget = dls.stream().filter(d -> d.getReason().contains("run-h/mid2")).findFirst().orElseThrow();
                assertEquals("OVERSIZED", budget.getReasonCode());
                assertTrue(budget.getReason().contains("factors.memory.budget.bytes"), budget.getReason());
                assertNull(w.failure());
                assertEquals(2.0, w.metrics().gaugeValue("curvewatch_worker_owned_layers"));
                System.out.println("hostile sizes: " + side.getReason() + " | " + budget.getReason());
            }
        }
    }

    /** Captures {@code from} .. {@code from + count - 1} of a layer, one token each, acknowledged. */
    private static void send(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, LayerInfo layer, int from, int count)
            throws Exception {
        for (int i = from; i < from + count; i++) {
            producer.send(new ProducerRecord<>(topics.captures(), "run-h/" + layer.getName(),
                    TestCaptures.bytes(TestCaptures.capture(7, "run-h", layer, i, 1, i)))).get();
        }
    }
}
