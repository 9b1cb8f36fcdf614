package dev.curvewatch.service.internal;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.curvature.EigenResult;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.EigenbasisRefresh;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.KeepMassSelector;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.schemas.EditCandidateParts;
import dev.curvewatch.schemas.TensorCodec;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * One refresh of one layer (SERVICE-CONTRACT §1-§2), without Kafka: eigendecompositions of A and
 * G (drift-gated), spectra and drift signals, and the candidate keep-mass thresholds for the exact
 * calibration round trip. A factor with NaN/Inf or a failed decomposition gives a failed
 * {@link Outcome} with the reason, never an exception.
 */
public final class LayerRefresh {
    /** A layer's factors at one checkpoint version. */
    public record Input(String runId, String layer, long factorVersion, long step, long tokens, int dIn, int dOut,
                        double[] a, double[] g) {
    }

    /** Thresholds of the candidate rhos on the float32 spectra the trainer receives. */
    public record CandidatePlan(double[] rhos, double[] thresholds, long[] keptPairs) {
    }

    /**
     * @param failure  why the refresh failed, or null
     * @param plan     empty when the layer's EditCandidate would exceed {@code candidate.max.bytes} ({@link #tooLarge})
     * @param eighGSeconds, eighASeconds time of each factor's basis refresh (drift check included)
     * @param keptG, keptA   a skipped factor's map of new columns to the previous basis's ({@code EigenbasisRefresh.Outcome.kept}), else null
     */
    public record Outcome(Input input, String failure, Eigenbasis g, Eigenbasis a, EigenbasisRefresh.Mode modeG,
                          EigenbasisRefresh.Mode modeA, double driftG, double driftA, SpectrumSummary spectrumG,
                          SpectrumSummary spectrumA, double eighGSeconds, double eighASeconds, boolean tooLarge,
                          Optional<CandidatePlan> plan, int[] keptG, int[] keptA) {
        public boolean ok() {
            return failure == null;
        }

        /** G's previous vectors were kept. */
        public boolean skippedG() {
            return modeG == EigenbasisRefresh.Mode.SKIPPED;
        }

        /** A's previous vectors were kept. */
        public boolean skippedA() {
            return modeA == EigenbasisRefresh.Mode.SKIPPED;
        }

        /** Both factors' basis refreshes. */
        public double eighSeconds() {
            return eighGSeconds + eighASeconds;
        }
    }

    private final EigenbasisRefresh refresher;
    private final CalibrationTerms terms;
    private final double[] rhos;
    private final long maxCandidateBytes;
    private final int maxPartBytes;
    private final long memoryBudgetBytes;

    /**
     * @param maxCandidateBytes a layer whose EditCandidate is larger gets no calibration ({@code candidate.max.bytes})
     * @param maxPartBytes      largest record a candidate part may take ({@code candidate.part.max.bytes})
     * @param terms             what every candidate asks of the trainer (EditCandidate v3)
     * @param memoryBudgetBytes a layer whose {@link #memoryBytes refresh memory} is larger is refused ({@code refresh.memory.budget.bytes})
     */
    public LayerRefresh(EigenbasisRefresh refresher, long maxCandidateBytes, int maxPartBytes, CalibrationTerms terms,
                        long memoryBudgetBytes) {
        this.refresher = refresher;
        this.terms = terms;
        this.memoryBudgetBytes = memoryBudgetBytes;
        this.maxCandidateBytes = maxCandidateBytes;
        this.maxPartBytes = maxPartBytes;
        // the standard grid; calibration tolerances do not change the candidates
        this.rhos = RhoCalibrator.standard(0, RhoCalibrator.Direction.HIGHER_IS_BETTER).candidates();
    }

    /** Bytes of an EditCandidate of a d_out x d_in layer: both bases and spectra as float32, plus ids and thresholds. */
    public static long candidateBytes(int dOut, int dIn) {
        return 4L * ((long) dOut * dOut + (long) dIn * dIn + dOut + dIn) + 4096;
    }

    /**
     * Peak memory of one refresh of a d_in x d_out layer, in bytes: the layer's fp64 d_in² + d_out²
     * values four times over (the checkpoint chunks the ingest thread holds, the assembled sums,
     * the means, the previous bases kept for the next drift check) and three times the larger
     * factor's n² for its decomposition (LAPACK's copy and dsyevd's 2n² workspace; the output
     * replaces the sums). 7.3 GB for 11008 x 4096.
     */
    public static long memoryBytes(int dIn, int dOut) {
        long squares = (long) dIn * dIn + (long) dOut * dOut;
        long larger = Math.max(dIn, dOut);
        return 8 * (4 * squares + 3 * larger * larger);
    }

