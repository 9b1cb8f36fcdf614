package dev.curvewatch.trainer.testing;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.trainer.CandidateBases;
import org.apache.avro.specific.SpecificRecord;
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

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.function.Function;
import java.util.function.Predicate;

/**
 * A trainer for tests of the service, the workers and the dashboard, shipped for reuse (as Kafka
 * Streams ships its TopologyTestDriver): it publishes what a trainer publishes for the layers a test
 * names (RunInfo, Capture, WeightSnapshot, keyed as SERVICE-CONTRACT says) to a real broker, and
 * answers the service's EditCandidates with whatever model the test gives it, on a thread of its own
 * (a v4 candidate that names an earlier candidate's basis reaches the model with that basis filled in).
 * It holds no model: a test's model decides the answers (scored with {@link #crossEntropy} and
 * {@link #argmax} if it likes), so its expectations stay independent of both the service and the
 * trainer. Every send waits for the broker's acknowledgement.
 *
 * <pre>{@code
 * try (TrainerSimulator trainer = new TrainerSimulator(bootstrap, topics, "run-1")) {
 *     trainer.publishRun(runInfo);
 *     trainer.publishCapture("fc", step, rows.a(), rows.g(), sampleIds);
 *     trainer.answerCandidates(c -> c.getLayer().equals("fc"), c -> model.answer(c));
 *     ...                                   // the service refreshes, calibrates, alerts
 *     assertNull(trainer.failure());
 * }
 * }</pre>
 */
public final class TrainerSimulator implements AutoCloseable {
    /** One capture's rows: inputs a (tokens x d_in) and output gradients g (tokens x d_out), row-major. */
    public record Rows(float[] a, float[] g, int tokens) {
    }

    private final String bootstrap;
    private final CurvewatchTopics topics;
    private final String runId;
    private final KafkaProducer<String, byte[]> producer;
    private final List<EditCandidate> answered = new CopyOnWriteArrayList<>();
    private Answering answering;

