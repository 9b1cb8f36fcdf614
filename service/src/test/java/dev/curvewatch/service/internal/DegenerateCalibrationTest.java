package dev.curvewatch.service.internal;

import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.curvature.RhoCalibrator;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.IntFunction;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Calibrations whose probe metric cannot see the edit (issue 11): an LM whose every example is
 * "wrong" (whole-sequence correctness), a classifier already right on every probe under every
 * candidate, a loss no candidate moves. Each must switch to a metric that can see it, or be
 * marked invalid, never silently pin rho at the grid's most aggressive end. The test only uses
 * what the service had before (calibrate with two tolerances, the outcome's mode and index, the
 * signals), so it runs against the old Calibration too: there it fails.
 */
class DegenerateCalibrationTest {
    static final double[] RHOS = RhoCalibrator.standard(0, RhoCalibrator.Direction.HIGHER_IS_BETTER).candidates();
    static final int N = RHOS.length;
    static final double LOSS_TOL = Math.log(1.05);
    /** The mean probe loss rises by 0.01 nats per candidate from the mildest: +0.0488 nats is passed from index 15 on. */
    static final int LOSS_RULE_INDEX = 15;

    static PendingCandidate candidate() {
        long[] kept = new long[N];
        double[] tau = new double[N];
        for (int k = 0; k < N; k++) {
            kept[k] = 10 + 7L * k;
            tau[k] = 1.0 / (k + 1);
        }
        return new PendingCandidate("c-1", "run-1", "lm", 40, 3, RHOS, tau, kept, 64 * 32, 0);
    }

    /**
     * 40 probe and 40 training examples; probe e loses 0.01 nats more per candidate from the
     * mildest (index N-1 = +0.01): the loss rule admits candidates 15-18. Training examples rise
     * more. {@code correct} gives each example's v1 correct flag now (k = -1) and under candidate
     * k; null: no flags.
     */
    static ProbeResult result(IntFunction<Boolean> correct, boolean lossMoves) {
        List<ExampleLosses> ex = new ArrayList<>();
        for (int e = 0; e < 80; e++) {
            boolean probe = e < 40;
            float now = 2.0f + 0.01f * (e % 7);
            List<Float> le = new ArrayList<>();
            List<Boolean> ce = new ArrayList<>();
            for (int k = 0; k < N; k++) {
                le.add(lossMoves ? now + (probe ? 0.01f : 0.05f) * (N - k) : now);
                if (correct != null) {
                    ce.add(correct.apply(k));
                }
            }
            ExampleLosses.Builder b = ExampleLosses.newBuilder().setSampleId((probe ? "p" : "t") + e).setProbe(probe)
                    .setLossNow(now).setLossEdited(le).setCorrectEdited(ce);
            if (correct != null) {
                b.setCorrectNow(correct.apply(-1));
            }
            ex.add(b.build());
        }
        List<Double> rhos = new ArrayList<>();
        for (double r : RHOS) {
            rhos.add(r);
        }
        return ProbeResult.newBuilder().setRunId("run-1").setCandidateId("c-1").setLayer("lm").setStep(41).setRhos(rhos)
                .setExamples(ex).setTimestampMs(1).build();
    }

    static Map<String, Signal> signals(Calibration.Outcome o) {
        return Calibration.signals(o, candidate(), 41, 1).stream().collect(Collectors.toMap(Signal::getName, s -> s));
    }

    @Test
    void anLmWhoseEveryExampleIsWrongCalibratesOnLossNotOnAVacuousAccuracy() {
        // issue 11: whole-sequence correctness is false for every example of a real LM, now and under every rho
        Calibration.Outcome o = Calibration.calibrate(result(k -> false, true), candidate(), 0.01, LOSS_TOL);
        assertEquals(Calibration.Mode.LOSS, o.mode(), "an all-zero accuracy cannot drop: it is vacuous");
        assertEquals(LOSS_RULE_INDEX, o.index(), "the loss rule, not the grid's most aggressive end");
        assertEquals(RHOS[LOSS_RULE_INDEX], signals(o).get("calibrated_rho").getValue());
    }

    @Test
    void anAccuracyOfOneThatNoCandidateMovesSwitchesToLoss() {
        Calibration.Outcome o = Calibration.calibrate(result(k -> true, true), candidate(), 0.01, LOSS_TOL);
        assertEquals(Calibration.Mode.LOSS, o.mode(), "every probe right under every candidate: accuracy is saturated");
        assertEquals(LOSS_RULE_INDEX, o.index());
        Map<String, Signal> s = signals(o);
        assertEquals(1.0, s.get("calibration_valid").getValue());
        assertEquals(1.0, s.get("calibration_valid").getAttributes().get("accuracy_saturated"), "the switch is said");
        assertEquals(0.0, s.get("calibrated_rho").getAttributes().get("accuracy_mode"));
    }

    @Test
    void aLossNoCandidateMovesMakesTheCalibrationInvalid() {
        Calibration.Outcome o = Calibration.calibrate(result(null, false), candidate(), 0.01, LOSS_TOL);
        Map<String, Signal> s = signals(o);
        assertTrue(s.containsKey("calibration_valid"), "the verdict is a signal: " + s.keySet());
        assertEquals(0.0, s.get("calibration_valid").getValue(), "constant probe loss: the calibration means nothing");
        assertEquals(1.0, s.get("calibration_valid").getAttributes().get("constant_loss"));
        assertFalse(s.containsKey("calibrated_rho"), "no rho and no gap from a vacuous calibration (alert rules must not see them)");
        assertFalse(s.containsKey("memorization_gap"));
    }

    @Test
    void aRhoAtTheGridsMostAggressiveEndIsSaid() {
        // loss rises, but by less than the tolerance even at the most aggressive candidate
        List<ExampleLosses> ex = new ArrayList<>();
        for (ExampleLosses x : result(null, true).getExamples()) {
            List<Float> le = new ArrayList<>();
            for (int k = 0; k < N; k++) {
                le.add(x.getLossNow() + 0.001f * (N - k));
            }
            ex.add(ExampleLosses.newBuilder(x).setLossEdited(le).build());
        }
        Calibration.Outcome o = Calibration.calibrate(ProbeResult.newBuilder(result(null, true)).setExamples(ex).build(), candidate(),
                0.01, LOSS_TOL);
        assertEquals(0, o.index());
        assertEquals(-1.0, signals(o).get("calibrated_rho").getAttributes().get("rho_at_edge"), "-1: the most aggressive end");
    }
}
