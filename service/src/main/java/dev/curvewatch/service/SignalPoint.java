package dev.curvewatch.service;

import java.util.Map;

/** One value of a signal series as the service holds it (bounded history per series). */
public record SignalPoint(long step, double value, long factorVersion, long timestampMs, Map<String, Double> attributes) {
    public SignalPoint {
        attributes = Map.copyOf(attributes);
    }
}
