package dev.curvewatch.service.internal;

import dev.curvewatch.avro.CalibrationSearch;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A ProbeResult (v1 or v2) checked against the candidate it answers and put in one shape: per
 * example the candidate indices it was evaluated at and, aligned with them, its losses, its
 * accuracies (v2 per-token accuracy, or v1 correct flags as 0/1) and peak statistics. Everything
 * about the record's form is checked here (SERVICE-CONTRACT §1), including the structure of a
 * BISECT answer; what its numbers mean is {@link Calibration}'s. A malformed answer throws
 * {@link InvalidRecordException} with the reason, which becomes a dead letter.
 *
 * <p>Examples with a loss sentinel (|loss| &gt;= {@code Float.MAX_VALUE}, SERVICE-CONTRACT §1)
 * were not measured: they are counted and left out of {@link #probes()} and {@link #train()}.
 */
public final class ProbeAnswer {
    /** At least this share of the probe examples, and of the training examples, must be measured (not sentinels). */
    public static final double MIN_MEASURED_FRACTION = 0.5;

    /**
     * One measured example.
     *
     * @param accuracyNow NaN when the example has no accuracy (no class targets)
     * @param indices     candidate indices evaluated, ascending; {@code loss}, {@code accuracy}, {@code peak} are aligned with them
     * @param accuracy    null when the example has no accuracy
     * @param peak        null when the trainer sent no peak statistic
     */
    public record Example(String sampleId, boolean probe, int tokens, double lossNow, double accuracyNow, int[] indices,
                          float[] loss, float[] accuracy, float[] peak) {
        /** Position of candidate {@code k} among {@link #indices}, or -1 when it was not evaluated. */
        public int at(int k) {
            int p = Arrays.binarySearch(indices, k);
            return p >= 0 ? p : -1;
        }

        public boolean evaluated(int k) {
            return at(k) >= 0;
        }

        public boolean hasAccuracy() {
            return accuracy != null;
        }
    }

    private final CalibrationSearch search;
    private final int chosen;
    private final int candidates;
    private final int[] probeIndices;
    private final List<Example> probes;
    private final List<Example> train;
    private final int unmeasuredProbes;
    private final int unmeasuredTrain;

    private ProbeAnswer(CalibrationSearch search, int chosen, int candidates, int[] probeIndices, List<Example> probes,
                        List<Example> train, int unmeasuredProbes, int unmeasuredTrain) {
        this.search = search;
        this.chosen = chosen;
        this.candidates = candidates;
        this.probeIndices = probeIndices;
        this.probes = probes;
        this.train = train;
        this.unmeasuredProbes = unmeasuredProbes;
        this.unmeasuredTrain = unmeasuredTrain;
    }

    public CalibrationSearch search() {
        return search;
    }

    /** BISECT: the trainer's answer, -1 none; ALL: -1 (not searched). */
    public int chosen() {
        return chosen;
    }

    /** How many candidates the EditCandidate had. */
    public int candidates() {
        return candidates;
    }

    /** The candidate indices every probe was evaluated at, ascending (ALL: every candidate). */
    public int[] probeIndices() {
        return probeIndices.clone();
    }

    public List<Example> probes() {
        return probes;
    }

    public List<Example> train() {
        return train;
    }

    public int unmeasuredProbes() {
        return unmeasuredProbes;
    }

    public int unmeasuredTrain() {
        return unmeasuredTrain;
    }

    /** Whether every measured training example was evaluated at candidate {@code k}. */
    public boolean trainedAt(int k) {
        return train.stream().allMatch(x -> x.evaluated(k));
    }

    /** Whether a loss is the trainer's "could not compute" sentinel (±Float.MAX_VALUE, or beyond). */
    public static boolean isSentinel(float loss) {
        return Math.abs(loss) >= Float.MAX_VALUE;
    }

    /**
     * Checks the record against its candidate and the training candidates the service asked for.
     * Not for a declined answer ({@code declined} non-empty), which carries no examples.
     */
    public static ProbeAnswer of(ProbeResult r, PendingCandidate c, List<Integer> trainCandidates) {
        checkHeader(r, c);
        int n = c.size();
        CalibrationSearch search = r.getSearch();
        int[] all = new int[n];
        Arrays.setAll(all, k -> k);
        List<Example> probes = new ArrayList<>();
        List<Example> train = new ArrayList<>();
        int unmeasuredProbes = 0;
        int unmeasuredTrain = 0;
        int totalProbes = 0;
        int totalTrain = 0;
        int[] probeIndices = null;
        for (int e = 0; e < r.getExamples().size(); e++) {
            ExampleLosses x = r.getExamples().get(e);
            String where = "example " + e + " (" + x.getSampleId() + ")";
            Example ex = example(x, where, n, all);
            if (search == CalibrationSearch.ALL && ex.indices().length != n) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, where + " was evaluated at " + ex.indices().length + " of " + n
                        + " candidates: under ALL every candidate is evaluated");
            }
            boolean measured = measured(x);
            if (x.getProbe()) {
                totalProbes++;
                if (probeIndices == null) {
                    probeIndices = ex.indices();
                } else if (!Arrays.equals(probeIndices, ex.indices())) {
                    throw new InvalidRecordException(RejectReason.INVALID_FIELD, where + " was evaluated at candidates "
                            + Arrays.toString(ex.indices()) + ", other probes at " + Arrays.toString(probeIndices) + ": every probe needs the same");
                }
                if (measured) {
                    probes.add(ex);
                } else {
                    unmeasuredProbes++;
                }
            } else {
                totalTrain++;
                if (measured) {
                    train.add(ex);
                } else {
                    unmeasuredTrain++;
                }
            }
        }
        if (totalProbes == 0 || totalTrain == 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "needs at least one probe and one training example, got "
                    + totalProbes + " probe and " + totalTrain + " training examples");
        }
        int chosen = search == CalibrationSearch.BISECT ? checkBisection(r, probeIndices, n, trainCandidates) : -1;
        if (search == CalibrationSearch.BISECT) {
            checkTrainingEvaluations(r, chosen, trainCandidates);
        }
        if (probes.size() < MIN_MEASURED_FRACTION * totalProbes || train.size() < MIN_MEASURED_FRACTION * totalTrain
                || probes.isEmpty() || train.isEmpty()) {
            throw new InvalidRecordException(RejectReason.NON_FINITE, "too few examples were measured: " + probes.size() + " of "
                    + totalProbes + " probe and " + train.size() + " of " + totalTrain
                    + " training examples have no loss sentinel (+-3.4e38); at least half of each are needed");
        }
        return new ProbeAnswer(search, chosen, n, probeIndices, List.copyOf(probes), List.copyOf(train), unmeasuredProbes, unmeasuredTrain);
    }

    private static void checkHeader(ProbeResult r, PendingCandidate c) {
        ContractChecks.requireId(r.getRunId(), "run_id");
        ContractChecks.requireId(r.getLayer(), "layer");
        if (!r.getRunId().equals(c.runId()) || !r.getLayer().equals(c.layer())) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "candidate " + c.id() + " is for " + c.runId() + "/" + c.layer()
                    + ", the result says " + r.getRunId() + "/" + r.getLayer());
        }
        if (r.getStep() < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "step " + r.getStep() + " is negative");
        }
        if (!r.getDeclined().isEmpty()) {
            throw new IllegalArgumentException("a declined answer has no examples to check");
        }
        if (r.getPeakTokens() < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "peak_tokens " + r.getPeakTokens() + " is negative");
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
    }

    /** Whether every loss of an example was measured (none, nor a peak, is a sentinel). */
    static boolean measured(ExampleLosses x) {
        if (isSentinel(x.getLossNow())) {
            return false;
        }
        for (Float l : x.getLossEdited()) {
            if (isSentinel(l)) {
                return false;
            }
        }
        for (Float p : x.getPeakEdited()) {
            if (isSentinel(p)) {
                return false;
            }
        }
        return true;
    }

    private static Example example(ExampleLosses x, String where, int n, int[] all) {
        if (x.getSampleId() == null || x.getSampleId().isEmpty() || x.getSampleId().length() > 256) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, where + ": sample_id must be 1-256 characters");
        }
        if (x.getTokens() < 1) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, where + " has tokens " + x.getTokens() + ": at least 1");
        }
        int[] indices = all;
        if (!x.getCandidates().isEmpty()) {
            indices = new int[x.getCandidates().size()];
            for (int i = 0; i < indices.length; i++) {
                indices[i] = x.getCandidates().get(i);
                if (indices[i] < 0 || indices[i] >= n || (i > 0 && indices[i] <= indices[i - 1])) {
                    throw new InvalidRecordException(RejectReason.INVALID_FIELD, where + ": candidates " + x.getCandidates()
                            + " must be ascending indices below " + n);
                }
            }
        }
        int m = indices.length;
        float[] loss = aligned(x.getLossEdited(), m, where, "edited losses", true);
        finite(x.getLossNow(), where + " has loss_now ");
        for (int i = 0; i < m; i++) {
            finite(loss[i], where + " has loss_edited[" + i + "] = ");
        }
        if (!x.getCorrectEdited().isEmpty() && x.getCorrectEdited().size() != m) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, where + " has " + x.getCorrectEdited().size()
                    + " edited correct flags for " + m + " evaluated candidates");
        }
        float[] peak = aligned(x.getPeakEdited(), m, where, "peak statistics", false);
        if (peak != null) {
            for (int i = 0; i < m; i++) {
                finite(peak[i], where + " has peak_edited[" + i + "] = ");
            }
        }
        float accNow = x.getAccuracyNow();
        float[] accuracy = null;
        double accuracyNow = Double.NaN;
        if (Float.isNaN(accNow)) {
            throw new InvalidRecordException(RejectReason.NON_FINITE, where + " has accuracy_now NaN");
        } else if (accNow >= 0) {
            accuracy = aligned(x.getAccuracyEdited(), m, where, "edited accuracies", true);
            checkShare(accNow, where + " has accuracy_now ");
            for (int i = 0; i < m; i++) {
                checkShare(accuracy[i], where + " has accuracy_edited[" + i + "] = ");
            }
            accuracyNow = accNow;
        } else if (!x.getAccuracyEdited().isEmpty()) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, where + " has edited accuracies but accuracy_now " + accNow
                    + " (not measured)");
        } else if (!x.getCorrectEdited().isEmpty()) {
            // a v1 classifier: the example's correct flag is its accuracy
            accuracy = new float[m];
            for (int i = 0; i < m; i++) {
                accuracy[i] = x.getCorrectEdited().get(i) ? 1f : 0f;
            }
            accuracyNow = x.getCorrectNow() ? 1 : 0;
        }
        return new Example(x.getSampleId(), x.getProbe(), x.getTokens(), x.getLossNow(), accuracyNow, indices, loss, accuracy, peak);
    }

    /** The list as floats if it has {@code m} entries; empty and optional: null; else SHAPE_MISMATCH. */
    private static float[] aligned(List<Float> values, int m, String where, String what, boolean required) {
        if (values.isEmpty() && !required) {
            return null;
        }
        if (values.size() != m) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, where + " has " + values.size() + " " + what + " for "
                    + m + " evaluated candidates");
        }
        float[] out = new float[m];
        for (int i = 0; i < m; i++) {
            out[i] = values.get(i);
        }
        return out;
    }

    private static void finite(float v, String what) {
        if (!Float.isFinite(v)) {
            throw new InvalidRecordException(RejectReason.NON_FINITE, what + v);
        }
    }

    private static void checkShare(float v, String what) {
        finite(v, what);
        if (v < 0 || v > 1) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, what + v + ": a share of tokens, in [0, 1]");
        }
    }

    /**
     * The structure a bisection leaves (SERVICE-CONTRACT §1): {@code chosen} in [-1, n); the
     * probes evaluated at it and, unless it is the most aggressive, at the next more aggressive
     * one; -1 only with the mildest evaluated; the requested training candidates evaluated on
     * probes too. Whether the numbers agree is {@link Calibration}'s check.
     */
    private static int checkBisection(ProbeResult r, int[] probeIndices, int n, List<Integer> trainCandidates) {
        int chosen = r.getChosen();
        if (chosen < -1 || chosen >= n) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "chosen " + chosen + " is not a candidate index in [-1, " + n + ")");
        }
        if (chosen >= 0 && Arrays.binarySearch(probeIndices, chosen) < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "chosen " + chosen + " was not evaluated on the probes "
                    + Arrays.toString(probeIndices));
        }
        if (chosen > 0 && Arrays.binarySearch(probeIndices, chosen - 1) < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "chosen " + chosen + " without the next more aggressive candidate "
                    + (chosen - 1) + " evaluated on the probes " + Arrays.toString(probeIndices) + ": the bisection is not finished");
        }
        if (chosen == -1 && Arrays.binarySearch(probeIndices, n - 1) < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "chosen -1 (none within tolerance) without the mildest candidate "
                    + (n - 1) + " evaluated on the probes " + Arrays.toString(probeIndices));
        }
        for (int k : trainCandidates) {
            if (Arrays.binarySearch(probeIndices, k) < 0) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "training candidate " + k + " was not evaluated on the probes "
                        + Arrays.toString(probeIndices));
            }
        }
        return chosen;
    }

    /** Every training example (measured or not) carries {@code chosen} and every requested training candidate. */
    private static void checkTrainingEvaluations(ProbeResult r, int chosen, List<Integer> trainCandidates) {
        for (int e = 0; e < r.getExamples().size(); e++) {
            ExampleLosses x = r.getExamples().get(e);
            if (x.getProbe() || x.getCandidates().isEmpty()) {
                continue; // empty: every candidate
            }
            List<Integer> need = new ArrayList<>(trainCandidates);
            if (chosen >= 0) {
                need.add(chosen);
            }
            for (int k : need) {
                if (!x.getCandidates().contains(k)) {
                    throw new InvalidRecordException(RejectReason.INVALID_FIELD, "training example " + e + " (" + x.getSampleId()
                            + ") was not evaluated at candidate " + k + (k == chosen ? " (chosen)" : " (asked for in train_candidates)"));
                }
            }
        }
    }
}