    /** Why this layer is not refreshed at all (its refresh memory is over the budget), or null. */
    public String refusal(int dIn, int dOut) {
        long need = memoryBytes(dIn, dOut);
        if (need <= memoryBudgetBytes) {
            return null;
        }
        return String.format(java.util.Locale.ROOT, "refresh of a %d x %d layer needs about %.2f GiB, over refresh.memory.budget.bytes "
                + "(%.2f GiB): not refreshed", dOut, dIn, need / (double) (1L << 30), memoryBudgetBytes / (double) (1L << 30));
    }

    /** The attributes of a refused layer's {@code refresh_failed} signal. */
    public Map<String, Double> refusalAttributes(int dIn, int dOut) {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("over_budget", 1.0);
        m.put("needed_bytes", (double) memoryBytes(dIn, dOut));
        m.put("budget_bytes", (double) memoryBudgetBytes);
        return m;
    }

    /** @param previousG, previousA the bases of the last refresh, or null */
    public Outcome refresh(Input in, Eigenbasis previousG, Eigenbasis previousA) {
        String bad = firstNonFinite(in.a(), in.dIn(), "A");
        if (bad == null) {
            bad = firstNonFinite(in.g(), in.dOut(), "G");
        }
        if (bad != null) {
            return failed(in, bad);
        }
        long t0 = System.nanoTime();
        EigenbasisRefresh.Outcome og;
        EigenbasisRefresh.Outcome oa;
        long t1;
        try {
            og = refresher.refresh(previousG, in.g(), in.dOut());
            t1 = System.nanoTime();
            oa = refresher.refresh(previousA, in.a(), in.dIn());
        } catch (RuntimeException e) {
            return failed(in, "eigendecomposition threw " + e);
        }
        double secondsG = (t1 - t0) / 1e9;
        double secondsA = (System.nanoTime() - t1) / 1e9;
        EigenResult rg = og.result();
        EigenResult ra = oa.result();
        if (!rg.isSuccess()) {
            return failed(in, "eigendecomposition of G failed: " + rg.failureReason().orElse("?"));
        }
        if (!ra.isSuccess()) {
            return failed(in, "eigendecomposition of A failed: " + ra.failureReason().orElse("?"));
        }
        Eigenbasis g = rg.basis().orElseThrow();
        Eigenbasis a = ra.basis().orElseThrow();
        boolean tooLarge = candidateBytes(in.dOut(), in.dIn()) > maxCandidateBytes;
        Optional<CandidatePlan> plan = tooLarge ? Optional.empty() : Optional.of(plan(g, a));
        return new Outcome(in, null, g, a, og.mode(), oa.mode(), og.drift(), oa.drift(),
                SpectrumSummary.of(g.values()), SpectrumSummary.of(a.values()), secondsG, secondsA, tooLarge, plan, og.kept(), oa.kept());
    }

    /**
     * The outcome of a refresh done before, from its bases (kept by the layer): what a candidate for
     * them needs, without decomposing anything again.
     */
    public Outcome ofBases(String runId, String layer, long factorVersion, long step, Eigenbasis g, Eigenbasis a, SpectrumSummary spectrumG,
                           SpectrumSummary spectrumA) {
        Input in = new Input(runId, layer, factorVersion, step, 0, a.size(), g.size(), null, null);
        boolean tooLarge = candidateBytes(g.size(), a.size()) > maxCandidateBytes;
        return new Outcome(in, null, g, a, EigenbasisRefresh.Mode.SKIPPED, EigenbasisRefresh.Mode.SKIPPED, Double.NaN, Double.NaN,
                spectrumG, spectrumA, 0, 0, tooLarge,
                tooLarge ? Optional.empty() : Optional.of(plan(g, a)), null, null);
    }

    private static Outcome failed(Input in, String reason) {
        return new Outcome(in, reason, null, null, null, null, Double.NaN, Double.NaN, null, null, 0, 0, false, Optional.empty(),
                null, null);
    }

