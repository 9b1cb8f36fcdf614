package dev.curvewatch.workers;

import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.deploy.LocalKafkaCluster;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.testkit.Await;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 14 item 4: a real 3-node KRaft cluster ({@link LocalKafkaCluster}: every topic replicated
 * three times, min.insync.replicas 2, producers at acks=all). One broker is SIGKILLed while
 * captures stream in and the worker checkpoints, and restarted on its data: nothing acknowledged
 * is lost, the final factors equal the same captures accumulated without interruption bit for
 * bit, and the pipeline goes on (captures sent after the restart are accumulated too). Shipped
 * worker defaults except a 1 s checkpoint interval, so that checkpoints happen during the outage.
 */
@Tag("integration")
class WorkerClusterIT {
    @Test
    void aBrokerKilledMidStreamLosesNothing(@TempDir Path tmp) throws Exception {
        try (LocalKafkaCluster cluster = LocalKafkaCluster.start(tmp.resolve("cluster"), 3, 4, CurvewatchTopics.withDefaultPrefix(),
                Duration.ofSeconds(180))) {
            String bs = cluster.bootstrapServers();
            CurvewatchTopics topics = cluster.topics();
            WorkerFailuresIT.Stream s = new WorkerFailuresIT.Stream("run-c", 13, FactorMode.CUMULATIVE, 1.0,
                    TestCaptures.layer("c1", 24, 16), TestCaptures.layer("c2", 16, 16), TestCaptures.layer("c3", 8, 40),
                    TestCaptures.layer("c4", 32, 8));
            Map<String, String> cfg = WorkerTestKit.workerConfig(bs, topics, "cluster-w0");
            cfg.put("checkpoint.tokens", "1000000");
            cfg.put("checkpoint.interval.ms", "1000");
            try (KafkaProducer<String, byte[]> producer = WorkerTestKit.producer(bs);
                 Worker w = Worker.start(WorkerConfig.of(cfg))) {
                WorkerTestKit.register(producer, topics, s.info());
                WorkerFailuresIT.await(WorkerFailuresIT.produce(producer, topics, List.of(s), 0, 40, 20, i -> { }), 120);
                AtomicInteger sent = new AtomicInteger();
                CompletableFuture<Void> during = WorkerFailuresIT.produce(producer, topics, List.of(s), 40, 200, 25, i -> sent.set(i));
                long sentBefore = waitUntil(() -> sent.get() >= 80, sent); // the kill falls mid-stream
                long t0 = System.nanoTime();
                cluster.node(1).kill();
                long sentAtKill = sent.get();
                waitUntil(() -> sent.get() >= sentAtKill + 20, sent); // captures keep flowing with one broker down
                cluster.node(1).restart();
                System.out.printf("broker 2 of 3 SIGKILLed after capture %d, restarted %.1f s later, capture %d sent by then%n",
                        sentBefore, (System.nanoTime() - t0) / 1e9, sent.get());
                WorkerFailuresIT.await(during, 300);
                // the pipeline goes on after the restart
                WorkerFailuresIT.await(WorkerFailuresIT.produce(producer, topics, List.of(s), 200, 240, 10, i -> { }), 120);
                Map<String, FactorCheckpoint> got = WorkerTestKit.awaitTokens(bs, topics, s.tokens(), Duration.ofSeconds(180));
                s.assertEqualsUninterrupted(got);
                assertNull(w.failure());
                assertTrue(w.metrics().counter("curvewatch_worker_checkpoints_total") > 0);
                System.out.println("3-node cluster, one broker killed and restarted: final factors bit-identical to an uninterrupted run; "
                        + "checkpoint failures rolled back: " + w.metrics().counter("curvewatch_worker_checkpoint_failures_total"));
            }
        }
    }

    /** Waits (up to 120 s) until the producer has reached a capture; returns the capture reached. */
    private static long waitUntil(java.util.function.BooleanSupplier reached, AtomicInteger sent) {
        Await.until(reached::getAsBoolean, Duration.ofSeconds(120), "the producer to reach the capture", () -> "stalled at capture " + sent.get());
        return sent.get();
    }
}
