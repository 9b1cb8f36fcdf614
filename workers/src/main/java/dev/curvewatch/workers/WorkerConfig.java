package dev.curvewatch.workers;

import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.ConfigLayers;
import dev.curvewatch.schemas.ConfigValues;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;

import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;

/**
 * Settings of one worker instance, layered by {@link ConfigLayers}: defaults, a properties file,
 * {@code CURVEWATCH_WORKER_<KEY>} environment variables ('_' for '.'), explicit overrides; read
 * through {@link ConfigValues}, so a bad value is refused at load time naming its key. Keys
 * starting with {@code kafka.} are handed to the Kafka clients unchanged (minus the prefix), on
 * top of {@link KafkaClientSettings} (TLS/SASL from {@code CURVEWATCH_KAFKA_*}).
 */
public final class WorkerConfig {
    public static final String BOOTSTRAP = "bootstrap";
    public static final String TOPIC_PREFIX = "topic.prefix";
    public static final String GROUP_ID = "group.id";
    public static final String INSTANCE_ID = "instance.id";
    public static final String CHECKPOINT_TOKENS = "checkpoint.tokens";
    public static final String CHECKPOINT_INTERVAL_MS = "checkpoint.interval.ms";
    public static final String CHECKPOINT_MAX_INTERVAL_MS = "checkpoint.max.interval.ms";
    public static final String CHECKPOINT_CAPTURE_RATIO = "checkpoint.capture.ratio";
    public static final String CHUNK_BYTES = "checkpoint.chunk.bytes";
    public static final String PRECISION = "precision";
    public static final String MAX_LAYER_SIDE = "max.layer.side";
    public static final String FACTORS_MEMORY_BUDGET_BYTES = "factors.memory.budget.bytes";
    public static final String MAX_RECORD_BYTES = "max.record.bytes";
    public static final String DEAD_LETTER_MAX_VALUE_BYTES = "dead.letter.max.value.bytes";
    public static final String UNKNOWN_RUN_GRACE_MS = "unknown.run.grace.ms";
    public static final String POLL_TIMEOUT_MS = "poll.timeout.ms";
    public static final String MAX_POLL_RECORDS = "max.poll.records";
    public static final String METRICS_PORT = "metrics.port";
    public static final String METRICS_HOST = "metrics.host";
    public static final String STATIC_MEMBERSHIP = "static.membership";
    public static final String KAFKA_PREFIX = ConfigLayers.KAFKA_PREFIX;
    static final String ENV_PREFIX = "CURVEWATCH_WORKER_";
    private static final ConfigLayers LAYERS = new ConfigLayers(ENV_PREFIX);

    private static final Map<String, String> DEFAULTS;

