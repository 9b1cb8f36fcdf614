package dev.curvewatch.cli;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.trainer.experiments.Mlp;
import dev.curvewatch.trainer.SnapshotFollower;
import dev.curvewatch.trainer.experiments.WatchedTraining;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;
import java.util.Set;

/**
 * The demo's narration: after every epoch, the labels in force, memorization, the service's gap
 * per layer, and every new alert and guard decision; every snapshot the trainer applied or refused.
 * Keeps what it printed for the summary ({@link #applied}, {@link #epochs}). Training thread only.
 */
final class DemoNarration {
    private final CurvewatchService service;
    private final String run;
    private final List<String> layers;
    private long lastStep = -1;
    private final Set<String> printedAlerts = new LinkedHashSet<>();
    private final Set<String> printedDecisions = new LinkedHashSet<>();
    final List<Map<String, Object>> applied = new ArrayList<>();
    final List<Map<String, Object>> epochs = new ArrayList<>();

    DemoNarration(CurvewatchService service, String run, List<String> layers) {
        this.service = service;
        this.run = run;
        this.layers = List.copyOf(layers);
    }

    /** The last step trained when the last epoch ended (-1 before the first). */
    long lastStep() {
        return lastStep;
    }

    void epoch(WatchedTraining.EpochProgress p) {
        lastStep = p.step() - 1;
        StringBuilder gaps = new StringBuilder();
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("epoch", p.epoch());
        e.put("step", p.step());
        e.put("flipped_labels", p.flippedLabels());
        e.put("flipped_memorized", p.flippedMemorized());
        e.put("test_accuracy", p.testAccuracy());
        for (String layer : layers) {
            OptionalDouble gap = service.state().latest(run, layer, "memorization_gap");
            OptionalDouble rho = service.state().latest(run, layer, "calibrated_rho");
            gaps.append(String.format("  %s gap %s rho %s", layer, gap.isPresent() ? String.format("%+.3f", gap.getAsDouble()) : "-",
                    rho.isPresent() ? String.format("%.5f", rho.getAsDouble()) : "-"));
            e.put(layer + "_gap", gap.isPresent() ? gap.getAsDouble() : null);
        }
        epochs.add(e);
        System.out.printf("      epoch %2d/%d %s: flipped memorized %.3f, test %.4f |%s%n", p.epoch(), p.epochs(),
                p.flippedLabels() ? "flipped labels" : "true labels   ", p.flippedMemorized(), p.testAccuracy(), gaps);
        for (Alert a : service.state().alerts()) {
            String key = a.getFingerprint() + "/" + a.getStatus() + "/" + a.getSeverity() + "/" + a.getFirstSeenMs();
            if (run.equals(a.getRunId()) && printedAlerts.add(key)) {
                System.out.printf("      ALERT %s %s %s: %s (rule %s, step %d)%n", a.getSeverity(), a.getStatus(),
                        a.getLayer(), a.getSummary(), a.getRule(), a.getStep());
            }
        }
        printDecisions();
        System.out.flush();
    }

    /** New guard decisions, one line each; the guard's waits (SKIP) in short. */
    void printDecisions() {
        for (GuardDecision d : service.guardDecisions(run)) {
            if (!printedDecisions.add(d.getId())) {
                continue;
            }
            String reason = d.getAction() == GuardAction.SKIP && d.getReason().length() > 110
                    ? d.getReason().substring(0, 110) + "..." : d.getReason();
            System.out.printf("      GUARD %-16s %s step %d (%s): %s%n", d.getAction(), d.getLayer() == null ? "-" : d.getLayer(),
                    d.getStep(), d.getSource().replaceFirst(":.*", ""), reason);
        }
    }

    void snapshotApplied(SnapshotFollower.Applied a, Mlp model) {
        applied.add(a.toMap());
        System.out.printf("      SNAPSHOT %s applied after step %d: %s (edited at step %d), training continues from it%n",
                a.snapshotId(), a.atStep(), a.rhos(), a.snapshotStep());
    }

    void snapshotRefused(String snapshotId, String reason, String message) {
        System.out.printf("      snapshot %s refused: %s %s%n", snapshotId, reason, message);
    }
}
