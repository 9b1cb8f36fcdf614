package dev.curvewatch.curvature.edit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.curvewatch.curvature.Golden;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.curvature.safetensors.SafetensorsFormatException;
import dev.curvewatch.curvature.safetensors.SafetensorsWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The offline editor on files built from the numpy golden layer (30 x 24, ρ = 0.6). */
class SafetensorsEditorTest {
    @TempDir
    Path dir;
    private Path weights;
    private Path factors;
    private Path out;
    private final SafetensorsEditor editor = new SafetensorsEditor(SymmetricEigensolvers.best(), "test-1");
    private final double[] w = Golden.doubles("edit.w");

    @BeforeEach
    void files() throws IOException {
        weights = dir.resolve("w.safetensors");
        factors = dir.resolve("f.safetensors");
        out = dir.resolve("out.safetensors");
        new SafetensorsWriter().metadata(Map.of("format", "pt"))
                .addFloat64("fc1.weight", new long[] {30, 24}, w)
                .addFloat32("fc1.bias", new long[] {3}, new float[] {1, 2, 3})
                .addFloat64("fc2.weight", new long[] {30, 24}, w)
                .write(weights);
        writeFactors(Golden.doubles("edit.A"), Golden.doubles("edit.G"));
    }

    private void writeFactors(double[] a, double[] g) throws IOException {
        float[] g32 = new float[g.length];
        for (int i = 0; i < g.length; i++) {
            g32[i] = (float) g[i];
        }
        long[] sa = {(long) Math.sqrt(a.length), (long) Math.sqrt(a.length)};
        long[] sg = {(long) Math.sqrt(g.length), (long) Math.sqrt(g.length)};
        new SafetensorsWriter()
                .addFloat64("fc1.A", sa, a).addFloat64("fc1.G", sg, g)
                .addFloat64("fc2.A", sa, a).addFloat32("fc2.G", sg, g32)
                .write(factors);
    }

    @Test
    void editsTheNamedLayerAndCopiesEverythingElse() throws IOException {
        List<LayerEdit> report = editor.edit(weights, factors, RhoSpec.parse("fc1=0.6"), List.of(), out);
        assertEquals(1, report.size());
        LayerEdit e = report.get(0);
        assertEquals("fc1", e.layer());
        assertEquals(Golden.longs("edit.kept")[0], e.keptPairs());
        assertTrue(e.keptMassFraction() >= 0.6);
        try (SafetensorsFile f = SafetensorsFile.open(out)) {
            assertTrue(Golden.relativeError(f.readAsDoubles("fc1.weight"), Golden.doubles("edit.w_edited")) < 1e-9);
            assertArrayEquals(w, f.readAsDoubles("fc2.weight"), 0);
            assertArrayEquals(new float[] {1, 2, 3}, f.readFloat32("fc1.bias"));
            assertEquals("pt", f.metadata().get("format"));
            assertEquals("0.6", f.metadata().get("curvewatch.rho.fc1"));
            assertEquals(Long.toString(e.keptPairs()), f.metadata().get("curvewatch.kept_pairs.fc1"));
            assertEquals("test-1", f.metadata().get("curvewatch.code_version"));
            assertTrue(f.metadata().containsKey("curvewatch.kept_mass.fc1"));
        }
    }

    @Test
    void defaultRhoEditsEveryLayerWithFactorsAndKeepsFloat32Factors() throws IOException {
        List<LayerEdit> report = editor.edit(weights, factors, RhoSpec.parse("1.0"), List.of(), out);
        assertEquals(List.of("fc1", "fc2"), report.stream().map(LayerEdit::layer).toList());
        try (SafetensorsFile f = SafetensorsFile.open(out)) {
            // ρ = 1 keeps every pair: the weights come back up to rounding
            assertTrue(Golden.relativeError(f.readAsDoubles("fc2.weight"), w) < 1e-12);
        }
        List<LayerEdit> only = editor.edit(weights, factors, RhoSpec.parse("0.9,fc2=0.5"), List.of("fc2"), out);
        assertEquals(0.5, only.get(0).rho());
    }

    private void assertFailsWithoutOutput(String fragment, RhoSpec rho, List<String> layers) {
        Exception e = assertThrows(Exception.class, () -> editor.edit(weights, factors, rho, layers, out));
        assertTrue(e.getMessage().contains(fragment), e.getMessage());
        assertFalse(Files.exists(out), "no output file after a failure");
    }

    private long leftovers() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().endsWith(".tmp")).count();
        }
    }

    @Test
    void badInputsFailClearlyAndLeaveNoOutput() throws IOException {
        assertFailsWithoutOutput("missing factor 'fc3.A'", RhoSpec.parse("0.6"), List.of("fc3"));
        assertFailsWithoutOutput("no rho given for layer 'fc2'", RhoSpec.parse("fc1=0.6"), List.of("fc2"));
        double[] nanA = Golden.doubles("edit.A");
        nanA[5] = Double.NaN;
        writeFactors(nanA, Golden.doubles("edit.G"));
        assertFailsWithoutOutput("non-finite value NaN", RhoSpec.parse("0.6"), List.of("fc1"));
        writeFactors(new double[24 * 24], new double[20 * 20]);
        Exception shape = assertThrows(Exception.class,
                () -> new SafetensorsEditor(SymmetricEigensolvers.best(), "t").edit(weights, factors, RhoSpec.of(0.6),
                        List.of("fc1"), out));
        assertTrue(shape.getMessage().contains("must be 30x30"), shape.getMessage());
        byte[] whole = Files.readAllBytes(weights);
        Files.write(weights, java.util.Arrays.copyOf(whole, whole.length - 10));
        SafetensorsFormatException truncated = assertThrows(SafetensorsFormatException.class,
                () -> editor.edit(weights, factors, RhoSpec.of(0.6), List.of(), out));
        assertTrue(truncated.getMessage().contains("truncated"), truncated.getMessage());
        assertFalse(Files.exists(out));
        assertEquals(0, leftovers(), "temporary files are removed");
    }

    @Test
    void rhoSpecParsing() {
        RhoSpec s = RhoSpec.parse("0.9, fc1=0.6");
        assertEquals(0.6, s.rhoFor("fc1"));
        assertEquals(0.9, s.rhoFor("other"));
        assertThrows(IllegalArgumentException.class, () -> RhoSpec.parse("fc1=1.5"));
        assertThrows(IllegalArgumentException.class, () -> RhoSpec.parse("abc"));
        assertThrows(IllegalArgumentException.class, () -> RhoSpec.parse("0.5,0.6"));
        assertThrows(IllegalArgumentException.class, () -> RhoSpec.parse("fc1=0.5,fc1=0.6"));
    }
}
