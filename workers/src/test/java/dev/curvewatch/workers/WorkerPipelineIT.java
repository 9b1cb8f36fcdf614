package dev.curvewatch.workers;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Tensor;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.testkit.Await;
import dev.curvewatch.workers.internal.CaptureValidator;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A worker on a real broker: streaming factors equal a batch computation of the same captures,
 * every class of bad capture ends in dead letters with its reason while good ones keep flowing,
 * a run registered shortly after its first captures is accepted, metrics and health answer.
 */
@Tag("integration")
class WorkerPipelineIT {
    static LocalKafka kafka;

    @BeforeAll
    static void broker(@TempDir Path dir) throws Exception {
        kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).capturePartitions(4).start();
    }

    @AfterAll
    static void stop() {
        if (kafka != null) {
            kafka.close();
        }
    }

    @Test
    void streamingEqualsBatchAndBadCapturesAreDeadLettered() throws Exception {
        String bs = kafka.bootstrapServers();
        CurvewatchTopics topics = WorkerTestKit.createTopics(bs, "pipe.", 4);
        LayerInfo fc1 = TestCaptures.layer("fc1", 24, 16);
        LayerInfo fc2 = TestCaptures.layer("fc2", 32, 8);
        LayerInfo fc3 = TestCaptures.layer("fc3", 16, 40);
        RunInfo runA = TestCaptures.run("run-a", FactorMode.CUMULATIVE, 1.0, fc1, fc2, fc3);
        LayerInfo e1 = TestCaptures.layer("e1", 20, 12);
        double decay = 0.9;
        RunInfo runE = TestCaptures.run("run-e", FactorMode.EMA, decay, e1);
        LayerInfo late1 = TestCaptures.layer("late1", 8, 8);
        RunInfo runLate = TestCaptures.run("run-late", FactorMode.CUMULATIVE, 1.0, late1);

        Map<String, String> cfg = WorkerTestKit.workerConfig(bs, topics, "pipe-w0");
        cfg.put("max.record.bytes", Integer.toString(256 * 1024));
        // not the default 10 s: the UNKNOWN_RUN bad capture holds its partition for the whole grace period;
        // run-late is registered as soon as the worker reports its deferral, well within 3 s
        cfg.put("unknown.run.grace.ms", "3000");
        cfg.put("metrics.port", "0");
        cfg.put("metrics.host", "127.0.0.1");

        Map<String, WorkerTestKit.Expected> expected = new TreeMap<>();
        List<long[]> emaSteps = new ArrayList<>();
        List<float[][]> emaRows = new ArrayList<>();
        Map<String, RecordMetadata> bad = new LinkedHashMap<>();
        Map<String, byte[]> badBytes = new HashMap<>();
        long seed = 42;
        try (KafkaProducer<String, byte[]> producer = WorkerTestKit.producer(bs);
             Worker worker = Worker.start(WorkerConfig.of(cfg))) {
            WorkerTestKit.register(producer, topics, runA);
            WorkerTestKit.register(producer, topics, runE);
            // run-late's captures come first; its RunInfo follows within the grace period
            for (int i = 0; i < 3; i++) {
                Capture c = TestCaptures.capture(seed, "run-late", late1, i, 4, i);
                producer.send(new ProducerRecord<>(topics.captures(), "run-late/late1", TestCaptures.bytes(c)));
                expected.computeIfAbsent("run-late/late1", k -> new WorkerTestKit.Expected(8, 8))
                        .add(i, TestCaptures.activations(seed, "late1", i, 4, 8), TestCaptures.gradients(seed, "late1", i, 4, 8), 4);
            }
            producer.flush();
            // the worker has paused run-late's partition at its first capture: only then is its run registered
            Await.until(() -> worker.metrics().counter("curvewatch_worker_unknown_run_deferrals_total") >= 1, Duration.ofSeconds(60),
                    "the worker to defer run-late's first capture", () -> "deferrals " + worker.metrics().counter(
                            "curvewatch_worker_unknown_run_deferrals_total") + ", dead letters " + worker.metrics().counter(
                            "curvewatch_worker_records_total", "result", "dead_letter"));
            assertEquals(0, worker.metrics().counter("curvewatch_worker_records_total", "result", "accumulated"),
                    "nothing of run-late accumulated before its run is known");
            WorkerTestKit.register(producer, topics, runLate);

            Random rnd = new Random(seed);
            for (int i = 0; i < 24; i++) {
                for (LayerInfo l : List.of(fc1, fc2, fc3)) {
                    int tokens = 4 + rnd.nextInt(13);
                    Capture c = TestCaptures.capture(seed, "run-a", l, i, tokens, i);
                    producer.send(new ProducerRecord<>(topics.captures(), "run-a/" + l.getName(), TestCaptures.bytes(c)));
                    expected.computeIfAbsent("run-a/" + l.getName(), k -> new WorkerTestKit.Expected(l.getDIn(), l.getDOut()))
                            .add(i, TestCaptures.activations(seed, l.getName(), i, tokens, l.getDIn()),
                                    TestCaptures.gradients(seed, l.getName(), i, tokens, l.getDOut()), tokens);
                }
                int tokens = 6;
                long step = 10L + 2L * i; // gaps of two steps: decay^2 between captures
                producer.send(new ProducerRecord<>(topics.captures(), "run-e/e1",
                        TestCaptures.bytes(TestCaptures.capture(seed, "run-e", e1, i, tokens, step))));
                emaSteps.add(new long[]{step, tokens});
                emaRows.add(new float[][]{TestCaptures.activations(seed, "e1", i, tokens, 20), TestCaptures.gradients(seed, "e1", i, tokens, 12)});
                if (i == 12) {
                    sendBadCaptures(producer, topics, fc1, bad, badBytes);
                }
            }
            producer.flush();

            Map<String, Long> tokens = new HashMap<>();
            expected.forEach((k, v) -> tokens.put(k, v.tokens));
            long emaTokens = emaSteps.stream().mapToLong(s -> s[1]).sum();
            tokens.put("run-e/e1", emaTokens);
            Map<String, FactorCheckpoint> got = WorkerTestKit.awaitTokens(bs, topics, tokens, Duration.ofSeconds(90));

            double worst = 0;
            for (Map.Entry<String, WorkerTestKit.Expected> e : expected.entrySet()) {
                FactorCheckpoint cp = got.get(e.getKey());
                WorkerTestKit.Expected x = e.getValue();
                assertEquals(x.tokens, cp.tokenCount(), e.getKey());
                assertEquals(x.captures, cp.manifest().getCaptures(), e.getKey());
                double ra = WorkerTestKit.relativeError(cp.meanA(), x.batchMeanA());
                double rg = WorkerTestKit.relativeError(cp.meanG(), x.batchMeanG());
                worst = Math.max(worst, Math.max(ra, rg));
                assertTrue(ra < 1e-12 && rg < 1e-12, e.getKey() + " relative error A " + ra + " G " + rg);
                // and bit-identical to the same captures fed in order to an accumulator
                assertArrayEquals(x.a.sum(), cp.a().sum64(), e.getKey());
                assertArrayEquals(x.g.sum(), cp.g().sum64(), e.getKey());
            }
            System.out.printf("streaming vs batch (fp64 accumulation): max relative error %.3e over %d layers%n", worst, expected.size());

            // EMA: S = sum_c decay^(last - step_c) sum_t x x^T, w likewise, from the raw rows
            FactorCheckpoint ema = got.get("run-e/e1");
            long last = emaSteps.get(emaSteps.size() - 1)[0];
            double[] sa = new double[20 * 20];
            double w = 0;
            for (int c = 0; c < emaSteps.size(); c++) {
                double f = Math.pow(decay, last - emaSteps.get(c)[0]);
                int t = (int) emaSteps.get(c)[1];
                float[] x = emaRows.get(c)[0];
                for (int r = 0; r < t; r++) {
                    for (int i = 0; i < 20; i++) {
                        for (int j = 0; j < 20; j++) {
                            sa[i * 20 + j] += f * x[r * 20 + i] * x[r * 20 + j];
                        }
                    }
                }
                w += f * t;
            }
            for (int i = 0; i < sa.length; i++) {
                sa[i] /= w;
            }
            double emaErr = WorkerTestKit.relativeError(ema.meanA(), sa);
            System.out.printf("EMA (decay %.2f) streaming vs batch: relative error %.3e, weight %.6f vs %.6f%n", decay, emaErr,
                    ema.manifest().getWeight(), w);
            assertTrue(emaErr < 1e-10, "EMA relative error " + emaErr);
            assertEquals(w, ema.manifest().getWeight(), 1e-9 * w);
            assertEquals(last, ema.manifest().getStepLast());

            // dead letters: each bad record once, with its reason, partition, offset and original bytes
            List<DeadLetter> dls = WorkerTestKit.awaitDeadLetters(bs, topics, bad.size(), Duration.ofSeconds(30));
            assertEquals(bad.size(), dls.size(), "one dead letter per bad capture: " + dls);
            for (Map.Entry<String, RecordMetadata> e : bad.entrySet()) {
                String reason = e.getKey().substring(0, e.getKey().indexOf('#'));
                RecordMetadata md = e.getValue();
                DeadLetter dl = dls.stream().filter(d -> d.getOffset() == md.offset() && d.getPartition() == md.partition())
                        .findFirst().orElseThrow(() -> new AssertionError("no dead letter for " + e.getKey()));
                assertEquals(reason, dl.getReasonCode(), e.getKey() + ": " + dl.getReason());
                assertEquals(topics.captures(), dl.getTopic());
                byte[] original = badBytes.get(e.getKey());
                if (original != null && !dl.getValueTruncated()) {
                    ByteBuffer v = dl.getOriginalValue();
                    byte[] got2 = new byte[v.remaining()];
                    v.get(got2);
                    assertArrayEquals(original, got2, e.getKey());
                }
                System.out.printf("  dead letter %-15s p%d@%d: %s%n", dl.getReasonCode(), dl.getPartition(), dl.getOffset(), dl.getReason());
            }
            long classes = bad.keySet().stream().map(k -> k.substring(0, k.indexOf('#'))).distinct().count();
            assertTrue(classes >= 8, "bad capture classes: " + classes);

            HttpClient http = HttpClient.newHttpClient();
            String base = "http://127.0.0.1:" + worker.metricsPort();
            HttpResponse<String> metrics = http.send(HttpRequest.newBuilder(URI.create(base + "/metrics")).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, metrics.statusCode());
            assertTrue(metrics.body().contains("curvewatch_worker_dead_letters_total{reason=\"NON_FINITE\"} 1"), metrics.body());
            assertTrue(metrics.body().contains("curvewatch_worker_records_total{result=\"probe\"} 1"), metrics.body());
            HttpResponse<String> health = http.send(HttpRequest.newBuilder(URI.create(base + "/health")).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, health.statusCode(), health.body());
            assertTrue(health.body().contains("\"status\":\"UP\""), health.body());
            assertNull(worker.failure());
        }
    }

    private static void sendBadCaptures(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, LayerInfo fc1,
                                        Map<String, RecordMetadata> bad, Map<String, byte[]> badBytes) throws Exception {
        Capture good = TestCaptures.capture(7, "run-a", fc1, 999, 5, 12);
        byte[] g = TestCaptures.bytes(good);
        Map<String, byte[]> values = new LinkedHashMap<>();
        byte[] big = new byte[300 * 1024];
        new Random(1).nextBytes(big);
        values.put("OVERSIZED#1", big);
        values.put("TRUNCATED#1", Arrays.copyOf(g, g.length / 2));
        byte[] header = g.clone();
        header[0] = 0x7b;
        values.put("BAD_HEADER#1", header);
        byte[] fingerprint = g.clone();
        fingerprint[5] ^= 0x55;
        values.put("UNKNOWN_SCHEMA#1", fingerprint);
        values.put("WRONG_TYPE#1", TestCaptures.RUNS.serialize(null, TestCaptures.run("x", FactorMode.CUMULATIVE, 1.0)));
        byte[] malformed = g.clone();
        malformed[10] = 0x01;
        values.put("MALFORMED#1", malformed);
        values.put("TRAILING_BYTES#1", Arrays.copyOf(g, g.length + 3));
        Capture len = TestCaptures.capture(7, "run-a", fc1, 999, 5, 12);
        len.setActivations(Tensor.newBuilder(len.getActivations()).setData(ByteBuffer.allocate(12)).build());
        values.put("TENSOR_LENGTH#1", TestCaptures.bytes(len));
        values.put("SHAPE_MISMATCH#1", TestCaptures.bytes(TestCaptures.capture(7, "run-a", TestCaptures.layer("fc1", 23, 16), 999, 5, 12)));
        Capture inf = TestCaptures.capture(7, "run-a", fc1, 999, 5, 12);
        float[] gv = TensorCodec.toFloatArray(inf.getGradients(), "g");
        gv[17] = Float.POSITIVE_INFINITY;
        inf.setGradients(TensorCodec.ofFloats(gv, 5, 16));
        values.put("NON_FINITE#1", TestCaptures.bytes(inf));
        Capture neg = TestCaptures.capture(7, "run-a", fc1, 999, 5, 12);
        neg.setStep(-3);
        values.put("INVALID_FIELD#1", TestCaptures.bytes(neg));
        for (Map.Entry<String, byte[]> e : values.entrySet()) {
            bad.put(e.getKey(), producer.send(new ProducerRecord<>(topics.captures(), "run-a/fc1", e.getValue())).get());
            badBytes.put(e.getKey(), e.getValue());
        }
        Capture unknownLayer = TestCaptures.capture(7, "run-a", TestCaptures.layer("fc9", 24, 16), 0, 5, 12);
        bad.put("UNKNOWN_LAYER#1", producer.send(new ProducerRecord<>(topics.captures(), "run-a/fc9", TestCaptures.bytes(unknownLayer))).get());
        Capture ghost = TestCaptures.capture(7, "ghost-run", fc1, 0, 5, 12);
        bad.put("UNKNOWN_RUN#1", producer.send(new ProducerRecord<>(topics.captures(), "ghost-run/fc1", TestCaptures.bytes(ghost))).get());
        bad.put("KEY_MISMATCH#1", producer.send(new ProducerRecord<>(topics.captures(), "run-a/fc2", g)).get());
        int right = CaptureValidator.partitionForKey("run-a/fc1", 4);
        bad.put("KEY_MISMATCH#2", producer.send(new ProducerRecord<>(topics.captures(), (right + 1) % 4, "run-a/fc1", g)).get());
        badBytes.put("KEY_MISMATCH#1", g);
        // a probe capture is valid but never accumulated
        Capture probe = TestCaptures.capture(7, "run-a", fc1, 998, 5, 12);
        probe.setProbe(true);
        producer.send(new ProducerRecord<>(topics.captures(), "run-a/fc1", TestCaptures.bytes(probe))).get();
    }
}
