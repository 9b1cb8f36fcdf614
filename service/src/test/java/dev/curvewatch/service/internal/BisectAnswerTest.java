package dev.curvewatch.service.internal;

import dev.curvewatch.avro.CalibrationSearch;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.IntToDoubleFunction;
import java.util.function.UnaryOperator;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * ProbeResult v2 answers made by hand (SERVICE-CONTRACT §1): token-weighted per-token accuracy
 * and loss, BISECT answers the service re-checks (valid, non-monotone, malformed), and v1 ALL
 * answers still accepted.
 */
class BisectAnswerTest {
    static final double[] RHOS = CalibrationTest.RHOS;
    static final int N = RHOS.length;
    static final double LOSS_TOL = Math.log(1.05);

    /**
     * A v2 example evaluated at {@code at}: its accuracy now {@code accNow}, under candidate k
     * {@code acc.applyAsDouble(k)}; loss now 2, under k {@code 2 + rise(k)}.
     */
    static ExampleLosses example(String id, boolean probe, int tokens, int[] at, double accNow, IntToDoubleFunction acc,
                                 IntToDoubleFunction rise) {
        List<Integer> idx = new ArrayList<>();
        List<Float> loss = new ArrayList<>();
        List<Float> accuracy = new ArrayList<>();
        List<Float> peak = new ArrayList<>();
        for (int k : at) {
            idx.add(k);
            loss.add((float) (2 + rise.applyAsDouble(k)));
            accuracy.add((float) acc.applyAsDouble(k));
            peak.add((float) (3 * rise.applyAsDouble(k)));
        }
        return ExampleLosses.newBuilder().setSampleId(id).setProbe(probe).setTokens(tokens).setLossNow(2f).setLossEdited(loss)
                .setCandidates(idx).setAccuracyNow((float) accNow).setAccuracyEdited(accuracy).setPeakEdited(peak).build();
    }

    static int[] ints(int... k) {
        return k;
    }

    /** The indices a bisection over the candidates visits when every index from {@code first} on is within tolerance. */
    static int[] bisectionPath(int first) {
        java.util.TreeSet<Integer> seen = new java.util.TreeSet<>();
        int lo = 0;
        int hi = N;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            seen.add(mid);
            if (mid >= first) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        return seen.stream().mapToInt(Integer::intValue).toArray();
    }

    /**
     * 30 one-target probes (a classifier's: ACCURACY mode) whose accuracy is 0.8 now and drops 0.05 per candidate
     * more aggressive than index 9 (tolerance 0.01: index 9 is the rule's answer), evaluated on
     * the bisection's path; 20 training examples at {@code chosen} and {@code extra}.
     */
    static ProbeResult bisect(int chosen, int[] probeAt, int[] trainAt) {
        List<ExampleLosses> ex = new ArrayList<>();
        for (int e = 0; e < 30; e++) {
            ex.add(example("p" + e, true, 1, probeAt, 0.8, k -> k >= 9 ? 0.8 : 0.8 - 0.05 * (9 - k), k -> 0.01 * (N - k)));
        }
        for (int e = 0; e < 20; e++) {
            ex.add(example("t" + e, false, 5, trainAt, 1, k -> 1, k -> 0.1 * (N - k)));
        }
        return result(ex, CalibrationSearch.BISECT, chosen);
    }

    static ProbeResult result(List<ExampleLosses> ex, CalibrationSearch search, int chosen) {
        return ProbeResult.newBuilder().setRunId("run-1").setCandidateId("c-1").setLayer("fc2").setStep(41).setRhos(CalibrationTest.rhoList())
                .setExamples(ex).setTimestampMs(1).setSearch(search).setChosen(chosen).setPeakTokens(8).build();
    }

    static Calibration.Outcome calibrate(ProbeResult r, List<Integer> trainCandidates) {
        return Calibration.calibrate(r, CalibrationTest.candidate(), new CalibrationTerms(CalibrationSearch.BISECT, 0.01, LOSS_TOL, trainCandidates, 8));
    }

    static InvalidRecordException rejected(ProbeResult r) {
        return assertThrows(InvalidRecordException.class, () -> calibrate(r, List.of()));
    }

    @Test
    void aValidBisectionIsTakenWithTheTrainersChoice() {
        int[] path = bisectionPath(9);
        assertTrue(java.util.Arrays.stream(path).anyMatch(k -> k == 8) && java.util.Arrays.stream(path).anyMatch(k -> k == 9), "the path ends at 8|9");
        Calibration.Outcome o = calibrate(bisect(9, path, ints(9)), List.of());
        assertTrue(o.valid(), o.flags().toString());
        assertEquals(Calibration.Mode.ACCURACY, o.mode());
        assertEquals(9, o.index());
        assertEquals(RHOS[9], o.rho());
        assertEquals(path.length, o.trace().size(), "the evaluated points only");
        assertEquals(0.1 * (N - 9) - 0.01 * (N - 9), o.gap(), 1e-6, "the gap at the rho found");
        assertEquals(3 * (0.1 * (N - 9) - 0.01 * (N - 9)), o.peakGap(), 1e-5, "the peak statistic's gap");
        assertEquals(0.8, o.baseline(), 1e-6);
        assertFalse(o.flags().contains(Calibration.Flag.NON_MONOTONE));
        Map<String, Signal> s = Calibration.signals(o, CalibrationTest.candidate(), 41, 1).stream()
                .collect(Collectors.toMap(Signal::getName, x -> x));
        assertEquals(1.0, s.get("calibration_valid").getValue());
        assertEquals(1.0, s.get("calibrated_rho").getAttributes().get("bisect"));
        assertEquals(0.0, s.get("calibrated_rho").getAttributes().get("rho_at_edge"));
        assertTrue(s.containsKey("peak_gap"));
    }

