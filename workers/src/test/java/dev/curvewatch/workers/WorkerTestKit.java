package dev.curvewatch.workers;

import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.contracts.FactorCheckpoints;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.TopicSpec;
import dev.curvewatch.testkit.Await;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
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

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/** Broker-side helpers of the worker integration tests. */
final class WorkerTestKit {
    private WorkerTestKit() {
    }

    static Properties client(String bootstrap) {
        Properties p = new Properties();
        p.setProperty(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        return p;
    }

    /** A fresh set of Curvewatch topics under {@code prefix} (each test gets its own). */
    static CurvewatchTopics createTopics(String bootstrap, String prefix, int partitions) throws Exception {
        CurvewatchTopics topics = new CurvewatchTopics(prefix);
        try (Admin admin = Admin.create(client(bootstrap))) {
            List<NewTopic> list = new ArrayList<>();
            for (TopicSpec s : topics.specs(partitions)) {
                list.add(new NewTopic(s.name(), s.partitions(), (short) 1).configs(s.configs()));
            }
            admin.createTopics(list).all().get(60, TimeUnit.SECONDS);
        }
        return topics;
    }

    static KafkaProducer<String, byte[]> producer(String bootstrap) {
        Properties p = client(bootstrap);
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        p.setProperty(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.setProperty(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.setProperty(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "300000");
        // a send into a broker outage (metadata unknown) waits as long as delivery does: a restart on a loaded machine took 67 s
        p.setProperty(ProducerConfig.MAX_BLOCK_MS_CONFIG, "300000");
        p.setProperty(ProducerConfig.LINGER_MS_CONFIG, "2");
        // one batch in flight: twice in clean-clone CI runs this producer resent a partition's first batch (sequence 0)
        // after the broker had appended sequences 0-7 of it, and the broker refused the resend for 300 s as out of order
        // (OutOfOrderSequenceException in its log; presumably that batch was no longer among the 5 whose sequences it keeps), so
        // the test's captures were never acknowledged. With one in flight a resend is always of the last batch sent.
        p.setProperty(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "1");
        return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
    }

    static void register(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, RunInfo run) throws Exception {
        producer.send(new ProducerRecord<>(topics.runs(), run.getRunId().toString(), TestCaptures.RUNS.serialize(null, run))).get();
    }

    /**
     * The worker settings of these tests: the shipped defaults but for the cadences, shortened so that
     * checkpoints, polls and a lost member's eviction happen within a test's seconds (the defaults
     * checkpoint every 10 s and on millions of tokens, and the group waits 45 s for a dead member).
     */
    static Map<String, String> workerConfig(String bootstrap, CurvewatchTopics topics, String instance) {
        Map<String, String> c = new LinkedHashMap<>();
        c.put("bootstrap", bootstrap);
        c.put("topic.prefix", topics.prefix());
        c.put("group.id", "workers-" + topics.prefix());
        c.put("instance.id", instance);
        c.put("checkpoint.tokens", "300");
        c.put("checkpoint.interval.ms", "400");
        c.put("poll.timeout.ms", "100");
        c.put("max.poll.records", "20");
        c.put("kafka.session.timeout.ms", "10000");
        c.put("kafka.heartbeat.interval.ms", "1000");
        return c;
    }

    /** Polls the factors topic until every listed run/layer's manifest has the expected token count. */
    static Map<String, FactorCheckpoint> awaitTokens(String bootstrap, CurvewatchTopics topics, Map<String, Long> expected,
                                                    Duration timeout) {
        return Await.until(() -> {
            try {
                return new Latest(FactorCheckpoints.readLatest(client(bootstrap), topics, Duration.ofSeconds(30)), null);
            } catch (org.apache.kafka.common.KafkaException e) {
                return new Latest(Map.of(), e); // broker restarting
            }
        }, latest -> latest.reached(expected), timeout, "factors of " + expected + " tokens").checkpoints();
    }

    /** The newest checkpoint per run/layer read from the factors topic, or why it could not be read. */
    private record Latest(Map<String, FactorCheckpoint> checkpoints, Exception failure) {
        boolean reached(Map<String, Long> expected) {
            return expected.entrySet().stream().allMatch(e -> checkpoints.containsKey(e.getKey())
                    && checkpoints.get(e.getKey()).tokenCount() >= e.getValue());
        }

        @Override
        public String toString() {
            Map<String, Long> tokens = new TreeMap<>();
            checkpoints.forEach((k, v) -> tokens.put(k, v.tokenCount()));
            return failure != null ? "not readable: " + failure : "tokens " + tokens;
        }
    }

    /** Records of a topic committed by the consumer group (the sum of its committed offsets on that topic). */
    static long committedRecords(String bootstrap, String groupId, String topic) throws Exception {
        try (Admin admin = Admin.create(client(bootstrap))) {
            return admin.listConsumerGroupOffsets(groupId).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS)
                    .entrySet().stream().filter(e -> e.getKey().topic().equals(topic) && e.getValue() != null)
                    .mapToLong(e -> e.getValue().offset()).sum();
        }
    }

    static List<ConsumerRecord<byte[], byte[]>> readAll(String bootstrap, String topic) {
        Properties p = FactorCheckpoints.consumerProperties(client(bootstrap));
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> parts = new ArrayList<>();
            c.partitionsFor(topic).forEach(pi -> parts.add(new TopicPartition(topic, pi.partition())));
            c.assign(parts);
            c.seekToBeginning(parts);
            Map<TopicPartition, Long> end = c.endOffsets(parts);
            List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
            Await.until(() -> {
                c.poll(Duration.ofMillis(200)).forEach(out::add);
                return parts.stream().allMatch(tp -> c.position(tp) >= end.get(tp));
            }, Duration.ofSeconds(60), topic + " read to its end offsets " + end, () -> out.size() + " records read");
            return out;
        }
    }

    /** The dead letters, read until there are at least {@code atLeast}. */
    static List<DeadLetter> awaitDeadLetters(String bootstrap, CurvewatchTopics topics, int atLeast, Duration timeout) {
        return Await.until(() -> deadLetters(bootstrap, topics), dls -> dls.size() >= atLeast, timeout,
                atLeast + " dead letters on " + topics.deadLetters());
    }

    static List<DeadLetter> deadLetters(String bootstrap, CurvewatchTopics topics) {
        AvroDeserializer<DeadLetter> d = new AvroDeserializer<>(DeadLetter.class);
        List<DeadLetter> out = new ArrayList<>();
        for (ConsumerRecord<byte[], byte[]> r : readAll(bootstrap, topics.deadLetters())) {
            out.add(d.decode(r.value()));
        }
        return out;
    }

    /** max |got - want| / max |want| */
    static double relativeError(double[] got, double[] want) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < want.length; i++) {
            num = Math.max(num, Math.abs(got[i] - want[i]));
            den = Math.max(den, Math.abs(want[i]));
        }
        return num / den;
    }

    /** What one layer should hold: the same captures fed in order to a reference accumulator and a plain double sum. */
    static final class Expected {
        final FactorAccumulator a;
        final FactorAccumulator g;
        final double[] batchA;
        final double[] batchG;
        final int dIn;
        final int dOut;
        long tokens;
        long captures;

        Expected(int dIn, int dOut) {
            this.dIn = dIn;
            this.dOut = dOut;
            a = FactorAccumulator.cumulative(dIn, Precision.FLOAT64);
            g = FactorAccumulator.cumulative(dOut, Precision.FLOAT64);
            batchA = new double[dIn * dIn];
            batchG = new double[dOut * dOut];
        }

        void add(long step, float[] av, float[] gv, int t) {
            a.add(step, av, t);
            g.add(step, gv, t);
            outer(batchA, av, t, dIn);
            outer(batchG, gv, t, dOut);
            tokens += t;
            captures++;
        }

        private static void outer(double[] s, float[] x, int t, int d) {
            for (int r = 0; r < t; r++) {
                for (int i = 0; i < d; i++) {
                    double xi = x[r * d + i];
                    for (int j = 0; j < d; j++) {
                        s[i * d + j] += xi * x[r * d + j];
                    }
                }
            }
        }

        double[] batchMeanA() {
            return scaled(batchA, 1.0 / tokens);
        }

        double[] batchMeanG() {
            return scaled(batchG, 1.0 / tokens);
        }

        private static double[] scaled(double[] s, double f) {
            double[] o = s.clone();
            for (int i = 0; i < o.length; i++) {
                o[i] *= f;
            }
            return o;
        }
    }

    /** A worker in its own JVM, so that it can be killed with SIGKILL. */
    static Process startWorkerProcess(Map<String, String> config, Path log) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xmx384m");
        cmd.add("-XX:TieredStopAtLevel=1");
        cmd.add("-Dorg.apache.avro.SERIALIZABLE_PACKAGES=dev.curvewatch.avro");
        cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=info");
        cmd.add("-Dorg.slf4j.simpleLogger.log.org.apache.kafka=warn");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(WorkerMain.class.getName());
        config.forEach((k, v) -> cmd.add(k + "=" + v));
        return new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
    }
}
