package dev.curvewatch.service.bench;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.service.LayerStatus;
import dev.curvewatch.service.ServiceConfig;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Random;

/**
 * Refresh latency per layer size (DESIGN §6 "refresh latency (factors ready -> alert published)",
 * run by service/scripts/refresh-latency.sh): a fresh local broker, a worker and the service; one
 * run per layer size (a square layer), measured one after the other; each round publishes
 * captures and waits until the service has published the refresh signals of the manifest that
 * covers them.
 * Per layer and round it reports the eigendecomposition time (refresh_seconds), the service's own
 * latency from reading the manifest to sending its signals (latency_seconds), and the end-to-end
 * time from the worker writing the manifest (created_ms) to the signal's timestamp.
 * Arguments: key=value: sizes (comma list, default 64,256,512,1024,2048), rounds (3), tokens (256),
 * captures (4 per layer and round), drift (perturbation between rounds, default 0.5: a full eigh
 * every round; 0 lets the warm start keep the basis).
 */
public final class RefreshLatencyBench {
    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>(Map.of("sizes", "64,256,512,1024,2048", "rounds", "3", "tokens", "256",
                "captures", "4", "drift", "0.5"));
        for (String arg : args) {
            int eq = arg.indexOf('=');
            a.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        int[] sizes = java.util.Arrays.stream(a.get("sizes").split(",")).mapToInt(Integer::parseInt).toArray();
        int rounds = Integer.parseInt(a.get("rounds"));
        int tokens = Integer.parseInt(a.get("tokens"));
        int captures = Integer.parseInt(a.get("captures"));
        double drift = Double.parseDouble(a.get("drift"));
        Path dir = Files.createTempDirectory("refresh-latency-");
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).capturePartitions(4).start()) {
            String bs = kafka.bootstrapServers();
            CurvewatchTopics topics = kafka.topics();
            Map<String, String> wc = new HashMap<>(Map.of("bootstrap", bs, "instance.id", "bench-worker",
                    "checkpoint.tokens", Long.toString((long) tokens * captures), "checkpoint.interval.ms", "1000"));
            Map<String, String> sc = new HashMap<>(Map.of("bootstrap", bs, "http.port", "0", "refresh.interval.ms", "0",
                    "snapshot.dir", dir.resolve("snapshots").toString(), "instance.id", "bench",
                    "refresh.threads", "1", "calibration.timeout.ms", "600000"));
            // every round's refresh as before pacing: a candidate whenever none is out (rounds are a few steps apart)
            sc.put("calibration.min.steps", "0");
            sc.put("calibration.max.steps", "0");
            Properties pp = new Properties();
            pp.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bs);
            pp.setProperty(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
            pp.setProperty(ProducerConfig.ACKS_CONFIG, "all");
            Properties cp = new Properties();
            cp.setProperty(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bs);
            cp.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            cp.setProperty(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(17 << 20));
            AvroDeserializer<Signal> sd = new AvroDeserializer<>(Signal.class);
            AvroDeserializer<FactorManifest> md = new AvroDeserializer<>(FactorManifest.class);
            AvroSerializer<Capture> cs = new AvroSerializer<>(Capture.class);
            List<String> rows = new ArrayList<>();
            try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(pp, new StringSerializer(), new ByteArraySerializer());
                 Worker worker = Worker.start(WorkerConfig.of(wc));
                 CurvewatchService service = CurvewatchService.start(ServiceConfig.of(sc));
                 KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                service.awaitCaughtUp(Duration.ofMinutes(2));
                List<TopicPartition> parts = new ArrayList<>();
                for (String t : List.of(topics.signals(), topics.factors())) {
                    consumer.partitionsFor(t).forEach(pi -> parts.add(new TopicPartition(t, pi.partition())));
                }
                consumer.assign(parts);
                consumer.seekToEnd(parts);
                consumer.poll(Duration.ofMillis(100));
                Random r = new Random(1);
                // one run per size, measured one after the other, so no refresh waits behind another
                for (int d : sizes) {
                    String runId = "bench-" + d;
                    RunInfo run = RunInfo.newBuilder().setRunId(runId).setModel("bench").setCreatedMs(System.currentTimeMillis())
                            .setLayers(List.of(LayerInfo.newBuilder().setName("l" + d).setDIn(d).setDOut(d).build())).build();
                    producer.send(new ProducerRecord<>(topics.runs(), runId, new AvroSerializer<>(RunInfo.class).serialize(null, run))).get();
                    for (int round = 0; round < rounds; round++) {
                        double[] sd2 = new double[d];
                        for (int j = 0; j < d; j++) {
                            sd2[j] = Math.pow(0.995, j) * (1 + drift * round * (j % 2));
                        }
                        for (int c = 0; c < captures; c++) {
                            float[] x = new float[tokens * d];
                            float[] g = new float[tokens * d];
                            for (int i = 0; i < x.length; i++) {
                                x[i] = (float) (r.nextGaussian() * sd2[i % d]);
                                g[i] = (float) (r.nextGaussian() * sd2[(i + 7) % d]);
                            }
                            Capture cap = Capture.newBuilder().setRunId(runId).setLayer("l" + d).setStep(round * 10L + c)
                                    .setActivations(TensorCodec.ofFloats(x, tokens, d)).setGradients(TensorCodec.ofFloats(g, tokens, d))
                                    .setTimestampMs(System.currentTimeMillis()).build();
                            producer.send(new ProducerRecord<>(topics.captures(), runId + "/l" + d, cs.serialize(null, cap)));
                        }
                        producer.flush();
                        long want = (long) (round + 1) * captures * tokens;
                        Map<Long, Long> created = new HashMap<>();
                        Signal done = null;
                        long deadline = System.nanoTime() + Duration.ofMinutes(10).toNanos();
                        while (done == null && System.nanoTime() < deadline) {
                            for (ConsumerRecord<byte[], byte[]> rec : consumer.poll(Duration.ofMillis(500))) {
                                String key = new String(rec.key(), StandardCharsets.UTF_8);
                                if (!key.startsWith(runId + "/")) {
                                    continue;
                                }
                                if (rec.topic().equals(topics.factors()) && key.endsWith("/manifest")) {
                                    FactorManifest m = md.decode(rec.value());
                                    created.put(m.getVersion(), m.getCreatedMs());
                                } else if (rec.topic().equals(topics.signals())) {
                                    Signal s = sd.decode(rec.value());
                                    if (s.getName().equals("refresh_seconds") && s.getAttributes().get("factor_tokens") == want) {
                                        done = s;
                                    }
                                }
                            }
                        }
                        if (done == null) {
                            rows.add("| " + d + " | " + (round + 1) + " | not refreshed within 10 minutes | | | |");
                            continue;
                        }
                        Long c = created.get(done.getFactorVersion());
                        LayerStatus st = service.state().layer(runId, "l" + d).orElseThrow();
                        rows.add(String.format(Locale.ROOT, "| %d | %d | %.3f | %.3f | %s | %s |", d, round + 1, done.getValue(),
                                done.getAttributes().get("latency_seconds"), c == null ? "?" : String.format(Locale.ROOT, "%.3f",
                                        (done.getTimestampMs() - c) / 1000.0),
                                done.getAttributes().get("calibration_too_large") == 1.0 ? "too large" : "sent"));
                        if (st.failedRefreshes() > 0) {
                            rows.add("| " + d + " | failed refreshes: " + st.lastFailure() + " | | | | |");
                        }
                    }
                }
            }
            System.out.println("| d_in = d_out | round | eigh A+G (s) | manifest read -> signals sent (s) | manifest written -> signal timestamp (s) | candidate |");
            System.out.println("|---|---|---|---|---|---|");
            rows.forEach(System.out::println);
        }
    }
}
