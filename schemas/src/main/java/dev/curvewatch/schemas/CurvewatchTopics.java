package dev.curvewatch.schemas;

import java.util.List;

/**
 * The topic catalogue of DESIGN.md section 5: names (under a configurable prefix) and the settings
 * the broker launcher creates them with.
 */
public final class CurvewatchTopics {
    public static final String DEFAULT_PREFIX = "curvewatch.";
    /** Tensor topics accept records up to this size (an 8 MB capture plus headroom). */
    public static final int TENSOR_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

    private final String prefix;

    public CurvewatchTopics(String prefix) {
        this.prefix = prefix;
    }

    public static CurvewatchTopics withDefaultPrefix() {
        return new CurvewatchTopics(DEFAULT_PREFIX);
    }

    public String prefix() { return prefix; }
    public String runs() { return prefix + "runs"; }
    public String captures() { return prefix + "captures"; }
    public String weights() { return prefix + "weights"; }
    public String factors() { return prefix + "factors"; }
    public String editCandidates() { return prefix + "edit-candidates"; }
    public String probeResults() { return prefix + "probe-results"; }
    public String signals() { return prefix + "signals"; }
    public String scores() { return prefix + "scores"; }
    public String alertsRaw() { return prefix + "alerts.raw"; }
    public String alerts() { return prefix + "alerts"; }
    public String editRequests() { return prefix + "edit-requests"; }
    public String snapshots() { return prefix + "snapshots"; }
    public String deadLetters() { return prefix + "dead-letters"; }
    /** Every decision of the live guard (streams app, service, trainer), key = run id. */
    public String guardDecisions() { return prefix + "guard-decisions"; }
    /** Per layer, what a service instance keeps so that another can take its runs over (compacted, key = run/layer). */
    public String serviceState() { return prefix + "service-state"; }

    /** How each topic is created. Partition counts are defaults a deployment may raise. */
    public List<TopicSpec> specs(int capturePartitions) {
        return List.of(
                new TopicSpec(runs(), 1, true, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES),
                new TopicSpec(captures(), capturePartitions, false, TENSOR_MAX_MESSAGE_BYTES, TopicSpec.AS_PRODUCED),
                new TopicSpec(weights(), capturePartitions, false, TENSOR_MAX_MESSAGE_BYTES, TopicSpec.AS_PRODUCED),
                new TopicSpec(factors(), capturePartitions, true, TENSOR_MAX_MESSAGE_BYTES, TopicSpec.AS_PRODUCED),
                new TopicSpec(editCandidates(), 1, false, TENSOR_MAX_MESSAGE_BYTES, TopicSpec.AS_PRODUCED),
                new TopicSpec(probeResults(), 1, false, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES),
                new TopicSpec(signals(), capturePartitions, false, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES),
                new TopicSpec(scores(), capturePartitions, false, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES),
                new TopicSpec(alertsRaw(), 1, false, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES),
                new TopicSpec(alerts(), 1, true, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES),
                // key = run: the service instances share the runs by this topic's partitions (consumer-group assignment)
                new TopicSpec(editRequests(), capturePartitions, false, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES),
                new TopicSpec(snapshots(), 1, false, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES),
                // dead letters carry the original bytes, which may be tensor-sized
                new TopicSpec(deadLetters(), 1, false, TENSOR_MAX_MESSAGE_BYTES),
                new TopicSpec(guardDecisions(), 1, false, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES),
                new TopicSpec(serviceState(), capturePartitions, true, TopicSpec.DEFAULT_MAX_MESSAGE_BYTES));
    }

    /** Key of per-layer records: "run/layer" (both checked by {@link ContractChecks#requireId}). */
    public static String runLayerKey(String runId, String layer) {
        return runId + "/" + layer;
    }
}
