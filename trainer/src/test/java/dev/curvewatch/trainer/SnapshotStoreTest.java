package dev.curvewatch.trainer;

import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.curvature.safetensors.SafetensorsWriter;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Path canonicalisation, size and sha256, and tensor checks of snapshot files, without Kafka. Uris
 * are {@code <run>/<snapshot id>.safetensors} of their own event ({@code SnapshotUris}' grammar), so
 * every fixture names its file after its event's snapshot id.
 */
class SnapshotStoreTest {
    private static final String RUN = "snap-run";
    private static final Map<String, LayerShape> LAYERS = Map.of(
            "fc1", new LayerShape("fc1", 16, 32, true), "fc2", new LayerShape("fc2", 16, 16, true));
    private static final Function<String, Optional<LayerShape>> WATCHED = n -> Optional.ofNullable(LAYERS.get(n));

    @TempDir
    Path dir;
    private Path root;
    private Path outside;
    private SnapshotStore store;
    private final float[] w = Snapshots.values(16 * 16, 1);
    private final float[] b = Snapshots.values(16, 2);

    @BeforeEach
    void store() throws Exception {
        root = Files.createDirectories(dir.resolve("store"));
        outside = Files.createDirectories(dir.resolve("outside"));
        store = new SnapshotStore(root);
    }

    private Path good(Path file) throws Exception {
        Snapshots.write(file, RUN, Map.of("fc2", new float[][] {w, b}), Map.of("fc2", new long[] {16, 16}));
        return file;
    }

    private String refusal(SnapshotEvent e) {
        return refusal(e, RUN);
    }

    private String refusal(SnapshotEvent e, String run) {
        SnapshotStore.Refusal r = assertThrows(SnapshotStore.Refusal.class, () -> store.verify(e, run, WATCHED));
        return r.reason() + ": " + r.getMessage();
    }

    @Test
    void aGoodSnapshotIsReadExactly() throws Exception {
        Path f = good(root.resolve(RUN).resolve("s1.safetensors"));
        SnapshotStore.Verified v = store.verify(Snapshots.event("s1", RUN, RUN + "/s1.safetensors", f, "fc2").build(), RUN, WATCHED);
        assertEquals(List.of("fc2"), List.copyOf(v.weights().keySet()));
        assertArrayEquals(w, v.weights().get("fc2"));
        assertArrayEquals(b, v.biases().get("fc2"));
        assertEquals(f.toRealPath(), v.file());
    }

    @Test
    void pathsOutsideTheStoreAreRefused() throws Exception {
        Path out = good(outside.resolve("x.safetensors"));
        String sha = Snapshots.sha256(out);
        long size = Files.size(out);
        for (String uri : List.of("../outside/x.safetensors", RUN + "/../../outside/x.safetensors", out.toString(),
                "file://" + out, "file:" + out, "C:\\x.safetensors", "", "/" + RUN + "/x.safetensors",
                RUN + "/sub/x.safetensors", RUN + "/x", RUN + "//x.safetensors", RUN + "/%2e%2e.safetensors",
                "./" + RUN + "/x.safetensors", RUN + "/..safetensors")) {
            SnapshotEvent e = Snapshots.event("x", RUN, RUN + "/x", out).setUri(uri).setSha256(sha).setSizeBytes(size).build();
            String why = refusal(e);
            assertTrue(why.startsWith("path: "), uri + " -> " + why);
        }
        assertTrue(refusal(Snapshots.event("x", RUN, "../outside/x.safetensors", out).build())
                .contains("is not <run_id>/<snapshot_id>.safetensors"));
        assertTrue(refusal(Snapshots.event("x", RUN, out.toString(), out).build())
                .contains("is not <run_id>/<snapshot_id>.safetensors"));
    }

    @Test
    void theUriMustBeTheEventsOwnRunAndSnapshotId() throws Exception {
        Path f = good(root.resolve(RUN).resolve("s1.safetensors"));
        good(root.resolve("other-run").resolve("s1.safetensors"));
        String why = refusal(Snapshots.event("s2", RUN, RUN + "/s1.safetensors", f, "fc2").build());
        assertTrue(why.startsWith("path: ") && why.contains("'" + RUN + "/s2.safetensors'"), why);
        why = refusal(Snapshots.event("s1", RUN, "other-run/s1.safetensors", f, "fc2").build());
        assertTrue(why.startsWith("path: "), why);
    }

    @Test
    void symbolicLinksOutOfTheStoreAreRefused() throws Exception {
        Path out = good(outside.resolve("x.safetensors"));
        Files.createDirectories(root.resolve(RUN));
        Files.createSymbolicLink(root.resolve(RUN).resolve("link.safetensors"), out);
        String linked = "linked-run"; // a run directory that is a link out of the store
        Files.createSymbolicLink(root.resolve(linked), outside);
        String why = refusal(Snapshots.event("link", RUN, RUN + "/link.safetensors", out).build());
        assertTrue(why.startsWith("path: ") && why.contains("outside the snapshot store")
                && why.contains(out.toRealPath().toString()), why);
        why = refusal(Snapshots.event("x", linked, linked + "/x.safetensors", out).build(), linked);
        assertTrue(why.startsWith("path: ") && why.contains("outside the snapshot store"), why);
        // a link that stays inside the store is fine
        Path inside = good(root.resolve(RUN).resolve("real.safetensors"));
        Files.createSymbolicLink(root.resolve(RUN).resolve("alias.safetensors"), inside);
        store.verify(Snapshots.event("alias", RUN, RUN + "/alias.safetensors", inside, "fc2").build(), RUN, WATCHED);
    }

    @Test
    void missingFilesAndDirectoriesAreRefused() throws Exception {
        Path f = good(root.resolve(RUN).resolve("s.safetensors"));
        assertTrue(refusal(Snapshots.event("nope", RUN, RUN + "/nope.safetensors", f).build()).startsWith("missing: "));
        Files.createDirectories(root.resolve(RUN).resolve("dir.safetensors"));
        assertTrue(refusal(Snapshots.event("dir", RUN, RUN + "/dir.safetensors", f).build()).contains("not a regular file"));
    }

    @Test
    void sizeAndHashMustMatch() throws Exception {
        Path f = good(root.resolve(RUN).resolve("s.safetensors"));
        SnapshotEvent.Builder e = Snapshots.event("s", RUN, RUN + "/s.safetensors", f, "fc2");
        String why = refusal(e.setSha256("0".repeat(64)).build());
        assertTrue(why.startsWith("sha256: ") && why.contains(Snapshots.sha256(f)), why);
        assertTrue(refusal(Snapshots.event("s", RUN, RUN + "/s.safetensors", f, "fc2").setSha256("xyz").build())
                .startsWith("sha256: "));
        why = refusal(Snapshots.event("s", RUN, RUN + "/s.safetensors", f, "fc2").setSizeBytes(Files.size(f) + 1).build());
        assertTrue(why.startsWith("size: "), why);
    }

    @Test
    void tensorsMustBeWatchedLayersWithTheirShapes() throws Exception {
        Path shape = root.resolve(RUN).resolve("shape.safetensors");
        Snapshots.write(shape, RUN, Map.of("fc2", new float[][] {new float[8 * 16]}), Map.of("fc2", new long[] {8, 16}));
        String why = refusal(Snapshots.event("shape", RUN, RUN + "/shape.safetensors", shape, "fc2").build());
        assertTrue(why.startsWith("shape: ") && why.contains("[8, 16]") && why.contains("[16, 16]"), why);

        Path unknown = root.resolve(RUN).resolve("unknown.safetensors");
        Snapshots.write(unknown, RUN, Map.of("fc3", new float[][] {new float[10 * 16]}), Map.of("fc3", new long[] {10, 16}));
        assertTrue(refusal(Snapshots.event("unknown", RUN, RUN + "/unknown.safetensors", unknown, "fc3").build())
                .startsWith("unknown-tensor: "));

        Path f64 = root.resolve(RUN).resolve("f64.safetensors");
        new SafetensorsWriter().addFloat64("fc2.weight", new long[] {16, 16}, new double[256]).write(f64);
        assertTrue(refusal(Snapshots.event("f64", RUN, RUN + "/f64.safetensors", f64, "fc2").build()).startsWith("dtype: "));

        Path nan = root.resolve(RUN).resolve("nan.safetensors");
        float[] bad = w.clone();
        bad[40] = Float.NaN;
        Snapshots.write(nan, RUN, Map.of("fc2", new float[][] {bad}), Map.of("fc2", new long[] {16, 16}));
        assertTrue(refusal(Snapshots.event("nan", RUN, RUN + "/nan.safetensors", nan, "fc2").build()).startsWith("non-finite: "));

        Path garbage = root.resolve(RUN).resolve("garbage.safetensors");
        Files.write(garbage, new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
        assertTrue(refusal(Snapshots.event("garbage", RUN, RUN + "/garbage.safetensors", garbage, "fc2").build()).startsWith("format: "));
    }

    @Test
    void runAndLayerListMustAgree() throws Exception {
        Path f = good(root.resolve(RUN).resolve("s.safetensors"));
        assertTrue(refusal(Snapshots.event("s", "other", RUN + "/s.safetensors", f, "fc2").build()).startsWith("run: "));
        assertTrue(refusal(Snapshots.event("s", RUN, RUN + "/s.safetensors", f, "fc1").build()).startsWith("layers: "));
        Path other = root.resolve(RUN).resolve("other.safetensors");
        Snapshots.write(other, "other-run", Map.of("fc2", new float[][] {w}), Map.of("fc2", new long[] {16, 16}));
        assertTrue(refusal(Snapshots.event("other", RUN, RUN + "/other.safetensors", other, "fc2").build()).startsWith("run: "));
        // an event without a layer list takes the file's layers
        SnapshotEvent e = Snapshots.event("s", RUN, RUN + "/s.safetensors", f).setLayers(List.<LayerRho>of()).build();
        assertEquals(List.of("fc2"), List.copyOf(store.verify(e, RUN, WATCHED).weights().keySet()));
    }
}
