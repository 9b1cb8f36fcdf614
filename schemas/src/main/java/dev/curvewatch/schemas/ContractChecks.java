package dev.curvewatch.schemas;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Tensor;
import dev.curvewatch.avro.WeightSnapshot;

import java.nio.ByteOrder;
import java.nio.IntBuffer;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Checks beyond what Avro decoding guarantees: ids, tensor lengths, shapes against each other and
 * against the registered layer, finite values. Each failure is an {@link InvalidRecordException}
 * with a reason code and a message naming the field.
 */
public final class ContractChecks {
    /** Run ids and layer names: safe in record keys ("run/layer"), file names and URLs. */
    public static final Pattern ID = Pattern.compile("[A-Za-z0-9._:-]{1,128}");

    /**
     * Most elements one factor (d x d) of a {@link #checkManifest manifest} may have: a Java array
     * holds at most about 2^31 - 1 elements, so d &lt;= 46340.
     */
    public static final long MAX_FACTOR_ELEMENTS = Integer.MAX_VALUE - 8L;

    /** Largest layer side a run may register: its d x d factor must fit one Java array ({@link #MAX_FACTOR_ELEMENTS}). */
    public static final int MAX_LAYER_SIDE = 46_340;

    private ContractChecks() {
    }

    public static void requireId(String value, String field) {
        if (value == null || !ID.matcher(value).matches()) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD,
                    field + " '" + abbreviate(value) + "' is not 1-128 characters of [A-Za-z0-9._:-]");
        }
    }

    /**
     * An id that also names a directory or file: {@link #requireId} and not {@code .} or {@code ..}
     * (which the id syntax allows but a path resolves to the current or parent directory).
     */
    public static void requirePathSegment(String value, String field) {
        requireId(value, field);
        if (value.equals(".") || value.equals("..")) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, field + " '" + value + "' cannot name a file");
        }
    }

    /** Structure of a capture on its own: everything that needs no registry. */
    public static void checkStructure(Capture c) {
        requireId(c.getRunId(), "run_id");
        requireId(c.getLayer(), "layer");
        if (c.getStep() < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "step " + c.getStep() + " is negative");
        }
        if (c.getParts() < 1 || c.getPart() < 0 || c.getPart() >= c.getParts()) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "part " + c.getPart() + " of " + c.getParts() + " is out of range");
        }
        int tokens = rows(c.getActivations(), "activations");
        int gradRows = rows(c.getGradients(), "gradients");
        if (tokens != gradRows) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH,
                    "activations have " + tokens + " tokens but gradients have " + gradRows);
        }
        int samples = c.getSampleIds().size();
        if (c.getTokenSample() == null) {
            if (samples != 0 && samples != tokens) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH,
                        "without token_sample every token is an example, but " + samples + " sample ids for " + tokens + " tokens");
            }
        } else {
            IntBuffer index = c.getTokenSample().duplicate().order(ByteOrder.LITTLE_ENDIAN).asIntBuffer();
            if (c.getTokenSample().remaining() != 4L * tokens) {
                throw new InvalidRecordException(RejectReason.TENSOR_LENGTH,
                        "token_sample has " + c.getTokenSample().remaining() + " bytes, expected 4 x " + tokens + " tokens");
            }
            for (int t = 0; t < tokens; t++) {
                int s = index.get(t);
                if (s < 0 || s >= samples) {
                    throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH,
                            "token " + t + " points at sample " + s + ", but there are " + samples + " sample ids");
                }
            }
        }
        List<Float> losses = c.getExampleLosses();
        if (!losses.isEmpty() && losses.size() != samples) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH,
                    losses.size() + " example losses for " + samples + " sample ids");
        }
    }

    /** Dimensions against the registered layer. */
    public static void checkAgainstLayer(Capture c, LayerInfo layer) {
        int dIn = c.getActivations().getShape().get(1);
        int dOut = c.getGradients().getShape().get(1);
        if (dIn != layer.getDIn() || dOut != layer.getDOut()) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, String.format(
                    "layer %s is registered as d_in=%d d_out=%d, capture has d_in=%d d_out=%d",
                    layer.getName(), layer.getDIn(), layer.getDOut(), dIn, dOut));
        }
    }

    public static void requireFinite(Capture c) {
        TensorCodec.requireFinite(c.getActivations(), "activations");
        TensorCodec.requireFinite(c.getGradients(), "gradients");
    }

    /** A run registration: ids, at least one watched layer, unique layer names, positive dims. */
    public static void checkRun(RunInfo run) {
        requireId(run.getRunId(), "run_id");
        if (run.getLayers().isEmpty()) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "run '" + run.getRunId() + "' watches no layer");
        }
        Set<String> names = new HashSet<>();
        for (LayerInfo l : run.getLayers()) {
            requireId(l.getName(), "layer");
            if (!names.add(l.getName())) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "layer '" + l.getName() + "' is listed twice");
            }
            if (l.getDIn() < 1 || l.getDOut() < 1 || l.getDIn() > MAX_LAYER_SIDE || l.getDOut() > MAX_LAYER_SIDE) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "layer '" + l.getName() + "' has d_in="
                        + l.getDIn() + " d_out=" + l.getDOut() + ": sides must be in [1, " + MAX_LAYER_SIDE
                        + "] (a side's d x d factor fills one array)");
            }
        }
    }

    /** An alert: ids, a non-negative step, finite value and threshold, ordered timestamps, a short summary. */
    public static void checkAlert(Alert a) {
        requireId(a.getFingerprint(), "fingerprint");
        requireId(a.getRunId(), "run_id");
        requireId(a.getRule(), "rule");
        if (a.getLayer() != null) {
            requireId(a.getLayer(), "layer");
        }
        if (a.getStep() < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "step " + a.getStep() + " is negative");
        }
        if (!Double.isFinite(a.getValue()) || !Double.isFinite(a.getThreshold())) {
            throw new InvalidRecordException(RejectReason.NON_FINITE, "value " + a.getValue() + " / threshold "
                    + a.getThreshold() + " must be finite");
        }
        if (a.getFirstSeenMs() > a.getLastSeenMs()) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "first_seen_ms " + a.getFirstSeenMs()
                    + " is after last_seen_ms " + a.getLastSeenMs());
        }
        if (a.getSummary().length() >= 64) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "summary has " + a.getSummary().length()
                    + " characters, must be under 64");
        }
    }

    /** Longest reason a guard decision may carry. */
    public static final int MAX_GUARD_REASON = 512;

    /**
     * A guard decision: ids (run, layer, rule, idempotency key, snapshot when present), a
     * non-negative step, a reason under {@link #MAX_GUARD_REASON} characters, finite rhos of
     * layers with valid names.
     */
    public static void checkGuardDecision(GuardDecision d) {
        requireId(d.getId(), "id");
        requireId(d.getRunId(), "run_id");
        for (String[] f : new String[][] {{d.getLayer(), "layer"}, {d.getRule(), "rule"},
                {d.getIdempotencyKey(), "idempotency_key"}, {d.getSnapshotId(), "snapshot_id"},
                {d.getAlertFingerprint(), "alert_fingerprint"}}) {
            if (f[0] != null) {
                requireId(f[0], f[1]);
            }
        }
        if (d.getStep() < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "step " + d.getStep() + " is negative");
        }
        if (d.getReason().length() >= MAX_GUARD_REASON) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "reason has " + d.getReason().length()
                    + " characters, must be under " + MAX_GUARD_REASON);
        }
        for (var lr : d.getLayers()) {
            requireId(lr.getLayer(), "layers[].layer");
            if (!Double.isFinite(lr.getRho()) || lr.getRho() > 1) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "rho " + lr.getRho() + " of layer "
                        + lr.getLayer() + " must be finite and <= 1");
            }
        }
    }

    /**
     * A weight snapshot, or one row part of it, against its layer: ids, part numbering, the rows
     * it holds inside [0, d_out) (all of them when it is the only part), d_in columns, a bias of
     * d_out entries only in part 0, consistent lengths, finite values.
     */
    public static void checkWeights(WeightSnapshot w, LayerInfo layer) {
        requireId(w.getRunId(), "run_id");
        requireId(w.getLayer(), "layer");
        int part = w.getPart();
        int parts = w.getParts();
        if (parts < 1 || part < 0 || part >= parts) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "part " + part + " of " + parts
                    + ": needs parts >= 1 and 0 <= part < parts");
        }
        Tensor weight = w.getWeight();
        if (weight.getShape().size() != 2 || weight.getShape().get(1) != layer.getDIn()) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "weight has shape " + weight.getShape()
                    + ", layer " + layer.getName() + " is registered as [" + layer.getDOut() + ", " + layer.getDIn() + "]");
        }
        int rows = weight.getShape().get(0);
        long end = (long) w.getRowOffset() + rows;
        boolean whole = parts == 1 && w.getRowOffset() == 0 && rows == layer.getDOut();
        if (w.getRowOffset() < 0 || rows < 1 || end > layer.getDOut() || (parts == 1 && !whole)) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "part " + part + " of " + parts + " holds rows ["
                    + w.getRowOffset() + ", " + end + ") of " + layer.getDOut() + " (layer " + layer.getName() + ")");
        }
        TensorCodec.requireConsistent(weight, "weight");
        TensorCodec.requireFinite(weight, "weight");
        if (w.getBias() != null) {
            Tensor bias = w.getBias();
            if (part != 0 || bias.getShape().size() != 1 || bias.getShape().get(0) != layer.getDOut()) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "bias of shape " + bias.getShape()
                        + " in part " + part + ": a bias of [" + layer.getDOut() + "] belongs in part 0 only");
            }
            TensorCodec.requireConsistent(bias, "bias");
            TensorCodec.requireFinite(bias, "bias");
        }
    }

    /**
     * A "factors ready" manifest on its own, before anything is allocated for it: ids, a
     * non-negative version, sides d_in and d_out in [1, 46340] (a d x d factor must fit one array:
     * {@link #MAX_FACTOR_ELEMENTS}), decay 1 for CUMULATIVE and in (0, 1] for EMA, a finite weight
     * &gt; 0 (the factor is sum / weight), non-negative token and capture counts, step_first &lt;=
     * step_last, and chunk counts in [1, d^2]. Whether the chunks match (versions, lengths,
     * sha256) is for whoever assembles the checkpoint; the sides against the registered layer are
     * for the reader that knows the run.
     */
    public static void checkManifest(FactorManifest m) {
        requireId(m.getRunId(), "run_id");
        requireId(m.getLayer(), "layer");
        String what = "manifest v" + m.getVersion() + " of " + m.getRunId() + "/" + m.getLayer() + ": ";
        if (m.getVersion() < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, what + "the version is negative");
        }
        for (int side : new int[]{m.getDIn(), m.getDOut()}) {
            if (side < 1) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, what + "d_in=" + m.getDIn() + " d_out=" + m.getDOut()
                        + ": factor sides must be >= 1");
            }
            if ((long) side * side > MAX_FACTOR_ELEMENTS) {
                throw new InvalidRecordException(RejectReason.OVERSIZED, what + "d_in=" + m.getDIn() + " d_out=" + m.getDOut()
                        + ": a " + side + " x " + side + " factor has more than " + MAX_FACTOR_ELEMENTS + " elements");
            }
        }
        double decay = m.getEmaDecay();
        if (m.getMode() == FactorMode.CUMULATIVE ? decay != 1.0 : !(decay > 0 && decay <= 1)) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, what + "ema_decay " + decay + " with mode " + m.getMode()
                    + ": must be 1 for CUMULATIVE and in (0, 1] for EMA");
        }
        if (!(m.getWeight() > 0) || !Double.isFinite(m.getWeight())) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, what + "weight " + m.getWeight() + " must be finite and > 0");
        }
        if (m.getTokenCount() < 0 || m.getCaptures() < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, what + "token_count " + m.getTokenCount() + " and captures "
                    + m.getCaptures() + " must be >= 0");
        }
        if (m.getStepFirst() > m.getStepLast()) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, what + "step_first " + m.getStepFirst() + " is after step_last "
                    + m.getStepLast());
        }
        checkChunks(what, m.getChunksA(), m.getDIn(), "chunks_a");
        checkChunks(what, m.getChunksG(), m.getDOut(), "chunks_g");
    }

    private static void checkChunks(String what, int chunks, int side, String field) {
        if (chunks < 1 || chunks > (long) side * side) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, what + field + " " + chunks + " is outside [1, " + ((long) side * side)
                    + "] for a " + side + " x " + side + " factor");
        }
    }

    private static int rows(Tensor t, String field) {
        if (t.getShape().size() != 2) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " must be 2-D (tokens x features), has shape " + t.getShape());
        }
        if (t.getDtype() != DType.FLOAT32) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " must be FLOAT32, is " + t.getDtype());
        }
        TensorCodec.requireConsistent(t, field);
        return t.getShape().get(0);
    }

    private static String abbreviate(String s) {
        if (s == null) {
            return "null";
        }
        return s.length() > 40 ? s.substring(0, 40) + "..." : s;
    }
}