    @Test
    void aSequenceModelIsCalibratedOnTokenWeightedLoss() {
        // two probes: 1 token fully right, 3 tokens a third right: accuracy is measured, but a probe has more
        // than one target (a sequence model): LOSS mode, the loss weighted by tokens (log perplexity)
        List<ExampleLosses> ex = new ArrayList<>();
        int[] all = new int[N];
        java.util.Arrays.setAll(all, k -> k);
        ex.add(ExampleLosses.newBuilder(example("p0", true, 1, all, 1.0, k -> 1.0, k -> 0)).setLossNow(1f)
                .setLossEdited(java.util.Collections.nCopies(N, 1f)).build());
        ex.add(ExampleLosses.newBuilder(example("p1", true, 3, all, 1.0 / 3, k -> 1.0 / 3, k -> 0)).setLossNow(3f)
                .setLossEdited(java.util.Collections.nCopies(N, 3.1f)).build());
        ex.add(example("t0", false, 4, all, 1, k -> 1, k -> 0.5));
        Calibration.Outcome o = calibrate(result(ex, CalibrationSearch.ALL, -1), List.of());
        assertEquals(Calibration.Mode.LOSS, o.mode());
        assertEquals((1 * 1 + 3 * 3) / 4.0, o.baseline(), 1e-6, "the baseline is the token-weighted loss");
        assertEquals((1 * 1 + 3 * 3) / 4.0, o.probeLossNow(), 1e-6, "loss weighted by tokens");
        // every candidate raises it by (3 * 0.1) / 4 = 0.075 nats > ln 1.05 (unweighted it would be 0.05, also beyond): no edit
        assertEquals(-1, o.index());
        assertEquals(o.probeLossNow(), o.probeLossEdited(), 1e-12);
    }

    @Test
    void withoutAccuracyOnEveryProbeTheModeIsLoss() {
        int[] all = new int[N];
        java.util.Arrays.setAll(all, k -> k);
        List<ExampleLosses> ex = new ArrayList<>();
        ex.add(example("p0", true, 2, all, 0.5, k -> 0.5, k -> 0.01 * (N - k)));
        ex.add(ExampleLosses.newBuilder(example("p1", true, 2, all, 0.5, k -> 0.5, k -> 0.01 * (N - k))).setAccuracyNow(-1f)
                .setAccuracyEdited(List.of()).build());
        ex.add(example("t0", false, 4, all, 1, k -> 1, k -> 0.5));
        Calibration.Outcome o = calibrate(result(ex, CalibrationSearch.ALL, -1), List.of());
        assertEquals(Calibration.Mode.LOSS, o.mode(), "one probe without accuracy: LOSS (SERVICE-CONTRACT §1), not a dead letter");
        assertEquals(15, o.index(), "+0.04 nats at index 15 is within ln 1.05, +0.05 at 14 is not");
    }

    @Test
    void aNonMonotoneAnswerIsDecidedByTheRuleAndFlagged() {
        // the bisection found 9; the training candidate 16, evaluated on the probes as asked, fails: a dip among the milder ones
        int[] path = bisectionPath(9);
        int[] probeAt = java.util.stream.IntStream.concat(java.util.Arrays.stream(path), java.util.stream.IntStream.of(16, 17))
                .distinct().sorted().toArray();
        List<ExampleLosses> ex = new ArrayList<>();
        for (int e = 0; e < 30; e++) {
            ex.add(example("p" + e, true, 1, probeAt, 0.8, k -> k == 16 ? 0.7 : k >= 9 ? 0.8 : 0.5, k -> 0.01));
        }
        for (int e = 0; e < 20; e++) {
            ex.add(example("t" + e, false, 1, ints(9, 16, 17), 1, k -> 1, k -> 0.2));
        }
        Calibration.Outcome o = calibrate(result(ex, CalibrationSearch.BISECT, 9), List.of(16, 17));
        assertTrue(o.flags().contains(Calibration.Flag.NON_MONOTONE));
        assertTrue(o.valid(), "17 carries training evaluations");
        assertEquals(17, o.index(), "the most aggressive evaluated rho with every milder evaluated one within tolerance");
        assertEquals(9, o.chosenByTrainer());
        assertEquals(0.2 - 0.01, o.fixedGaps().get(16), 1e-6, "the gap at each training candidate");
        // the same without training evaluations at the rule's rho: invalid, not a guess
        List<ExampleLosses> narrow = new ArrayList<>(ex.subList(0, 30));
        for (int e = 0; e < 20; e++) {
            narrow.add(example("t" + e, false, 1, ints(9, 16), 1, k -> 1, k -> 0.2));
        }
        List<ExampleLosses> narrowed = narrow.stream().map(x -> x).toList();
        Calibration.Outcome untrained = calibrate(result(narrowed, CalibrationSearch.BISECT, 9), List.of(16));
        assertFalse(untrained.valid());
        assertTrue(untrained.flags().contains(Calibration.Flag.UNTRAINED_RHO), untrained.flags().toString());
        assertTrue(Calibration.scores(untrained, CalibrationTest.candidate(), 41, 1).isEmpty());
    }

