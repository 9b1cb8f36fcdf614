package dev.curvewatch.trainer;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.Tensor;
import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.schemas.TensorCodec;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Function;

/**
 * The checks of one whole {@link EditCandidate} (SERVICE-CONTRACT §1, rules and golden vectors in
 * docs/SPEC-CANDIDATES.md): run id, watched layer, tensor shapes (U_G d_out x k and U_A d_in x k, the
 * leading k columns, 1 ≤ k ≤ the side; λ d_out, μ d_in), dtype FLOAT32/FLOAT64, lengths, finite values,
 * spectra descending and ≥ 0, bases orthonormal ({@link #ORTHONORMAL_TOLERANCE}, an O(n²) test of
 * every column's norm and of the column pairs j, j+1 and j, j+k/2), ρ in (0, 1], and each threshold
 * τ_k equal to {@code select(rho_k).tau()} within {@link #TAU_RELATIVE_TOLERANCE}; no mask may keep a
 * pair beyond the columns sent. A candidate that passes becomes a {@link Prepared}: its edit and one
 * mask per ρ. Stateless; any thread.
 */
public final class CandidateValidator {
    /** Allowed |‖u‖ − 1| and |u_iᵀu_j| of basis columns (float32 vectors of fp64 eigh are ~1e-6 off). */
    public static final double ORTHONORMAL_TOLERANCE = 1e-3;
    /** Allowed relative difference between the candidate's τ_k and {@code select(rho_k).tau()}. */
    public static final double TAU_RELATIVE_TOLERANCE = 1e-4;
    /** Most ρ one candidate may ask about. */
    public static final int MAX_RHOS = 64;
    /** Longest candidate id. */
    public static final int MAX_CANDIDATE_ID = 256;

    private CandidateValidator() {
    }

    /**
     * A candidate that passed every check, with its edit and one mask per ρ. {@code candidate} keeps
     * its ids, spectra, rhos and thresholds but not its bases: those live in {@code edit} (a large
     * layer's float32 bases would otherwise be held twice while it waits).
     */
    public record Prepared(EditCandidate candidate, LayerShape layer, CurvatureEdit edit, List<KeepMassMask> masks) {
    }

