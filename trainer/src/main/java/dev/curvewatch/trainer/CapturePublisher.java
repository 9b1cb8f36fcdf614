package dev.curvewatch.trainer;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.schemas.TopicSpec;
import dev.curvewatch.schemas.WeightAssembler;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Publishes a run's RunInfo, Captures and WeightSnapshots. Asynchronous, with a bound on bytes in
 * flight; when Kafka is slower than training the {@link Policy} decides: BLOCK the training loop,
 * or DROP the capture and count it ({@link #dropped()}, reported at close: never silent).
 * Captures above {@link #MAX_RECORD_BYTES} are split by tokens into parts, weights by rows.
 */
public final class CapturePublisher implements AutoCloseable {

    /** What to do when the in-flight byte budget is exhausted. */
    public enum Policy { BLOCK, DROP }

    public static final int MAX_RECORD_BYTES = 8 * 1024 * 1024;

    private final KafkaProducer<String, byte[]> producer;
    private final CurvewatchTopics topics;
    private final Policy policy;
    private final Semaphore budget;
    private final int budgetBytes;
    private final AvroSerializer<Capture> captures = new AvroSerializer<>(Capture.class);
    private final AvroSerializer<RunInfo> runs = new AvroSerializer<>(RunInfo.class);
    private final AvroSerializer<WeightSnapshot> weights = new AvroSerializer<>(WeightSnapshot.class);
    private final AvroSerializer<ProbeResult> probeResults = new AvroSerializer<>(ProbeResult.class);
    private final AvroSerializer<GuardDecision> guardDecisions = new AvroSerializer<>(GuardDecision.class);
    private final AtomicLong sent = new AtomicLong();
    private final AtomicLong sentBytes = new AtomicLong();
    private final AtomicLong dropped = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private final AtomicLong droppedProbeResults = new AtomicLong();

    public CapturePublisher(String bootstrapServers, CurvewatchTopics topics, Policy policy, int inFlightBytes) {
        Properties p = KafkaClientSettings.forBootstrap(bootstrapServers);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.putIfAbsent(ProducerConfig.ACKS_CONFIG, "all");
        p.putIfAbsent(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.putIfAbsent(ProducerConfig.BATCH_SIZE_CONFIG, String.valueOf(256 * 1024));
        // float tensors barely compress (~8%): sent plain and kept so by their topics (TopicSpec.AS_PRODUCED)
        p.putIfAbsent(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        p.putIfAbsent(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, String.valueOf(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.putIfAbsent(ProducerConfig.BUFFER_MEMORY_CONFIG, String.valueOf(Math.max(64L << 20, 2L * inFlightBytes)));
        this.producer = new KafkaProducer<>(p);
        this.topics = topics;
        this.policy = policy;
        this.budgetBytes = inFlightBytes;
        this.budget = new Semaphore(inFlightBytes);
    }

    public void publishRun(RunInfo info) {
        send(topics.runs(), info.getRunId(), runs.serialize(topics.runs(), info), true);
    }

    /** What the trainer did with an edited snapshot (APPLIED, REFUSED, NOT_APPLIED), for the live guard. */
    public void publishGuardDecision(GuardDecision d) {
        send(topics.guardDecisions(), d.getRunId(), guardDecisions.serialize(topics.guardDecisions(), d), true);
    }

    /**
     * W (d_out x d_in, row-major) of a step; a weight above {@link #MAX_RECORD_BYTES} goes out as
     * row parts (WeightSnapshot v2, {@link WeightAssembler#rowsPerPart}), the bias in part 0.
     */
    public void publishWeights(String runId, String layer, long step, float[] w, int dOut, int dIn, float[] bias) {
        int perPart = WeightAssembler.rowsPerPart(dOut, dIn, MAX_RECORD_BYTES);
        int parts = (dOut + perPart - 1) / perPart;
        long now = System.currentTimeMillis();
        for (int part = 0; part < parts; part++) {
            int from = part * perPart;
            int rows = Math.min(perPart, dOut - from);
            float[] slice = parts == 1 ? w : java.util.Arrays.copyOfRange(w, from * dIn, (from + rows) * dIn);
            WeightSnapshot s = WeightSnapshot.newBuilder().setRunId(runId).setLayer(layer).setStep(step)
                    .setWeight(TensorCodec.ofFloats(slice, rows, dIn))
                    .setBias(bias == null || part > 0 ? null : TensorCodec.ofFloats(bias, dOut))
                    .setPart(part).setParts(parts).setRowOffset(from).setTimestampMs(now).build();
            send(topics.weights(), CurvewatchTopics.runLayerKey(runId, layer), weights.serialize(topics.weights(), s), true);
        }
    }

    /**
     * An answer to an edit candidate (topic probe-results, key = run id), under the same in-flight
     * budget and policy as captures: BLOCK waits, DROP drops it and counts it
     * ({@link #droppedProbeResults()}). A record above the probe-results topic's limit
     * ({@link TopicSpec#DEFAULT_MAX_MESSAGE_BYTES}) is not sent: the broker would refuse it.
     *
     * @return false if it was dropped or too large (the reason is printed to stderr)
     */
    public boolean publishProbeResult(ProbeResult result) {
        byte[] value = probeResults.serialize(topics.probeResults(), result);
        if (value.length > TopicSpec.DEFAULT_MAX_MESSAGE_BYTES - TopicSpec.RECORD_OVERHEAD_BYTES) {
            droppedProbeResults.incrementAndGet();
            System.err.println("curvewatch trainer: probe result for candidate " + result.getCandidateId() + " is "
                    + value.length + " bytes, above the " + topics.probeResults() + " limit; not sent");
            return false;
        }
        int permits = Math.min(value.length, budgetBytes);
        if (!acquire(permits)) {
            droppedProbeResults.incrementAndGet();
            return false;
        }
        sendAcquired(topics.probeResults(), result.getRunId(), value, permits);
        return true;
    }

    /**
     * One layer's capture of one step; every token is its own example (sampleIds[t]).
     *
     * @return false if the capture was dropped by the DROP policy
     */
    public boolean publishCapture(String runId, String layer, long step, LayerCapture cap, String[] sampleIds,
                                  float[] exampleLosses, boolean probe, FisherKind fisher, double gradScale) {
        int rowBytes = 4 * (cap.dIn() + cap.dOut()) + 32;
        int perPart = Math.max(1, (MAX_RECORD_BYTES - TopicSpec.RECORD_OVERHEAD_BYTES) / rowBytes);
        int parts = (cap.tokens() + perPart - 1) / perPart;
        List<byte[]> payloads = new ArrayList<>(parts);
        for (int part = 0; part < parts; part++) {
            int from = part * perPart;
            int to = Math.min(cap.tokens(), from + perPart);
            int n = to - from;
            float[] a = new float[n * cap.dIn()];
            float[] g = new float[n * cap.dOut()];
            System.arraycopy(cap.a(), from * cap.dIn(), a, 0, a.length);
            System.arraycopy(cap.g(), from * cap.dOut(), g, 0, g.length);
            List<String> ids = new ArrayList<>(n);
            List<Float> losses = new ArrayList<>(exampleLosses == null ? 0 : n);
            for (int t = from; t < to; t++) {
                ids.add(sampleIds[t]);
                if (exampleLosses != null) {
                    losses.add(exampleLosses[t]);
                }
            }
            Capture c = Capture.newBuilder().setRunId(runId).setLayer(layer).setStep(step).setPart(part)
                    .setParts(parts).setFisher(fisher).setProbe(probe)
                    .setActivations(TensorCodec.ofFloats(a, n, cap.dIn()))
                    .setGradients(TensorCodec.ofFloats(g, n, cap.dOut())).setGradScale(gradScale)
                    .setSampleIds(ids).setTokenSample(null).setExampleLosses(losses)
                    .setTimestampMs(System.currentTimeMillis()).build();
            payloads.add(captures.serialize(topics.captures(), c));
        }
        int total = 0;
        for (byte[] b : payloads) {
            total += b.length;
        }
        // A step is all-or-nothing: the parts are admitted together so DROP never publishes half a step.
        int permits = Math.min(total, budgetBytes);
        if (!acquire(permits)) {
            dropped.incrementAndGet();
            return false;
        }
        String key = CurvewatchTopics.runLayerKey(runId, layer);
        int released = 0;
        for (int i = 0; i < payloads.size(); i++) {
            int share = i == payloads.size() - 1 ? permits - released : Math.min(permits - released, payloads.get(i).length);
            released += share;
            sendAcquired(topics.captures(), key, payloads.get(i), share);
        }
        return true;
    }

    private boolean acquire(int permits) {
        if (policy == Policy.BLOCK) {
            budget.acquireUninterruptibly(permits);
            return true;
        }
        return budget.tryAcquire(permits);
    }

    private void send(String topic, String key, byte[] value, boolean block) {
        int permits = Math.min(value.length, budgetBytes);
        budget.acquireUninterruptibly(permits); // registry and weights are never dropped
        sendAcquired(topic, key, value, permits);
    }

    private void sendAcquired(String topic, String key, byte[] value, int permits) {
        try {
            producer.send(new ProducerRecord<>(topic, key, value), (md, e) -> callback(topic, value, permits, e));
        } catch (RuntimeException e) {
            // send() throws only when the producer cannot take the record at all (closed, interrupted,
            // fatal producer error); the callback then never runs, so release and count here
            callback(topic, value, permits, e);
            throw new IllegalStateException("curvewatch trainer: cannot publish to " + topic + ": " + e, e);
        }
    }

    private void callback(String topic, byte[] value, int permits, Exception e) {
        budget.release(permits);
        if (e != null) {
            failed.incrementAndGet();
            System.err.println("curvewatch trainer: publish to " + topic + " failed: " + e);
        } else {
            sent.incrementAndGet();
            sentBytes.addAndGet(value.length);
        }
    }

    public long sent() {
        return sent.get();
    }

    public long sentBytes() {
        return sentBytes.get();
    }

    /** Captures dropped by the DROP policy. */
    public long dropped() {
        return dropped.get();
    }

    /** Probe results dropped by the DROP policy or because they were too large. */
    public long droppedProbeResults() {
        return droppedProbeResults.get();
    }

    /** Records the broker did not acknowledge. */
    public long failed() {
        return failed.get();
    }

    public void flush() {
        producer.flush();
    }

    @Override
    public void close() {
        producer.flush();
        producer.close(java.time.Duration.ofSeconds(30));
        System.out.printf("publisher: %d records (%d bytes) acknowledged, %d captures dropped (policy %s), %d failed%n",
                sent.get(), sentBytes.get(), dropped.get(), policy, failed.get());
    }

    /** Waits until nothing is in flight (for tests). */
    public boolean awaitIdle(long timeoutMs) throws InterruptedException {
        if (budget.tryAcquire(budgetBytes, timeoutMs, TimeUnit.MILLISECONDS)) {
            budget.release(budgetBytes);
            return true;
        }
        return false;
    }
}
