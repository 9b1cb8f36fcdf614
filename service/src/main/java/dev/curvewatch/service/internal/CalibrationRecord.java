package dev.curvewatch.service.internal;

import dev.curvewatch.avro.ExampleScore;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * What a layer knows of its calibrations: the latest valid one (rho, factor version, kept pairs,
 * top scores), whether the latest one was valid and why not, and how long the rho has sat at a
 * grid edge. Not thread-safe: its {@link LayerState} guards it with its lock.
 */
final class CalibrationRecord {
    /** Valid calibrations in a row at the same grid edge before the layer status warns. */
    static final int EDGE_WARNING_AFTER = 3;

    long version = -1;
    double rho = Double.NaN;
    long keptPairs = -1;
    /** 1: the latest calibration is valid, 0: invalid ({@link #problem}), -1: none yet. */
    int valid = -1;
    String problem;
    List<ExampleScore> topExact = List.of();
    List<ExampleScore> topLoss = List.of();
    List<ExampleScore> topPeak = List.of();
    long scoresStep = -1;
    double scoresRho = Double.NaN;
    /** Probe costs at the latest valid calibration's evaluated candidates (a joint edit shares the tolerance by them); null: none yet. */
    JointEdit.Curve curve;
    private long historyKeptVersion = -1;
    private long historyKept = -1;
    private int edge;
    private int edgeRun;

    /**
     * The calibration of an answered candidate; returns the layer's status text. A valid one
     * becomes the layer's rho, kept pairs and scores; an invalid one changes none of them.
     */
    String apply(PendingCandidate c, Calibration.Outcome o, long measuredStep) {
        if (!o.valid()) {
            valid = 0;
            problem = "calibration invalid at v" + c.factorVersion() + ": " + o.invalidReason();
            return problem;
        }
        valid = 1;
        problem = null;
        edgeRun = o.rhoAtEdge() != 0 && o.rhoAtEdge() == edge ? edgeRun + 1 : o.rhoAtEdge() != 0 ? 1 : 0;
        edge = o.rhoAtEdge();
        version = c.factorVersion();
        rho = o.rho();
        keptPairs = o.keptPairs();
        topExact = top(o.exact());
        topLoss = top(o.loss());
        topPeak = top(o.peak());
        scoresStep = measuredStep;
        scoresRho = o.rho();
        curve = JointEdit.Curve.of(o.trace(), o.baseline(), o.tolerance(), o.mode() == Calibration.Mode.ACCURACY);
        return "calibrated v" + c.factorVersion() + ": rho " + o.rho() + " (" + o.mode().name().toLowerCase(java.util.Locale.ROOT)
                + (o.flags().contains(Calibration.Flag.ACCURACY_SATURATED) ? ", accuracy saturated" : "")
                + (o.flags().contains(Calibration.Flag.NON_MONOTONE) ? ", non-monotone" : "") + ")";
    }

    /** A warning when the rho has sat at a grid edge for {@link #EDGE_WARNING_AFTER} valid calibrations in a row; else null. */
    String warning() {
        if (edgeRun < EDGE_WARNING_AFTER) {
            return null;
        }
        return edge < 0
                ? "rho at the grid's most aggressive end for " + edgeRun + " calibrations in a row: the probes do not limit the edit "
                        + "within the grid (its true rho* may be lower)"
                : "no candidate rho kept the probes within tolerance for " + edgeRun + " calibrations in a row: no edit";
    }

    /** The calibrated rho from the service's own history (restart). */
    void fromHistory(long v, double r) {
        if (v >= version) {
            version = v;
            rho = r;
            curve = null; // not in the history: a joint edit waits for the next calibration
            keptPairs = v == historyKeptVersion ? historyKept : -1;
        }
    }

    /** A kept_pairs signal from the history: the kept pairs of that factor version's calibration, whichever is read first. */
    void keptPairsFromHistory(long v, long kept) {
        if (v >= historyKeptVersion) {
            historyKeptVersion = v;
            historyKept = kept;
        }
        if (v == version) {
            keptPairs = kept;
        }
    }

    private static List<ExampleScore> top(List<ExampleScore> all) {
        List<ExampleScore> sorted = new ArrayList<>(all);
        sorted.sort(Comparator.comparingDouble(ExampleScore::getScore).reversed());
        return List.copyOf(sorted.subList(0, Math.min(LayerState.TOP_SCORES, sorted.size())));
    }
}
