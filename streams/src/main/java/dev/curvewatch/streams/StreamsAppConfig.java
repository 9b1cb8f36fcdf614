package dev.curvewatch.streams;

import dev.curvewatch.schemas.ConfigLayers;
import dev.curvewatch.schemas.ConfigValues;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import org.apache.kafka.streams.StreamsConfig;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * Configuration of the streams app, layered by {@link ConfigLayers} (defaults, file, then
 * {@code CURVEWATCH_STREAMS_<KEY>} environment variables with '_' for '.', then explicit overrides
 * such as command-line flags) and read through {@link ConfigValues}. Keys:
 * {@code bootstrap}, {@code application.id} (default curvewatch-streams), {@code topic.prefix}
 * (default curvewatch.), {@code state.dir}, {@code alerts.resolve.hold.ms} (default 60000: a
 * RESOLVED alert is only published after the condition stayed resolved this long),
 * {@code rules.file} (edit rules, see {@link EditRules}; default {@link EditRules#defaults()}),
 * and {@code kafka.<any Streams or client key>} passed through unchanged. Kafka security
 * settings also come from {@code CURVEWATCH_KAFKA_*} ({@link KafkaClientSettings}).
 *
 * @param streams       properties for {@code KafkaStreams}
 * @param resolveHoldMs anti-flapping hold before a resolution is published
 */
public record StreamsAppConfig(Properties streams, CurvewatchTopics topics, long resolveHoldMs, List<EditRule> rules) {
    public static final String BOOTSTRAP = "bootstrap";
    public static final String APPLICATION_ID = "application.id";
    public static final String TOPIC_PREFIX = "topic.prefix";
    public static final String STATE_DIR = "state.dir";
    public static final String RESOLVE_HOLD_MS = "alerts.resolve.hold.ms";
    public static final String RULES_FILE = "rules.file";
    public static final String KAFKA_PREFIX = ConfigLayers.KAFKA_PREFIX;
    private static final String ENV_PREFIX = "CURVEWATCH_STREAMS_";
    private static final ConfigLayers LAYERS = new ConfigLayers(ENV_PREFIX);
    private static final Map<String, String> DEFAULTS = Map.of(APPLICATION_ID, "curvewatch-streams",
            TOPIC_PREFIX, CurvewatchTopics.DEFAULT_PREFIX, RESOLVE_HOLD_MS, "60000");

    public static StreamsAppConfig of(Map<String, String> overrides) {
        return load(null, System.getenv(), overrides);
    }

    public static StreamsAppConfig load(Path file, Map<String, String> env, Map<String, String> overrides) {
        ConfigValues v = ConfigValues.of(LAYERS.load(DEFAULTS, file, "config file", env, overrides));

        Map<String, String> clientDefaults = new LinkedHashMap<>();
        clientDefaults.put(StreamsConfig.APPLICATION_ID_CONFIG, v.string(APPLICATION_ID));
        clientDefaults.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        clientDefaults.put("processing.exception.handler.global.enabled", "true"); // the 5.0 default, and no warning
        if (v.contains(STATE_DIR)) {
            clientDefaults.put(StreamsConfig.STATE_DIR_CONFIG, v.string(STATE_DIR));
        }
        Properties streams = v.kafkaProperties(BOOTSTRAP, clientDefaults);
        long hold = v.longValue(RESOLVE_HOLD_MS);
        if (hold < 0) {
            throw new IllegalArgumentException(RESOLVE_HOLD_MS + " must be >= 0, got " + hold);
        }
        List<EditRule> rules = v.optionalPath(RULES_FILE).map(f -> EditRules.parse(ConfigLayers.read(f, RULES_FILE)))
                .orElseGet(EditRules::defaults);
        return new StreamsAppConfig(streams, new CurvewatchTopics(v.string(TOPIC_PREFIX)), hold, rules);
    }

    /** The application id (consumer group, transactional id prefix, internal topic prefix). */
    public String applicationId() {
        return streams.getProperty(StreamsConfig.APPLICATION_ID_CONFIG);
    }
}
