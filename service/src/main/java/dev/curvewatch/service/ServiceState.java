package dev.curvewatch.service;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.SnapshotEvent;

import java.util.List;
import java.util.Optional;
import java.util.OptionalDouble;

/**
 * A read-only view of the running service's state, for embedding code (the demo) and tests.
 * Every method returns a copy taken under the state's locks; none blocks on Kafka.
 */
public interface ServiceState {
    /** Whether the start-up catch-up (registry, factors, weights, snapshots, own signal history) has finished. */
    boolean isCaughtUp();

    /** Known run ids, sorted. */
    List<String> runIds();

    /** Every layer of a run (registered or seen in factors), sorted by name. */
    List<LayerStatus> layers(String runId);

    Optional<LayerStatus> layer(String runId, String layer);

    /** A signal series, oldest first (bounded by {@code signals.history.points}). */
    List<SignalPoint> signal(String runId, String layer, String name);

    /** The newest value of a series. */
    OptionalDouble latest(String runId, String layer, String name);

    /** The latest per-example scores of a layer, highest first (at most 200). */
    List<ExampleScore> topScores(String runId, String layer, dev.curvewatch.avro.ScoreKind kind);

    /** Snapshots of a run, newest first, as read back from the snapshots topic. */
    List<SnapshotEvent> snapshots(String runId);

    /** Alerts this service published to alerts.raw, newest first (bounded by {@code alerts.history}). */
    List<Alert> rawAlerts();

    /** Alerts of the de-duplicated alerts topic, newest first. */
    List<Alert> alerts();

    /** Dead letters this service published. */
    long deadLetters();
}
