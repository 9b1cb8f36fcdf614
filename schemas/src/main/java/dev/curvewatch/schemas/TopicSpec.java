package dev.curvewatch.schemas;

import java.util.HashMap;
import java.util.Map;

/** A topic and the settings it is created with. */
public record TopicSpec(String name, int partitions, boolean compacted, int maxMessageBytes) {
    public static final int DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

    /** Broker-side topic configs: cleanup policy, record size limit, zstd compression. */
    public Map<String, String> configs() {
        Map<String, String> configs = new HashMap<>();
        configs.put("cleanup.policy", compacted ? "compact" : "delete");
        configs.put("max.message.bytes", Integer.toString(maxMessageBytes));
        configs.put("compression.type", "zstd");
        return configs;
    }
}
