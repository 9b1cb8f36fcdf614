package dev.curvewatch.service.internal;

import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.ExampleScores;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.UnaryOperator;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CalibrationTest {
    static final double[] RHOS = RhoCalibrator.standard(0, RhoCalibrator.Direction.HIGHER_IS_BETTER).candidates();

    static PendingCandidate candidate() {
        long[] kept = new long[RHOS.length];
        double[] tau = new double[RHOS.length];
        for (int k = 0; k < RHOS.length; k++) {
            kept[k] = 10 + 7L * k;
            tau[k] = 1.0 / (k + 1);
        }
        return new PendingCandidate("c-1", "run-1", "fc2", 40, 3, RHOS, tau, kept, 64 * 32, 0);
    }

    static List<Double> rhoList() {
        List<Double> l = new ArrayList<>();
        for (double r : RHOS) {
            l.add(r);
        }
        return l;
    }

    /**
     * Examples whose edits hurt monotonically: example e is still correct from its break index on
     * (index 0 = most aggressive rho), its loss rises by sens_e * (n - k) / n.
     */
    static ProbeResult result(long seed, int probes, int train, boolean flags) {
        Random r = new Random(seed);
        int n = RHOS.length;
        List<ExampleLosses> ex = new ArrayList<>();
        for (int e = 0; e < probes + train; e++) {
            boolean probe = e < probes;
            boolean correctNow = r.nextDouble() < 0.9;
            int breakAt = probe ? r.nextInt(n / 2) : r.nextInt(n);
            float lossNow = (float) (0.1 + r.nextDouble());
            double sens = probe ? 0.05 * r.nextDouble() : 0.8 * r.nextDouble();
            List<Float> le = new ArrayList<>();
            List<Boolean> ce = new ArrayList<>();
            for (int k = 0; k < n; k++) {
                le.add((float) (lossNow + sens * (n - k) / n));
                ce.add(correctNow && k >= breakAt);
            }
            ex.add(ExampleLosses.newBuilder().setSampleId((probe ? "p" : "t") + e).setProbe(probe).setLossNow(lossNow)
                    .setCorrectNow(correctNow).setLossEdited(le).setCorrectEdited(flags ? ce : List.of()).build());
        }
        return ProbeResult.newBuilder().setRunId("run-1").setCandidateId("c-1").setLayer("fc2").setStep(41).setRhos(rhoList())
                .setExamples(ex).setTimestampMs(1).build();
    }

    /** The rule of SERVICE-CONTRACT §1 written out: scan from the most aggressive rho, take the first within tolerance. */
    static int straightforward(ProbeResult r, boolean accuracy, double tolerance) {
        List<ExampleLosses> probes = r.getExamples().stream().filter(ExampleLosses::getProbe).toList();
        double now = probes.stream().mapToDouble(x -> accuracy ? (x.getCorrectNow() ? 1 : 0) : x.getLossNow()).average().orElseThrow();
        for (int k = 0; k < RHOS.length; k++) {
            final int kk = k;
            double s = probes.stream().mapToDouble(x -> accuracy ? (x.getCorrectEdited().get(kk) ? 1 : 0) : x.getLossEdited().get(kk))
                    .average().orElseThrow();
            if (accuracy ? now - s <= tolerance : s - now <= tolerance) {
                return k;
            }
        }
        return -1;
    }

    static double meanSensitivity(ProbeResult r, boolean probe, int k) {
        return r.getExamples().stream().filter(x -> x.getProbe() == probe)
                .mapToDouble(x -> k < 0 ? 0 : (double) x.getLossEdited().get(k) - x.getLossNow()).average().orElseThrow();
    }

    @Test
    void calibratedRhoAndGapMatchTheRuleWrittenOut() {
        int checked = 0;
        java.util.Set<Integer> chosen = new java.util.TreeSet<>();
        for (long seed = 1; seed <= 40; seed++) {
            for (boolean flags : new boolean[]{true, false}) {
                for (double tol : flags ? new double[]{0, 0.01, 0.05} : new double[]{0.001, 0.01, Math.log(1.05)}) {
                    ProbeResult r = result(seed, 60, 80, flags);
                    // the tolerance of the other mode must not matter
                    Calibration.Outcome o = Calibration.calibrate(r, candidate(), flags ? tol : 1, flags ? 1 : tol);
                    int want = straightforward(r, flags, tol);
                    assertEquals(want, o.index(), "seed " + seed + " flags " + flags + " tol " + tol);
                    chosen.add(want);
                    assertEquals(want < 0 ? 1.0 : RHOS[want], o.rho());
                    assertEquals(flags ? Calibration.Mode.ACCURACY : Calibration.Mode.LOSS, o.mode());
                    double train = meanSensitivity(r, false, want);
                    double probe = meanSensitivity(r, true, want);
                    assertEquals(train, o.trainSensitivity(), 1e-12);
                    assertEquals(probe, o.probeSensitivity(), 1e-12);
                    assertEquals(train - probe, o.gap(), 1e-12);
                    assertEquals(want < 0 ? 64 * 32 : 10 + 7L * want, o.keptPairs());
                    assertTrue(o.trace().size() <= 6, "bisection scores about log2(19) candidates, not all: " + o.trace().size());
                    checked++;
                }
            }
        }
        assertEquals(40 * 6, checked);
        assertTrue(chosen.size() >= 5, "the cases must exercise many different choices: " + chosen);
    }

    @Test
    void scoresAndSignalsCarryTheCalibration() {
        ProbeResult r = result(3, 20, 30, true);
        PendingCandidate c = candidate();
        Calibration.Outcome o = Calibration.calibrate(r, c, 0.01, 0.05);
        int k = o.index();
        assertTrue(k >= 0, "this data calibrates");
        Map<String, Double> exact = o.exact().stream().collect(Collectors.toMap(ExampleScore::getSampleId, ExampleScore::getScore));
        assertEquals(30, exact.size(), "EXACT covers the training examples only");
        for (ExampleLosses x : r.getExamples()) {
            if (!x.getProbe()) {
                assertEquals((double) x.getLossEdited().get(k) - x.getLossNow(), exact.get(x.getSampleId()), 1e-12);
            }
        }
        List<Signal> signals = Calibration.signals(o, c, 47, 5);
        Map<String, Double> byName = signals.stream().collect(Collectors.toMap(Signal::getName, Signal::getValue));
        for (String name : List.of("calibrated_rho", "memorization_gap", "train_sensitivity", "probe_sensitivity", "probe_accuracy_now",
                "probe_accuracy_edited", "kept_pairs")) {
            assertTrue(byName.containsKey(name), name + " in " + byName.keySet());
        }
        assertEquals(o.rho(), byName.get("calibrated_rho"));
        assertEquals(o.gap(), byName.get("memorization_gap"));
        signals.forEach(s -> {
            assertEquals(47, s.getStep(), "signals at the step the trainer measured");
            assertEquals(3, s.getFactorVersion());
            assertEquals("fc2", s.getLayer());
        });
        assertEquals(40.0, signals.stream().filter(s -> s.getName().equals("memorization_gap")).findFirst().orElseThrow()
                .getAttributes().get("factor_step"), "the factors' step stays an attribute");
        List<ExampleScores> scores = Calibration.scores(o, c, 47, 5);
        assertEquals(2, scores.size());
        scores.forEach(x -> assertEquals(47, x.getStep()));
    }

    @Test
    void noQualifyingRhoMeansNoEdit() {
        ProbeResult r = result(5, 10, 10, true);
        // every edit breaks every probe
        List<ExampleLosses> ex = new ArrayList<>();
        for (ExampleLosses x : r.getExamples()) {
            List<Boolean> wrong = new ArrayList<>();
            for (int k = 0; k < RHOS.length; k++) {
                wrong.add(false);
            }
            ex.add(ExampleLosses.newBuilder(x).setCorrectNow(true).setCorrectEdited(wrong).build());
        }
        Calibration.Outcome o = Calibration.calibrate(ProbeResult.newBuilder(r).setExamples(ex).build(), candidate(), 0.01, 0.05);
        assertEquals(-1, o.index());
        assertEquals(1.0, o.rho());
        assertEquals(0.0, o.gap());
        assertEquals(64 * 32, o.keptPairs());
    }

    private static RejectReason rejected(UnaryOperator<ProbeResult> change) {
        return assertThrows(InvalidRecordException.class,
                () -> Calibration.calibrate(change.apply(result(9, 5, 5, true)), candidate(), 0.01, 0.05)).reason();
    }

    private static ProbeResult withExample(ProbeResult r, int i, UnaryOperator<ExampleLosses> change) {
        List<ExampleLosses> ex = new ArrayList<>(r.getExamples());
        ex.set(i, change.apply(ex.get(i)));
        return ProbeResult.newBuilder(r).setExamples(ex).build();
    }

    @Test
    void badResultsAreRejectedWithTheirReason() {
        assertEquals(RejectReason.KEY_MISMATCH, rejected(r -> ProbeResult.newBuilder(r).setLayer("fc1").build()));
        assertEquals(RejectReason.KEY_MISMATCH, rejected(r -> ProbeResult.newBuilder(r).setRunId("run-2").build()));
        assertEquals(RejectReason.INVALID_FIELD, rejected(r -> ProbeResult.newBuilder(r).setRunId("../x").build()));
        assertEquals(RejectReason.INVALID_FIELD, rejected(r -> ProbeResult.newBuilder(r).setRhos(rhoList().subList(1, RHOS.length)).build()));
        assertEquals(RejectReason.INVALID_FIELD, rejected(r -> {
            List<Double> l = rhoList();
            l.set(3, 0.5);
            return ProbeResult.newBuilder(r).setRhos(l).build();
        }));
        assertEquals(RejectReason.SHAPE_MISMATCH, rejected(r -> withExample(r, 2, x -> ExampleLosses.newBuilder(x)
                .setLossEdited(x.getLossEdited().subList(0, 5)).build())));
        assertEquals(RejectReason.SHAPE_MISMATCH, rejected(r -> withExample(r, 7, x -> ExampleLosses.newBuilder(x)
                .setCorrectEdited(List.of(true)).build())));
        assertEquals(RejectReason.NON_FINITE, rejected(r -> withExample(r, 1, x -> ExampleLosses.newBuilder(x).setLossNow(Float.NaN).build())));
        assertEquals(RejectReason.NON_FINITE, rejected(r -> withExample(r, 6, x -> {
            List<Float> l = new ArrayList<>(x.getLossEdited());
            l.set(4, Float.POSITIVE_INFINITY);
            return ExampleLosses.newBuilder(x).setLossEdited(l).build();
        })));
        assertEquals(RejectReason.INVALID_FIELD, rejected(r -> ProbeResult.newBuilder(r)
                .setExamples(r.getExamples().stream().filter(x -> !x.getProbe()).toList()).build()), "no probes");
        assertEquals(RejectReason.INVALID_FIELD, rejected(r -> ProbeResult.newBuilder(r)
                .setExamples(r.getExamples().stream().filter(ExampleLosses::getProbe).toList()).build()), "no training examples");
        assertEquals(RejectReason.INVALID_FIELD, rejected(r -> withExample(r, 0, x -> ExampleLosses.newBuilder(x)
                .setCorrectEdited(List.of()).build())), "some probes with flags, some without");
        assertEquals(RejectReason.INVALID_FIELD, rejected(r -> ProbeResult.newBuilder(r).setStep(-1).build()));
    }
}