    public TrainerSimulator(String bootstrap, CurvewatchTopics topics, String runId) {
        this.bootstrap = bootstrap;
        this.topics = topics;
        this.runId = runId;
        Properties p = KafkaClientSettings.forBootstrap(bootstrap);
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        p.setProperty(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        this.producer = new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
    }

    /**
     * Rows with independent Gaussian coordinates: per token, d_in inputs with standard deviations
     * {@code inputSd}, then d_out gradients with {@code gradSd}, drawn in that order from {@code random}.
     */
    public static Rows gaussianRows(Random random, int tokens, double[] inputSd, double[] gradSd) {
        float[] a = new float[tokens * inputSd.length];
        float[] g = new float[tokens * gradSd.length];
        for (int t = 0; t < tokens; t++) {
            for (int j = 0; j < inputSd.length; j++) {
                a[t * inputSd.length + j] = (float) (random.nextGaussian() * inputSd[j]);
            }
            for (int j = 0; j < gradSd.length; j++) {
                g[t * gradSd.length + j] = (float) (random.nextGaussian() * gradSd[j]);
            }
        }
        return new Rows(a, g, tokens);
    }

    /** The class a test's model predicts: the index of the largest logit (the first of equal ones). */
    public static int argmax(double[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) {
            if (logits[i] > logits[best]) {
                best = i;
            }
        }
        return best;
    }

    /** Cross-entropy in nats of {@code label} under softmax(logits), shifted by the largest logit so exp never overflows. */
    public static double crossEntropy(double[] logits, int label) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : logits) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (double v : logits) {
            sum += Math.exp(v - max);
        }
        return max + Math.log(sum) - logits[label];
    }

    /** The run's registration (topic runs, key = run id). */
    public void publishRun(RunInfo run) {
        send(topics.runs(), runId, RunInfo.class, run);
    }

    /** One capture of {@code layer} at {@code step} (sampled-label Fisher), one sample id per token. */
    public void publishCapture(String layer, long step, Rows rows, List<String> sampleIds) {
        int dIn = rows.a().length / rows.tokens();
        int dOut = rows.g().length / rows.tokens();
        Capture c = Capture.newBuilder().setRunId(runId).setLayer(layer).setStep(step).setFisher(FisherKind.SAMPLED)
                .setActivations(TensorCodec.ofFloats(rows.a(), rows.tokens(), dIn))
                .setGradients(TensorCodec.ofFloats(rows.g(), rows.tokens(), dOut))
                .setSampleIds(sampleIds).setTimestampMs(System.currentTimeMillis()).build();
        send(topics.captures(), CurvewatchTopics.runLayerKey(runId, layer), Capture.class, c);
    }

    /** The weight (d_out x d_in, row-major) and bias of {@code layer} after {@code step}. */
    public void publishWeights(String layer, long step, float[] weight, int dOut, int dIn, float[] bias) {
        WeightSnapshot.Builder w = WeightSnapshot.newBuilder().setRunId(runId).setLayer(layer).setStep(step)
                .setWeight(TensorCodec.ofFloats(weight, dOut, dIn)).setTimestampMs(System.currentTimeMillis());
        if (bias != null) {
            w.setBias(TensorCodec.ofFloats(bias, dOut));
        }
        send(topics.weights(), CurvewatchTopics.runLayerKey(runId, layer), WeightSnapshot.class, w.build());
    }

    /**
     * From now on, answers every EditCandidate of this run that {@code which} accepts (read from the
     * start of topic edit-candidates, in order) with {@code answer}'s ProbeResult, on a thread of its
     * own, until {@link #close}. A candidate the model throws on, or a send that fails, stops the
     * answering and is kept as {@link #failure()}.
     */
    public synchronized void answerCandidates(Predicate<EditCandidate> which, Function<EditCandidate, ProbeResult> answer) {
        if (answering != null) {
            throw new IllegalStateException("already answering candidates");
        }
        answering = new Answering(which, answer);
        answering.start();
    }

    /** The candidates answered so far, in the order they were answered. */
    public List<EditCandidate> answered() {
        return List.copyOf(answered);
    }

    /** What stopped the answering thread, or null. */
    public Throwable failure() {
        Answering a = answering;
        return a == null ? null : a.failure;
    }

    public String runId() {
        return runId;
    }

    private <T extends SpecificRecord> void send(String topic, String key, Class<T> type, T value) {
        try {
            producer.send(new ProducerRecord<>(topic, key, new AvroSerializer<>(type).serialize(topic, value))).get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while publishing to " + topic, e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("publishing to " + topic + " failed: " + e.getCause(), e.getCause());
        }
    }

    @Override
    public void close() throws InterruptedException {
        Answering a;
        synchronized (this) {
            a = answering;
        }
        if (a != null) {
            a.stop = true;
            a.join(10_000);
        }
        producer.close(Duration.ofSeconds(10));
    }

    /** The answering thread: a consumer assigned every partition of edit-candidates from the beginning. */
    private final class Answering extends Thread {
        private final Predicate<EditCandidate> which;
        private final Function<EditCandidate, ProbeResult> answer;
        /** v4 candidates may name an earlier candidate's basis instead of sending it: the model gets whole ones. */
        private final CandidateBases bases = new CandidateBases();
        volatile boolean stop;
        volatile Throwable failure;

        Answering(Predicate<EditCandidate> which, Function<EditCandidate, ProbeResult> answer) {
            super("trainer-simulator-" + runId);
            setDaemon(true);
            this.which = which;
            this.answer = answer;
        }

        @Override
        public void run() {
            Properties p = KafkaClientSettings.forBootstrap(bootstrap);
            p.setProperty(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG,
                    Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES + (1 << 20)));
            AvroDeserializer<EditCandidate> candidates = new AvroDeserializer<>(EditCandidate.class);
            try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                List<TopicPartition> parts = new ArrayList<>();
                c.partitionsFor(topics.editCandidates()).forEach(pi -> parts.add(new TopicPartition(pi.topic(), pi.partition())));
                c.assign(parts);
                c.seekToBeginning(parts);
                while (!stop) {
                    for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                        EditCandidate candidate = candidates.decode(r.value());
                        if (!runId.equals(candidate.getRunId()) || !which.test(candidate)) {
                            continue;
                        }
                        EditCandidate whole;
                        try {
                            whole = bases.resolve(candidate);
                        } catch (RuntimeException notHeld) {
                            continue; // as a real trainer: no answer, and the service sends the bases again
                        }
                        bases.remember(whole);
                        send(topics.probeResults(), runId, ProbeResult.class, answer.apply(whole));
                        answered.add(whole);
                    }
                }
            } catch (Throwable t) {
                failure = t;
            }
        }
    }
}