    @Test
    void malformedBisectionsAreDeadLettersWithTheirReason() {
        int[] path = bisectionPath(9);
        InvalidRecordException e = rejected(bisect(12, path, ints(12)));
        assertEquals(RejectReason.INVALID_FIELD, e.reason());
        assertTrue(e.getMessage().contains("chosen 12 was not evaluated"), e.getMessage());
        e = rejected(bisect(9, java.util.Arrays.stream(path).filter(k -> k != 8).toArray(), ints(9)));
        assertTrue(e.getMessage().contains("the bisection is not finished"), e.getMessage());
        e = rejected(bisect(-1, ints(4, 9), ints(9)));
        assertTrue(e.getMessage().contains("without the mildest candidate"), e.getMessage());
        e = rejected(bisect(9, path, ints(3)));
        assertTrue(e.getMessage().contains("not evaluated at candidate 9 (chosen)"), e.getMessage());
        e = rejected(bisect(N, path, ints(9)));
        assertTrue(e.getMessage().contains("is not a candidate index"), e.getMessage());
        // the rule disagrees on monotone points: the trainer says 10, its own numbers say 9
        e = rejected(bisect(10, bisectionPath(10), ints(10)));
        assertTrue(e.getMessage().contains("disagrees with the rule at candidate 9"), e.getMessage());
        // probes at different candidates
        ProbeResult r = bisect(9, path, ints(9));
        List<ExampleLosses> ex = new ArrayList<>(r.getExamples());
        ex.set(3, ExampleLosses.newBuilder(ex.get(3)).setCandidates(List.of(8, 9)).setLossEdited(List.of(2f, 2f))
                .setAccuracyEdited(List.of(0.75f, 0.8f)).setPeakEdited(List.of()).build());
        e = rejected(ProbeResult.newBuilder(r).setExamples(ex).build());
        assertTrue(e.getMessage().contains("every probe needs the same"), e.getMessage());
        assertEquals(RejectReason.INVALID_FIELD, rejected(with(r, 0, x -> ExampleLosses.newBuilder(x).setCandidates(List.of(9, 8, 4, 2, 1, 0))
                .build())).reason(), "indices not ascending");
        assertEquals(RejectReason.SHAPE_MISMATCH, rejected(with(r, 1, x -> ExampleLosses.newBuilder(x)
                .setAccuracyEdited(List.of(0.8f)).build())).reason(), "accuracies not aligned with the candidates");
        assertEquals(RejectReason.INVALID_FIELD, rejected(with(r, 2, x -> ExampleLosses.newBuilder(x).setAccuracyNow(1.5f).build())).reason());
        assertEquals(RejectReason.INVALID_FIELD, rejected(with(r, 2, x -> ExampleLosses.newBuilder(x).setTokens(0).build())).reason());
        assertEquals(RejectReason.NON_FINITE, rejected(with(r, 2, x -> ExampleLosses.newBuilder(x).setAccuracyNow(Float.NaN).build())).reason());
        assertEquals(RejectReason.INVALID_FIELD, rejected(ProbeResult.newBuilder(r).setSearch(CalibrationSearch.ALL).build()).reason(),
                "ALL with a subset of candidates");
    }

    static ProbeResult with(ProbeResult r, int i, UnaryOperator<ExampleLosses> change) {
        List<ExampleLosses> ex = new ArrayList<>(r.getExamples());
        ex.set(i, change.apply(ex.get(i)));
        return ProbeResult.newBuilder(r).setExamples(ex).build();
    }

    @Test
    void aV1AllAnswerIsStillAccepted() {
        // what the Java DJL trainer sends: every candidate on every example, correct flags, no v2 fields
        ProbeResult v1 = CalibrationTest.result(3, 20, 30, true);
        assertEquals(CalibrationSearch.ALL, v1.getSearch());
        Calibration.Outcome o = calibrate(v1, List.of());
        assertTrue(o.valid());
        assertEquals(Calibration.Mode.ACCURACY, o.mode());
        assertEquals(CalibrationTest.straightforward(v1, true, 0.01), o.index());
        assertEquals(N, o.trace().size());
    }
}