    static {
        Map<String, String> d = new LinkedHashMap<>();
        d.put(TOPIC_PREFIX, CurvewatchTopics.DEFAULT_PREFIX);
        d.put(GROUP_ID, "curvewatch-workers");
        d.put(CHECKPOINT_TOKENS, "1000000");
        d.put(CHECKPOINT_INTERVAL_MS, "10000");
        d.put(CHECKPOINT_MAX_INTERVAL_MS, "300000");
        d.put(CHECKPOINT_CAPTURE_RATIO, "1.0");
        d.put(CHUNK_BYTES, Integer.toString(4 * 1024 * 1024));
        d.put(PRECISION, "FLOAT64");
        d.put(MAX_LAYER_SIDE, "16384");
        d.put(FACTORS_MEMORY_BUDGET_BYTES, "0");
        d.put(MAX_RECORD_BYTES, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        d.put(DEAD_LETTER_MAX_VALUE_BYTES, Integer.toString(8 * 1024 * 1024));
        d.put(UNKNOWN_RUN_GRACE_MS, "10000");
        d.put(POLL_TIMEOUT_MS, "200");
        d.put(MAX_POLL_RECORDS, "100");
        d.put(METRICS_PORT, "-1");
        d.put(METRICS_HOST, "0.0.0.0");
        d.put(STATIC_MEMBERSHIP, "true");
        DEFAULTS = Collections.unmodifiableMap(d);
    }

    private final ConfigValues values;

    private WorkerConfig(Map<String, String> values) {
        this.values = ConfigValues.of(values);
        validate();
    }

    /** Defaults plus the given overrides only (no file, no environment): for tests and embedding. */
    public static WorkerConfig of(Map<String, String> overrides) {
        return new WorkerConfig(LAYERS.load(DEFAULTS, null, "worker config", Map.of(), overrides));
    }

    /** Defaults, then the file (if any), then {@code CURVEWATCH_WORKER_*} variables, then overrides. */
    public static WorkerConfig load(Path file, Map<String, String> env, Map<String, String> overrides) {
        return new WorkerConfig(LAYERS.load(DEFAULTS, file, "worker config", env, overrides));
    }

    private void validate() {
        if (checkpointTokens() < 1 || checkpointIntervalMs() < 1) {
            throw new IllegalArgumentException("checkpoint.tokens and checkpoint.interval.ms must be >= 1");
        }
        if (checkpointMaxIntervalMs() < checkpointIntervalMs() || !(checkpointCaptureRatio() >= 0)) {
            throw new IllegalArgumentException(CHECKPOINT_MAX_INTERVAL_MS + " must be >= " + CHECKPOINT_INTERVAL_MS + " and "
                    + CHECKPOINT_CAPTURE_RATIO + " >= 0, got " + checkpointMaxIntervalMs() + " and " + checkpointCaptureRatio());
        }
        if (chunkBytes() < 1024 || chunkBytes() > CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES - 64 * 1024) {
            throw new IllegalArgumentException("checkpoint.chunk.bytes must be in [1024, 16 MiB - 64 KiB], got " + chunkBytes());
        }
        // parse every typed key once, so a bad value is refused here, naming its key, not when the worker starts
        precision();
        staticMembership();
        unknownRunGraceMs();
        pollTimeoutMs();
        maxPollRecords();
        metricsPort();
        if (maxLayerSide() < 1 || maxLayerSide() > ContractChecks.MAX_LAYER_SIDE || values.longValue(FACTORS_MEMORY_BUDGET_BYTES) < 0) {
            throw new IllegalArgumentException(MAX_LAYER_SIDE + " must be in [1, " + ContractChecks.MAX_LAYER_SIDE + "] and "
                    + FACTORS_MEMORY_BUDGET_BYTES + " >= 0 (0 = half the maximum heap)");
        }
        if (maxRecordBytes() < 1 || deadLetterMaxValueBytes() < 0) {
            throw new IllegalArgumentException("max.record.bytes must be >= 1 and dead.letter.max.value.bytes >= 0");
        }
    }

    public String get(String key) {
        return values.string(key);
    }

    public CurvewatchTopics topics() {
        return new CurvewatchTopics(values.string(TOPIC_PREFIX));
    }

    public String groupId() {
        return values.string(GROUP_ID);
    }

    /**
     * Stable id of this instance: the transactional id derives from it, so a restarted instance
     * fences its predecessor's unfinished transaction. Default: host name.
     */
    public String instanceId() {
        return values.stringOrHostName(INSTANCE_ID, "worker");
    }

    public long checkpointTokens() {
        return values.longValue(CHECKPOINT_TOKENS);
    }

    public long checkpointIntervalMs() {
        return values.longValue(CHECKPOINT_INTERVAL_MS);
    }

    /** Longest a partition with changed layers waits for its capture bytes to reach the ratio (CheckpointSchedule). */
    public long checkpointMaxIntervalMs() {
        return values.longValue(CHECKPOINT_MAX_INTERVAL_MS);
    }

    /**
     * A partition's checkpoint waits until the capture bytes accumulated into its layers reach
     * this multiple of the factor bytes it writes; 0 = at every interval.
     */
    public double checkpointCaptureRatio() {
        return values.doubleValue(CHECKPOINT_CAPTURE_RATIO);
    }

    public int chunkBytes() {
        return values.intValue(CHUNK_BYTES);
    }

    public Precision precision() {
        return values.enumValue(PRECISION, Precision.class);
    }

    /** Largest d_in or d_out of a layer this worker accumulates; a larger layer's captures are dead letters. */
    public int maxLayerSide() {
        return values.intValue(MAX_LAYER_SIDE);
    }

    /**
     * Bytes the factors of all layers this worker holds may take (accumulators are off-heap; a
     * checkpoint copies one factor to the heap at a time). 0 = half the JVM's maximum heap.
     */
    public long factorsMemoryBudgetBytes() {
        long v = values.longValue(FACTORS_MEMORY_BUDGET_BYTES);
        return v > 0 ? v : Runtime.getRuntime().maxMemory() / 2;
    }

    public int maxRecordBytes() {
        return values.intValue(MAX_RECORD_BYTES);
    }

    public int deadLetterMaxValueBytes() {
        return values.intValue(DEAD_LETTER_MAX_VALUE_BYTES);
    }

    public long unknownRunGraceMs() {
        return values.longValue(UNKNOWN_RUN_GRACE_MS);
    }

    public long pollTimeoutMs() {
        return values.longValue(POLL_TIMEOUT_MS);
    }

    public int maxPollRecords() {
        return values.intValue(MAX_POLL_RECORDS);
    }

    /** Port of /metrics and /health; -1 = no endpoint, 0 = any free port. */
    public int metricsPort() {
        return values.intValue(METRICS_PORT);
    }

    /** Consumer group.instance.id = instance.id, so a restart reclaims the same partitions at once. */
    public boolean staticMembership() {
        return values.booleanValue(STATIC_MEMBERSHIP);
    }

    public String metricsHost() {
        return values.string(METRICS_HOST);
    }

    /**
     * Client properties: {@link KafkaClientSettings} (file and {@code CURVEWATCH_KAFKA_*}), then this
     * config's {@code kafka.*} keys, then {@code bootstrap}.
     */
    public Properties kafkaProperties() {
        return values.kafkaProperties(BOOTSTRAP, Map.of());
    }

    /** Every setting, with values of secret-looking keys masked (for logs and /health). */
    public Map<String, String> describe() {
        return values.describe();
    }

    /** All keys with defaults, for help texts. */
    public static Map<String, String> defaults() {
        return DEFAULTS;
    }
}
