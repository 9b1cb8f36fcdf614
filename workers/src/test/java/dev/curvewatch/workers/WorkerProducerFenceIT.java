package dev.curvewatch.workers;

import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.testkit.Await;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import static dev.curvewatch.workers.WorkerFailuresIT.await;
import static dev.curvewatch.workers.WorkerFailuresIT.produce;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A worker's transactional producer fenced by the coordinator: an InitProducerId with the worker's
 * transactional id bumps its epoch (bench/python-overhead.sh saw a second one with no other worker
 * running, and the worker died of ProducerFencedException). The lone worker must replace its
 * producer, roll back to the last committed checkpoint and go on, with final factors equal to an
 * uninterrupted run's; a real duplicate instance (same instance id) must still stop the older one,
 * which the group says (FencedInstanceIdException). Shipped defaults (4 capture partitions) but the
 * test kit's shorter cadences ({@link WorkerTestKit#workerConfig}).
 */
@Tag("integration")
class WorkerProducerFenceIT {
    LocalKafka kafka;

    @BeforeEach
    void broker(@TempDir Path tmp) throws Exception {
        kafka = LocalKafka.builder().dataDir(tmp.resolve("kafka")).capturePartitions(4).start();
    }

    @AfterEach
    void stop() {
        if (kafka != null) {
            kafka.close();
        }
    }

    private static WorkerFailuresIT.Stream stream(String runId) {
        return new WorkerFailuresIT.Stream(runId, 11, FactorMode.CUMULATIVE, 1.0,
                TestCaptures.layer("fc1", 12, 9), TestCaptures.layer("fc2", 10, 14), TestCaptures.layer("fc3", 8, 8));
    }

    /** Bumps the coordinator's epoch of this transactional id, as a second InitProducerId does. */
    private static void bumpEpoch(String bootstrap, String transactionalId) {
        Properties p = WorkerTestKit.client(bootstrap);
        p.setProperty(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        p.setProperty(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.setProperty(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> other = new KafkaProducer<>(p)) {
            other.initTransactions();
        }
    }

    private static boolean causedBy(Throwable e, Class<? extends Throwable> type) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (type.isInstance(t)) {
                return true;
            }
        }
        return false;
    }

    /** The stream's captures 0-29 sent and acknowledged, and the worker's first checkpoint written. */
    private void firstHalfCheckpointed(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, WorkerFailuresIT.Stream s,
                                       Worker w) throws Exception {
        await(produce(producer, topics, List.of(s), 0, 30, 10, i -> { }), 120, kafka.logFile());
        Await.until(() -> w.metrics().counter("curvewatch_worker_checkpoints_total") > 0, Duration.ofSeconds(60),
                "the worker's first checkpoint");
    }

    /** The stream's captures 30-59 sent; the checkpoints once they hold every token of the stream. */
    private Map<String, FactorCheckpoint> secondHalfAccumulated(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics,
                                                                WorkerFailuresIT.Stream s) throws Exception {
        await(produce(producer, topics, List.of(s), 30, 60, 10, i -> { }), 120, kafka.logFile());
        return WorkerTestKit.awaitTokens(kafka.bootstrapServers(), topics, s.tokens(), Duration.ofSeconds(90));
    }

    @Test
    void loneWorkerSurvivesAFencedProducer() throws Exception {
        String bs = kafka.bootstrapServers();
        CurvewatchTopics topics = WorkerTestKit.createTopics(bs, "fence.", 4);
        WorkerFailuresIT.Stream s = stream("run-f");
        Map<String, String> config = WorkerTestKit.workerConfig(bs, topics, "f-w0");
        try (KafkaProducer<String, byte[]> producer = WorkerTestKit.producer(bs)) {
            WorkerTestKit.register(producer, topics, s.info());
            Worker w = Worker.start(WorkerConfig.of(config));
            try {
                firstHalfCheckpointed(producer, topics, s, w);
                bumpEpoch(bs, "curvewatch-worker-" + config.get("group.id") + "-f-w0");
                Map<String, FactorCheckpoint> got = secondHalfAccumulated(producer, topics, s);
                assertNull(w.failure(), "the worker survived the fence");
                s.assertEqualsUninterrupted(got);
                assertTrue(w.metrics().counter("curvewatch_worker_checkpoint_failures_total") > 0,
                        "the fenced producer failed a checkpoint and took the rollback path");
            } finally {
                w.close();
            }
            assertNull(w.failure(), "stopped cleanly");
        }
    }

    @Test
    void duplicateInstanceStillStopsTheOlderWorker() throws Exception {
        String bs = kafka.bootstrapServers();
        CurvewatchTopics topics = WorkerTestKit.createTopics(bs, "dup.", 4);
        WorkerFailuresIT.Stream s = stream("run-d");
        Map<String, String> config = WorkerTestKit.workerConfig(bs, topics, "d-w0");
        try (KafkaProducer<String, byte[]> producer = WorkerTestKit.producer(bs)) {
            WorkerTestKit.register(producer, topics, s.info());
            Worker older = Worker.start(WorkerConfig.of(config));
            Worker newer = null;
            try {
                // the older one must be in the group first: started together, whichever joins last wins (a CI run
                // started the newer 7 ms after the older's join request, and the older fenced the newer)
                firstHalfCheckpointed(producer, topics, s, older);
                newer = Worker.start(WorkerConfig.of(config));
                assertTrue(older.awaitTermination(90, TimeUnit.SECONDS), "the older instance stops");
                assertNotNull(older.failure(), "stopped on a fatal error");
                assertTrue(causedBy(older.failure(), FencedInstanceIdException.class), "told by the group: " + older.failure());
                Map<String, FactorCheckpoint> got = secondHalfAccumulated(producer, topics, s);
                assertNull(newer.failure(), "the newer instance runs on");
                s.assertEqualsUninterrupted(got);
            } finally {
                older.close();
                if (newer != null) {
                    newer.close();
                }
            }
        }
    }
}
