package dev.curvewatch.service.internal;

import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Edited snapshot weights against numpy/scipy (golden/make_snapshot_golden.py). */
class SnapshotEditorTest {
    static Path golden() throws Exception {
        return Path.of(SnapshotEditorTest.class.getResource("/golden/snapshot_golden.safetensors").toURI());
    }

    @Test
    void editedWeightsMatchTheNumpyReference(@TempDir Path dir) throws Exception {
        try (SafetensorsFile f = SafetensorsFile.open(golden())) {
            double[] a = f.readAsDoubles("A");
            double[] g = f.readAsDoubles("G");
            float[] w = f.readFloat32("W");
            float[] bias = f.readFloat32("bias");
            double[] rhos = f.readAsDoubles("rhos");
            int dIn = 24;
            int dOut = 16;
            Eigenbasis ea = SymmetricEigensolvers.best().decompose(a, dIn, Precision.FLOAT64).orThrow();
            Eigenbasis eg = SymmetricEigensolvers.best().decompose(g, dOut, Precision.FLOAT64).orThrow();
            double worst = 0;
            for (int k = 0; k < rhos.length; k++) {
                SnapshotEditor.LayerEdited e = SnapshotEditor.edit(new SnapshotEditor.LayerInput("fc", dOut, dIn, w, bias, 7, eg, ea,
                        rhos[k], 3));
                double[] want = f.readAsDoubles("edited." + k);
                long kept = f.data("kept." + k).asLongBuffer().get(0);
                assertEquals(kept, e.keptPairs(), "kept pairs at rho " + rhos[k]);
                double scale = 0;
                double err = 0;
                for (int i = 0; i < want.length; i++) {
                    scale = Math.max(scale, Math.abs(want[i]));
                    err = Math.max(err, Math.abs(e.weight()[i] - want[i]));
                }
                double rel = err / scale;
                worst = Math.max(worst, rel);
                // float32 output: one rounding of values of order `scale`
                assertTrue(rel < 2e-7, "rho " + rhos[k] + ": max relative error " + rel);
                assertArrayEquals(bias, e.bias(), "bias untouched");
            }
            System.out.printf("snapshot W' vs numpy: max relative error %.2e over %d rhos%n", worst, rhos.length);
        }
    }

    @Test
    void rhoOneKeepsTheWeightBitForBitAndTheFileCarriesProvenance(@TempDir Path dir) throws Exception {
        try (SafetensorsFile f = SafetensorsFile.open(golden())) {
            Eigenbasis ea = SymmetricEigensolvers.best().decompose(f.readAsDoubles("A"), 24, Precision.FLOAT64).orThrow();
            Eigenbasis eg = SymmetricEigensolvers.best().decompose(f.readAsDoubles("G"), 16, Precision.FLOAT64).orThrow();
            float[] w = f.readFloat32("W");
            SnapshotEditor.LayerEdited same = SnapshotEditor.edit(new SnapshotEditor.LayerInput("fc1", 16, 24, w, null, 5, eg, ea, 1.0, 2));
            assertArrayEquals(w, same.weight());
            SnapshotEditor.LayerEdited cut = SnapshotEditor.edit(new SnapshotEditor.LayerInput("fc2", 16, 24, w, f.readFloat32("bias"), 9, eg, ea, 0.9, 4));
            SnapshotStore store = new SnapshotStore(dir);
            SnapshotStore.Stored s = store.write("run-1", "snap-x", SnapshotEditor.file("run-1", "snap-x", "key-1", "v-test", List.of(same, cut)));
            try (SafetensorsFile out = SafetensorsFile.open(s.path())) {
                Map<String, String> m = out.metadata();
                assertEquals("run-1", m.get("curvewatch.run_id"));
                assertEquals("5", m.get("curvewatch.step"), "the oldest weight step");
                assertEquals("0.9", m.get("curvewatch.rho.fc2"));
                assertEquals("4", m.get("curvewatch.factor_version.fc2"));
                assertEquals(Long.toString(cut.keptPairs()), m.get("curvewatch.kept_pairs.fc2"));
                assertEquals("key-1", m.get("curvewatch.idempotency_key"));
                assertEquals("v-test", m.get("curvewatch.code_version"));
                assertArrayEquals(w, out.readFloat32("fc1.weight"));
                assertArrayEquals(cut.weight(), out.readFloat32("fc2.weight"));
                assertArrayEquals(f.readFloat32("bias"), out.readFloat32("fc2.bias"));
                assertTrue(out.tensor("fc1.bias").isEmpty());
                assertArrayEquals(new long[]{16, 24}, out.tensor("fc2.weight").orElseThrow().shape());
            }
        }
    }
}
