package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.CapturePublisher;

import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.edit.LayerEdit;
import dev.curvewatch.curvature.edit.RhoSpec;
import dev.curvewatch.curvature.edit.SafetensorsEditor;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/** train (offline) -> weights + factors -> `edit` logic -> train again from the edited snapshot. */
class ClosingTheLoopTest {

    @Test
    void continuesFromAnEditedSnapshot(@TempDir Path dir) throws Exception {
        Path weights = dir.resolve("w.safetensors");
        Path factors = dir.resolve("f.safetensors");
        Path edited = dir.resolve("edited.safetensors");
        new WatchedTraining(config(1, null, weights, factors), System.out).run();
        List<LayerEdit> edits = new SafetensorsEditor(SymmetricEigensolvers.best(), "test")
                .edit(weights, factors, RhoSpec.parse("fc2=0.9"), List.of("fc2"), edited);
        assertEquals(1, edits.size());
        float[] before;
        float[] after;
        try (SafetensorsFile w = SafetensorsFile.open(weights); SafetensorsFile e = SafetensorsFile.open(edited)) {
            before = w.readFloat32("fc2.weight");
            after = e.readFloat32("fc2.weight");
            assertArrayEquals(w.readFloat32("fc1.weight"), e.readFloat32("fc1.weight"));
        }
        assertNotEquals(before[0], after[0]);
        try (Mlp mlp = new Mlp(99, 32, 32, 32, 10)) {
            WatchedTraining.loadWeights(mlp, edited);
            assertArrayEquals(after, mlp.weight(1));
        }
        // one more epoch starting from the edited weights
        Path next = dir.resolve("next.safetensors");
        List<WatchedTraining.EpochProgress> seen = new java.util.ArrayList<>();
        Map<String, Object> r = new WatchedTraining(config(1, edited, next, null), System.out, seen::add).run();
        assertEquals(20L, r.get("steps"));
        assertEquals(1, seen.size(), "one progress event per epoch");
        assertEquals(20L, seen.get(0).step());
        assertEquals(0L, seen.get(0).dropped());
    }

    private static WatchedTraining.Config config(int epochs, Path init, Path save, Path saveFactors) {
        return new WatchedTraining.Config("loop", 3, 0.1, 32, epochs, 100, 1e-3f, 0, 0, true, 0, null,
                CapturePublisher.Policy.BLOCK, 1 << 20, init, save, saveFactors);
    }
}
