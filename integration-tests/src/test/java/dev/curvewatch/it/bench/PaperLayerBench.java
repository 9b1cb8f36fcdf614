package dev.curvewatch.it.bench;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One paper-sized layer through broker, worker and service on this machine (issue 14 item 1,
 * run by {@code bench/paper-layer.sh}): a local broker, a worker and the service each in a JVM of
 * its own (shipped defaults unless {@code worker.set} / {@code service.set} say otherwise), a
 * producer of {@link SyntheticCaptures} at a fixed token rate, and a {@link SyntheticAnswerer}
 * for the trainer. It runs until {@code calibrated} refreshes were calibrated (or
 * {@code minutes} pass) and prints a markdown report: per refresh the stages (assemble, eigh of
 * G and A, candidate built and sent, reassembled, answered, calibrated) and the end-to-end time
 * from the manifest being read to the calibrated signal; checkpoint bytes per minute and seconds
 * per checkpoint from the worker's metrics; candidate bytes; peak RSS of worker and service. What a
 * Java trainer's own answer costs at the size is {@link AnswerCost}'s (run apart: it needs the memory).
 */
public final class PaperLayerBench {
    private static final String RUN = "paper";
    private static final String LAYER = "mlp.up";

    private PaperLayerBench() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> a = new LinkedHashMap<>(Map.of("dout", "11008", "din", "4096", "tokens", "256", "rate", "256",
                "calibrated", "2", "minutes", "40", "worker.xmx", "3g", "service.xmx", "8g"));
        a.put("worker.set", "");
        a.put("service.set", "");
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq < 1 || !a.containsKey(arg.substring(0, eq))) {
                throw new IllegalArgumentException("unknown argument '" + arg + "'; keys: " + a.keySet());
            }
            a.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        // a bench stopped from outside (SIGTERM) must not leave its worker, service and broker JVMs behind
        Runtime.getRuntime().addShutdownHook(new Thread(() -> ProcessHandle.current().descendants()
                .forEach(ProcessHandle::destroyForcibly), "paper-layer-children"));
        int dOut = Integer.parseInt(a.get("dout"));
        int dIn = Integer.parseInt(a.get("din"));
        int tokens = Integer.parseInt(a.get("tokens"));
        double rate = Double.parseDouble(a.get("rate"));
        int wantCalibrated = Integer.parseInt(a.get("calibrated"));
        Path dir = Files.createTempDirectory("paper-layer-");
        List<String> out = new ArrayList<>();
        out.add(String.format(Locale.ROOT, "layer %d x %d, %d tokens per capture at %.0f tokens/s, worker -Xmx%s, service -Xmx%s%s%s",
                dOut, dIn, tokens, rate, a.get("worker.xmx"), a.get("service.xmx"),
                a.get("worker.set").isEmpty() ? "" : ", worker " + a.get("worker.set"),
                a.get("service.set").isEmpty() ? "" : ", service " + a.get("service.set")));
        out.add("load average at start: " + loadAverage());
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).capturePartitions(4).start()) {
            run(kafka, dir, a, dOut, dIn, tokens, rate, wantCalibrated, out);
        } finally {
            keepLogs(dir);
            deleteTree(dir); // the factors topic of a paper-sized layer is gigabytes
        }
        out.add("load average at end: " + loadAverage());
        out.forEach(System.out::println);
    }

    private static void run(LocalKafka kafka, Path dir, Map<String, String> a, int dOut, int dIn, int tokens, double rate,
                            int wantCalibrated, List<String> out) throws Exception {
        String bs = kafka.bootstrapServers();
        CurvewatchTopics topics = kafka.topics();
        int workerPort = freePort();
        int servicePort = freePort();
        List<String> workerArgs = new ArrayList<>(List.of("bootstrap=" + bs, "instance.id=bench-worker", "metrics.port=" + workerPort));
        workerArgs.addAll(split(a.get("worker.set")));
        List<String> serviceArgs = new ArrayList<>(List.of("service", "--bootstrap", bs, "--http-port", Integer.toString(servicePort),
                "--snapshot-dir", dir.resolve("snapshots").toString(), "--set", "instance.id=bench-service"));
        for (String kv : split(a.get("service.set"))) {
            serviceArgs.add("--set");
            serviceArgs.add(kv);
        }
        Properties pp = new Properties();
        pp.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bs);
        pp.setProperty(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        pp.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        pp.setProperty(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none"); // as the trainers' publishers
        try (ChildJvm worker = ChildJvm.start("worker", a.get("worker.xmx"), dir, "dev.curvewatch.workers.WorkerMain", workerArgs);
             ChildJvm service = ChildJvm.start("service", a.get("service.xmx"), dir, "dev.curvewatch.cli.Curvewatch", serviceArgs);
             KafkaProducer<String, byte[]> producer = new KafkaProducer<>(pp, new StringSerializer(), new ByteArraySerializer())) {
            worker.awaitHttpOk("http://127.0.0.1:" + workerPort + "/health", Duration.ofMinutes(2));
            service.awaitHttpOk("http://127.0.0.1:" + servicePort + "/health", Duration.ofMinutes(2));
            RunInfo run = RunInfo.newBuilder().setRunId(RUN).setModel("synthetic-olmo-mlp").setCreatedMs(System.currentTimeMillis())
                    .setLayers(List.of(LayerInfo.newBuilder().setName(LAYER).setDIn(dIn).setDOut(dOut).build())).build();
            producer.send(new ProducerRecord<>(topics.runs(), RUN, new AvroSerializer<>(RunInfo.class).serialize(null, run))).get();
            AtomicLong produced = new AtomicLong();
            Thread feeder = feeder(producer, topics, new SyntheticCaptures(dIn, dOut, tokens, 17), tokens, rate, produced);
            long start = System.currentTimeMillis();
            Map<String, Double> m0 = null;
            long m0At = 0;
            try (SyntheticAnswerer answerer = new SyntheticAnswerer(bs, topics, RUN, LAYER, dOut, dIn);
                 RefreshTimeline timeline = new RefreshTimeline(bs, topics, RUN, LAYER)) {
                feeder.start();
                long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(Long.parseLong(a.get("minutes")));
                while (timeline.calibratedCount() < wantCalibrated && System.nanoTime() < deadline) {
                    timeline.poll(Duration.ofSeconds(1));
                    if (!worker.isAlive() || !service.isAlive()) {
                        out.add("**a component died**: worker alive " + worker.isAlive() + ", service alive " + service.isAlive()
                                + " (logs " + worker.log() + ", " + service.log() + ")");
                        break;
                    }
                    if (answerer.failure() != null) {
                        throw new IllegalStateException("answerer failed", answerer.failure());
                    }
                    if (m0 == null && timeline.refreshes().stream().anyMatch(r -> r.refresh != null)) {
                        m0 = workerMetrics(workerPort); // the window of steady checkpoints starts with the first refresh
                        m0At = System.currentTimeMillis();
                    }
                }
                Map<String, Double> m1 = worker.isAlive() ? workerMetrics(workerPort) : Map.of();
                long m1At = System.currentTimeMillis();
                feeder.interrupt();
                feeder.join(30_000);
                out.add(String.format(Locale.ROOT, "ran %.0f s; %d captures (%d tokens) produced; worker accumulated %.0f tokens; "
                                + "%d calibration timeouts; %d failed refreshes", (m1At - start) / 1000.0, produced.get(), produced.get() * tokens,
                        m1.getOrDefault("curvewatch_worker_tokens_total", Double.NaN), timeline.timeouts(), timeline.failedCount()));
                report(out, timeline, answerer, m0, m0At, m1, m1At);
                out.add(String.format(Locale.ROOT, "peak RSS: worker %d MiB, service %d MiB", worker.peakRssMib(), service.peakRssMib()));
            }
        }
    }

    private static Thread feeder(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, SyntheticCaptures gen,
                                 int tokens, double rate, AtomicLong produced) {
        AvroSerializer<Capture> cs = new AvroSerializer<>(Capture.class);
        long periodNanos = (long) (tokens / rate * 1e9);
        Thread t = new Thread(() -> {
            long next = System.nanoTime();
            try {
                for (long step = 0; !Thread.currentThread().isInterrupted(); step++) {
                    byte[] value = cs.serialize(null, gen.next(RUN, LAYER, step));
                    producer.send(new ProducerRecord<>(topics.captures(), CurvewatchTopics.runLayerKey(RUN, LAYER), value));
                    produced.incrementAndGet();
                    next += periodNanos;
                    long wait = next - System.nanoTime();
                    if (wait > 0) {
                        TimeUnit.NANOSECONDS.sleep(wait); // pacing the producer at the token rate
                    }
                }
            } catch (InterruptedException stop) {
                Thread.currentThread().interrupt();
            }
        }, "capture-feeder");
        t.setDaemon(true);
        return t;
    }

    private static void report(List<String> out, RefreshTimeline timeline, SyntheticAnswerer answerer, Map<String, Double> m0,
                               long m0At, Map<String, Double> m1, long m1At) {
        out.add("");
        out.add("| factor version | tokens | assemble s | basis G s | basis A s | refresh G, A | drift G, A | candidate built+sent s | "
                + "candidate MB (parts) | basis columns G, A | reassembled by the answerer s | answered s | ready → signals s | ready → calibrated s |");
        out.add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        Map<Long, SyntheticAnswerer.Seen> byVersion = new LinkedHashMap<>();
        answerer.seen().values().forEach(s -> byVersion.put(s.factorVersion, s));
        for (RefreshTimeline.Refresh r : timeline.refreshes()) {
            if (r.refresh == null) {
                out.add("| " + r.version + " | " + (r.failed != null ? "refresh failed" : "no refresh signal") + " | | | | | | | | | | | | |");
                continue;
            }
            double ready = r.readyMs();
            double sigAt = r.refresh.getTimestampMs();
            SyntheticAnswerer.Seen s = byVersion.get(r.version);
            out.add(String.format(Locale.ROOT, "| %d | %.0f | %.1f | %.1f | %.1f | %s | %s | %s | %s | %s | %s | %s | %.1f | %s |",
                    r.version, r.attr("factor_tokens"), r.attr("assemble_seconds"), r.attr("eigh_g_seconds"), r.attr("eigh_a_seconds"),
                    r.skipped == null ? "-" : mode(r.skipped.getAttributes(), "g") + ", " + mode(r.skipped.getAttributes(), "a"),
                    r.driftG == null ? "-" : String.format(Locale.ROOT, "%.2g, %.2g", r.driftG, r.driftA),
                    s == null ? "-" : String.format(Locale.ROOT, "%.1f", (s.lastPartMs - sigAt) / 1000.0),
                    s == null ? "-" : String.format(Locale.ROOT, "%.0f (%d)", s.bytes / 1e6, s.parts),
                    s == null ? "-" : s.basisG + ", " + s.basisA,
                    s == null || s.assembledMs == 0 ? "-" : String.format(Locale.ROOT, "%.1f", (s.assembledMs - s.lastPartMs) / 1000.0),
                    s == null || s.answeredMs == 0 ? "-" : String.format(Locale.ROOT, "%.1f", (s.answeredMs - s.assembledMs) / 1000.0),
                    (sigAt - ready) / 1000.0,
                    r.calibrated == null ? "-" : String.format(Locale.ROOT, "%.1f", (r.calibrated.getTimestampMs() - ready) / 1000.0)));
        }
        out.add("");
        if (m0 == null || m1.isEmpty()) {
            out.add("checkpoints: no measurement window (no refresh, or the worker died)");
            return;
        }
        double minutes = (m1At - m0At) / 60000.0;
        double n = m1.get("curvewatch_worker_checkpoints_total") - m0.get("curvewatch_worker_checkpoints_total");
        double bytes = m1.get("curvewatch_worker_checkpoint_bytes_total") - m0.get("curvewatch_worker_checkpoint_bytes_total");
        double seconds = m1.get("curvewatch_worker_checkpoint_seconds_total") - m0.get("curvewatch_worker_checkpoint_seconds_total");
        out.add(String.format(Locale.ROOT, "checkpoints over %.1f min (first refresh to the end): %.0f checkpoints, %.0f MB/min of factor chunks, "
                        + "%.1f s per checkpoint (%.0f%% of the worker's time); all run: %.0f checkpoints, %.0f MB", minutes, n, bytes / 1e6 / minutes,
                n > 0 ? seconds / n : Double.NaN, 100 * seconds / (minutes * 60), m1.get("curvewatch_worker_checkpoints_total"),
                m1.get("curvewatch_worker_checkpoint_bytes_total") / 1e6));
    }

    /** full, warm or skip, from the eigh_skipped signal's attributes of one factor. */
    private static String mode(Map<String, Double> attrs, String factor) {
        if (attrs.getOrDefault("skipped_" + factor, 0.0) == 1.0) {
            return "skip";
        }
        return attrs.getOrDefault("warm_" + factor, 0.0) == 1.0 ? "warm" : "full";
    }

    /** Counter totals from the worker's /metrics (summed over labels). */
    private static Map<String, Double> workerMetrics(int port) throws IOException, InterruptedException {
        Map<String, Double> m = new LinkedHashMap<>();
        for (String line : ChildJvm.get("http://127.0.0.1:" + port + "/metrics").split("\n")) {
            if (line.startsWith("#") || line.isBlank()) {
                continue;
            }
            int brace = line.indexOf('{');
            int space = line.lastIndexOf(' ');
            String name = line.substring(0, brace > 0 ? brace : line.indexOf(' '));
            m.merge(name, Double.parseDouble(line.substring(space + 1)), Double::sum);
        }
        return m;
    }

    private static List<String> split(String kvs) {
        List<String> out = new ArrayList<>();
        for (String kv : kvs.split(",")) {
            if (!kv.isBlank()) {
                out.add(kv.trim());
            }
        }
        return out;
    }

    /** The children's logs outlive the run's directory (a component that died says why there). */
    private static void keepLogs(Path dir) throws IOException {
        Path kept = Path.of("integration-tests", "target", "paper-layer-logs");
        Files.createDirectories(kept);
        for (String name : List.of("worker.log", "service.log")) {
            if (Files.exists(dir.resolve(name))) {
                Files.copy(dir.resolve(name), kept.resolve(name), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    private static void deleteTree(Path dir) throws IOException {
        try (var paths = Files.walk(dir)) {
            for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    private static String loadAverage() {
        try {
            return Files.readString(Path.of("/proc/loadavg")).trim();
        } catch (IOException e) {
            return "?";
        }
    }
}
