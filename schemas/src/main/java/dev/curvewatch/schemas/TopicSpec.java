package dev.curvewatch.schemas;

import java.util.HashMap;
import java.util.Map;

/** A topic and the settings it is created with; compression is the topic's {@code compression.type}. */
public record TopicSpec(String name, int partitions, boolean compacted, int maxMessageBytes, String compression) {
    public static final int DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

    /** Small Avro records (ids, scores, events) shrink well: the broker stores them zstd-compressed. */
    public static final String COMPRESSED = "zstd";

    /**
     * Float tensors (captures, weights, factor chunks, candidates' bases) shrink by ~8% under zstd: the
     * broker keeps batches as their producer sent them (uncompressed from Curvewatch's producers) instead of
     * recompressing every byte, and readers do not decompress them again (the issue-11 transformer run: the
     * broker's CPU 30.3 -> 26.4 s, the worker's 26.6 -> 24.5 s for its 1.5 GB of captures; one run each).
     */
    public static final String AS_PRODUCED = "producer";

    /** A topic of small records, compressed at the broker. */
    public TopicSpec(String name, int partitions, boolean compacted, int maxMessageBytes) {
        this(name, partitions, compacted, maxMessageBytes, COMPRESSED);
    }

    /**
     * Bytes to leave for ids, shapes, timestamps and Kafka framing when a record's payload is sized
     * against a topic's limit (docs/SPEC-SHARED-RULES.md, Record limits; the Python client's the same).
     */
    public static final int RECORD_OVERHEAD_BYTES = 4096;

    /** Segments of compacted topics roll at least this often, so the cleaner can drop old versions. */
    public static final String COMPACTED_SEGMENT_MS = Long.toString(10 * 60 * 1000L);

    /**
     * Broker-side topic configs: cleanup policy, record size limit, compression. Compacted
     * topics roll segments every 10 minutes and clean at 10% dirty: the cleaner never touches
     * the active segment, and with the default 7-day/1 GiB roll a restoring reader (a worker
     * re-reading its factor checkpoints) would scan every old version.
     */
    public Map<String, String> configs() {
        Map<String, String> configs = new HashMap<>();
        configs.put("cleanup.policy", compacted ? "compact" : "delete");
        if (compacted) {
            configs.put("segment.ms", COMPACTED_SEGMENT_MS);
            configs.put("min.cleanable.dirty.ratio", "0.1");
        }
        configs.put("max.message.bytes", Integer.toString(maxMessageBytes));
        configs.put("compression.type", compression);
        return configs;
    }
}
