package dev.curvewatch.service.internal;

import dev.curvewatch.avro.OutstandingCandidate;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.ServiceLayerState;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.CurvewatchTopics;
import org.apache.kafka.clients.consumer.ConsumerRecord;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;

/**
 * What one service instance leaves on Kafka so that another can take its runs over (topic
 * service-state, compacted, key run/layer, {@link ServiceLayerState}): where each layer's latest
 * complete weight starts on the weights topic (a start-up seeks there instead of reading the topic
 * from its beginning) and the candidate out for calibration (the taker calibrates the trainer's
 * answer to it). Also the latest answer of the trainer per layer of a run owned elsewhere, so
 * that an answer that arrives between an owner's death and the takeover is not lost. The ingest
 * thread's; bounded by the layers of the runs held.
 */
final class Handover {
    private final AvroDeserializer<ServiceLayerState> decoder = new AvroDeserializer<>(ServiceLayerState.class);
    private final AvroDeserializer<ProbeResult> answerDecoder = new AvroDeserializer<>(ProbeResult.class);
    /** The newest record per layer read from the topic (ours and the other instances'). */
    private final Map<String, ServiceLayerState> latest = new HashMap<>();
    /** What this instance last wrote per layer. */
    private final Map<String, ServiceLayerState> written = new HashMap<>();
    /** Where the latest complete weight of each layer starts: {partition, offset of part 0}. */
    private final Map<String, long[]> weights = new HashMap<>();
    private final Map<String, long[]> weightInProgress = new HashMap<>();
    private final Map<String, ConsumerRecord<byte[], byte[]>> answers = new HashMap<>();

    /** A record of topic service-state. */
    void onState(ConsumerRecord<byte[], byte[]> r) {
        if (r.key() == null) {
            return;
        }
        String key = new String(r.key(), java.nio.charset.StandardCharsets.UTF_8);
        if (r.value() == null) {
            latest.remove(key);
            return;
        }
        ServiceLayerState s = decoder.decode(r.value());
        ContractChecks.requireId(s.getRunId(), "run_id");
        ContractChecks.requireId(s.getLayer(), "layer");
        latest.put(key, s);
    }

    /** Part {@code part} of a weight of a layer read at this position; {@code complete}: it completed the weight. */
    void weightPart(String runLayer, int part, int partition, long offset, boolean complete) {
        if (part == 0) {
            weightInProgress.put(runLayer, new long[] {partition, offset});
        }
        long[] start = weightInProgress.get(runLayer);
        if (complete && start != null) {
            weights.put(runLayer, start);
            weightInProgress.remove(runLayer);
        }
    }

    /**
     * Where a start-up reads each weights partition from: the earliest latest-weight start among
     * the layers whose weights go there, or -1 (from the beginning) when one of them has no record
     * yet, or a record on another partition (then that one is read from its beginning too).
     *
     * @param layersByPartition per weights partition, the run/layer keys of the registered layers whose key goes there
     */
    Map<Integer, Long> weightSeeks(Map<Integer, List<String>> layersByPartition) {
        Map<Integer, Long> out = new HashMap<>();
        layersByPartition.keySet().forEach(p -> out.put(p, Long.MAX_VALUE));
        layersByPartition.forEach((p, keys) -> {
            for (String k : keys) {
                ServiceLayerState s = latest.get(k);
                if (s == null || s.getWeightsOffset() < 0 || s.getWeightsPartition() != p) {
                    out.put(p, -1L);
                    if (s != null && out.containsKey(s.getWeightsPartition())) {
                        out.put(s.getWeightsPartition(), -1L);
                    }
                } else if (out.get(p) >= 0) {
                    out.put(p, Math.min(out.get(p), s.getWeightsOffset()));
                }
            }
        });
        out.replaceAll((p, o) -> o == Long.MAX_VALUE ? -1 : o); // no registered layer there: as before, from the beginning
        return out;
    }

