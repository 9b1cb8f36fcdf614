package dev.curvewatch.it;

import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.it.bench.ChildJvm;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 14 item 3: two service instances, each a JVM of its own with the shipped defaults, share
 * four runs through the edit-request group (two runs each); the instance that owns the first run
 * is killed with SIGKILL while a candidate of each of its runs is out, and the other takes its runs
 * over from the state on Kafka: the candidate (service-state), the trainer's answer read
 * meanwhile, the alert state (the signals it followed), the calibration (history), the answered
 * edit requests (snapshots). The same feed ({@link PipelineFeed}) runs meanwhile against one instance
 * on a broker of its own, and the signals, alerts and snapshots are compared. Refresh signals that depend on
 * the previous basis (drift, refresh mode) are not compared: the taker's first refresh of a run has
 * no previous basis of its own.
 */
@Tag("integration")
class MultiInstanceFailoverIT {
    @Test
    void aKilledInstancesRunsAreTakenOverAndMatchASingleInstance() throws Exception {
        Path dir = Path.of("target", "multi-instance-it").toAbsolutePath(); // kept after a failure: the child JVMs' logs
        PipelineFeed.deleteTree(dir);
        List<String> runs = PipelineFeed.runsOnDistinctPartitions(4, 4);
        // the reference (one instance, its own broker) runs beside the failover run, not after it: the two share nothing
        // but the machine, and each waits mostly on its brokers and child JVMs (CI time, issue 15)
        CompletableFuture<PipelineFeed.Outcome> reference = CompletableFuture.supplyAsync(() -> {
            try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka-single")).capturePartitions(4).start()) {
                return PipelineFeed.run(kafka.bootstrapServers(), kafka.topics(), dir.resolve("single"), runs, 1, -1, (v, s, w, sv, r) -> 0);
            } catch (Exception e) {
                throw new CompletionException(e);
            }
        });
        PipelineFeed.Outcome ha;
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka-ha")).capturePartitions(4).start()) {
            ha = PipelineFeed.run(kafka.bootstrapServers(), kafka.topics(), dir.resolve("ha"), runs, 2, PipelineFeed.KILL_AT,
                    MultiInstanceFailoverIT::killTheFirstRunsOwner);
        }
        PipelineFeed.Outcome single = reference.get(10, TimeUnit.MINUTES);
        // the work was shared, and no run's refreshes or calibrations came from two instances at once
        Set<String> instances = new HashSet<>();
        ha.publishers().values().forEach(instances::addAll);
        assertTrue(instances.size() >= 2, "signals came from " + instances);
        assertTrue(ha.takeoverSeconds() > 0, "the killed instance's runs were taken over");
        System.out.printf("takeover: %.1f s from the kill to the taker's first signal of a taken run%n", ha.takeoverSeconds());

        assertEquals(single.signals().keySet(), ha.signals().keySet(), "the same signals (run, name, factor version)");
        single.signals().forEach((k, v) -> assertEquals(v, ha.signals().get(k), 1e-9 * Math.max(1, Math.abs(v)), k));
        ha.signalCounts().forEach((k, n) -> assertEquals(1, n, "published once: " + k));
        assertFalse(single.alerts().isEmpty(), "the feed makes the gap rules fire");
        assertEquals(single.alerts(), ha.alerts(), "the same alerts (run, rule, status, step)");
        assertEquals(single.snapshots(), ha.snapshots(), "the same snapshots, each answered once");
        ha.snapshots().forEach((k, n) -> assertEquals(1, n, "one SnapshotEvent for " + k));
    }

    /**
     * At the kill version: once every run's candidate is out and recorded on service-state, SIGKILL
     * the first run's owner, release the held answers, and wait for the taker's calibrations.
     */
    private static double killTheFirstRunsOwner(int v, long step, PipelineFeed.Watch watch, List<ChildJvm> services, List<String> runs)
            throws Exception {
        if (v != PipelineFeed.KILL_AT) {
            return 0;
        }
        watch.await(() -> runs.stream().allMatch(run -> watch.held.containsKey(run) && watch.recorded(run, watch.held.get(run))),
                PipelineFeed.VERSION_WAIT, "candidates of step " + step + " out and recorded");
        String victim = watch.publisherOf(runs.get(0));
        ChildJvm killed = services.stream().filter(s -> victim.equals("service:it-" + s.log().getFileName().toString().replace(".log", "")))
                .findFirst().orElseThrow(() -> new AssertionError("no instance " + victim));
        killed.kill();
        long killedAt = System.currentTimeMillis();
        Set<String> taken = new HashSet<>();
        runs.stream().filter(run -> victim.equals(watch.publisherOf(run))).forEach(taken::add);
        watch.releaseHeld();
        watch.await(() -> taken.stream().allMatch(run -> watch.calibrated(run, step)), PipelineFeed.VERSION_WAIT,
                "calibrations of step " + step + " by the taker");
        for (String run : taken) {
            assertFalse(victim.equals(watch.publisherOf(run)), run + " taken over");
        }
        return (watch.firstSignalAfter(taken, killedAt) - killedAt) / 1000.0;
    }
}
