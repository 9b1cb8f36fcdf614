package dev.curvewatch.it.bench;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.EditCandidateParts;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A trainer stand-in that answers every edit candidate of one layer at once, without forward
 * passes: it reassembles the candidate's row parts as a trainer must (so the candidate's bytes
 * and transfer are real), then sends a ProbeResult in which probe accuracy holds for the milder
 * half of the candidates (the service calibrates to candidate {@link #FIRST_WITHIN}). What a real
 * trainer spends on the 19 masked forwards is measured apart ({@link PaperLayerBench}'s answer
 * cost). Runs on its own thread until closed.
 */
final class SyntheticAnswerer implements AutoCloseable {
    static final int FIRST_WITHIN = 10;
    private static final int PROBES = 100;
    private static final int TRAIN = 100;

    /** What happened to one candidate, by candidate id. */
    static final class Seen {
        volatile long factorVersion;
        volatile long firstPartMs;
        volatile long lastPartMs;
        volatile long bytes;
        volatile int parts;
        /** How part 0 carried U_G and U_A (EditCandidate v4): "k columns" or "named k". */
        volatile String basisG;
        volatile String basisA;
        volatile long assembledMs;
        volatile long answeredMs;
    }

    private final String runId;
    private final String layer;
    private final int dOut;
    private final int dIn;
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final KafkaProducer<String, byte[]> producer;
    private final CurvewatchTopics topics;
    private final Map<String, Seen> seen = new ConcurrentHashMap<>();
    private final Thread thread;
    private volatile boolean running = true;
    private volatile Throwable failure;

    SyntheticAnswerer(String bootstrap, CurvewatchTopics topics, String runId, String layer, int dOut, int dIn) {
        this.runId = runId;
        this.layer = layer;
        this.dOut = dOut;
        this.dIn = dIn;
        this.topics = topics;
        Properties c = new Properties();
        c.setProperty(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.setProperty(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES + (1 << 20)));
        c.setProperty(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, Integer.toString(2 * CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        c.setProperty(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "4");
        this.consumer = new KafkaConsumer<>(c, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        Properties p = new Properties();
        p.setProperty("bootstrap.servers", bootstrap);
        p.setProperty("acks", "all");
        this.producer = new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
        List<TopicPartition> parts = new ArrayList<>();
        consumer.partitionsFor(topics.editCandidates()).forEach(pi -> parts.add(new TopicPartition(pi.topic(), pi.partition())));
        consumer.assign(parts);
        consumer.seekToEnd(parts);
        parts.forEach(consumer::position);
        this.thread = new Thread(this::loop, "synthetic-answerer");
        thread.setDaemon(true);
        thread.start();
    }

    Map<String, Seen> seen() {
        return seen;
    }

    Throwable failure() {
        return failure;
    }

    private void loop() {
        AvroDeserializer<EditCandidate> decoder = new AvroDeserializer<>(EditCandidate.class);
        AvroSerializer<ProbeResult> encoder = new AvroSerializer<>(ProbeResult.class);
        EditCandidateParts.Assembler assembler = new EditCandidateParts.Assembler();
        try {
            while (running) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    EditCandidate part = decoder.decode(r.value());
                    if (!part.getRunId().equals(runId) || !part.getLayer().equals(layer)) {
                        continue;
                    }
                    Seen s = seen.computeIfAbsent(part.getCandidateId(), k -> new Seen());
                    if (s.parts == 0) {
                        s.firstPartMs = r.timestamp();
                        s.factorVersion = part.getFactorVersion();
                        s.basisG = (part.getBasisGOf() == null ? "" : "named ") + part.getBasisG().getShape().get(1);
                        s.basisA = (part.getBasisAOf() == null ? "" : "named ") + part.getBasisA().getShape().get(1);
                    }
                    s.lastPartMs = r.timestamp();
                    s.parts++;
                    s.bytes += r.serializedValueSize();
                    Optional<EditCandidate> whole = assembler.accept(part, dOut, dIn);
                    if (whole.isPresent()) {
                        s.assembledMs = System.currentTimeMillis();
                        ProbeResult answer = answer(whole.get());
                        producer.send(new ProducerRecord<>(topics.probeResults(), runId, encoder.serialize(null, answer))).get();
                        s.answeredMs = System.currentTimeMillis();
                    }
                }
            }
        } catch (Throwable e) {
            failure = e;
        }
    }

    /** Probe accuracy 1 under the candidates from {@link #FIRST_WITHIN} on, lower under the more aggressive ones. */
    private static ProbeResult answer(EditCandidate c) {
        int n = c.getRhos().size();
        List<ExampleLosses> examples = new ArrayList<>();
        for (int i = 0; i < PROBES + TRAIN; i++) {
            boolean probe = i < PROBES;
            List<Float> losses = new ArrayList<>(n);
            List<Boolean> correct = new ArrayList<>(n);
            for (int k = 0; k < n; k++) {
                int harm = Math.max(0, FIRST_WITHIN - k);
                losses.add(0.1f + 0.05f * harm + (probe ? 0f : 0.02f * (i % 7)));
                correct.add(i % 20 >= 2 * harm);
            }
            examples.add(ExampleLosses.newBuilder().setSampleId((probe ? "p" : "t") + i).setProbe(probe).setLossNow(0.1f)
                    .setCorrectNow(true).setLossEdited(losses).setCorrectEdited(correct).build());
        }
        return ProbeResult.newBuilder().setRunId(c.getRunId()).setCandidateId(c.getCandidateId()).setLayer(c.getLayer())
                .setStep(c.getStep()).setRhos(new ArrayList<>(c.getRhos())).setExamples(examples)
                .setTimestampMs(System.currentTimeMillis()).build();
    }

    @Override
    public void close() throws InterruptedException {
        running = false;
        thread.join(10_000);
        consumer.close();
        producer.close();
    }
}
