package dev.curvewatch.curvature;

import java.util.List;
import java.util.OptionalDouble;

/**
 * Result of {@link RhoCalibrator#calibrate}: the most aggressive ρ whose edit stayed within the
 * tolerance (empty if even the mildest candidate failed), the unedited score, and every
 * evaluation made, in the order made.
 */
public record RhoCalibration(OptionalDouble rho, double baselineScore, List<Evaluation> trace) {

    public RhoCalibration {
        trace = List.copyOf(trace);
    }

    /** One scored candidate. */
    public record Evaluation(double rho, double score, boolean withinTolerance) {
    }
}
