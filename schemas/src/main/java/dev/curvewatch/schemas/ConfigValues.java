package dev.curvewatch.schemas;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeMap;
import java.util.stream.Collectors;

/**
 * A component's settings once {@link ConfigLayers} has merged them: an immutable map of string
 * keys to string values, read through typed getters. A value that does not parse is an
 * {@link IllegalArgumentException} naming the key and the value it got ("checkpoint.tokens must
 * be an integer, got 'many'"), so whoever started the component knows which setting to fix,
 * whichever layer it came from. Getters trim the value before parsing it; {@link #string} returns
 * it as it is.
 */
public final class ConfigValues {
    private final Map<String, String> values;

    private ConfigValues(Map<String, String> values) {
        this.values = Collections.unmodifiableMap(new TreeMap<>(values));
    }

    /** The given settings (copied): usually {@link ConfigLayers#load}'s result. */
    public static ConfigValues of(Map<String, String> values) {
        return new ConfigValues(values);
    }

    /** Every setting, sorted by key, unmasked. */
    public Map<String, String> asMap() {
        return values;
    }

    public boolean contains(String key) {
        return values.containsKey(key);
    }

    /** The value as it is, or null when the key is not set. */
    public String string(String key) {
        return values.get(key);
    }

    /** The value as it is, or {@code fallback} when the key is unset or blank. */
    public String string(String key, String fallback) {
        String v = values.get(key);
        return v == null || v.isBlank() ? fallback : v;
    }

    /**
     * The value, or this machine's host name when the key is unset or blank ({@code fallback} when
     * the host name cannot be found): the default id of a component instance, stable across its
     * restarts on one host.
     */
    public String stringOrHostName(String key, String fallback) {
        String v = values.get(key);
        if (v != null && !v.isBlank()) {
            return v;
        }
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return fallback;
        }
    }

    public long longValue(String key) {
        String v = required(key, "an integer");
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw bad(key, "an integer", v);
        }
    }

    /** An integer that fits an {@code int}: a larger value is refused, never truncated. */
    public int intValue(String key) {
        String what = "an integer in [" + Integer.MIN_VALUE + ", " + Integer.MAX_VALUE + "]";
        String v = required(key, what);
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw bad(key, what, v);
        }
    }

    /** A number; NaN is refused (every comparison with it is false, so no bound would hold it). */
    public double doubleValue(String key) {
        String v = required(key, "a number");
        try {
            double d = Double.parseDouble(v.trim());
            if (!Double.isNaN(d)) {
                return d;
            }
        } catch (NumberFormatException e) {
            // refused below
        }
        throw bad(key, "a number", v);
    }

    /** {@code true} or {@code false}, case-insensitive; anything else ("yes", "1") is refused rather than read as false. */
    public boolean booleanValue(String key) {
        String v = required(key, "true or false");
        if (v.trim().equalsIgnoreCase("true") || v.trim().equalsIgnoreCase("false")) {
            return Boolean.parseBoolean(v.trim());
        }
        throw bad(key, "true or false", v);
    }

    /** A path that must be set (blank is refused: it would name the working directory). */
    public Path path(String key) {
        return optionalPath(key).orElseThrow(() -> values.containsKey(key) ? bad(key, "a path", values.get(key))
                : new IllegalArgumentException(key + " must be a path, and is not set"));
    }

    /** A path, or empty when the key is unset or blank (the component's "none"). */
    public Optional<Path> optionalPath(String key) {
        String v = values.get(key);
        if (v == null || v.isBlank()) {
            return Optional.empty();
        }
        try {
            return Optional.of(Path.of(v.trim()));
        } catch (InvalidPathException e) {
            throw new IllegalArgumentException(key + " must be a path, got '" + v + "' (" + e.getReason() + ")", e);
        }
    }

    /** A constant of {@code type}, by name, case-insensitive; the error lists the allowed names. */
    public <E extends Enum<E>> E enumValue(String key, Class<E> type) {
        E[] constants = type.getEnumConstants();
        String what = allowed(constants);
        String v = required(key, what);
        for (E c : constants) {
            if (c.name().equalsIgnoreCase(v.trim())) {
                return c;
            }
        }
        throw bad(key, what, v);
    }

    /**
     * Kafka client properties, lowest first: {@link KafkaClientSettings} (the file named by
     * {@code CURVEWATCH_KAFKA_CONFIG}, {@code CURVEWATCH_KAFKA_*}), the component's
     * {@code clientDefaults}, the {@code kafka.*} keys (prefix removed), then the
     * {@code bootstrapKey} value (falling back to {@code kafka.bootstrap.servers}).
     */
    public Properties kafkaProperties(String bootstrapKey, Map<String, String> clientDefaults) {
        String bootstrap = values.get(bootstrapKey);
        if (bootstrap == null || bootstrap.isBlank()) {
            bootstrap = values.get(ConfigLayers.KAFKA_PREFIX + "bootstrap.servers");
        }
        Properties out = KafkaClientSettings.forBootstrap(bootstrap);
        out.putAll(clientDefaults);
        values.forEach((k, v) -> {
            if (k.startsWith(ConfigLayers.KAFKA_PREFIX)) {
                out.setProperty(k.substring(ConfigLayers.KAFKA_PREFIX.length()), v);
            }
        });
        if (bootstrap != null && !bootstrap.isBlank()) {
            out.setProperty("bootstrap.servers", bootstrap);
        }
        return out;
    }

    /** Every setting, values of secret-looking keys (password, jaas, secret, token) masked: for logs and /health. */
    public Map<String, String> describe() {
        Map<String, String> out = new TreeMap<>();
        values.forEach((k, v) -> out.put(k, isSecret(k) ? "***" : v));
        return Collections.unmodifiableMap(out);
    }

    static boolean isSecret(String key) {
        String k = key.toLowerCase(Locale.ROOT);
        return k.contains("password") || k.contains("jaas") || k.contains("secret") || k.contains("token");
    }

    @Override
    public String toString() {
        return describe().toString();
    }

    private String required(String key, String what) {
        String v = values.get(key);
        if (v == null) {
            throw new IllegalArgumentException(key + " must be " + what + ", and is not set");
        }
        return v;
    }

    private static IllegalArgumentException bad(String key, String what, String value) {
        return new IllegalArgumentException(key + " must be " + what + ", got '" + (isSecret(key) ? "***" : value) + "'");
    }

    /** "A or B", "A, B or C". */
    private static String allowed(Enum<?>[] constants) {
        String[] names = Arrays.stream(constants).map(Enum::name).toArray(String[]::new);
        if (names.length == 1) {
            return names[0];
        }
        return Arrays.stream(names, 0, names.length - 1).collect(Collectors.joining(", ")) + " or " + names[names.length - 1];
    }
}
