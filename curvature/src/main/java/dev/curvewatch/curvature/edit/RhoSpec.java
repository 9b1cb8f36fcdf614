package dev.curvewatch.curvature.edit;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.OptionalDouble;

/**
 * The {@code --rho} argument: one number for every layer ({@code 0.6}), a per-layer map
 * ({@code fc1=0.6,fc2=0.9}), or both ({@code 0.9,fc1=0.6}: fc1 at 0.6, the rest at 0.9).
 */
public final class RhoSpec {
    private final OptionalDouble fallback;
    private final Map<String, Double> perLayer;

    private RhoSpec(OptionalDouble fallback, Map<String, Double> perLayer) {
        this.fallback = fallback;
        this.perLayer = Collections.unmodifiableMap(perLayer);
    }

    public static RhoSpec of(double rho) {
        return new RhoSpec(OptionalDouble.of(check("rho", rho)), Map.of());
    }

    /** Parses the CLI form; throws {@link IllegalArgumentException} with the offending part. */
    public static RhoSpec parse(String text) {
        OptionalDouble fallback = OptionalDouble.empty();
        Map<String, Double> perLayer = new LinkedHashMap<>();
        for (String part : text.split(",")) {
            String p = part.trim();
            int eq = p.indexOf('=');
            if (eq < 0) {
                if (fallback.isPresent()) {
                    throw new IllegalArgumentException("more than one default rho in '" + text + "'");
                }
                fallback = OptionalDouble.of(check(p, number(p)));
            } else {
                String layer = p.substring(0, eq).trim();
                String value = p.substring(eq + 1).trim();
                if (layer.isEmpty() || perLayer.put(layer, check(p, number(value))) != null) {
                    throw new IllegalArgumentException("bad or repeated layer in '" + p + "'");
                }
            }
        }
        return new RhoSpec(fallback, perLayer);
    }

    private static double number(String s) {
        try {
            return Double.parseDouble(s);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("rho '" + s + "' is not a number");
        }
    }

    private static double check(String what, double rho) {
        if (!(rho > 0 && rho <= 1)) {
            throw new IllegalArgumentException("rho must be in (0, 1], got " + what);
        }
        return rho;
    }

    /** Layers named explicitly. */
    public Map<String, Double> perLayer() {
        return perLayer;
    }

    /** True when a bare number covers layers not in the map. */
    public boolean hasDefault() {
        return fallback.isPresent();
    }

    /** ρ for a layer; throws if the layer is neither named nor covered by a default. */
    public double rhoFor(String layer) {
        Double r = perLayer.get(layer);
        if (r != null) {
            return r;
        }
        if (fallback.isEmpty()) {
            throw new IllegalArgumentException("no rho given for layer '" + layer + "'");
        }
        return fallback.getAsDouble();
    }
}
