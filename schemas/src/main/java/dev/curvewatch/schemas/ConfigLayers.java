package dev.curvewatch.schemas;

import java.io.IOException;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

/**
 * The one way a Curvewatch component layers its settings. Keys are plain strings so they come
 * alike from every source; precedence, lowest first:
 * <ol>
 *   <li>the component's defaults,</li>
 *   <li>a properties file (optional),</li>
 *   <li>environment variables {@code <PREFIX><KEY>}, KEY upper-case with '_' for '.'
 *       (e.g. {@code CURVEWATCH_WORKER_GROUP_ID} for {@code group.id}),</li>
 *   <li>explicit overrides (command-line flags, code).</li>
 * </ol>
 * The merged map is read through {@link ConfigValues} (typed getters whose errors name the key,
 * secrets masked by {@code describe}); keys starting with {@code kafka.} are Kafka client settings
 * it passes through unchanged (minus the prefix) on top of {@link KafkaClientSettings}
 * ({@code CURVEWATCH_KAFKA_*}, TLS/SASL).
 */
public final class ConfigLayers {
    public static final String KAFKA_PREFIX = "kafka.";

    private final String envPrefix;

    /** @param envPrefix e.g. {@code CURVEWATCH_WORKER_} */
    public ConfigLayers(String envPrefix) {
        if (envPrefix == null || envPrefix.isEmpty()) {
            throw new IllegalArgumentException("an environment prefix is required");
        }
        this.envPrefix = envPrefix;
    }

    public String envPrefix() {
        return envPrefix;
    }

    /**
     * Merges the layers into a sorted map. Values from the file and the environment are trimmed.
     *
     * @param file      properties file, or null for none
     * @param what      what the file is, for the error message ("worker config")
     */
    public Map<String, String> load(Map<String, String> defaults, Path file, String what, Map<String, String> env,
                                    Map<String, String> overrides) {
        Map<String, String> v = new TreeMap<>(defaults);
        if (file != null) {
            Properties p = read(file, what);
            p.stringPropertyNames().forEach(k -> v.put(k, p.getProperty(k).trim()));
        }
        v.putAll(fromEnvironment(env));
        v.putAll(overrides);
        return v;
    }

    /** The keys this prefix selects from an environment: {@code PREFIX_A_B=x} becomes {@code a.b=x}. */
    public Map<String, String> fromEnvironment(Map<String, String> env) {
        Map<String, String> out = new TreeMap<>();
        env.forEach((name, value) -> {
            if (name.startsWith(envPrefix) && name.length() > envPrefix.length()) {
                out.put(name.substring(envPrefix.length()).toLowerCase(Locale.ROOT).replace('_', '.'), value.trim());
            }
        });
        return out;
    }

    /** Reads a properties file; an unreadable file is an {@link IllegalArgumentException} naming it. */
    public static Properties read(Path file, String what) {
        Properties p = new Properties();
        try (Reader in = Files.newBufferedReader(file)) {
            p.load(in);
        } catch (IOException e) {
            throw new IllegalArgumentException(what + " " + file + " cannot be read: " + e.getMessage(), e);
        }
        return p;
    }
}
