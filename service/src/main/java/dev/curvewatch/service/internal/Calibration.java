package dev.curvewatch.service.internal;

import dev.curvewatch.avro.CalibrationSearch;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.ExampleScores;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.ScoreKind;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.curvature.OutlierExcess;
import dev.curvewatch.curvature.RhoCalibration;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The service side of the exact calibration round trip (SERVICE-CONTRACT §1): from a checked
 * answer ({@link ProbeAnswer}) it picks the calibrated rho from the trainer's measured probe
 * scores (looked up, never recomputed), says whether the calibration means anything, and derives
 * the memorization gap, the per-example EXACT and LOSS scores and the calibration signals. No
 * Kafka, no state.
 *
 * <p>The rule: probe scores are token-weighted (accuracy = Σ accuracy·tokens / Σ tokens, loss
 * likewise). ACCURACY mode when every probe has an accuracy and exactly one target (a
 * classifier) and the probe accuracy now is &gt; 0, else LOSS (a sequence model's token-weighted
 * loss is its log perplexity; an all-zero accuracy cannot drop). rho* is the most aggressive evaluated candidate
 * such that it and every milder evaluated candidate stay within the tolerance
 * ({@link RhoCalibrator#calibrateEvaluated}); none: rho = 1, no edit. A BISECT answer must agree
 * with that rule on its monotone points; a non-monotone one is decided by the rule and flagged.
 *
 * <p>Degenerate metrics: an accuracy of 1 that no evaluated candidate moves is saturated, so the
 * service calibrates on loss instead (flag {@code accuracy_saturated}); a probe loss that no
 * candidate moves by a thousandth of the loss tolerance makes the calibration invalid
 * ({@code constant_loss}), as does a rule that lands on a candidate without training
 * evaluations ({@code untrained_rho}). An invalid calibration publishes only
 * {@code calibration_valid} = 0, never a rho or a gap.
 */
public final class Calibration {
    /** ACCURACY: token-weighted probe accuracy; LOSS: token-weighted mean probe loss. */
    public enum Mode { ACCURACY, LOSS }

    /** What was unusual about a calibration; the first two make it invalid. */
    public enum Flag {
        CONSTANT_LOSS(1), UNTRAINED_RHO(2), ACCURACY_SATURATED(0), ACCURACY_ZERO(0), NON_MONOTONE(0);

        /** The {@code reason} attribute of {@code calibration_valid}: 0 valid, 1 constant loss, 2 untrained rho. */
        final int reason;

        Flag(int reason) {
            this.reason = reason;
        }

        boolean invalidates() {
            return reason != 0;
        }

        String attribute() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /** A probe loss no candidate moves by this share of the loss tolerance is constant. */
    public static final double CONSTANT_LOSS_FRACTION = 1e-3;
    /** A BISECT verdict the service's sums miss by less than this (relative) is float rounding, not a disagreement. */
    static final double BORDERLINE = 1e-6;

    /**
     * @param index        index of the calibrated rho among the candidates, -1 when none qualified (rho = 1, no edit)
     * @param baseline     probe score (accuracy or loss, by mode) now
     * @param edited       probe score under the calibrated rho
     * @param rhoAtEdge    -1: the grid's most aggressive candidate; +1: none qualified (even the mildest fails); 0 otherwise
     * @param exact        per training example loss_edited[index] - loss_now (0 without an edit)
     * @param loss         per training example loss_now (the baseline score)
     * @param peakGap      mean peak statistic at the calibrated rho, training minus probes; NaN when not sent
     * @param fixedGaps    the gap at each requested training candidate (index -> gap)
     * @param peak         per training example its memorization score at the calibrated rho ({@link #memorizationScore}); empty without an edit
     * @param outliers     the run-level alarm at the calibrated rho ({@link OutlierExcess}: training scores above every probe's); null without an edit
     */
    public record Outcome(Mode mode, Set<Flag> flags, CalibrationSearch search, int chosenByTrainer, int index, double rho,
                          double baseline, double edited, double tolerance, int rhoAtEdge,
                          double trainSensitivity, double probeSensitivity, double gap, long keptPairs,
                          int trainExamples, int probeExamples, int unmeasuredTrain, int unmeasuredProbes,
                          double probeLossNow, double probeLossEdited, double peakGap, Map<Integer, Double> fixedGaps,
                          List<RhoCalibration.Evaluation> trace, List<ExampleScore> exact, List<ExampleScore> loss,
                          List<ExampleScore> peak, OutlierExcess.Result outliers, boolean outliersFromPeaks) {
        public Outcome {
            flags = flags.isEmpty() ? Set.of() : Set.copyOf(EnumSet.copyOf(flags));
        }

        public boolean valid() {
            return flags.stream().noneMatch(Flag::invalidates);
        }

        /** Why it is invalid, for the layer status; null when valid. */
        public String invalidReason() {
            if (flags.contains(Flag.CONSTANT_LOSS)) {
                return "constant probe loss: no candidate moved it by " + CONSTANT_LOSS_FRACTION + " of the tolerance (the edit does not "
                        + "reach the probes)";
            }
            if (flags.contains(Flag.UNTRAINED_RHO)) {
                return "the rule's rho " + rho + " has no training evaluations (the trainer searched another metric or its points "
                        + "were not monotone)";
            }
            return null;
        }
    }

    private Calibration() {
    }

    /** {@link #calibrate(ProbeResult, PendingCandidate, CalibrationTerms)} with other terms at their schema defaults. */
    public static Outcome calibrate(ProbeResult r, PendingCandidate c, double accuracyTolerance, double lossTolerance) {
        return calibrate(r, c, CalibrationTerms.DEFAULTS.withTolerances(accuracyTolerance, lossTolerance));
    }

    /**
     * Checks the answer ({@link ProbeAnswer}), then calibrates by the rule above.
     *
     * @throws InvalidRecordException for a malformed answer, and INVALID_FIELD for a BISECT answer whose
     *         chosen candidate the rule contradicts on monotone points
     */
    public static Outcome calibrate(ProbeResult r, PendingCandidate c, CalibrationTerms t) {
        ProbeAnswer a = ProbeAnswer.of(r, c, t.trainCandidates());
        int[] evaluated = a.probeIndices();
        ProbeScores s = ProbeScores.of(a.probes(), evaluated);
        Set<Flag> flags = EnumSet.noneOf(Flag.class);
        Mode contractMode = s.accuracyMeasured() && s.singleTarget() && s.accuracyNow() > 0 ? Mode.ACCURACY : Mode.LOSS;
        if (s.accuracyMeasured() && s.accuracyNow() <= 0) {
            flags.add(Flag.ACCURACY_ZERO);
        }
        Mode mode = contractMode;
        if (mode == Mode.ACCURACY && s.accuracyNow() >= 1 && s.accuracyUnchanged()) {
            flags.add(Flag.ACCURACY_SATURATED);
            mode = Mode.LOSS;
        }
        boolean lossConstant = s.lossUnchanged(CONSTANT_LOSS_FRACTION * t.lossTolerance());
        if (lossConstant && (mode == Mode.LOSS || s.accuracyUnchanged())) {
            flags.add(Flag.CONSTANT_LOSS);
        }
        double tolerance = mode == Mode.ACCURACY ? t.accuracyTolerance() : t.lossTolerance();
        RhoCalibrator rule = RhoCalibrator.standard(tolerance, mode == Mode.ACCURACY
                ? RhoCalibrator.Direction.HIGHER_IS_BETTER : RhoCalibrator.Direction.LOWER_IS_BETTER);
        double baseline = s.now(mode);
        double[] scores = s.scores(mode);
        requireStandardGrid(c, rule);
        RhoCalibration cal = rule.calibrateEvaluated(baseline, evaluated, scores);
        boolean[] within = new boolean[evaluated.length];
        for (int j = 0; j < within.length; j++) {
            within[j] = cal.trace().get(j).withinTolerance();
        }
        if (!monotone(within)) {
            flags.add(Flag.NON_MONOTONE);
        } else if (a.search() == CalibrationSearch.BISECT && mode == contractMode) {
            checkAgreement(a, evaluated, scores, baseline, tolerance, mode, within);
        }
        int index = cal.rho().isPresent() ? c.indexOf(cal.rho().getAsDouble()) : -1;
        if (index >= 0 && !a.trainedAt(index)) {
            flags.add(Flag.UNTRAINED_RHO);
        }
        return outcome(a, c, t, s, mode, flags, index, baseline, scores, evaluated, tolerance, cal);
    }

    private static Outcome outcome(ProbeAnswer a, PendingCandidate c, CalibrationTerms t, ProbeScores s, Mode mode, Set<Flag> flags, int index,
                                   double baseline, double[] scores, int[] evaluated, double tolerance, RhoCalibration cal) {
        boolean valid = flags.stream().noneMatch(Flag::invalidates);
        int gapIndex = valid ? index : -1;
        double edited = gapIndex < 0 ? baseline : scores[Arrays.binarySearch(evaluated, gapIndex)];
        double lossEdited = gapIndex < 0 ? s.now(Mode.LOSS) : s.scores(Mode.LOSS)[Arrays.binarySearch(evaluated, gapIndex)];
        double trainSens = sensitivity(a.train(), gapIndex);
        double probeSens = sensitivity(a.probes(), gapIndex);
        List<ExampleScore> exact = new ArrayList<>(a.train().size());
        List<ExampleScore> loss = new ArrayList<>(a.train().size());
        for (ProbeAnswer.Example x : a.train()) {
            exact.add(new ExampleScore(x.sampleId(), gapIndex < 0 ? 0 : x.loss()[x.at(gapIndex)] - x.lossNow()));
            loss.add(new ExampleScore(x.sampleId(), x.lossNow()));
        }
        Map<Integer, Double> fixed = new LinkedHashMap<>();
        for (int k : t.trainCandidates()) {
            if (a.trainedAt(k) && a.probes().stream().allMatch(x -> x.evaluated(k))) {
                fixed.put(k, sensitivity(a.train(), k) - sensitivity(a.probes(), k));
            }
        }
        int edge = index == 0 ? -1 : index < 0 ? 1 : 0;
        boolean fromPeaks = hasPeaks(a);
        List<ExampleScore> peak = new ArrayList<>();
        OutlierExcess.Result outliers = null;
        if (gapIndex >= 0) {
            double[] train = new double[a.train().size()];
            for (int i = 0; i < train.length; i++) {
                ProbeAnswer.Example x = a.train().get(i);
                train[i] = memorizationScore(x, gapIndex, fromPeaks);
                peak.add(new ExampleScore(x.sampleId(), train[i]));
            }
            double[] probes = a.probes().stream().mapToDouble(x -> memorizationScore(x, gapIndex, fromPeaks)).toArray();
            outliers = OutlierExcess.of(train, probes, 1);
        }
        return new Outcome(mode, flags, a.search(), a.chosen(), index, index < 0 ? 1.0 : c.rho(index), baseline, edited, tolerance, edge,
                trainSens, probeSens, trainSens - probeSens, gapIndex < 0 ? c.totalPairs() : c.keptPairs(gapIndex),
                a.train().size(), a.probes().size(), a.unmeasuredTrain(), a.unmeasuredProbes(), s.now(Mode.LOSS), lossEdited,
                peakGap(a, gapIndex), fixed, cal.trace(), exact, loss, peak, outliers, fromPeaks);
    }

    /** The loss floor c of the peak statistic's log ratio (SERVICE-CONTRACT §1), in nats. */
    public static final double PEAK_FLOOR = 1e-3;

    private static boolean hasPeaks(ProbeAnswer a) {
        return a.train().stream().allMatch(x -> x.peak() != null) && a.probes().stream().allMatch(x -> x.peak() != null);
    }

    /**
     * An example's memorization score under candidate k: its peak statistic when the trainer sent
     * peaks (the mean of its k largest per-token log loss ratios), else the log ratio of its mean
     * loss, log((loss_k + c) / (loss_now + c)) (the same thing for a one-target example).
     */
    static double memorizationScore(ProbeAnswer.Example x, int k, boolean fromPeaks) {
        int at = x.at(k);
        return fromPeaks ? x.peak()[at] : Math.log((x.loss()[at] + PEAK_FLOOR) / (x.lossNow() + PEAK_FLOOR));
    }

    /** The service's grid is RhoCalibrator.standard; a candidate with other rhos cannot be calibrated by it. */
    private static void requireStandardGrid(PendingCandidate c, RhoCalibrator rule) {
        if (!Arrays.equals(c.rhos(), rule.candidates())) {
            throw new IllegalStateException("candidate " + c.id() + " does not carry the standard rho grid");
        }
    }

    /** Within-tolerance flags in candidate order (most aggressive first) are false ... false true ... true. */
    static boolean monotone(boolean[] within) {
        for (int j = 1; j < within.length; j++) {
            if (within[j - 1] && !within[j]) {
                return false;
            }
        }
        return true;
    }

    /**
     * A monotone BISECT answer: the rule's first candidate within tolerance must be the trainer's
     * {@code chosen}; a point the service's sums put within {@link #BORDERLINE} of the tolerance
     * counts as the trainer judged it (float rounding of its own sums).
     */
    private static void checkAgreement(ProbeAnswer a, int[] evaluated, double[] scores, double baseline, double tolerance, Mode mode,
                                       boolean[] within) {
        for (int j = 0; j < evaluated.length; j++) {
            boolean implied = a.chosen() >= 0 && evaluated[j] >= a.chosen();
            if (within[j] == implied) {
                continue;
            }
            double worsening = mode == Mode.ACCURACY ? baseline - scores[j] : scores[j] - baseline;
            if (Math.abs(worsening - tolerance) <= BORDERLINE * Math.max(1, Math.abs(baseline))) {
                continue;
            }
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "chosen " + a.chosen() + " disagrees with the rule at candidate "
                    + evaluated[j] + ": token-weighted probe " + (mode == Mode.ACCURACY ? "accuracy " : "loss ") + scores[j] + " against "
                    + baseline + " now is " + (within[j] ? "within" : "beyond") + " the tolerance " + tolerance + " (" + mode + " mode)");
        }
    }

    private static double sensitivity(List<ProbeAnswer.Example> examples, int k) {
        if (k < 0) {
            return 0;
        }
        double s = 0;
        for (ProbeAnswer.Example x : examples) {
            s += (double) x.loss()[x.at(k)] - x.lossNow();
        }
        return s / examples.size();
    }

    private static double peakGap(ProbeAnswer a, int k) {
        if (k < 0 || a.train().stream().anyMatch(x -> x.peak() == null) || a.probes().stream().anyMatch(x -> x.peak() == null)) {
            return Double.NaN;
        }
        return a.train().stream().mapToDouble(x -> x.peak()[x.at(k)]).average().orElseThrow()
                - a.probes().stream().mapToDouble(x -> x.peak()[x.at(k)]).average().orElseThrow();
    }

    /**
     * The calibration signals at {@code step}, the step of the model the trainer measured (the
     * ProbeResult's): that is the model whose memorization they describe. The factors behind the
     * candidate are usually a little older (workers lag the trainer); their step is the
     * {@code factor_step} attribute. {@code calibration_valid} always; the rest only when valid.
     */
    public static List<Signal> signals(Outcome o, PendingCandidate c, long step, long nowMs) {
        List<Signal> out = new ArrayList<>();
        out.add(signal(c, step, "calibration_valid", o.valid() ? 1 : 0, validityAttributes(o), nowMs));
        if (!o.valid()) {
            return out;
        }
        Map<String, Double> calAttrs = new LinkedHashMap<>();
        calAttrs.put("candidate_index", (double) o.index());
        calAttrs.put("baseline", o.baseline());
        calAttrs.put("edited", o.edited());
        calAttrs.put("tolerance", o.tolerance());
        calAttrs.put("evaluations", (double) o.trace().size());
        calAttrs.put("accuracy_mode", o.mode() == Mode.ACCURACY ? 1.0 : 0.0);
        calAttrs.put("rho_at_edge", (double) o.rhoAtEdge());
        calAttrs.put("bisect", o.search() == CalibrationSearch.BISECT ? 1.0 : 0.0);
        calAttrs.put("non_monotone", o.flags().contains(Flag.NON_MONOTONE) ? 1.0 : 0.0);
        calAttrs.put("accuracy_saturated", o.flags().contains(Flag.ACCURACY_SATURATED) ? 1.0 : 0.0);
        calAttrs.put("factor_step", (double) c.step());
        calAttrs.put("unmeasured_probe_examples", (double) o.unmeasuredProbes());
        Map<String, Double> gapAttrs = new LinkedHashMap<>();
        gapAttrs.put("rho", o.rho());
        gapAttrs.put("factor_step", (double) c.step());
        gapAttrs.put("train_examples", (double) o.trainExamples());
        gapAttrs.put("probe_examples", (double) o.probeExamples());
        gapAttrs.put("unmeasured_train_examples", (double) o.unmeasuredTrain());
        gapAttrs.put("unmeasured_probe_examples", (double) o.unmeasuredProbes());
        out.add(signal(c, step, "calibrated_rho", o.rho(), calAttrs, nowMs));
        out.add(signal(c, step, "memorization_gap", o.gap(), gapAttrs, nowMs));
        out.add(signal(c, step, "train_sensitivity", o.trainSensitivity(), Map.of("examples", (double) o.trainExamples()), nowMs));
        out.add(signal(c, step, "probe_sensitivity", o.probeSensitivity(), Map.of("examples", (double) o.probeExamples()), nowMs));
        if (o.mode() == Mode.ACCURACY) {
            out.add(signal(c, step, "probe_accuracy_now", o.baseline(), Map.of(), nowMs));
            out.add(signal(c, step, "probe_accuracy_edited", o.edited(), Map.of("rho", o.rho()), nowMs));
        }
        out.add(signal(c, step, "probe_loss_now", o.probeLossNow(), Map.of(), nowMs));
        out.add(signal(c, step, "probe_loss_edited", o.probeLossEdited(), Map.of("rho", o.rho()), nowMs));
        if (!Double.isNaN(o.peakGap())) {
            out.add(signal(c, step, "peak_gap", o.peakGap(), Map.of("rho", o.rho()), nowMs));
        }
        o.fixedGaps().forEach((k, gap) -> out.add(signal(c, step, "memorization_gap_k" + k, gap, Map.of("rho", c.rho(k)), nowMs)));
        if (o.outliers() != null) {
            out.add(outlierSignal(o, c, step, nowMs));
        }
        out.add(signal(c, step, "kept_pairs", (double) o.keptPairs(), Map.of("total_pairs", (double) c.totalPairs()), nowMs));
        return out;
    }

    /**
     * {@code memorization_outliers}: −log10 of the p-value that as many training examples as
     * observed score above every probe by chance ({@link OutlierExcess}, the alarm of issue 12).
     */
    private static Signal outlierSignal(Outcome o, PendingCandidate c, long step, long nowMs) {
        OutlierExcess.Result r = o.outliers();
        Map<String, Double> attrs = new LinkedHashMap<>();
        attrs.put("count", (double) r.count());
        attrs.put("expected", r.expected());
        attrs.put("p_value", r.pValue());
        attrs.put("threshold", r.threshold());
        attrs.put("train_examples", (double) r.n());
        attrs.put("probe_examples", (double) r.m());
        attrs.put("rho", o.rho());
        attrs.put("from_peaks", o.outliersFromPeaks() ? 1.0 : 0.0);
        return signal(c, step, "memorization_outliers", r.surprise(), attrs, nowMs);
    }

    private static Map<String, Double> validityAttributes(Outcome o) {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("reason", (double) o.flags().stream().mapToInt(f -> f.reason).max().orElse(0));
        for (Flag f : Flag.values()) {
            m.put(f.attribute(), o.flags().contains(f) ? 1.0 : 0.0);
        }
        m.put("accuracy_mode", o.mode() == Mode.ACCURACY ? 1.0 : 0.0);
        m.put("rho_at_edge", (double) o.rhoAtEdge());
        m.put("candidate_index", (double) o.index());
        m.put("chosen_by_trainer", (double) o.chosenByTrainer());
        m.put("bisect", o.search() == CalibrationSearch.BISECT ? 1.0 : 0.0);
        m.put("evaluations", (double) o.trace().size());
        m.put("baseline", o.baseline());
        return m;
    }

    /** EXACT, LOSS and (with an edit) PEAK scores of the training examples, at the measured step (as {@link #signals}); none when invalid. */
    public static List<ExampleScores> scores(Outcome o, PendingCandidate c, long step, long nowMs) {
        if (!o.valid()) {
            return List.of();
        }
        List<ExampleScores> out = new ArrayList<>(List.of(
                ExampleScores.newBuilder().setRunId(c.runId()).setLayer(c.layer()).setStep(step).setKind(ScoreKind.EXACT)
                        .setRho(o.rho()).setScores(o.exact()).setTimestampMs(nowMs).build(),
                ExampleScores.newBuilder().setRunId(c.runId()).setLayer(c.layer()).setStep(step).setKind(ScoreKind.LOSS)
                        .setRho(o.rho()).setScores(o.loss()).setTimestampMs(nowMs).build()));
        if (!o.peak().isEmpty()) {
            out.add(ExampleScores.newBuilder().setRunId(c.runId()).setLayer(c.layer()).setStep(step).setKind(ScoreKind.PEAK)
                    .setRho(o.rho()).setScores(o.peak()).setTimestampMs(nowMs).build());
        }
        return out;
    }

    static Signal signal(PendingCandidate c, String name, double value, Map<String, Double> attrs, long nowMs) {
        return signal(c, c.step(), name, value, attrs, nowMs);
    }

    static Signal signal(PendingCandidate c, long step, String name, double value, Map<String, Double> attrs, long nowMs) {
        return Signal.newBuilder().setRunId(c.runId()).setLayer(c.layer()).setStep(step).setName(name).setValue(value)
                .setFactorVersion(c.factorVersion()).setAttributes(new LinkedHashMap<>(attrs)).setTimestampMs(nowMs).build();
    }
}
