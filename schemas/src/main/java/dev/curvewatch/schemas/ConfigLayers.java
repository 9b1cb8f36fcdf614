package dev.curvewatch.schemas;

import java.io.IOException;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
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
 * Keys starting with {@code kafka.} are Kafka client settings passed through unchanged (minus the
 * prefix) on top of {@link KafkaClientSettings} ({@code CURVEWATCH_KAFKA_*}, TLS/SASL).
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

    /**
     * Kafka client properties, lowest first: {@link KafkaClientSettings} (the file named by
     * {@code CURVEWATCH_KAFKA_CONFIG}, {@code CURVEWATCH_KAFKA_*}), the component's
     * {@code clientDefaults}, the config's {@code kafka.*} keys, then the {@code bootstrapKey}
     * value (falling back to {@code kafka.bootstrap.servers}).
     */
    public static Properties kafkaProperties(Map<String, String> values, String bootstrapKey, Map<String, String> clientDefaults) {
        String bootstrap = values.get(bootstrapKey);
        if (bootstrap == null || bootstrap.isBlank()) {
            bootstrap = values.get(KAFKA_PREFIX + "bootstrap.servers");
        }
        Properties out = KafkaClientSettings.forBootstrap(bootstrap);
        out.putAll(clientDefaults);
        values.forEach((k, v) -> {
            if (k.startsWith(KAFKA_PREFIX)) {
                out.setProperty(k.substring(KAFKA_PREFIX.length()), v);
            }
        });
        if (bootstrap != null && !bootstrap.isBlank()) {
            out.setProperty("bootstrap.servers", bootstrap);
        }
        return out;
    }

    /** Every setting, values of secret-looking keys (password, jaas, secret, token) masked: for logs and /health. */
    public static Map<String, String> describe(Map<String, String> values) {
        Map<String, String> out = new TreeMap<>();
        values.forEach((k, v) -> out.put(k, isSecret(k) ? "***" : v));
        return Collections.unmodifiableMap(out);
    }

    static boolean isSecret(String key) {
        String k = key.toLowerCase(Locale.ROOT);
        return k.contains("password") || k.contains("jaas") || k.contains("secret") || k.contains("token");
    }

    /** An integer setting, or an {@link IllegalArgumentException} naming the key. */
    public static long longValue(Map<String, String> values, String key) {
        String v = values.get(key);
        try {
            return Long.parseLong(v.trim());
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(key + " must be an integer, got '" + v + "'");
        }
    }

    /** A number setting, or an {@link IllegalArgumentException} naming the key. */
    public static double doubleValue(Map<String, String> values, String key) {
        String v = values.get(key);
        try {
            double d = Double.parseDouble(v.trim());
            if (Double.isNaN(d)) {
                throw new NumberFormatException("NaN");
            }
            return d;
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(key + " must be a number, got '" + v + "'");
        }
    }

    /** true/false (case-insensitive), or an {@link IllegalArgumentException} naming the key. */
    public static boolean booleanValue(Map<String, String> values, String key) {
        String v = values.get(key);
        if (v != null && (v.trim().equalsIgnoreCase("true") || v.trim().equalsIgnoreCase("false"))) {
            return Boolean.parseBoolean(v.trim());
        }
        throw new IllegalArgumentException(key + " must be true or false, got '" + v + "'");
    }
}
