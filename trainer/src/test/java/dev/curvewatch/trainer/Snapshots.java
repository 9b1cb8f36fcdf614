package dev.curvewatch.trainer;

import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.curvature.safetensors.SafetensorsWriter;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/** Writes snapshot files and their events the way SERVICE-CONTRACT §4 describes them. */
final class Snapshots {
    private Snapshots() {
    }

    /** A layer's edited weight (and bias) as the service writes it: F32 {@code <layer>.weight}, {@code <layer>.bias}. */
    static void write(Path file, String run, Map<String, float[][]> layers, Map<String, long[]> shapes) throws IOException {
        SafetensorsWriter w = new SafetensorsWriter();
        w.metadata(Map.of("curvewatch.run_id", run, "curvewatch.step", "7", "curvewatch.code_version", "test"));
        for (Map.Entry<String, float[][]> e : layers.entrySet()) {
            w.addFloat32(e.getKey() + ".weight", shapes.get(e.getKey()), e.getValue()[0]);
            if (e.getValue().length > 1) {
                w.addFloat32(e.getKey() + ".bias", new long[] {shapes.get(e.getKey())[0]}, e.getValue()[1]);
            }
        }
        Files.createDirectories(file.getParent());
        w.write(file);
    }

    static String sha256(Path file) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(file)));
    }

    /** The event for a file inside the store (uri relative to the store), with its true size and hash. */
    static SnapshotEvent.Builder event(String id, String run, String uri, Path file, String... layers) throws Exception {
        List<LayerRho> rhos = new ArrayList<>();
        for (String l : layers) {
            rhos.add(new LayerRho(l, 0.9));
        }
        return SnapshotEvent.newBuilder().setSnapshotId(id).setRunId(run).setStep(7).setIdempotencyKey("key-" + id)
                .setUri(uri).setSha256(sha256(file)).setSizeBytes(Files.size(file)).setLayers(rhos)
                .setFactorVersions(Map.of()).setCodeVersion("test").setCreatedMs(System.currentTimeMillis());
    }

    static float[] values(int n, long seed) {
        java.util.Random r = new java.util.Random(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }
}
