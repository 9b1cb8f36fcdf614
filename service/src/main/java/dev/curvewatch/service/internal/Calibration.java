package dev.curvewatch.service.internal;

import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.ExampleScores;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.ScoreKind;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.curvature.RhoCalibration;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The service side of the exact calibration round trip (SERVICE-CONTRACT §1): checks a
 * ProbeResult against the candidate it answers, picks the calibrated rho from the trainer's
 * measured probe scores (looked up, never recomputed) and derives the memorization gap, the
 * per-example EXACT and LOSS scores and the calibration signals. No Kafka, no state.
 *
 * <p>The rule: the trainer measured every candidate, so every measurement is used
 * ({@link RhoCalibrator#calibrateMeasured}): rho* is the most aggressive candidate such that it
 * and every milder candidate keep probe accuracy within the tolerance (or mean probe loss, without
 * correct flags), a drop of exactly the tolerance included. None qualifies: rho* = 1, no edit.
 *
 * <p>Loss sentinels: a trainer sends a loss it could not compute (NaN/Inf) as ±3.4e38
 * ({@code Float.MAX_VALUE}). An example with any loss of magnitude &gt;= {@code Float.MAX_VALUE}
 * was not measured: it is left out of every mean, score and the gap, and counted
 * ({@code unmeasured_probe_examples}, {@code unmeasured_train_examples} attributes). The whole
 * ProbeResult is a dead letter ({@code NON_FINITE}) only when fewer than half of its probe
 * examples, or fewer than half of its training examples, were measured. Real NaN/Inf in a
 * record is a dead letter ({@code NON_FINITE}) as before.
 */
public final class Calibration {
    /** At least this share of the probe examples, and of the training examples, must be measured (not sentinels). */
    public static final double MIN_MEASURED_FRACTION = 0.5;

    /** ACCURACY when the trainer sends correct flags (a classifier), LOSS otherwise (an LM). */
    public enum Mode { ACCURACY, LOSS }

    /**
     * @param index        index of the calibrated rho among the candidates, -1 when none qualified (rho = 1, no edit)
     * @param baseline     probe accuracy (or mean loss) now
     * @param edited       probe accuracy (or mean loss) under the calibrated rho
     * @param exact        per training example loss_edited[index] - loss_now (0 without an edit)
     * @param loss         per training example loss_now (the baseline score)
     * @param trainExamples, probeExamples measured examples (behind every mean)
     * @param unmeasuredTrain, unmeasuredProbes examples left out for a loss sentinel
     */
    public record Outcome(Mode mode, int index, double rho, double baseline, double edited, double tolerance,
                          double trainSensitivity, double probeSensitivity, double gap, long keptPairs,
                          int trainExamples, int probeExamples, int unmeasuredTrain, int unmeasuredProbes,
                          double probeLossNow, double probeLossEdited,
                          List<RhoCalibration.Evaluation> trace, List<ExampleScore> exact, List<ExampleScore> loss) {
    }

    /** Whether a loss is the trainer's "could not compute" sentinel (±Float.MAX_VALUE, or beyond). */
    public static boolean isSentinel(float loss) {
        return Math.abs(loss) >= Float.MAX_VALUE;
    }

    /** Whether every loss of an example was measured (none is a sentinel). */
    static boolean measured(ExampleLosses x) {
        if (isSentinel(x.getLossNow())) {
            return false;
        }
        for (Float l : x.getLossEdited()) {
            if (isSentinel(l)) {
                return false;
            }
        }
        return true;
    }

    private Calibration() {
    }

    /**
     * Checks everything about a ProbeResult that can be checked against its candidate: ids, run
     * and layer, the echoed rhos, per-example lengths, finiteness, at least one probe and one
     * training example, and one mode for all probes.
     */
    public static Mode validate(ProbeResult r, PendingCandidate c) {
        ContractChecks.requireId(r.getRunId(), "run_id");
        ContractChecks.requireId(r.getLayer(), "layer");
        if (!r.getRunId().equals(c.runId()) || !r.getLayer().equals(c.layer())) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "candidate " + c.id() + " is for " + c.runId() + "/" + c.layer()
                    + ", the result says " + r.getRunId() + "/" + r.getLayer());
        }
        if (r.getStep() < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "step " + r.getStep() + " is negative");
        }
        List<Double> rhos = r.getRhos();
        boolean same = rhos.size() == c.size();
        for (int k = 0; same && k < rhos.size(); k++) {
            same = rhos.get(k) == c.rho(k);
        }
        if (!same) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "rhos " + rhos + " differ from the " + c.size()
                    + " candidate rhos of " + c.id());
        }
        int probes = 0;
        int train = 0;
        int withFlags = 0;
        for (int e = 0; e < r.getExamples().size(); e++) {
            ExampleLosses x = r.getExamples().get(e);
            String where = "example " + e + " (" + x.getSampleId() + ")";
            if (x.getSampleId() == null || x.getSampleId().isEmpty() || x.getSampleId().length() > 256) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, where + ": sample_id must be 1-256 characters");
            }
            if (x.getLossEdited().size() != c.size()) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, where + " has " + x.getLossEdited().size()
                        + " edited losses for " + c.size() + " rhos");
            }
            if (!x.getCorrectEdited().isEmpty() && x.getCorrectEdited().size() != c.size()) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, where + " has " + x.getCorrectEdited().size()
                        + " edited correct flags for " + c.size() + " rhos");
            }
            if (!Float.isFinite(x.getLossNow())) {
                throw new InvalidRecordException(RejectReason.NON_FINITE, where + " has loss_now " + x.getLossNow());
            }
            for (int k = 0; k < x.getLossEdited().size(); k++) {
                if (!Float.isFinite(x.getLossEdited().get(k))) {
                    throw new InvalidRecordException(RejectReason.NON_FINITE, where + " has loss_edited[" + k + "] = " + x.getLossEdited().get(k));
                }
            }
            if (x.getProbe()) {
                probes++;
                if (!x.getCorrectEdited().isEmpty()) {
                    withFlags++;
                }
            } else {
                train++;
            }
        }
        if (probes == 0 || train == 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "needs at least one probe and one training example, got "
                    + probes + " probe and " + train + " training examples");
        }
        if (withFlags != 0 && withFlags != probes) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, withFlags + " of " + probes
                    + " probe examples carry correct flags: all or none must");
        }
        return withFlags == probes ? Mode.ACCURACY : Mode.LOSS;
    }

    /**
     * Validates, leaves out unmeasured examples, then calibrates: the most aggressive candidate
     * rho such that it and every milder one keep probe accuracy within {@code accuracyTolerance}
     * of now (or, without flags, mean probe loss within {@code lossTolerance}), from the trainer's
     * measured scores of every candidate ({@link RhoCalibrator#calibrateMeasured}).
     *
     * @throws InvalidRecordException as {@link #validate}, and NON_FINITE when too few examples
     *         were measured ({@link #MIN_MEASURED_FRACTION})
     */
    public static Outcome calibrate(ProbeResult r, PendingCandidate c, double accuracyTolerance, double lossTolerance) {
        Mode mode = validate(r, c);
        List<ExampleLosses> probes = new ArrayList<>();
        List<ExampleLosses> train = new ArrayList<>();
        int unmeasuredProbes = 0;
        int unmeasuredTrain = 0;
        for (ExampleLosses x : r.getExamples()) {
            if (measured(x)) {
                (x.getProbe() ? probes : train).add(x);
            } else if (x.getProbe()) {
                unmeasuredProbes++;
            } else {
                unmeasuredTrain++;
            }
        }
        if (probes.size() < MIN_MEASURED_FRACTION * (probes.size() + unmeasuredProbes)
                || train.size() < MIN_MEASURED_FRACTION * (train.size() + unmeasuredTrain) || probes.isEmpty() || train.isEmpty()) {
            throw new InvalidRecordException(RejectReason.NON_FINITE, "too few examples were measured: " + probes.size() + " of "
                    + (probes.size() + unmeasuredProbes) + " probe and " + train.size() + " of " + (train.size() + unmeasuredTrain)
                    + " training examples have no loss sentinel (+-3.4e38); at least half of each are needed");
        }
        int n = c.size();
        double[] score = new double[n];
        double baseline = 0;
        double lossNow = 0;
        double[] lossEdited = new double[n];
        for (ExampleLosses x : probes) {
            baseline += mode == Mode.ACCURACY ? (x.getCorrectNow() ? 1 : 0) : x.getLossNow();
            lossNow += x.getLossNow();
            for (int k = 0; k < n; k++) {
                score[k] += mode == Mode.ACCURACY ? (x.getCorrectEdited().get(k) ? 1 : 0) : x.getLossEdited().get(k);
                lossEdited[k] += x.getLossEdited().get(k);
            }
        }
        baseline /= probes.size();
        lossNow /= probes.size();
        for (int k = 0; k < n; k++) {
            score[k] /= probes.size();
            lossEdited[k] /= probes.size();
        }
        double tolerance = mode == Mode.ACCURACY ? accuracyTolerance : lossTolerance;
        RhoCalibrator calibrator = RhoCalibrator.standard(tolerance, mode == Mode.ACCURACY
                ? RhoCalibrator.Direction.HIGHER_IS_BETTER : RhoCalibrator.Direction.LOWER_IS_BETTER);
        double[] grid = calibrator.candidates();
        double[] byGrid = new double[grid.length];
        for (int g = 0; g < grid.length; g++) {
            int k = c.indexOf(grid[g]);
            if (k < 0) {
                throw new IllegalStateException("rho " + grid[g] + " of the standard grid is not a candidate of " + c.id());
            }
            byGrid[g] = score[k];
        }
        RhoCalibration cal = calibrator.calibrateMeasured(baseline, byGrid);
        int index = cal.rho().isPresent() ? c.indexOf(cal.rho().getAsDouble()) : -1;
        double trainSens = 0;
        List<ExampleScore> exact = new ArrayList<>(train.size());
        List<ExampleScore> loss = new ArrayList<>(train.size());
        for (ExampleLosses x : train) {
            double s = index < 0 ? 0 : (double) x.getLossEdited().get(index) - x.getLossNow();
            trainSens += s;
            exact.add(new ExampleScore(x.getSampleId(), s));
            loss.add(new ExampleScore(x.getSampleId(), (double) x.getLossNow()));
        }
        trainSens /= train.size();
        double probeSens = 0;
        for (ExampleLosses x : probes) {
            probeSens += index < 0 ? 0 : (double) x.getLossEdited().get(index) - x.getLossNow();
        }
        probeSens /= probes.size();
        return new Outcome(mode, index, index < 0 ? 1.0 : c.rho(index), baseline, index < 0 ? baseline : score[index], tolerance,
                trainSens, probeSens, trainSens - probeSens, index < 0 ? c.totalPairs() : c.keptPairs(index),
                train.size(), probes.size(), unmeasuredTrain, unmeasuredProbes, lossNow, index < 0 ? lossNow : lossEdited[index],
                cal.trace(), exact, loss);
    }

    /**
     * The calibration signals at {@code step}, the step of the model the trainer measured (the
     * ProbeResult's): that is the model whose memorization they describe. The factors behind the
     * candidate are usually a little older (workers lag the trainer); their step is the
     * {@code factor_step} attribute.
     */
    public static List<Signal> signals(Outcome o, PendingCandidate c, long step, long nowMs) {
        Map<String, Double> calAttrs = new LinkedHashMap<>();
        calAttrs.put("candidate_index", (double) o.index());
        calAttrs.put("baseline", o.baseline());
        calAttrs.put("edited", o.edited());
        calAttrs.put("tolerance", o.tolerance());
        calAttrs.put("evaluations", (double) o.trace().size());
        calAttrs.put("accuracy_mode", o.mode() == Mode.ACCURACY ? 1.0 : 0.0);
        calAttrs.put("factor_step", (double) c.step());
        calAttrs.put("unmeasured_probe_examples", (double) o.unmeasuredProbes());
        Map<String, Double> gapAttrs = new LinkedHashMap<>();
        gapAttrs.put("rho", o.rho());
        gapAttrs.put("factor_step", (double) c.step());
        gapAttrs.put("train_examples", (double) o.trainExamples());
        gapAttrs.put("probe_examples", (double) o.probeExamples());
        gapAttrs.put("unmeasured_train_examples", (double) o.unmeasuredTrain());
        gapAttrs.put("unmeasured_probe_examples", (double) o.unmeasuredProbes());
        List<Signal> out = new ArrayList<>();
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
        out.add(signal(c, step, "kept_pairs", (double) o.keptPairs(), Map.of("total_pairs", (double) c.totalPairs()), nowMs));
        return out;
    }

    /** EXACT and LOSS scores of the training examples, at the measured step (as {@link #signals}). */
    public static List<ExampleScores> scores(Outcome o, PendingCandidate c, long step, long nowMs) {
        return List.of(
                ExampleScores.newBuilder().setRunId(c.runId()).setLayer(c.layer()).setStep(step).setKind(ScoreKind.EXACT)
                        .setRho(o.rho()).setScores(o.exact()).setTimestampMs(nowMs).build(),
                ExampleScores.newBuilder().setRunId(c.runId()).setLayer(c.layer()).setStep(step).setKind(ScoreKind.LOSS)
                        .setRho(o.rho()).setScores(o.loss()).setTimestampMs(nowMs).build());
    }

    static Signal signal(PendingCandidate c, String name, double value, Map<String, Double> attrs, long nowMs) {
        return signal(c, c.step(), name, value, attrs, nowMs);
    }

    static Signal signal(PendingCandidate c, long step, String name, double value, Map<String, Double> attrs, long nowMs) {
        return Signal.newBuilder().setRunId(c.runId()).setLayer(c.layer()).setStep(step).setName(name).setValue(value)
                .setFactorVersion(c.factorVersion()).setAttributes(new LinkedHashMap<>(attrs)).setTimestampMs(nowMs).build();
    }
}
