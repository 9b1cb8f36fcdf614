package dev.curvewatch.workers;

import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.testkit.Await;
import dev.curvewatch.workers.internal.CaptureValidator;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntConsumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Failures on a real broker; in each, the final factors must equal the same captures accumulated
 * without interruption, bit for bit: a worker process killed with SIGKILL at random points and
 * restarted, two workers sharing and handing over partitions, the broker killed and restarted
 * mid-stream.
 */
@Tag("integration")
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class WorkerFailuresIT {
    LocalKafka kafka;
    Path dir;

    // A broker per test: on one broker shared by the three, a topic created after the kill -9 test twice never
    // became writable (the producer's flush waited 300 s; "not present in metadata after 60000 ms"), cause not
    // found. Each test now states its own failure on a broker nothing else has touched.
    @BeforeEach
    void broker(@TempDir Path tmp) throws Exception {
        dir = tmp;
        kafka = LocalKafka.builder().dataDir(tmp.resolve("kafka")).capturePartitions(4).start();
    }

    @AfterEach
    void stop() {
        if (kafka != null) {
            kafka.close();
        }
    }

    /** Layers of a test run and what they must end up holding. */
    static final class Stream {
        final String runId;
        final List<LayerInfo> layers;
        final long seed;
        final Map<String, FactorAccumulator[]> reference = new LinkedHashMap<>();
        final Map<String, long[]> counts = new HashMap<>();
        final FactorMode mode;
        final double decay;

        Stream(String runId, long seed, FactorMode mode, double decay, LayerInfo... layers) {
            this.runId = runId;
            this.seed = seed;
            this.mode = mode;
            this.decay = decay;
            this.layers = List.of(layers);
            for (LayerInfo l : layers) {
                reference.put(runId + "/" + l.getName(), mode == FactorMode.EMA
                        ? new FactorAccumulator[]{FactorAccumulator.ema(l.getDIn(), Precision.FLOAT64, decay), FactorAccumulator.ema(l.getDOut(), Precision.FLOAT64, decay)}
                        : new FactorAccumulator[]{FactorAccumulator.cumulative(l.getDIn(), Precision.FLOAT64), FactorAccumulator.cumulative(l.getDOut(), Precision.FLOAT64)});
                counts.put(runId + "/" + l.getName(), new long[2]);
            }
        }

        RunInfo info() {
            return TestCaptures.run(runId, mode, decay, layers.toArray(new LayerInfo[0]));
        }

        /** Sends capture i of every layer (asynchronously) and adds it to the reference. */
        List<Future<RecordMetadata>> send(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, int i) {
            List<Future<RecordMetadata>> out = new ArrayList<>();
            for (LayerInfo l : layers) {
                int tokens = 3 + (int) ((seed + i * 7L + l.getName().hashCode()) & 7);
                String key = runId + "/" + l.getName();
                out.add(producer.send(new ProducerRecord<>(topics.captures(), key,
                        TestCaptures.bytes(TestCaptures.capture(seed, runId, l, i, tokens, i)))));
                FactorAccumulator[] ref = reference.get(key);
                ref[0].add(i, TestCaptures.activations(seed, l.getName(), i, tokens, l.getDIn()), tokens);
                ref[1].add(i, TestCaptures.gradients(seed, l.getName(), i, tokens, l.getDOut()), tokens);
                counts.get(key)[0] += tokens;
                counts.get(key)[1]++;
            }
            return out;
        }

        Map<String, Long> tokens() {
            Map<String, Long> t = new HashMap<>();
            counts.forEach((k, v) -> t.put(k, v[0]));
            return t;
        }

        void assertEqualsUninterrupted(Map<String, FactorCheckpoint> got) {
            for (Map.Entry<String, FactorAccumulator[]> e : reference.entrySet()) {
                FactorCheckpoint cp = got.get(e.getKey());
                assertEquals(counts.get(e.getKey())[0], cp.tokenCount(), e.getKey() + " tokens");
                assertEquals(counts.get(e.getKey())[1], cp.manifest().getCaptures(), e.getKey() + " captures");
                assertArrayEquals(e.getValue()[0].sum(), cp.a().sum64(), e.getKey() + " A");
                assertArrayEquals(e.getValue()[1].sum(), cp.g().sum64(), e.getKey() + " G");
                assertEquals(e.getValue()[0].weight(), cp.a().weight(), e.getKey() + " weight");
            }
        }
    }

    /** Sends captures 0..n-1 paced on a background thread; returns when all are acknowledged. */
    static CompletableFuture<Void> produce(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, List<Stream> streams,
                                           int from, int to, long pauseMs, IntConsumer afterEach) {
        return CompletableFuture.runAsync(() -> {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            try {
                for (int i = from; i < to; i++) {
                    for (Stream s : streams) {
                        acks.addAll(s.send(producer, topics, i));
                    }
                    afterEach.accept(i);
                    if (pauseMs > 0) {
                        Thread.sleep(pauseMs);
                    }
                }
                producer.flush();
                for (Future<RecordMetadata> f : acks) {
                    f.get(300, TimeUnit.SECONDS);
                }
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }, r -> {
            // own thread: the common pool has one thread on a 2-core machine
            Thread t = new Thread(r, "test-producer");
            t.setDaemon(true);
            t.start();
        });
    }

    /**
     * Waits for a producer future; on timeout prints every thread's stack and the tail of each broker log given
     * (a stall seen three times: the test producer's batches unacknowledged for 120 s, no client error; the broker's
     * log showed its resend of a first batch refused as out of order, see {@link WorkerTestKit#producer}).
     */
    static void await(CompletableFuture<Void> f, int seconds, Path... brokerLogs) throws Exception {
        try {
            f.get(seconds, TimeUnit.SECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            StringBuilder sb = new StringBuilder("producer future timed out; threads:\n");
            Thread.getAllStackTraces().forEach((t, st) -> {
                sb.append('"').append(t.getName()).append("\" ").append(t.getState()).append('\n');
                for (StackTraceElement el : st) {
                    sb.append("    at ").append(el).append('\n');
                }
            });
            for (Path log : brokerLogs) {
                List<String> lines = Files.exists(log) ? Files.readAllLines(log) : List.of();
                sb.append("last ").append(Math.min(200, lines.size())).append(" lines of ").append(log).append(":\n");
                lines.subList(Math.max(0, lines.size() - 200), lines.size()).forEach(l -> sb.append(l).append('\n'));
            }
            System.out.println(sb);
            throw e;
        }
    }

    @Test
    @Order(1)
    void killNineAtRandomPointsChangesNothing() throws Exception {
        String bs = kafka.bootstrapServers();
        CurvewatchTopics topics = WorkerTestKit.createTopics(bs, "kill.", 4);
        long seed = Long.getLong("curvewatch.kill.seed", System.currentTimeMillis());
        System.out.println("kill -9 test seed=" + seed + " (rerun with -Dcurvewatch.kill.seed=" + seed + ")");
        Random rnd = new Random(seed);
        Stream cumulative = new Stream("run-k", seed, FactorMode.CUMULATIVE, 1.0,
                TestCaptures.layer("k1", 24, 16), TestCaptures.layer("k2", 16, 24), TestCaptures.layer("k3", 32, 32));
        Stream ema = new Stream("run-ke", seed + 1, FactorMode.EMA, 0.95, TestCaptures.layer("ke1", 16, 16));
        Map<String, String> cfg = WorkerTestKit.workerConfig(bs, topics, "kill-w0");
        cfg.put("checkpoint.tokens", "150");
        cfg.put("checkpoint.interval.ms", "250");
        Path log = dir.resolve("kill-worker.log");
        try (KafkaProducer<String, byte[]> producer = WorkerTestKit.producer(bs)) {
            WorkerTestKit.register(producer, topics, cumulative.info());
            WorkerTestKit.register(producer, topics, ema.info());
            CompletableFuture<Void> sent = produce(producer, topics, List.of(cumulative, ema), 0, 220, 60, i -> { });
            for (int k = 1; k <= 5; k++) {
                Process p = WorkerTestKit.startWorkerProcess(cfg, log);
                long delay = 1500 + rnd.nextInt(3000);
                Thread.sleep(delay);
                p.destroyForcibly();
                assertTrue(p.waitFor(30, TimeUnit.SECONDS));
                System.out.printf("kill %d: SIGKILL after %d ms (exit %d)%n", k, delay, p.exitValue());
            }
            await(sent, 300, kafka.logFile());
            Process last = WorkerTestKit.startWorkerProcess(cfg, log);
            try {
                Map<String, Long> tokens = new HashMap<>(cumulative.tokens());
                tokens.putAll(ema.tokens());
                Map<String, FactorCheckpoint> got = WorkerTestKit.awaitTokens(bs, topics, tokens, Duration.ofSeconds(120));
                cumulative.assertEqualsUninterrupted(got);
                ema.assertEqualsUninterrupted(got);
                System.out.println("kill -9 x5: final factors bit-identical to an uninterrupted run; versions "
                        + got.values().stream().map(c -> c.layer() + "=v" + c.version()).toList());
            } finally {
                last.destroy(); // SIGTERM: graceful stop with a final checkpoint
                assertTrue(last.waitFor(60, TimeUnit.SECONDS), "worker stops on SIGTERM");
            }
            String out = Files.readString(log);
            assertTrue(out.contains("restored"), "restarts restore from manifests:\n" + out);
        }
    }

    @Test
    @Order(2)
    void twoWorkersShareAndHandOverLayers() throws Exception {
        String bs = kafka.bootstrapServers();
        CurvewatchTopics topics = WorkerTestKit.createTopics(bs, "reb.", 4);
        LayerInfo[] layers = new LayerInfo[8];
        for (int i = 0; i < layers.length; i++) {
            layers[i] = TestCaptures.layer("m" + i, 12 + i, 20 - i);
        }
        Stream s = new Stream("run-r", 5, FactorMode.CUMULATIVE, 1.0, layers);
        Set<Integer> partitions = new HashSet<>();
        for (LayerInfo l : layers) {
            partitions.add(CaptureValidator.partitionForKey("run-r/" + l.getName(), 4));
        }
        assertTrue(partitions.size() >= 2, "layers spread over partitions " + partitions);
        try (KafkaProducer<String, byte[]> producer = WorkerTestKit.producer(bs)) {
            WorkerTestKit.register(producer, topics, s.info());
            Worker w1 = Worker.start(WorkerConfig.of(WorkerTestKit.workerConfig(bs, topics, "reb-w1")));
            Worker w2 = null;
            try {
                await(produce(producer, topics, List.of(s), 0, 40, 20, i -> { }), 120, kafka.logFile());
                w2 = Worker.start(WorkerConfig.of(WorkerTestKit.workerConfig(bs, topics, "reb-w2")));
                CompletableFuture<Void> second = produce(producer, topics, List.of(s), 40, 80, 20, i -> { });
                Worker second2 = w2;
                Await.until(() -> w1.ownedPartitions() > 0 && second2.ownedPartitions() > 0
                                && w1.ownedPartitions() + second2.ownedPartitions() == 4, Duration.ofSeconds(60),
                        "the 4 partitions shared by both workers", () -> w1.ownedPartitions() + " + " + second2.ownedPartitions());
                System.out.printf("shared: w1 %d, w2 %d partitions%n", w1.ownedPartitions(), w2.ownedPartitions());
                await(second, 120, kafka.logFile());
                w1.close(); // leaves the group: w2 takes over w1's layers from its last checkpoint
                assertNull(w1.failure());
                await(produce(producer, topics, List.of(s), 80, 120, 10, i -> { }), 120, kafka.logFile());
                Map<String, FactorCheckpoint> got = WorkerTestKit.awaitTokens(bs, topics, s.tokens(), Duration.ofSeconds(90));
                s.assertEqualsUninterrupted(got);
                assertEquals(4, w2.ownedPartitions());
                assertTrue(w2.metrics().counter("curvewatch_worker_restores_total") > 0, "w2 restored layers handed over");
                assertTrue(w1.metrics().counter("curvewatch_worker_checkpoints_total") > 0);
                System.out.println("rebalance: w2 restored " + w2.metrics().counter("curvewatch_worker_restores_total")
                        + " layers; final factors bit-identical to an uninterrupted run");
            } finally {
                w1.close();
                if (w2 != null) {
                    w2.close();
                    assertNull(w2.failure());
                }
            }
        }
    }

    /** Short client blocking so that checkpoints during the outage fail and take the rollback path. */
    static Map<String, String> brokerRestartConfig(String bs, CurvewatchTopics topics) {
        Map<String, String> c = WorkerTestKit.workerConfig(bs, topics, "brk-w0");
        // a checkpoint every 3 s (not the test kit's 400 ms, nor on token counts): a wide window to kill the broker
        // while the worker holds uncommitted captures
        c.put("checkpoint.interval.ms", "3000");
        c.put("checkpoint.tokens", "1000000");
        c.put("kafka.max.block.ms", "2000");
        c.put("kafka.request.timeout.ms", "3000");
        return c;
    }

    private static long accumulated(Worker w) {
        return (long) w.metrics().counter("curvewatch_worker_records_total", "result", "accumulated");
    }

    /** Times the worker gave partitions up (revoked or lost). */
    private static double givenUp(Worker w) {
        return w.metrics().counter("curvewatch_worker_rebalances_total", "kind", "revoked")
                + w.metrics().counter("curvewatch_worker_rebalances_total", "kind", "lost");
    }

    private static String committedQuietly(String bs, String group, String topic) {
        try {
            return Long.toString(WorkerTestKit.committedRecords(bs, group, topic));
        } catch (Exception e) {
            return "unreadable (" + e + ")";
        }
    }

    private static boolean acquireQuietly(Semaphore permits) {
        try {
            return permits.tryAcquire(120, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    @Test
    @Order(3)
    void brokerRestartMidStreamLosesNothing() throws Exception {
        String bs = kafka.bootstrapServers();
        CurvewatchTopics topics = WorkerTestKit.createTopics(bs, "brk.", 4);
        Stream s = new Stream("run-b", 9, FactorMode.CUMULATIVE, 1.0,
                TestCaptures.layer("b1", 24, 16), TestCaptures.layer("b2", 16, 16), TestCaptures.layer("b3", 8, 40));
        try (KafkaProducer<String, byte[]> producer = WorkerTestKit.producer(bs);
             Worker w = Worker.start(WorkerConfig.of(brokerRestartConfig(bs, topics)))) {
            WorkerTestKit.register(producer, topics, s.info());
            await(produce(producer, topics, List.of(s), 0, 60, 20, i -> { }), 120, kafka.logFile());
            // the producer sends captures 60..110 freely, then one more per permit the test gives: the broker is killed at a
            // checked point mid-stream, and the captures after it are sent into the outage, to reach the worker after the restart
            AtomicInteger sent = new AtomicInteger(59);
            Semaphore permits = new Semaphore(0);
            CompletableFuture<Void> rest = produce(producer, topics, List.of(s), 60, 160, 20, i -> {
                sent.set(i);
                if (i >= 110 && !acquireQuietly(permits)) {
                    throw new IllegalStateException("no permit to send capture " + (i + 1) + " within 120 s");
                }
            });
            int layers = s.layers.size();
            long firstPart = 60L * layers;
            String group = w.config().groupId();
            double[] atCheck = {0, 0}; // checkpoints committed, partitions given up
            // the kill comes when the worker has taken in all that was sent (past the first part) and holds some of it
            // uncommitted, so that its next checkpoint falls in the outage; while all it took in is committed, one more
            // capture is let through
            Await.until(() -> {
                long accumulated = accumulated(w);
                if (sent.get() < 110 || accumulated < (sent.get() + 1L) * layers) {
                    return false;
                }
                atCheck[0] = w.metrics().counter("curvewatch_worker_checkpoints_total");
                atCheck[1] = givenUp(w);
                if (WorkerTestKit.committedRecords(bs, group, topics.captures()) < accumulated) {
                    return true;
                }
                if (permits.availablePermits() == 0 && sent.get() < 150) {
                    permits.release();
                }
                return false;
            }, Duration.ofSeconds(120), "the worker holding uncommitted captures of the second part, the producer held",
                    () -> "sent up to " + sent.get() + ", accumulated " + accumulated(w) + " records, committed "
                            + committedQuietly(bs, group, topics.captures()));
            long t0 = System.nanoTime();
            kafka.kill();
            long atKill = accumulated(w);
            int sentAtKill = sent.get();
            permits.release(1000);
            assertTrue(atKill > firstPart && sentAtKill < 159, "killed mid-stream: " + atKill + " records in, producer at "
                    + sentAtKill);
            // the outage lasts until the worker's next checkpoint has failed in it and been rolled back, in the poll loop
            // (a checkpoint failure) or before it gave its partitions up (the group coordinator gone); unless a checkpoint
            // committed between the check and the kill, leaving nothing to write (then it ends at once)
            Await.until(() -> w.metrics().counter("curvewatch_worker_checkpoint_failures_total") >= 1 || givenUp(w) > atCheck[1]
                            || w.metrics().counter("curvewatch_worker_checkpoints_total") > atCheck[0],
                    Duration.ofSeconds(60), "a checkpoint failed in the outage and rolled back", () -> "phase " + w.phase());
            kafka.restart();
            System.out.printf("broker killed and restarted in %.1f s%n", (System.nanoTime() - t0) / 1e9);
            await(rest, 300, kafka.logFile());
            Map<String, FactorCheckpoint> got = WorkerTestKit.awaitTokens(bs, topics, s.tokens(), Duration.ofSeconds(180));
            s.assertEqualsUninterrupted(got);
            assertNull(w.failure());
            System.out.println("broker restart: final factors bit-identical; checkpoint failures rolled back: "
                    + w.metrics().counter("curvewatch_worker_checkpoint_failures_total") + ", partitions given up: " + givenUp(w));
        }
    }
}
