package dev.curvewatch.service;

import dev.curvewatch.avro.Severity;
import dev.curvewatch.schemas.ConfigLayers;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * Alert rules from a properties file ({@code alert.<name>.<key>=value}; keys in the shipped
 * {@code curvewatch/service/alert-rules.properties}). Unknown keys and bad values are refused
 * with a message naming them, so a typo never silently disables a rule.
 */
public final class AlertRules {
    static final String DEFAULTS_RESOURCE = "/curvewatch/service/alert-rules.properties";
    private static final Set<String> KEYS = Set.of("signal", "type", "threshold", "direction", "window", "k", "floor", "for",
            "severity", "runs", "layers", "after");

    private AlertRules() {
    }

    /**
     * The shipped rules: gap-jump (trailing baseline, CRITICAL), gap-high (threshold 0.25, WARNING) and
     * gap-regrowth (after an applied snapshot: the edited model's own gap plus 0.01, WARNING).
     */
    public static List<AlertRule> defaults() {
        Properties p = new Properties();
        try (InputStream in = AlertRules.class.getResourceAsStream(DEFAULTS_RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException(DEFAULTS_RESOURCE + " is missing from the jar");
            }
            p.load(in);
        } catch (IOException e) {
            throw new IllegalStateException("cannot read " + DEFAULTS_RESOURCE, e);
        }
        return parse(p);
    }

    /** The rules of a file (they replace the defaults). */
    public static List<AlertRule> load(Path file) {
        return parse(ConfigLayers.read(file, ServiceConfig.ALERT_RULES_FILE));
    }

    public static List<AlertRule> parse(Properties p) {
        Map<String, Map<String, String>> byName = new TreeMap<>();
        for (String key : p.stringPropertyNames()) {
            String[] parts = key.split("\\.", 3);
            if (parts.length != 3 || !parts[0].equals("alert") || !KEYS.contains(parts[2])) {
                throw new IllegalArgumentException("unknown alert rule key '" + key + "' (expected alert.<name>.<one of " + new TreeSet<>(KEYS) + ">)");
            }
            byName.computeIfAbsent(parts[1], n -> new TreeMap<>()).put(parts[2], p.getProperty(key).trim());
        }
        List<AlertRule> rules = new ArrayList<>();
        byName.forEach((name, v) -> rules.add(rule(name, v)));
        return List.copyOf(rules);
    }

    private static AlertRule rule(String name, Map<String, String> v) {
        String where = "alert rule " + name + ": ";
        String typeText = require(v, "type", where);
        AlertRule.Type type;
        try {
            type = AlertRule.Type.valueOf(typeText.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + "type must be threshold, baseline or rate, got '" + typeText + "'");
        }
        String direction = v.getOrDefault("direction", "above").toLowerCase(Locale.ROOT);
        if (!direction.equals("above") && !direction.equals("below")) {
            throw new IllegalArgumentException(where + "direction must be above or below, got '" + direction + "'");
        }
        if (type == AlertRule.Type.BASELINE && direction.equals("below")) {
            throw new IllegalArgumentException(where + "a baseline rule watches rises only");
        }
        Severity severity;
        try {
            severity = Severity.valueOf(v.getOrDefault("severity", "WARNING").toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + "severity must be INFO, WARNING or CRITICAL, got '" + v.get("severity") + "'");
        }
        double threshold = type == AlertRule.Type.BASELINE ? Double.NaN : number(require(v, "threshold", where), "threshold", where);
        int window = (int) number(v.getOrDefault("window", type == AlertRule.Type.BASELINE ? "4" : "1"), "window", where);
        double k = number(v.getOrDefault("k", "5"), "k", where);
        double floor = number(v.getOrDefault("floor", "0.05"), "floor", where);
        int holdFor = (int) number(v.getOrDefault("for", "1"), "for", where);
        String after = v.getOrDefault("after", "start").toLowerCase(Locale.ROOT);
        if (!after.equals("start") && !after.equals("snapshot")) {
            throw new IllegalArgumentException(where + "after must be start or snapshot, got '" + after + "'");
        }
        try {
            return new AlertRule(name, require(v, "signal", where), type, threshold, direction.equals("below"), window, k, floor,
                    holdFor, severity, list(v.get("runs")), list(v.get("layers")), after.equals("snapshot"));
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        }
    }

    private static String require(Map<String, String> v, String key, String where) {
        String s = v.get(key);
        if (s == null || s.isBlank()) {
            throw new IllegalArgumentException(where + key + " is required");
        }
        return s;
    }

    private static double number(String s, String key, String where) {
        try {
            double d = Double.parseDouble(s);
            if (!Double.isFinite(d)) {
                throw new NumberFormatException();
            }
            return d;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(where + key + " must be a finite number, got '" + s + "'");
        }
    }

    private static Set<String> list(String s) {
        if (s == null || s.isBlank()) {
            return Set.of();
        }
        Set<String> out = new LinkedHashSet<>();
        Arrays.stream(s.split(",")).map(String::trim).filter(x -> !x.isEmpty()).forEach(out::add);
        return out;
    }
}
