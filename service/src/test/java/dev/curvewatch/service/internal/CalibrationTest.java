package dev.curvewatch.service.internal;

import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.ExampleScores;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.ScoreKind;
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

    /**
     * The rule of SERVICE-CONTRACT §1 written out: walk from the mildest rho towards the most
     * aggressive while each stays within tolerance (a worsening of exactly the tolerance included,
     * up to 1e-9 of rounding); the last one reached is rho*. Sentinel examples are left out.
     */
    static int straightforward(ProbeResult r, boolean accuracy, double tolerance) {
        List<ExampleLosses> probes = r.getExamples().stream().filter(ExampleLosses::getProbe)
                .filter(x -> Math.abs(x.getLossNow()) < Float.MAX_VALUE && x.getLossEdited().stream().allMatch(l -> Math.abs(l) < Float.MAX_VALUE))
                .toList();
        double now = probes.stream().mapToDouble(x -> accuracy ? (x.getCorrectNow() ? 1 : 0) : x.getLossNow()).average().orElseThrow();
        int best = -1;
        for (int k = RHOS.length - 1; k >= 0; k--) {
            final int kk = k;
            double s = probes.stream().mapToDouble(x -> accuracy ? (x.getCorrectEdited().get(kk) ? 1 : 0) : x.getLossEdited().get(kk))
                    .average().orElseThrow();
            double slack = 1e-9 * Math.max(1, Math.abs(now));
            if (!(accuracy ? now - s <= tolerance + slack : s - now <= tolerance + slack)) {
                break;
            }
            best = k;
        }
        return best;
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
                    assertEquals(RHOS.length, o.trace().size(), "every candidate the trainer measured is used");
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
        assertEquals(List.of(ScoreKind.EXACT, ScoreKind.LOSS, ScoreKind.PEAK), scores.stream().map(ExampleScores::getKind).toList());
        scores.forEach(x -> assertEquals(47, x.getStep()));
        // without peak statistics (a v1 answer) the memorization score is the log ratio of the example's loss
        Map<String, Double> peak = o.peak().stream().collect(Collectors.toMap(ExampleScore::getSampleId, ExampleScore::getScore));
        List<Double> train = new ArrayList<>();
        List<Double> probes = new ArrayList<>();
        for (ExampleLosses x : r.getExamples()) {
            double ratio = Math.log((x.getLossEdited().get(k) + 1e-3) / (x.getLossNow() + 1e-3));
            (x.getProbe() ? probes : train).add(ratio);
            if (!x.getProbe()) {
                assertEquals(ratio, peak.get(x.getSampleId()), 1e-9);
            }
        }
        dev.curvewatch.curvature.OutlierExcess.Result expected = dev.curvewatch.curvature.OutlierExcess.of(
                train.stream().mapToDouble(Double::doubleValue).toArray(), probes.stream().mapToDouble(Double::doubleValue).toArray(), 1);
        Signal outliers = signals.stream().filter(x -> x.getName().equals("memorization_outliers")).findFirst().orElseThrow();
        assertEquals(expected.surprise(), outliers.getValue(), 1e-12);
        assertEquals(expected.count(), outliers.getAttributes().get("count"));
        assertEquals(30.0, outliers.getAttributes().get("train_examples"));
        assertEquals(0.0, outliers.getAttributes().get("from_peaks"));
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
        assertEquals(RejectReason.INVALID_FIELD, rejected(r -> ProbeResult.newBuilder(r).setStep(-1).build()));
    }

    /** A result of {@code probes} probe and {@code train} training examples, with explicit per-candidate probe correctness. */
    static ProbeResult accuracyCurve(int probes, int train, int correctNow, int[] correctEdited) {
        List<ExampleLosses> ex = new ArrayList<>();
        for (int e = 0; e < probes + train; e++) {
            boolean probe = e < probes;
            List<Float> le = new ArrayList<>();
            List<Boolean> ce = new ArrayList<>();
            for (int k = 0; k < RHOS.length; k++) {
                le.add(probe ? 0.5f : 0.5f + 0.01f * (RHOS.length - k));
                ce.add(probe && e < correctEdited[k]);
            }
            ex.add(ExampleLosses.newBuilder().setSampleId((probe ? "p" : "t") + e).setProbe(probe).setLossNow(0.5f)
                    .setCorrectNow(probe && e < correctNow).setLossEdited(le).setCorrectEdited(ce).build());
        }
        return ProbeResult.newBuilder().setRunId("run-1").setCandidateId("c-1").setLayer("fc2").setStep(41).setRhos(rhoList())
                .setExamples(ex).setTimestampMs(1).build();
    }

    @Test
    void aDropOfExactlyOnePointIsWithinAOnePointTolerance() {
        // 95 of 100 probes correct now; every edit loses exactly one: 0.95 - 0.94 rounds to 0.010000000000000009
        int[] edited = new int[RHOS.length];
        java.util.Arrays.fill(edited, 94);
        Calibration.Outcome o = Calibration.calibrate(accuracyCurve(100, 10, 95, edited), candidate(), 0.01, 1);
        assertEquals(0, o.index(), "the most aggressive rho: a one-point drop is within a one-point tolerance");
        edited[RHOS.length - 1] = 93;
        assertEquals(-1, Calibration.calibrate(accuracyCurve(100, 10, 95, edited), candidate(), 0.01, 1).index(),
                "two points are not, and the mildest failing means no edit");
    }

    @Test
    void aNonMonotoneCurveNeverJumpsOverAFailingMilderRho() {
        // measured accuracy per candidate (most aggressive first): fails at 0-2, passes 3-11, a noisy dip at 12, passes 13-18
        int[] edited = new int[RHOS.length];
        for (int k = 0; k < RHOS.length; k++) {
            edited[k] = k < 3 ? 40 : k == 12 ? 80 : 90;
        }
        ProbeResult r = accuracyCurve(100, 20, 90, edited);
        Calibration.Outcome o = Calibration.calibrate(r, candidate(), 0.01, 1);
        assertEquals(13, o.index(), "the most aggressive rho with it and every milder one within tolerance");
        assertEquals(RHOS[13], o.rho());
        assertEquals(straightforward(r, true, 0.01), o.index());
        assertEquals(RHOS.length, o.trace().size());
        assertTrue(o.trace().get(5).withinTolerance() && !o.trace().get(12).withinTolerance(), "the trace records every measurement");
        // a bisection over the same measurements lands on index 3, past the dip: what the service did before
        RhoCalibrator bisect = RhoCalibrator.standard(0.01, RhoCalibrator.Direction.HIGHER_IS_BETTER);
        assertEquals(RHOS[3], bisect.calibrate(0.9, rho -> edited[java.util.Arrays.binarySearch(RHOS, rho)] / 100.0).rho().orElseThrow());
    }

    private static ExampleLosses sentinel(ExampleLosses x, boolean inLossNow) {
        if (inLossNow) {
            return ExampleLosses.newBuilder(x).setLossNow(-Float.MAX_VALUE).build();
        }
        List<Float> l = new ArrayList<>(x.getLossEdited());
        l.set(2, Float.MAX_VALUE);
        return ExampleLosses.newBuilder(x).setLossEdited(l).build();
    }

    @Test
    void lossSentinelsAreLeftOutAndCountedNotAveragedIn() {
        for (boolean flags : new boolean[]{true, false}) {
            ProbeResult clean = result(11, 40, 60, flags);
            // probes 0-4 and training examples 40-49 could not be computed by the trainer: +-3.4e38
            List<ExampleLosses> withSentinels = new ArrayList<>(clean.getExamples());
            for (int e = 0; e < 5; e++) {
                withSentinels.set(e, sentinel(withSentinels.get(e), e % 2 == 0));
            }
            for (int e = 40; e < 50; e++) {
                withSentinels.set(e, sentinel(withSentinels.get(e), e % 2 == 1));
            }
            ProbeResult r = ProbeResult.newBuilder(clean).setExamples(withSentinels).build();
            List<ExampleLosses> measuredOnly = new ArrayList<>(clean.getExamples());
            measuredOnly.subList(40, 50).clear();
            measuredOnly.subList(0, 5).clear();
            Calibration.Outcome o = Calibration.calibrate(r, candidate(), 0.01, 0.01);
            Calibration.Outcome want = Calibration.calibrate(ProbeResult.newBuilder(clean).setExamples(measuredOnly).build(), candidate(), 0.01, 0.01);
            assertEquals(want.index(), o.index(), "flags " + flags);
            assertEquals(want.gap(), o.gap(), 1e-12);
            assertTrue(Math.abs(o.gap()) < 10, "no 3.4e38 in the gap: " + o.gap());
            assertEquals(want.baseline(), o.baseline(), 1e-12);
            assertEquals(35, o.probeExamples());
            assertEquals(50, o.trainExamples());
            assertEquals(5, o.unmeasuredProbes());
            assertEquals(10, o.unmeasuredTrain());
            assertEquals(50, o.exact().size(), "no score for an unmeasured example");
            assertTrue(o.exact().stream().noneMatch(x -> x.getSampleId().equals("t40")));
            Map<String, Map<String, Double>> attrs = Calibration.signals(o, candidate(), 41, 1).stream()
                    .collect(Collectors.toMap(Signal::getName, Signal::getAttributes));
            assertEquals(10.0, attrs.get("memorization_gap").get("unmeasured_train_examples"));
            assertEquals(5.0, attrs.get("memorization_gap").get("unmeasured_probe_examples"));
            assertEquals(5.0, attrs.get("calibrated_rho").get("unmeasured_probe_examples"));
        }
        // too few measured: more than half of the probes (or of the training examples) are sentinels
        ProbeResult r = result(12, 6, 6, true);
        List<ExampleLosses> ex = new ArrayList<>(r.getExamples());
        for (int e = 0; e < 4; e++) {
            ex.set(e, sentinel(ex.get(e), true));
        }
        InvalidRecordException e = assertThrows(InvalidRecordException.class,
                () -> Calibration.calibrate(ProbeResult.newBuilder(r).setExamples(ex).build(), candidate(), 0.01, 0.01));
        assertEquals(RejectReason.NON_FINITE, e.reason());
        assertTrue(e.getMessage().contains("2 of 6 probe"), e.getMessage());
        List<ExampleLosses> half = new ArrayList<>(r.getExamples());
        for (int i = 6; i < 9; i++) {
            half.set(i, sentinel(half.get(i), false));
        }
        assertEquals(3, Calibration.calibrate(ProbeResult.newBuilder(r).setExamples(half).build(), candidate(), 0.01, 0.01).trainExamples(),
                "exactly half measured is enough");
    }
}