    /** Eigenvalues rounded to float32, as the EditCandidate carries them (rounding keeps the order). */
    public static double[] asSent(Eigenbasis b) {
        double[] v = b.values();
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) v[i];
        }
        return v;
    }

    /**
     * The keep-mass mask the trainer builds from an EditCandidate at rho: on the float32
     * spectra, so service and trainer keep exactly the same pairs.
     */
    public static KeepMassMask maskAsSent(Eigenbasis g, Eigenbasis a, double rho) {
        return KeepMassSelector.select(asSent(g), asSent(a), rho);
    }

    private CandidatePlan plan(Eigenbasis g, Eigenbasis a) {
        double[] lambda = asSent(g);
        double[] mu = asSent(a);
        double[] tau = new double[rhos.length];
        long[] kept = new long[rhos.length];
        for (int k = 0; k < rhos.length; k++) {
            KeepMassMask m = KeepMassSelector.select(lambda, mu, rhos[k]);
            tau[k] = m.tau();
            kept[k] = m.keptPairs();
        }
        return new CandidatePlan(rhos.clone(), tau, kept);
    }

    /**
     * The signals of a successful refresh (SERVICE-CONTRACT §2); refresh_seconds carries the latency
     * and the time of each stage as attributes.
     *
     * @param assembleSeconds checksum and decoding of the checkpoint into the two factors
     */
    public static List<Signal> signals(Outcome o, double assembleSeconds, double latencySeconds, long nowMs) {
        Input in = o.input();
        List<Signal> out = new ArrayList<>();
        out.add(signal(in, "effective_rank_g", o.spectrumG().effectiveRank(), spectrumAttrs(o.spectrumG(), o.g(), in), nowMs));
        out.add(signal(in, "effective_rank_a", o.spectrumA().effectiveRank(), spectrumAttrs(o.spectrumA(), o.a(), in), nowMs));
        if (!Double.isNaN(o.driftG())) {
            out.add(signal(in, "basis_drift_g", o.driftG(), modeAttributes(o.modeG()), nowMs));
        }
        if (!Double.isNaN(o.driftA())) {
            out.add(signal(in, "basis_drift_a", o.driftA(), modeAttributes(o.modeA()), nowMs));
        }
        Map<String, Double> skip = new LinkedHashMap<>();
        skip.put("skipped_g", o.skippedG() ? 1.0 : 0.0);
        skip.put("skipped_a", o.skippedA() ? 1.0 : 0.0);
        skip.put("warm_g", o.modeG() == EigenbasisRefresh.Mode.WARM ? 1.0 : 0.0);
        skip.put("warm_a", o.modeA() == EigenbasisRefresh.Mode.WARM ? 1.0 : 0.0);
        out.add(signal(in, "eigh_skipped", o.skippedG() && o.skippedA() ? 1.0 : 0.0, skip, nowMs));
        Map<String, Double> timing = new LinkedHashMap<>();
        timing.put("latency_seconds", latencySeconds);
        timing.put("assemble_seconds", assembleSeconds);
        timing.put("eigh_g_seconds", o.eighGSeconds());
        timing.put("eigh_a_seconds", o.eighASeconds());
        timing.put("d_in", (double) in.dIn());
        timing.put("d_out", (double) in.dOut());
        timing.put("factor_tokens", (double) in.tokens());
        timing.put("calibration_too_large", o.tooLarge() ? 1.0 : 0.0);
        out.add(signal(in, "refresh_seconds", o.eighSeconds(), timing, nowMs));
        return out;
    }

    /** skipped = previous vectors kept, warm = rotated from them (first-order step), neither = decomposed. */
    private static Map<String, Double> modeAttributes(EigenbasisRefresh.Mode mode) {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("skipped", mode == EigenbasisRefresh.Mode.SKIPPED ? 1.0 : 0.0);
        m.put("warm", mode == EigenbasisRefresh.Mode.WARM ? 1.0 : 0.0);
        return m;
    }

    /** The signal of a failed refresh: value 1, the reason goes to the layer status and the log. */
    public static Signal failureSignal(Input in, long nowMs) {
        return failureSignal(in, Map.of(), nowMs);
    }

    /** A failed refresh's signal with attributes saying more (a refusal over the memory budget). */
    public static Signal failureSignal(Input in, Map<String, Double> attributes, long nowMs) {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("factor_tokens", (double) in.tokens());
        m.putAll(attributes);
        return signal(in, "refresh_failed", 1.0, m, nowMs);
    }

    private static Map<String, Double> spectrumAttrs(SpectrumSummary s, Eigenbasis b, Input in) {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("count50", (double) s.count50());
        m.put("count90", (double) s.count90());
        m.put("count99", (double) s.count99());
        m.put("total", s.total());
        if (Double.isFinite(s.decaySlope())) {
            m.put("decay_slope", s.decaySlope());
        }
        m.put("factor_tokens", (double) in.tokens());
        m.put("raw_min", b.rawMin());
        return m;
    }

    static Signal signal(Input in, String name, double value, Map<String, Double> attrs, long nowMs) {
        return Signal.newBuilder().setRunId(in.runId()).setLayer(in.layer()).setStep(in.step()).setName(name).setValue(value)
                .setFactorVersion(in.factorVersion()).setAttributes(new LinkedHashMap<>(attrs)).setTimestampMs(nowMs).build();
    }

    /**
     * The EditCandidate of a successful refresh with a plan, as the records to send: one, or row
     * parts of at most {@code candidate.part.max.bytes} ({@link EditCandidateParts}) sharing its buffers.
     */
    public List<EditCandidate> candidateParts(Outcome o, String candidateId, long nowMs, BasisReferences.Shipment ship) {
        return EditCandidateParts.split(candidate(o, candidateId, nowMs, ship), maxPartBytes);
    }

    /**
     * Leading columns of U_G and U_A the candidate's masks use, {d_out-side, d_in-side}: every
     * eigenvector with a pair kept at the mildest threshold (λ_i μ_0 ≥ τ_min on the float32
     * spectra; a margin of 3 TAU_RELATIVE_TOLERANCE of the trainer's own threshold, so a trainer
     * that rounds differently keeps no pair outside them). At least one each.
     */
    public static int[] neededColumns(Outcome o) {
        double tauMin = Arrays.stream(o.plan().orElseThrow().thresholds()).min().orElse(0) * (1 - 3e-4);
        double[] lambda = asSent(o.g());
        double[] mu = asSent(o.a());
        return new int[]{leading(lambda, mu[0], tauMin), leading(mu, lambda[0], tauMin)};
    }

    private static int leading(double[] values, double top, double tauMin) {
        int k = 0;
        while (k < values.length && values[k] * top >= tauMin) {
            k++;
        }
        return Math.max(1, k);
    }

    /** The whole EditCandidate of a successful refresh with a plan, asking for this service's {@link CalibrationTerms}. */
    public EditCandidate candidate(Outcome o, String candidateId, long nowMs, BasisReferences.Shipment ship) {
        CandidatePlan p = o.plan().orElseThrow(() -> new IllegalStateException("no candidate plan: layer too large or refresh failed"));
        Input in = o.input();
        List<Double> rhos = new ArrayList<>();
        List<Double> tau = new ArrayList<>();
        for (int k = 0; k < p.rhos().length; k++) {
            rhos.add(p.rhos()[k]);
            tau.add(p.thresholds()[k]);
        }
        return terms.into(EditCandidate.newBuilder())
                .setCandidateId(candidateId).setRunId(in.runId()).setLayer(in.layer()).setStep(in.step())
                .setFactorVersion(in.factorVersion())
                .setBasisG(basis(o.g(), ship.g())).setBasisGOf(ship.g().of()).setBasisGOrder(order(ship.g()))
                .setBasisA(basis(o.a(), ship.a())).setBasisAOf(ship.a().of()).setBasisAOrder(order(ship.a()))
                .setEigenvaluesG(floats(o.g().values(), in.dOut()))
                .setEigenvaluesA(floats(o.a().values(), in.dIn()))
                .setRhos(rhos).setThresholds(tau).setCreatedMs(nowMs)
                .build();
    }

    /** The basis as it travels: its leading columns as float32 rows, or no rows when it is named. */
    private static dev.curvewatch.avro.Tensor basis(Eigenbasis b, BasisReferences.Way way) {
        int n = b.size();
        int k = way.columns();
        if (!way.sent()) {
            return floats(new double[0], 0, k);
        }
        double[] v = b.vectors();
        if (k == n) {
            return floats(v, n, n);
        }
        double[] lead = new double[n * k];
        for (int r = 0; r < n; r++) {
            System.arraycopy(v, r * n, lead, r * k, k);
        }
        return floats(lead, n, k);
    }

    private static List<Integer> order(BasisReferences.Way way) {
        return way.sent() ? List.of() : Arrays.stream(way.order()).boxed().toList();
    }

    private static dev.curvewatch.avro.Tensor floats(double[] v, int... shape) {
        ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        FloatBuffer f = b.asFloatBuffer();
        for (double x : v) {
            f.put((float) x);
        }
        return TensorCodec.ofBytes(dev.curvewatch.avro.DType.FLOAT32, b, shape);
    }

    private static String firstNonFinite(double[] f, int n, String name) {
        for (int i = 0; i < f.length; i++) {
            if (!Double.isFinite(f[i])) {
                return "factor " + name + " has " + f[i] + " at row " + i / n + ", column " + i % n;
            }
        }
        return null;
    }
}
