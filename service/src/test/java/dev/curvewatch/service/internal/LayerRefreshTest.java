package dev.curvewatch.service.internal;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.curvature.EigenbasisRefresh;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.KeepMassSelector;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.EditCandidateParts;
import dev.curvewatch.schemas.TensorCodec;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LayerRefreshTest {
    static double[] spd(int n, long seed, double perturb) {
        Random r = new Random(seed);
        int t = 6 * n;
        double[] x = new double[t * n];
        for (int i = 0; i < x.length; i++) {
            x[i] = r.nextGaussian() * Math.pow(0.7, i % n);
        }
        double[] f = new double[n * n];
        for (int k = 0; k < t; k++) {
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    f[i * n + j] += x[k * n + i] * x[k * n + j] / t;
                }
            }
        }
        for (int i = 0; i < n; i++) {
            f[i * n + i] *= 1 + perturb;
        }
        return f;
    }

    static final CalibrationTerms TERMS = new CalibrationTerms(dev.curvewatch.avro.CalibrationSearch.BISECT, 0.02, 0.05, List.of(3, 9), 8);

    /** Both bases whole, as before EditCandidate v4. */
    static BasisReferences.Shipment whole(LayerRefresh.Outcome o) {
        return BasisReferences.Shipment.whole(o.g().size(), o.a().size());
    }

    static LayerRefresh refresher() {
        return refresher(1L << 30, CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES - 64 * 1024);
    }

    static LayerRefresh refresher(long maxCandidateBytes, int maxPartBytes) {
        return refresher(maxCandidateBytes, maxPartBytes, 1L << 30);
    }

    static LayerRefresh refresher(long maxCandidateBytes, int maxPartBytes, long memoryBudgetBytes) {
        return new LayerRefresh(new EigenbasisRefresh(SymmetricEigensolvers.best(), 0.01, Precision.FLOAT64), maxCandidateBytes,
                maxPartBytes, TERMS, memoryBudgetBytes);
    }

    static LayerRefresh.Input input(long version, double[] a, double[] g) {
        return new LayerRefresh.Input("run-1", "fc", version, 10 * version, 100 * version, 12, 8, a, g);
    }

    /** A PSD n x n factor of rank {@code rank}. */
    static double[] lowRank(int n, int rank, long seed) {
        Random r = new Random(seed);
        double[] x = new double[rank * n];
        for (int i = 0; i < x.length; i++) {
            x[i] = r.nextGaussian();
        }
        double[] f = new double[n * n];
        for (int k = 0; k < rank; k++) {
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    f[i * n + j] += x[k * n + i] * x[k * n + j];
                }
            }
        }
        return f;
    }

    /**
     * EditCandidate v4: a rank-3 G needs only its 3 leading eigenvectors; every pair any candidate
     * mask keeps lies within the needed columns, the candidate carries just those columns, and the
     * edit W' = U_G (C o M) U_A^T from them equals the one from whole bases at every rho.
     */
    @Test
    void aCandidateCarriesOnlyTheLeadingColumnsItsMasksUse() {
        LayerRefresh.Outcome o = refresher().refresh(input(1, spd(12, 1, 0), lowRank(8, 3, 2)), null, null);
        int[] need = LayerRefresh.neededColumns(o);
        assertEquals(3, need[0], "G has rank 3");
        double[] lambda = LayerRefresh.asSent(o.g());
        double[] mu = LayerRefresh.asSent(o.a());
        LayerRefresh.CandidatePlan p = o.plan().orElseThrow();
        for (int k = 0; k < p.rhos().length; k++) {
            KeepMassMask m = KeepMassSelector.select(lambda, mu, p.rhos()[k]);
            for (int i = 0; i < 8; i++) {
                for (int j = 0; j < 12; j++) {
                    assertTrue(!m.contains(i, j) || (i < need[0] && j < need[1]), "rho " + p.rhos()[k] + " keeps (" + i + "," + j + ")");
                }
            }
        }
        BasisReferences.Shipment lead = new BasisReferences.Shipment(new BasisReferences.Way(null, null, need[0]),
                new BasisReferences.Way(null, null, need[1]));
        EditCandidate c = refresher().candidate(o, "cand-1", 9, lead);
        assertEquals(List.of(8, 3), c.getBasisG().getShape());
        assertEquals(List.of(12, need[1]), c.getBasisA().getShape());
        float[] ug = TensorCodec.toFloatArray(c.getBasisG(), "basis_g");
        double[] full = o.g().vectors();
        for (int r = 0; r < 8; r++) {
            for (int col = 0; col < 3; col++) {
                assertEquals((float) full[r * 8 + col], ug[r * 3 + col]);
            }
        }
        double[] w = spd(8 * 12, 5, 0); // any 8 x 12 weight: the first 96 values
        EditCandidate whole = refresher().candidate(o, "cand-1", 9, whole(o));
        for (int k = 0; k < p.rhos().length; k++) {
            KeepMassMask m = KeepMassSelector.select(lambda, mu, p.rhos()[k]);
            double[] byWhole = edit(w, whole, m);
            double[] byLead = edit(w, c, m);
            for (int i = 0; i < byWhole.length; i++) {
                assertEquals(byWhole[i], byLead[i], 1e-12 * (1 + Math.abs(byWhole[i])), "rho " + p.rhos()[k]);
            }
        }
    }

    /** W' = U_G (C o M) U_A^T with C = U_G^T W U_A over the columns the candidate carries (8 x 12 weight). */
    private static double[] edit(double[] w, EditCandidate c, KeepMassMask m) {
        float[] ug = TensorCodec.toFloatArray(c.getBasisG(), "g");
        float[] ua = TensorCodec.toFloatArray(c.getBasisA(), "a");
        int kg = c.getBasisG().getShape().get(1);
        int ka = c.getBasisA().getShape().get(1);
        double[] out = new double[8 * 12];
        for (int i = 0; i < kg; i++) {
            for (int j = 0; j < ka; j++) {
                if (!m.contains(i, j)) {
                    continue;
                }
                double cij = 0;
                for (int r = 0; r < 8; r++) {
                    for (int s = 0; s < 12; s++) {
                        cij += ug[r * kg + i] * w[r * 12 + s] * ua[s * ka + j];
                    }
                }
                for (int r = 0; r < 8; r++) {
                    for (int s = 0; s < 12; s++) {
                        out[r * 12 + s] += ug[r * kg + i] * cij * ua[s * ka + j];
                    }
                }
            }
        }
        return out;
    }

    @Test
    void firstRefreshDecomposesAndPlansTheCandidates() {
        double[] a = spd(12, 1, 0);
        double[] g = spd(8, 2, 0);
        LayerRefresh.Outcome o = refresher().refresh(input(1, a, g), null, null);
        assertTrue(o.ok(), o.failure());
        // F u_k = lambda_k u_k for every eigenpair
        for (var pair : List.of(Map.entry(a, o.a()), Map.entry(g, o.g()))) {
            double[] f = pair.getKey();
            var b = pair.getValue();
            int n = b.size();
            double[] u = b.vectors();
            for (int k = 0; k < n; k++) {
                for (int i = 0; i < n; i++) {
                    double fu = 0;
                    for (int j = 0; j < n; j++) {
                        fu += f[i * n + j] * u[j * n + k];
                    }
                    assertEquals(b.value(k) * u[i * n + k], fu, 1e-12, "eigenpair " + k);
                }
            }
        }
        LayerRefresh.CandidatePlan p = o.plan().orElseThrow();
        assertEquals(19, p.rhos().length);
        for (int k = 0; k < p.rhos().length; k++) {
            KeepMassMask m = KeepMassSelector.select(LayerRefresh.asSent(o.g()), LayerRefresh.asSent(o.a()), p.rhos()[k]);
            assertEquals(m.tau(), p.thresholds()[k]);
            assertEquals(m.keptPairs(), p.keptPairs()[k]);
            if (k > 0) {
                assertTrue(p.keptPairs()[k] >= p.keptPairs()[k - 1], "milder rho keeps more");
            }
        }
        Map<String, Signal> s = LayerRefresh.signals(o, 0.5, 0.25, 7).stream().collect(Collectors.toMap(Signal::getName, x -> x));
        assertEquals(java.util.Set.of("effective_rank_g", "effective_rank_a", "eigh_skipped", "refresh_seconds"), s.keySet(),
                "no drift on the first refresh");
        assertEquals(o.spectrumA().effectiveRank(), s.get("effective_rank_a").getValue());
        assertEquals((double) o.spectrumA().count90(), s.get("effective_rank_a").getAttributes().get("count90"));
        assertEquals(100.0, s.get("effective_rank_g").getAttributes().get("factor_tokens"));
        assertEquals(0.25, s.get("refresh_seconds").getAttributes().get("latency_seconds"));
        assertEquals(0.5, s.get("refresh_seconds").getAttributes().get("assemble_seconds"));
        assertEquals(o.eighSeconds(), s.get("refresh_seconds").getAttributes().get("eigh_g_seconds")
                + s.get("refresh_seconds").getAttributes().get("eigh_a_seconds"), 1e-12);
        assertEquals(10, s.get("refresh_seconds").getStep(), "signals at the manifest's last step");
        assertEquals(1, s.get("refresh_seconds").getFactorVersion());

        EditCandidate c = refresher().candidate(o, "cand-1", 9, whole(o));
        assertEquals(List.of(8, 8), c.getBasisG().getShape());
        assertEquals(List.of(12, 12), c.getBasisA().getShape());
        float[] ua = TensorCodec.toFloatArray(c.getBasisA(), "basis_a");
        double[] want = o.a().vectors();
        for (int i = 0; i < ua.length; i++) {
            assertEquals((float) want[i], ua[i]);
        }
        float[] mu = TensorCodec.toFloatArray(c.getEigenvaluesA(), "eigenvalues_a");
        assertEquals((float) o.a().value(0), mu[0]);
        assertEquals(p.thresholds()[3], c.getThresholds().get(3));
        assertEquals(p.rhos()[18], c.getRhos().get(18));
    }

    @Test
    void aSmallDriftKeepsTheBasisAndReportsIt() {
        LayerRefresh r = refresher();
        LayerRefresh.Outcome first = r.refresh(input(1, spd(12, 1, 0), spd(8, 2, 0)), null, null);
        LayerRefresh.Outcome second = r.refresh(input(2, spd(12, 1, 1e-5), spd(8, 2, 0.5)), first.g(), first.a());
        assertTrue(second.ok());
        assertTrue(second.skippedA(), "A barely moved: warm start");
        assertFalse(second.skippedG(), "G moved a lot: decomposed again");
        assertTrue(second.driftA() < 0.01 && second.driftG() > 0.01, second.driftA() + " " + second.driftG());
        Map<String, Double> s = LayerRefresh.signals(second, 0, 0, 1).stream().collect(Collectors.toMap(Signal::getName, Signal::getValue));
        assertEquals(second.driftA(), s.get("basis_drift_a"));
        assertEquals(second.driftG(), s.get("basis_drift_g"));
        assertEquals(0.0, s.get("eigh_skipped"), "only one factor kept its basis");
    }

    @Test
    void nonFiniteFactorsFailTheRefreshWithAReason() {
        double[] a = spd(12, 1, 0);
        a[3 * 12 + 5] = Double.NaN;
        LayerRefresh.Outcome o = refresher().refresh(input(4, a, spd(8, 2, 0)), null, null);
        assertFalse(o.ok());
        assertEquals("factor A has NaN at row 3, column 5", o.failure());
        assertNull(o.g());
        assertTrue(o.plan().isEmpty());
        double[] g = spd(8, 2, 0);
        g[0] = Double.POSITIVE_INFINITY;
        assertTrue(refresher().refresh(input(5, spd(12, 1, 0), g), null, null).failure().startsWith("factor G has Infinity"));
        assertEquals("refresh_failed", LayerRefresh.failureSignal(input(4, a, g), 1).getName());
    }

    @Test
    void refreshMemoryIsEstimatedFromTheSidesAndALayerOverTheBudgetIsRefusedWithTheSizes() {
        // 11008 x 4096: 8 x (4 x (11008² + 4096²) + 3 x 11008²) bytes
        assertEquals(8L * (4 * (11008L * 11008 + 4096L * 4096) + 3 * 11008L * 11008), LayerRefresh.memoryBytes(4096, 11008));
        assertEquals(LayerRefresh.memoryBytes(4096, 11008), LayerRefresh.memoryBytes(11008, 4096));
        long need = LayerRefresh.memoryBytes(12, 8);
        assertNull(refresher(1L << 30, 1 << 20, need).refusal(12, 8));
        LayerRefresh tight = refresher(1L << 30, 1 << 20, need - 1);
        String why = tight.refusal(12, 8);
        assertTrue(why.contains("over refresh.memory.budget.bytes") && why.contains("8 x 12"), why);
        Map<String, Double> attrs = LayerRefresh.failureSignal(input(1, null, null), tight.refusalAttributes(12, 8), 1).getAttributes();
        assertEquals(1.0, attrs.get("over_budget"));
        assertEquals((double) need, attrs.get("needed_bytes"));
        assertEquals((double) (need - 1), attrs.get("budget_bytes"));
    }

    @Test
    void aCandidateAboveTheLimitIsNotPlannedAndOneAboveThePartSizeTravelsInPartsThatReassemble() {
        long bytes = LayerRefresh.candidateBytes(8, 12);
        LayerRefresh.Outcome refused = refresher(bytes - 1, 1 << 20).refresh(input(1, spd(12, 1, 0), spd(8, 2, 0)), null, null);
        assertTrue(refused.ok() && refused.tooLarge() && refused.plan().isEmpty(), "above candidate.max.bytes: no calibration");
        assertEquals(1.0, LayerRefresh.signals(refused, 0, 0, 1).stream().filter(x -> x.getName().equals("refresh_seconds"))
                .findFirst().orElseThrow().getAttributes().get("calibration_too_large"));

        LayerRefresh small = refresher(bytes, 4800);
        LayerRefresh.Outcome o = small.refresh(input(1, spd(12, 1, 0), spd(8, 2, 0)), null, null);
        assertFalse(o.tooLarge());
        List<EditCandidate> parts = small.candidateParts(o, "cand-1", 9, whole(o));
        assertTrue(parts.size() > 2, parts.size() + " parts");
        AvroSerializer<EditCandidate> ser = new AvroSerializer<>(EditCandidate.class);
        AvroDeserializer<EditCandidate> de = new AvroDeserializer<>(EditCandidate.class);
        EditCandidateParts.Assembler assembler = new EditCandidateParts.Assembler();
        EditCandidate back = null;
        for (EditCandidate part : parts) {
            byte[] record = ser.serialize("t", part);
            assertTrue(record.length <= 4800, record.length + " bytes");
            back = assembler.accept(de.decode(record), 8, 12).orElse(back);
        }
        assertEquals(refresher().candidate(o, "cand-1", 9, whole(o)), back, "the parts are the whole candidate");
        assertEquals(List.of(refresher().candidate(o, "cand-1", 9, whole(o))), refresher().candidateParts(o, "cand-1", 9, whole(o)),
                "one record when it fits");
    }
}
