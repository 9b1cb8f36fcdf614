package dev.curvewatch.trainer;

import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.ContractChecks;
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
    private final List<String> loads = new ArrayList<>();
    private final List<String> refused = new ArrayList<>();
    private final ByteArrayOutputStream log = new ByteArrayOutputStream();
    private final List<GuardDecision> reports = new ArrayList<>();
    private int failLoads; // the next this many loads throw
    private boolean observerThrows;

    private SnapshotFollower follower(boolean apply) throws Exception {
        SnapshotFollower.Target target = new SnapshotFollower.Target() {
            @Override
            public Optional<LayerShape> layer(String name) {
                return name.equals("fc2") ? Optional.of(new LayerShape("fc2", 4, 3, true)) : Optional.empty();
            }

            @Override
            public void load(String layer, float[] weight, float[] bias) {
                loads.add(layer);
                if (failLoads > 0) {
                    failLoads--;
                    throw new IllegalStateException("model is busy");
                }
                loaded.put(layer + ".weight", weight);
                loaded.put(layer + ".bias", bias);
            }
        };
        return new SnapshotFollower(RUN, new SnapshotStore(root), target, apply,
                new PrintStream(log, true, StandardCharsets.UTF_8), new SnapshotFollower.Events() {
                    @Override
                    public void snapshotApplied(SnapshotFollower.Applied applied) {
                        if (observerThrows) {
                            throw new IllegalStateException("observer bug");
                        }
                    }

                    @Override
                    public void snapshotRefused(String snapshotId, String reason, String message) {
                        refused.add(snapshotId + ":" + reason);
                    }
                }).reportingTo(reports::add);
    }

    private String log() {
        return log.toString(StandardCharsets.UTF_8);
    }

    private SnapshotEvent write(String id, float[] w, float[] b) throws Exception {
        Path f = root.resolve(RUN).resolve(id + ".safetensors");
        Snapshots.write(f, RUN, Map.of("fc2", new float[][] {w, b}), Map.of("fc2", new long[] {4, 3}));
        return Snapshots.event(id, RUN, RUN + "/" + id + ".safetensors", f, "fc2").build();
    }

    private SnapshotEvent write(String id, long step, float[] w) throws Exception {
        return SnapshotEvent.newBuilder(write(id, w, new float[4])).setStep(step).build();
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
        // the guard hears of each: applied after which step (it re-arms on that), refused with the reason
        assertEquals(List.of(GuardAction.APPLIED, GuardAction.REFUSED, GuardAction.APPLIED),
                reports.stream().map(GuardDecision::getAction).toList());
        GuardDecision applied2 = reports.get(2);
        assertEquals(41L, applied2.getStep());
        assertEquals("second", applied2.getSnapshotId());
        assertEquals(second.getIdempotencyKey(), applied2.getIdempotencyKey());
        assertEquals("trainer:" + RUN, applied2.getSource());
        assertEquals(List.of("fc2"), applied2.getLayers().stream().map(dev.curvewatch.avro.LayerRho::getLayer).toList());
        assertTrue(reports.get(1).getReason().startsWith("sha256"), reports.get(1).getReason());
        reports.forEach(ContractChecks::checkGuardDecision);
    }

    @Test
    void aFailedEditRequestIsSkippedNeverLoaded() throws Exception {
        SnapshotFollower f = follower(true);
        SnapshotEvent written = write("good", Snapshots.values(12, 5), new float[4]);
        SnapshotEvent failed = SnapshotEvent.newBuilder(written).setSnapshotId("failed").setUri("").setSha256("").setSizeBytes(0)
                .setStatus(dev.curvewatch.avro.SnapshotStatus.FAILED).setReason("NOT_READY: layer 'fc2' has no calibrated rho").build();
        f.offer(RUN, ENCODER.serialize("t", failed));
        f.offer(RUN, ENCODER.serialize("t", written));
        List<SnapshotFollower.Applied> applied = f.handlePending(9);
        assertEquals(List.of("good"), applied.stream().map(SnapshotFollower.Applied::snapshotId).toList(), "the written one still applies");
        assertEquals(List.of("fc2"), loads, "the failed one never touched the model");
        assertEquals(1, f.failedRequests());
        assertTrue(refused.isEmpty(), "not a refusal of a snapshot: there was none");
        assertEquals(1L, f.summary().get("snapshots_failed_requests"));
        assertTrue(log().contains("failed at the service (failed): NOT_READY: layer 'fc2' has no calibrated rho"), log());
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
        assertEquals(List.of(GuardAction.NOT_APPLIED), reports.stream().map(GuardDecision::getAction).toList(),
                "a run that only verifies tells the guard so, which stops editing instead of waiting");
    }

    @Test
    void aRepeatedSnapshotIsNotLoadedAgain() throws Exception {
        SnapshotFollower f = follower(true);
        float[] edited = Snapshots.values(12, 5);
        SnapshotEvent e = write("once", 7, edited);
        f.offer(RUN, ENCODER.serialize("t", e));
        assertEquals(1, f.handlePending(10).size());
        // training goes on; the service sends the same event again (a retry, a second instance)
        f.offer(RUN, ENCODER.serialize("t", e));
        f.offer(RUN, ENCODER.serialize("t", e));
        assertTrue(f.handlePending(20).isEmpty(), "not applied again");
        // the same id with another file (a second instance rewrote it): still the same edit request
        SnapshotEvent rewritten = write("once", 7, Snapshots.values(12, 6));
        f.offer(RUN, ENCODER.serialize("t", rewritten));
        assertTrue(f.handlePending(21).isEmpty());
        assertEquals(List.of("fc2"), loads, "loaded once");
        assertArrayEquals(edited, loaded.get("fc2.weight"));
        assertEquals(3, f.duplicates());
        assertEquals(0, f.refused());
        assertEquals(3L, f.summary().get("snapshots_duplicate"));
        assertEquals(1L, f.summary().get("snapshots_applied"));
        assertTrue(log().contains("once was applied already (sha256 " + e.getSha256() + "; this event says "
                + rewritten.getSha256() + "); not loaded again"), log());
    }

    @Test
    void aSnapshotOlderThanTheLastAppliedOneOfItsLayersIsRefused() throws Exception {
        SnapshotFollower f = follower(true);
        float[] newer = Snapshots.values(12, 7);
        f.offer(RUN, ENCODER.serialize("t", write("at-30", 30, newer)));
        f.offer(RUN, ENCODER.serialize("t", write("at-20", 20, Snapshots.values(12, 8))));
        float[] same = Snapshots.values(12, 9);
        f.offer(RUN, ENCODER.serialize("t", write("also-at-30", 30, same))); // another edit of the same weights: fine
        assertEquals(List.of("at-30", "also-at-30"), f.handlePending(40).stream().map(SnapshotFollower.Applied::snapshotId).toList());
        assertEquals(List.of("at-20:stale"), refused);
        assertArrayEquals(same, loaded.get("fc2.weight"));
        assertEquals(Map.of("stale", 1L), f.refusalReasons());
        assertTrue(log().contains("snapshot at-20 edits fc2 as of step 20, older than step 30"), log());
    }

    @Test
    void aLoadThatThrowsIsHandledOnceAndLaterSnapshotsStillApply() throws Exception {
        SnapshotFollower f = follower(true);
        failLoads = 1;
        f.offer(RUN, ENCODER.serialize("t", write("busy", 7, Snapshots.values(12, 10))));
        assertTrue(f.handlePending(1).isEmpty());
        assertTrue(f.handlePending(2).isEmpty());
        assertTrue(f.handlePending(3).isEmpty());
        assertEquals(List.of("fc2"), loads, "tried once, not at every step");
        assertEquals(1, f.loadFailures());
        assertTrue(log().contains("loading fc2 of busy failed: java.lang.IllegalStateException: model is busy"), log());
        float[] next = Snapshots.values(12, 11);
        f.offer(RUN, ENCODER.serialize("t", write("next", 8, next)));
        assertEquals(1, f.handlePending(4).size());
        assertArrayEquals(next, loaded.get("fc2.weight"));
        assertEquals(1L, f.summary().get("snapshot_load_failures"));
    }

    @Test
    void anObserverThatThrowsDoesNotMakeTheSnapshotLoadAgain() throws Exception {
        SnapshotFollower f = follower(true);
        observerThrows = true;
        f.offer(RUN, ENCODER.serialize("t", write("watched", 7, Snapshots.values(12, 12))));
        assertEquals(1, f.handlePending(1).size(), "applied, although the observer threw");
        assertTrue(f.handlePending(2).isEmpty());
        assertEquals(List.of("fc2"), loads);
        assertEquals(1, f.observerFailures());
        assertEquals(1L, f.summary().get("snapshot_observer_failures"));
        assertTrue(log().contains("snapshotApplied(watched) threw java.lang.IllegalStateException: observer bug"), log());
    }
}
