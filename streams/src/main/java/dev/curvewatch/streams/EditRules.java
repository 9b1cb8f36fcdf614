package dev.curvewatch.streams;

import dev.curvewatch.avro.Severity;
import dev.curvewatch.schemas.ContractChecks;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Guard (edit) rules from a properties file, one group of keys per rule:
 * <pre>
 * rule.gap-guard.signal=memorization_gap        # or * (default *)
 * rule.gap-guard.min.severity=WARNING           # INFO, WARNING, CRITICAL (default CRITICAL)
 * rule.gap-guard.runs=prod-.*                   # regex over run ids (default .*)
 * rule.gap-guard.layers=fc1,fc2                 # default: the alert's layer
 * rule.gap-guard.rho=0.9                        # (0, 1]; default -1 = the service's calibrated rho
 * rule.gap-guard.cooldown.steps=60              # at most one edit per N steps per layer
 * rule.gap-guard.max.edits=20                   # then EXHAUSTED and a CRITICAL guard-exhausted alert
 * rule.gap-guard.escalate=layers                # layers | none: edit every watched layer when an edit did not hold
 * rule.gap-guard.escalate.within.steps=200      # "did not hold": triggered again within N steps of being applied
 * rule.gap-guard.apply.timeout.steps=200        # a snapshot not applied N steps after its request: NOT_APPLIED
 * </pre>
 * A mistake (unknown key, bad severity, ρ above 1, a bad layer name or regex) is an
 * {@link IllegalArgumentException} naming the key: the app refuses to start rather than guess.
 */
public final class EditRules {
    private static final Set<String> KEYS = Set.of("signal", "min.severity", "runs", "layers", "rho", "cooldown.steps",
            "max.edits", "escalate", "escalate.within.steps", "apply.timeout.steps");

    private EditRules() {
    }

    /**
     * The shipped default guard: a WARNING or CRITICAL memorization-gap alert asks for a calibrated
     * edit of its layer, within the default {@link EditRule.Limits}.
     */
    public static List<EditRule> defaults() {
        return List.of(new EditRule("gap-guard", "memorization_gap", Severity.WARNING, Pattern.compile(".*"),
                List.of(), -1));
    }

    public static List<EditRule> parse(Properties p) {
        Map<String, Map<String, String>> byRule = new TreeMap<>();
        for (String key : new TreeSet<>(p.stringPropertyNames())) {
            if (!key.startsWith("rule.")) {
                continue;
            }
            String rest = key.substring("rule.".length());
            int dot = rest.indexOf('.');
            String name = dot < 0 ? rest : rest.substring(0, dot);
            String field = dot < 0 ? "" : rest.substring(dot + 1);
            if (!KEYS.contains(field)) {
                throw new IllegalArgumentException("unknown rule key '" + key + "'; a rule has " + new TreeSet<>(KEYS));
            }
            byRule.computeIfAbsent(name, n -> new TreeMap<>()).put(field, p.getProperty(key).trim());
        }
        List<EditRule> rules = new ArrayList<>();
        byRule.forEach((name, f) -> rules.add(rule(name, f)));
        return rules;
    }

    private static EditRule rule(String name, Map<String, String> f) {
        String prefix = "rule." + name + ".";
        try {
            ContractChecks.requireId(name, "rule name");
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(prefix + ": " + e.getMessage(), e);
        }
        Severity severity;
        try {
            severity = Severity.valueOf(f.getOrDefault("min.severity", "CRITICAL").toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(prefix + "min.severity must be one of " + Arrays.toString(Severity.values())
                    + ", not '" + f.get("min.severity") + "'", e);
        }
        Pattern runs;
        try {
            runs = Pattern.compile(f.getOrDefault("runs", ".*"));
        } catch (PatternSyntaxException e) {
            throw new IllegalArgumentException(prefix + "runs is not a regular expression: " + e.getDescription(), e);
        }
        List<String> layers = new ArrayList<>();
        for (String l : f.getOrDefault("layers", "").split(",")) {
            if (!l.isBlank()) {
                try {
                    ContractChecks.requireId(l.trim(), "layer");
                } catch (RuntimeException e) {
                    throw new IllegalArgumentException(prefix + "layers: " + e.getMessage(), e);
                }
                layers.add(l.trim());
            }
        }
        double rho;
        try {
            rho = Double.parseDouble(f.getOrDefault("rho", "-1"));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(prefix + "rho is not a number: '" + f.get("rho") + "'", e);
        }
        if (!(rho <= 1) || Double.isNaN(rho)) {
            throw new IllegalArgumentException(prefix + "rho must be in (0, 1], or <= 0 for the calibrated rho; got " + rho);
        }
        EditRule.Limits d = EditRule.Limits.DEFAULTS;
        String escalate = f.getOrDefault("escalate", d.escalate() ? "layers" : "none").toLowerCase(Locale.ROOT);
        if (!escalate.equals("layers") && !escalate.equals("none")) {
            throw new IllegalArgumentException(prefix + "escalate must be layers or none, not '" + escalate + "'");
        }
        EditRule.Limits limits;
        try {
            limits = new EditRule.Limits(count(f, prefix, "cooldown.steps", d.cooldownSteps()),
                    (int) count(f, prefix, "max.edits", d.maxEdits()), escalate.equals("layers"),
                    count(f, prefix, "escalate.within.steps", d.escalateWithinSteps()),
                    count(f, prefix, "apply.timeout.steps", d.applyTimeoutSteps()));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(prefix + e.getMessage(), e);
        }
        return new EditRule(name, f.getOrDefault("signal", "*"), severity, runs, layers, rho, limits);
    }

    private static long count(Map<String, String> f, String prefix, String key, long dflt) {
        String v = f.get(key);
        if (v == null) {
            return dflt;
        }
        try {
            long n = Long.parseLong(v);
            if (n < 0 || n > Integer.MAX_VALUE) {
                throw new NumberFormatException();
            }
            return n;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(prefix + key + " must be a whole number in [0, " + Integer.MAX_VALUE
                    + "], not '" + v + "'", e);
        }
    }
}