    /**
     * Checks a candidate against this run and the watched layers ({@code layers}: a layer's shape by
     * name, empty when not watched), and builds its edit and masks.
     *
     * @throws InvalidRecordException or {@link Refusal}, naming what is wrong
     */
    public static Prepared prepare(EditCandidate c, String runId, Function<String, Optional<LayerShape>> layers) {
        String id = c.getCandidateId();
        if (id == null || id.isEmpty() || id.length() > MAX_CANDIDATE_ID) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "candidate_id must be 1-256 characters");
        }
        if (!runId.equals(c.getRunId())) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "run_id '" + c.getRunId()
                    + "' is not this trainer's run '" + runId + "'");
        }
        LayerShape layer = layers.apply(c.getLayer()).orElseThrow(() -> new InvalidRecordException(
                RejectReason.UNKNOWN_LAYER, "layer '" + c.getLayer() + "' is not watched by this trainer"));
        List<Double> rhos = c.getRhos();
        List<Double> taus = c.getThresholds();
        if (rhos.isEmpty() || rhos.size() > MAX_RHOS || rhos.size() != taus.size()) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, rhos.size() + " rhos and " + taus.size()
                    + " thresholds: need the same number, 1 to " + MAX_RHOS);
        }
        for (int k = 0; k < rhos.size(); k++) {
            double rho = rhos.get(k);
            double tau = taus.get(k);
            if (!Double.isFinite(rho) || !Double.isFinite(tau)) {
                throw new InvalidRecordException(RejectReason.NON_FINITE, "rho " + rho + " / threshold " + tau + " at index " + k);
            }
            if (!(rho > 0 && rho <= 1) || tau < 0) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "rho " + rho + " must be in (0, 1] and threshold "
                        + tau + " >= 0 (index " + k + ")");
            }
        }
        requireHowToAnswer(c, rhos.size());
        int kg = columns(c.getBasisG(), "basis_g", layer.dOut());
        int ka = columns(c.getBasisA(), "basis_a", layer.dIn());
        double[] ug = leadingColumns(c.getBasisG(), "basis_g", layer.dOut(), kg);
        double[] ua = leadingColumns(c.getBasisA(), "basis_a", layer.dIn(), ka);
        double[] lambda = spectrum(c.getEigenvaluesG(), "eigenvalues_g", layer.dOut());
        double[] mu = spectrum(c.getEigenvaluesA(), "eigenvalues_a", layer.dIn());
        requireOrthonormal(ug, layer.dOut(), kg, "basis_g");
        requireOrthonormal(ua, layer.dIn(), ka, "basis_a");
        Eigenbasis g = new Eigenbasis(layer.dOut(), lambda, ug, lambda[lambda.length - 1], precision(c.getBasisG()));
        Eigenbasis a = new Eigenbasis(layer.dIn(), mu, ua, mu[mu.length - 1], precision(c.getBasisA()));
        CurvatureEdit edit = new CurvatureEdit(g, a);
        double top = lambda[0] * mu[0];
        List<KeepMassMask> masks = new ArrayList<>(rhos.size());
        for (int k = 0; k < rhos.size(); k++) {
            KeepMassMask m = edit.select(rhos.get(k));
            double theirs = taus.get(k);
            if (!tauAgrees(m.tau(), theirs, top)) {
                throw new Refusal("THRESHOLD_MISMATCH", String.format(
                        "threshold %.9g for rho %s differs from this trainer's select(rho).tau() = %.9g (relative "
                                + "tolerance %.0e): the masks would not be the service's", theirs, rhos.get(k), m.tau(),
                        TAU_RELATIVE_TOLERANCE));
            }
            // v4: columns not sent are zero here, so a pair kept beyond them would silently drop out of W'
            if ((kg < layer.dOut() && m.rowCount(kg) > 0) || (m.rows() > 0 && m.rowCount(0) > ka)) {
                throw new Refusal("COLUMNS_MISSING", String.format(java.util.Locale.ROOT, "rho %s keeps pairs beyond the %d x %d "
                        + "leading basis columns sent", rhos.get(k), kg, ka));
            }
            masks.add(m);
        }
        EditCandidate withoutBases = EditCandidate.newBuilder(c)
                .setBasisG(TensorCodec.ofBytes(c.getBasisG().getDtype(), java.nio.ByteBuffer.allocate(0), 0, layer.dOut()))
                .setBasisA(TensorCodec.ofBytes(c.getBasisA().getDtype(), java.nio.ByteBuffer.allocate(0), 0, layer.dIn())).build();
        return new Prepared(withoutBases, layer, edit, List.copyOf(masks));
    }

    static boolean tauAgrees(double ours, double theirs, double topPair) {
        return Math.abs(ours - theirs) <= TAU_RELATIVE_TOLERANCE * Math.max(Math.abs(ours), Math.abs(theirs))
                + 1e-12 * topPair;
    }

    /** v3's calibration fields: tolerances finite and >= 0, train_candidates index rhos, peak_tokens >= 0. */
    private static void requireHowToAnswer(EditCandidate c, int rhos) {
        for (double t : new double[] {c.getAccuracyTolerance(), c.getLossTolerance()}) {
            if (!Double.isFinite(t)) {
                throw new InvalidRecordException(RejectReason.NON_FINITE, "tolerance " + t);
            }
            if (t < 0) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "tolerance " + t + " must be >= 0");
            }
        }
        for (int k : c.getTrainCandidates()) {
            if (k < 0 || k >= rhos) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "train_candidates " + c.getTrainCandidates()
                        + " outside 0.." + (rhos - 1));
            }
        }
        if (c.getPeakTokens() < 0) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "peak_tokens " + c.getPeakTokens() + " < 0");
        }
    }

    /** Columns a basis carries: its leading k of the layer's n (v4), 1 <= k <= n. */
    private static int columns(Tensor t, String field, int n) {
        List<Integer> shape = t.getShape();
        int k = shape.size() == 2 ? shape.get(1) : -1;
        if (k < 1 || k > n) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " has shape " + shape
                    + ", the watched layer needs " + n + " x k, 1 <= k <= " + n);
        }
        return k;
    }

    /** The n x k basis as a row-major n x n one, the columns not sent zero (no kept pair uses them). */
    private static double[] leadingColumns(Tensor t, String field, int n, int k) {
        requireShape(t, field, n, k);
        TensorCodec.requireFinite(t, field);
        double[] v = TensorCodec.toDoubleArray(t, field);
        if (k == n) {
            return v;
        }
        double[] square = new double[n * n];
        for (int r = 0; r < n; r++) {
            System.arraycopy(v, r * k, square, r * n, k);
        }
        return square;
    }

    private static double[] spectrum(Tensor t, String field, int n) {
        requireShape(t, field, n);
        TensorCodec.requireFinite(t, field);
        double[] v = TensorCodec.toDoubleArray(t, field);
        for (int k = 0; k < n; k++) {
            if (v[k] < 0 || (k > 0 && v[k] > v[k - 1])) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, field + " must be >= 0 and descending; index "
                        + k + " is " + v[k] + (k > 0 ? " after " + v[k - 1] : ""));
            }
        }
        return v;
    }

    private static void requireShape(Tensor t, String field, int... shape) {
        List<Integer> want = new ArrayList<>();
        for (int d : shape) {
            want.add(d);
        }
        if (!t.getShape().equals(want)) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " has shape " + t.getShape()
                    + ", the watched layer needs " + want);
        }
        if (t.getDtype() != dev.curvewatch.avro.DType.FLOAT32 && t.getDtype() != dev.curvewatch.avro.DType.FLOAT64) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " is " + t.getDtype()
                    + ", expected FLOAT32 or FLOAT64");
        }
        TensorCodec.requireConsistent(t, field);
    }

    /**
     * Cheap orthonormality test of the columns of a row-major n x n matrix: every column's norm,
     * and the inner products of columns j, j+1 and of j, j+n/2. O(n²), so a basis whose columns
     * are scaled, repeated next to each other or not orthogonal at all is caught without forming UᵀU.
     */
    static void requireOrthonormal(double[] v, int n, String field) {
        requireOrthonormal(v, n, n, field);
    }

    /** As above, over the leading k columns of a row-major n x n matrix. */
    static void requireOrthonormal(double[] v, int n, int k, String field) {
        double[] norms = new double[k];
        double[] next = new double[k];
        double[] half = new double[k];
        int shift = Math.max(1, k / 2);
        for (int i = 0; i < n; i++) {
            int row = i * n;
            for (int j = 0; j < k; j++) {
                double x = v[row + j];
                norms[j] += x * x;
                next[j] += x * v[row + (j + 1) % k];
                half[j] += x * v[row + (j + shift) % k];
            }
        }
        for (int j = 0; j < k; j++) {
            if (Math.abs(Math.sqrt(norms[j]) - 1) > ORTHONORMAL_TOLERANCE) {
                throw new Refusal("NOT_ORTHONORMAL", field + " is not orthonormal: column " + j + " has norm "
                        + Math.sqrt(norms[j]));
            }
            if (k > 1 && (Math.abs(next[j]) > ORTHONORMAL_TOLERANCE || Math.abs(half[j]) > ORTHONORMAL_TOLERANCE)) {
                double worst = Math.abs(next[j]) > Math.abs(half[j]) ? next[j] : half[j];
                int other = Math.abs(next[j]) > Math.abs(half[j]) ? (j + 1) % k : (j + shift) % k;
                throw new Refusal("NOT_ORTHONORMAL", field + " is not orthonormal: columns " + j + " and "
                        + other + " have inner product " + worst);
            }
        }
    }

    private static Precision precision(Tensor t) {
        return t.getDtype() == dev.curvewatch.avro.DType.FLOAT64 ? Precision.FLOAT64 : Precision.FLOAT32;
    }

    /** A candidate refused for a reason that has no {@link RejectReason} (NOT_ORTHONORMAL, THRESHOLD_MISMATCH). */
    public static final class Refusal extends RuntimeException {
        private final String reason;

        public Refusal(String reason, String message) {
            super(reason + ": " + message);
            this.reason = reason;
        }

        public String reason() {
            return reason;
        }
    }}