    /** The record to write for an owned layer when what a taker needs changed since the last one; empty otherwise. */
    Optional<ServiceLayerState> toWrite(LayerState l, long nowMs) {
        String key = l.key();
        long[] w = weights.get(key);
        PendingCandidate c = l.newestOutstanding();
        ServiceLayerState before = written.containsKey(key) ? written.get(key) : latest.get(key);
        int partition = w == null ? (before == null ? -1 : before.getWeightsPartition()) : (int) w[0];
        long offset = w == null ? (before == null ? -1 : before.getWeightsOffset()) : w[1];
        String candidateId = c == null ? null : c.id();
        String beforeId = before == null || before.getCandidate() == null ? null : before.getCandidate().getCandidateId();
        if (before != null && before.getWeightsPartition() == partition && before.getWeightsOffset() == offset
                && Objects.equals(candidateId, beforeId)) {
            return Optional.empty();
        }
        ServiceLayerState s = ServiceLayerState.newBuilder().setRunId(l.runId()).setLayer(l.layer()).setWeightsPartition(partition)
                .setWeightsOffset(offset).setCandidate(c == null ? null : outstanding(c)).setUpdatedMs(nowMs).build();
        written.put(key, s);
        return Optional.of(s);
    }

    private static OutstandingCandidate outstanding(PendingCandidate c) {
        return OutstandingCandidate.newBuilder().setCandidateId(c.id()).setStep(c.step()).setFactorVersion(c.factorVersion())
                .setRhos(box(c.rhos())).setThresholds(box(c.thresholds())).setKeptPairs(java.util.Arrays.stream(c.keptPairs()).boxed().toList())
                .setTotalPairs(c.totalPairs()).setSentMs(c.sentMs()).build();
    }

    private static List<Double> box(double[] v) {
        return java.util.Arrays.stream(v).boxed().toList();
    }

    /** The candidate the previous owner had out for this layer, or null. */
    PendingCandidate outstandingOf(String runId, String layer) {
        ServiceLayerState s = latest.get(CurvewatchTopics.runLayerKey(runId, layer));
        OutstandingCandidate o = s == null ? null : s.getCandidate();
        if (o == null) {
            return null;
        }
        return new PendingCandidate(o.getCandidateId(), runId, layer, o.getStep(), o.getFactorVersion(),
                o.getRhos().stream().mapToDouble(Double::doubleValue).toArray(),
                o.getThresholds().stream().mapToDouble(Double::doubleValue).toArray(),
                o.getKeptPairs().stream().mapToLong(Long::longValue).toArray(), o.getTotalPairs(), o.getSentMs());
    }

    /** An answer of the trainer for a run owned by another instance: kept (the newest per layer) in case this one takes the run over. */
    void answerForOther(ConsumerRecord<byte[], byte[]> r) {
        if (r.value() == null) {
            return;
        }
        ProbeResult pr = answerDecoder.decode(r.value());
        ContractChecks.requireId(pr.getRunId(), "run_id");
        ContractChecks.requireId(pr.getLayer(), "layer");
        answers.put(CurvewatchTopics.runLayerKey(pr.getRunId(), pr.getLayer()), r);
    }

    /** The kept answers of a run just taken over (removed). */
    List<ConsumerRecord<byte[], byte[]>> takeAnswers(String runId) {
        String prefix = CurvewatchTopics.runLayerKey(runId, "");
        List<ConsumerRecord<byte[], byte[]>> out = answers.entrySet().stream().filter(e -> e.getKey().startsWith(prefix))
                .map(Map.Entry::getValue).sorted(java.util.Comparator.comparingLong(ConsumerRecord::offset)).toList();
        answers.keySet().removeIf(k -> k.startsWith(prefix));
        return out;
    }

    /** This instance no longer owns the run: what it wrote is another's to write now. */
    void lost(String runId) {
        String prefix = CurvewatchTopics.runLayerKey(runId, "");
        written.keySet().removeIf(k -> k.startsWith(prefix));
    }

    /** A run forgotten for runs.max. */
    void forgetRun(String runId) {
        String prefix = CurvewatchTopics.runLayerKey(runId, "");
        for (Map<String, ?> m : List.of(latest, written, weights, weightInProgress, answers)) {
            m.keySet().removeIf(k -> k.startsWith(prefix));
        }
    }
}
