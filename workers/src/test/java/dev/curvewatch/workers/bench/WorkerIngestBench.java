package dev.curvewatch.workers.bench;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.curvature.BlasBackends;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.schemas.TopicSpec;
import dev.curvewatch.testkit.Await;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Ingest benchmark (run by bench/worker-ingest.sh): on one fresh local broker, in one run,
 * <ol>
 *   <li>the broker's own {@code kafka-producer-perf-test} (ProducerPerformance, 4.3.1) with the
 *       capture record size, into a topic configured like the captures topic;</li>
 *   <li>the whole pipeline at full speed: a producer sends that many captures, a worker
 *       validates and accumulates them and commits its final checkpoint; captures/s and MB/s
 *       from the first send to the committed checkpoint, and the largest lag seen;</li>
 *   <li>the pipeline paced at 0.7 x the perf-test rate: the lag must stay bounded;</li>
 *   <li>the worker alone: the same captures produced first, then consumed, accumulated and checkpointed
 *       by a worker that does not share the cores with a producer;</li>
 *   <li>accumulation GFLOP/s inside the worker vs FactorAccumulator alone on the same shapes.</li>
 * </ol>
 * Both producers send uncompressed and the tensor topics keep batches as produced (the shipped
 * {@link TopicSpec#AS_PRODUCED}), so neither side pays broker recompression (the perf tool's payload is
 * compressible letters, captures are not). Arguments: key=value (tokens, din, dout, records, layers, precision, out).
 */
public final class WorkerIngestBench {
    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>(Map.of("tokens", "512", "din", "256", "dout", "256", "records", "1000",
                "layers", "4", "precision", "FLOAT64", "out", ""));
        for (String arg : args) {
            int eq = arg.indexOf('=');
            a.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        int tokens = Integer.parseInt(a.get("tokens"));
        int dIn = Integer.parseInt(a.get("din"));
        int dOut = Integer.parseInt(a.get("dout"));
        int records = Integer.parseInt(a.get("records"));
        int layerCount = Integer.parseInt(a.get("layers"));
        Precision precision = Precision.valueOf(a.get("precision"));

        Path dir = Files.createTempDirectory("worker-ingest-");
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir).capturePartitions(4).start()) {
            String bs = kafka.bootstrapServers();
            CurvewatchTopics t1 = createTopics(bs, "bench1.");
            CurvewatchTopics t2 = createTopics(bs, "bench2.");
            CurvewatchTopics t3 = createTopics(bs, "bench3.");
            String perfTopic = "bench.perf";
            try (Admin admin = Admin.create(Map.of("bootstrap.servers", bs))) {
                Map<String, String> cfg = new TopicSpec(perfTopic, 4, false, CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES,
                        TopicSpec.AS_PRODUCED).configs();
                admin.createTopics(List.of(new NewTopic(perfTopic, 4, (short) 1).configs(cfg))).all().get();
            }

            List<LayerInfo> layers = new ArrayList<>();
            for (int l = 0; l < layerCount; l++) {
                layers.add(LayerInfo.newBuilder().setName("layer" + l).setDIn(dIn).setDOut(dOut).build());
            }
            RunInfo run = RunInfo.newBuilder().setRunId("bench").setModel("bench").setCreatedMs(0).setLayers(layers)
                    .setFactorMode(FactorMode.CUMULATIVE).build();
            AvroSerializer<Capture> ser = new AvroSerializer<>(Capture.class);
            List<byte[]> variants = new ArrayList<>();
            List<float[]> rowsA = new ArrayList<>();
            Random rnd = new Random(1);
            for (int v = 0; v < 4; v++) {
                float[] av = new float[tokens * dIn];
                float[] gv = new float[tokens * dOut];
                for (int i = 0; i < av.length; i++) {
                    av[i] = (float) rnd.nextGaussian();
                }
                for (int i = 0; i < gv.length; i++) {
                    gv[i] = (float) rnd.nextGaussian();
                }
                rowsA.add(av);
                for (LayerInfo l : layers) {
                    variants.add(ser.serialize(null, Capture.newBuilder().setRunId("bench").setLayer(l.getName()).setStep(v)
                            .setActivations(TensorCodec.ofFloats(av, tokens, dIn)).setGradients(TensorCodec.ofFloats(gv, tokens, dOut))
                            .setTimestampMs(0).build()));
                }
            }
            int recordSize = variants.get(0).length;
            System.out.printf("capture: %d tokens, d_in %d, d_out %d -> %d bytes; %d records; %d layers; %s; BLAS backend %s%n",
                    tokens, dIn, dOut, recordSize, records, layerCount, precision, BlasBackends.best().name());

            // 1. the broker's own producer benchmark
            double[] perf = producerPerformance(bs, perfTopic, records, recordSize);
            System.out.printf("ProducerPerformance: %.1f records/s, %.1f MB/s%n", perf[0], perf[1]);

            // 2. full-speed pipeline
            double[] full = pipeline(bs, t1, run, layers, variants, records, precision, -1);
            // 3. paced at 0.7 x the perf-test rate
            double[] paced = pipeline(bs, t2, run, layers, variants, records, precision, 0.7 * perf[0]);

            // 3b. the worker alone: the captures are on the topic before it starts, so it does not
            // share the cores with a producer (as the perf-test does not share them with a worker)
            double[] alonePhase = drain(bs, t3, run, layers, variants, records, precision);
            double drained = alonePhase[0];

            // 4. accumulation alone on the same shapes
            double alone = accumulateAlone(rowsA, tokens, dIn, precision);

            double mb = 1024.0 * 1024.0;
            StringBuilder table = new StringBuilder();
            table.append(String.format("| record | %d B (%d tokens x (%d + %d) fp32) | %d records, %d layers, worker %s on BLAS backend %s |%n",
                    recordSize, tokens, dIn, dOut, records, layerCount, precision, BlasBackends.best().name()));
            table.append("|---|---|---|\n");
            table.append(String.format("| kafka-producer-perf-test (ProducerPerformance 4.3.1) | %.1f records/s | %.1f MB/s |%n", perf[0], perf[1]));
            table.append(String.format("| pipeline full speed: produce -> worker -> committed checkpoint | %.1f captures/s | %.1f MB/s (%.2fx perf-test; max lag %.0f records) |%n",
                    full[0], full[0] * recordSize / mb, full[0] * recordSize / mb / perf[1], full[1]));
            table.append(String.format("| pipeline paced at 0.7x perf-test rate (%.1f records/s offered) | %.1f captures/s | lag max %.0f records, at 25/50/75/100%% of the run %.0f/%.0f/%.0f/%.0f |%n",
                    0.7 * perf[0], paced[0], paced[1], paced[2], paced[3], paced[4], paced[5]));
            table.append(String.format("| worker alone: captures already on the topic -> worker -> committed checkpoint | %.1f captures/s | %.1f MB/s (%.2fx perf-test) |%n",
                    drained, drained * recordSize / mb, drained * recordSize / mb / perf[1]));
            table.append(String.format("| accumulation GFLOP/s inside the worker (full-speed run) | %.1f | FactorAccumulator alone, same shapes: %.1f (%.2fx) |%n",
                    full[6], alone, full[6] / alone));
            table.append(String.format("| accumulation GFLOP/s inside the worker (worker alone) | %.1f | %.2fx FactorAccumulator alone |%n",
                    alonePhase[1], alonePhase[1] / alone));
            System.out.println();
            System.out.print(table);
            if (!a.get("out").isEmpty()) {
                Files.writeString(Path.of(a.get("out")), table.toString());
            }
        }
    }

    static CurvewatchTopics createTopics(String bs, String prefix) throws Exception {
        CurvewatchTopics topics = new CurvewatchTopics(prefix);
        try (Admin admin = Admin.create(Map.of("bootstrap.servers", bs))) {
            List<NewTopic> list = new ArrayList<>();
            for (TopicSpec s : topics.specs(4)) {
                list.add(new NewTopic(s.name(), s.partitions(), (short) 1).configs(s.configs()));
            }
            admin.createTopics(list).all().get();
        }
        return topics;
    }

    /** The bench's worker: its own group and instance per topic prefix, one final checkpoint at most every 5 s. */
    static WorkerConfig workerConfig(String bs, CurvewatchTopics topics, Precision precision) {
        Map<String, String> cfg = new HashMap<>();
        cfg.put("bootstrap", bs);
        cfg.put("topic.prefix", topics.prefix());
        cfg.put("group.id", "bench-" + topics.prefix());
        cfg.put("instance.id", "bench-worker-" + topics.prefix());
        cfg.put("precision", precision.name());
        cfg.put("checkpoint.interval.ms", "5000");
        cfg.put("checkpoint.tokens", "100000000");
        cfg.put("max.poll.records", "16");
        return WorkerConfig.of(cfg);
    }

    static Map<String, String> producerSettings(String bs) {
        Map<String, String> p = new LinkedHashMap<>();
        p.put("bootstrap.servers", bs);
        p.put("acks", "all");
        p.put("linger.ms", "5");
        p.put("batch.size", Integer.toString(1 << 20));
        p.put("buffer.memory", Integer.toString(64 << 20));
        p.put("max.request.size", Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.put("compression.type", "none");
        return p;
    }

    static double[] producerPerformance(String bs, String topic, int records, int size) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx1g", "-cp", System.getProperty("java.class.path"), "org.apache.kafka.tools.ProducerPerformance",
                "--topic", topic, "--num-records", Integer.toString(records), "--record-size", Integer.toString(size),
                "--throughput", "-1", "--command-property"));
        producerSettings(bs).forEach((k, v) -> cmd.add(k + "=" + v));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String last = null;
        try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            for (String line; (line = r.readLine()) != null; ) {
                System.out.println("  perf-test: " + line);
                if (line.contains("records sent")) {
                    last = line;
                }
            }
        }
        p.waitFor(10, TimeUnit.MINUTES);
        Matcher m = Pattern.compile("([0-9.]+) records/sec \\(([0-9.]+) MB/sec\\)").matcher(last == null ? "" : last);
        if (!m.find()) {
            throw new IllegalStateException("no summary from ProducerPerformance: " + last);
        }
        return new double[]{Double.parseDouble(m.group(1)), Double.parseDouble(m.group(2))};
    }

    /**
     * @return captures/s, max lag, lag at 25/50/75/100 % of the sends, unused, worker GFLOP/s
     */
    static double[] pipeline(String bs, CurvewatchTopics topics, RunInfo run, List<LayerInfo> layers, List<byte[]> variants,
                             int records, Precision precision, double ratePerSec) throws Exception {
        Properties pp = new Properties();
        pp.putAll(producerSettings(bs));
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(pp, new StringSerializer(), new ByteArraySerializer())) {
            producer.send(new ProducerRecord<>(topics.runs(), "bench", new AvroSerializer<>(RunInfo.class).serialize(null, run))).get();
            Worker worker = Worker.start(workerConfig(bs, topics, precision));
            Await.until(() -> worker.ownedPartitions() == 4, Duration.ofSeconds(60), "the worker owns the 4 partitions", worker::ownedPartitions);
            double[] lagAt = new double[4];
            double[] maxLag = {0};
            long t0 = System.nanoTime();
            int n = layers.size();
            for (int i = 0; i < records; i++) {
                int layer = i % n;
                byte[] value = variants.get(((i / n) % 4) * n + layer);
                producer.send(new ProducerRecord<>(topics.captures(), "bench/" + layers.get(layer).getName(), value));
                if (ratePerSec > 0) {
                    long due = t0 + (long) ((i + 1) / ratePerSec * 1e9);
                    while (System.nanoTime() < due) {
                        Thread.sleep(1);
                    }
                }
                double lag = (i + 1) - worker.metrics().counter("curvewatch_worker_records_total", "result", "accumulated");
                maxLag[0] = Math.max(maxLag[0], lag);
                for (int q = 0; q < 4; q++) {
                    if (i + 1 == (records * (q + 1)) / 4) {
                        lagAt[q] = lag;
                    }
                }
            }
            producer.flush();
            while (worker.metrics().counter("curvewatch_worker_records_total", "result", "accumulated") < records) {
                double lag = records - worker.metrics().counter("curvewatch_worker_records_total", "result", "accumulated");
                maxLag[0] = Math.max(maxLag[0], lag);
                if (worker.failure() != null) {
                    throw new IllegalStateException("worker failed", worker.failure());
                }
                Thread.sleep(5);
            }
            worker.close(); // final checkpoint committed before close returns
            double seconds = (System.nanoTime() - t0) / 1e9;
            double flops = worker.metrics().counter("curvewatch_worker_accumulate_flops_total");
            double accSeconds = worker.metrics().counter("curvewatch_worker_accumulate_seconds_total");
            System.out.printf("pipeline%s: %d captures in %.2f s = %.1f captures/s; max lag %.0f; checkpoints %.0f (%.2f s, %.1f MB)%n",
                    ratePerSec > 0 ? String.format(" paced %.1f/s", ratePerSec) : " full speed", records, seconds, records / seconds,
                    maxLag[0], worker.metrics().counter("curvewatch_worker_checkpoints_total"),
                    worker.metrics().counter("curvewatch_worker_checkpoint_seconds_total"),
                    worker.metrics().counter("curvewatch_worker_checkpoint_bytes_total") / 1e6);
            return new double[]{records / seconds, maxLag[0], lagAt[0], lagAt[1], lagAt[2], lagAt[3], flops / accSeconds / 1e9};
        }
    }

    /**
     * Produces every capture first, then starts a worker and times it from owning its partitions
     * to its committed final checkpoint: captures/s of the worker without a producer beside it,
     * and its accumulation GFLOP/s.
     */
    static double[] drain(String bs, CurvewatchTopics topics, RunInfo run, List<LayerInfo> layers, List<byte[]> variants,
                        int records, Precision precision) throws Exception {
        Properties pp = new Properties();
        pp.putAll(producerSettings(bs));
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(pp, new StringSerializer(), new ByteArraySerializer())) {
            producer.send(new ProducerRecord<>(topics.runs(), "bench", new AvroSerializer<>(RunInfo.class).serialize(null, run))).get();
            int n = layers.size();
            for (int i = 0; i < records; i++) {
                int layer = i % n;
                producer.send(new ProducerRecord<>(topics.captures(), "bench/" + layers.get(layer).getName(),
                        variants.get(((i / n) % 4) * n + layer)));
            }
            producer.flush();
        }
        Worker worker = Worker.start(workerConfig(bs, topics, precision));
        Await.until(() -> worker.ownedPartitions() == 4, Duration.ofSeconds(60), "the worker owns the 4 partitions", worker::ownedPartitions);
        long t0 = System.nanoTime();
        while (worker.metrics().counter("curvewatch_worker_records_total", "result", "accumulated") < records) {
            if (worker.failure() != null) {
                throw new IllegalStateException("worker failed", worker.failure());
            }
            Thread.sleep(5);
        }
        double flops = worker.metrics().counter("curvewatch_worker_accumulate_flops_total");
        double accSeconds = worker.metrics().counter("curvewatch_worker_accumulate_seconds_total");
        worker.close(); // final checkpoint committed before close returns
        double seconds = (System.nanoTime() - t0) / 1e9;
        System.out.printf("worker alone: %d captures in %.2f s = %.1f captures/s%n", records, seconds, records / seconds);
        return new double[] {records / seconds, flops / accSeconds / 1e9};
    }

    /** FactorAccumulator.add on direct native-order rows of the same shape, ~3 s, GFLOP/s (2 t d^2 per add). */
    static double accumulateAlone(List<float[]> rows, int tokens, int d, Precision precision) {
        FactorAccumulator acc = FactorAccumulator.cumulative(d, precision);
        List<FloatBuffer> bufs = new ArrayList<>();
        for (float[] r : rows) {
            FloatBuffer b = ByteBuffer.allocateDirect(r.length * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
            b.put(0, r);
            bufs.add(b);
        }
        for (int i = 0; i < 20; i++) {
            acc.add(i, bufs.get(i % bufs.size()), tokens);
        }
        long t0 = System.nanoTime();
        long adds = 0;
        while (System.nanoTime() - t0 < 3_000_000_000L) {
            acc.add(adds, bufs.get((int) (adds % bufs.size())), tokens);
            adds++;
        }
        double s = (System.nanoTime() - t0) / 1e9;
        return 2.0 * tokens * d * (double) d * adds / s / 1e9;
    }
}
