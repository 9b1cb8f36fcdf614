package dev.curvewatch.trainer;

import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.schemas.AvroSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The follower without Kafka: events offered as encoded records, a recording target. */
class SnapshotFollowerTest {
    private static final String RUN = "follow-run";
    private static final AvroSerializer<SnapshotEvent> ENCODER = new AvroSerializer<>(SnapshotEvent.class);

    @TempDir
    Path root;

    private final Map<String, float[]> loaded = new LinkedHashMap<>();
    private final List<String> refused = new ArrayList<>();
    private final ByteArrayOutputStream log = new ByteArrayOutputStream();

    private SnapshotFollower follower(boolean apply) throws Exception {
        SnapshotFollower.Target target = new SnapshotFollower.Target() {
            @Override
            public Optional<LayerShape> layer(String name) {
                return name.equals("fc2") ? Optional.of(new LayerShape("fc2", 4, 3, true)) : Optional.empty();
            }

            @Override
            public void load(String layer, float[] weight, float[] bias) {
                loaded.put(layer + ".weight", weight);
                loaded.put(layer + ".bias", bias);
            }
        };
        return new SnapshotFollower(RUN, new SnapshotStore(root), target, apply,
                new PrintStream(log, true, StandardCharsets.UTF_8), new SnapshotFollower.Events() {
                    @Override
                    public void snapshotRefused(String snapshotId, String reason, String message) {
                        refused.add(snapshotId + ":" + reason);
                    }
                });
    }

    private SnapshotEvent write(String id, float[] w, float[] b) throws Exception {
        Path f = root.resolve(RUN).resolve(id + ".safetensors");
        Snapshots.write(f, RUN, Map.of("fc2", new float[][] {w, b}), Map.of("fc2", new long[] {4, 3}));
        return Snapshots.event(id, RUN, RUN + "/" + id + ".safetensors", f, "fc2").build();
    }

    @Test
    void appliesVerifiedSnapshotsInOrderAndRefusesBadOnes() throws Exception {
        SnapshotFollower f = follower(true);
        float[] w1 = Snapshots.values(12, 1);
        float[] w2 = Snapshots.values(12, 2);
        float[] b2 = Snapshots.values(4, 3);
        SnapshotEvent first = write("first", w1, new float[4]);
        SnapshotEvent bad = SnapshotEvent.newBuilder(write("bad", w1, new float[4])).setSha256("f".repeat(64)).build();
        SnapshotEvent second = write("second", w2, b2);
        f.offer(RUN, ENCODER.serialize("t", first));
        f.offer(RUN, ENCODER.serialize("t", bad));
        f.offer("other-run", ENCODER.serialize("t", second)); // another run's event is not ours
        f.offer(RUN, ENCODER.serialize("t", second));
        List<SnapshotFollower.Applied> applied = f.handlePending(41);
        assertEquals(List.of("first", "second"), applied.stream().map(SnapshotFollower.Applied::snapshotId).toList());
        assertEquals(41L, applied.get(1).atStep());
        assertEquals(7L, applied.get(1).snapshotStep());
        assertEquals(List.of("fc2"), applied.get(1).layers());
        assertEquals(Map.of("fc2", 0.9), applied.get(1).rhos());
        assertArrayEquals(w2, loaded.get("fc2.weight"), "the later snapshot's weights are in the model");
        assertArrayEquals(b2, loaded.get("fc2.bias"));
        assertEquals(List.of("bad:sha256"), refused);
        assertEquals(1, f.refused());
        assertEquals(Map.of("sha256", 1L), f.refusalReasons());
        assertTrue(f.handlePending(42).isEmpty(), "each event is handled once");
        Map<String, Object> s = f.summary();
        assertEquals(2L, s.get("snapshots_applied"));
        assertEquals(1L, s.get("snapshots_refused"));
        assertEquals(1L, s.get("snapshots_other_runs"));
        assertTrue(log.toString(StandardCharsets.UTF_8).contains("refused bad: snapshot "), log.toString(StandardCharsets.UTF_8));
    }

    @Test
    void withoutApplyAGoodSnapshotIsOnlyVerified() throws Exception {
        SnapshotFollower f = follower(false);
        f.offer(RUN, ENCODER.serialize("t", write("only", Snapshots.values(12, 4), new float[4])));
        f.offer(RUN, "garbage, not a record".getBytes(StandardCharsets.UTF_8));
        assertTrue(f.handlePending(3).isEmpty());
        assertTrue(loaded.isEmpty(), "nothing loaded");
        assertEquals(1, f.verifiedOnly());
        assertEquals(List.of("?:format"), refused);
        assertTrue(log.toString(StandardCharsets.UTF_8).contains("not applied: the run was started without --apply-snapshots"));
    }
}
