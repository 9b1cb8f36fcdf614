package dev.curvewatch.cli;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.ScoreKind;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.service.SignalPoint;
import dev.curvewatch.trainer.experiments.Metrics;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;

/** What the demo's live loop did, read back from the service after training: alerts, scores, snapshots, the guard. */
final class DemoLoop {
    private DemoLoop() {
    }

    /**
     * Alerts per layer against the injection step, counted in calibrated refreshes (DESIGN §6: within 3
     * refreshes of memorization starting, none before), the edit requests the rules made and the
     * snapshots the trainer applied.
     */
    static Map<String, Object> loop(CurvewatchService service, String run, List<String> watched, long injectedStep,
                                    DemoNarration live, boolean[] flipped) {
        Map<String, Object> out = new LinkedHashMap<>();
        Map<String, Object> layers = new LinkedHashMap<>();
        for (String layer : watched) {
            Map<String, Object> l = new LinkedHashMap<>();
            List<SignalPoint> gap = service.state().signal(run, layer, "memorization_gap");
            l.put("calibrated_refreshes", gap.size());
            l.put("calibrated_refreshes_before_injection", gap.stream().filter(p -> p.step() < injectedStep).count());
            Optional<Alert> first = service.state().rawAlerts().stream()
                    .filter(a -> run.equals(a.getRunId()) && layer.equals(a.getLayer()) && a.getStatus() == AlertStatus.FIRING)
                    // the earliest step; of the rules that fired on that same value, the most severe
                    .min(java.util.Comparator.comparingLong(Alert::getStep)
                            .thenComparing(a -> a.getSeverity().ordinal(), java.util.Comparator.reverseOrder()));
            if (first.isPresent()) {
                Alert a = first.get();
                long refreshesAfter = gap.stream().filter(p -> p.step() >= injectedStep && p.step() <= a.getStep()).count();
                l.put("first_alert_step", a.getStep());
                l.put("first_alert_rule", a.getRule());
                l.put("first_alert_severity", a.getSeverity().toString());
                l.put("first_alert_value", a.getValue());
                l.put("first_alert_threshold", a.getThreshold());
                l.put("refreshes_from_injection_to_alert", refreshesAfter);
                l.put("first_alert_top_examples_flipped", flippedAmong(a.getTopExamples(), flipped));
                l.put("first_alert_top_examples", a.getTopExamples().size());
                System.out.printf("      %s: %d calibrated refreshes (%d before the injection at step %d); first alert at step %d "
                                + "(%s %s, gap %.3f > %.3f), refresh %d after the injection%n", layer, gap.size(),
                        (Long) l.get("calibrated_refreshes_before_injection"), injectedStep, a.getStep(), a.getSeverity(),
                        a.getRule(), a.getValue(), a.getThreshold(), refreshesAfter);
                System.out.printf("        its top %d examples by exact edit sensitivity: %d with flipped labels%n",
                        a.getTopExamples().size(), (Integer) l.get("first_alert_top_examples_flipped"));
            } else {
                System.out.printf("      %s: %d calibrated refreshes, no alert%n", layer, gap.size());
            }
            List<ExampleScore> top = service.state().topScores(run, layer, ScoreKind.EXACT);
            top = top.subList(0, Math.min(20, top.size()));
            l.put("latest_top20_flipped", flippedAmong(top, flipped));
            System.out.printf("        latest refresh: %d of the top %d training examples by exact edit sensitivity have flipped "
                    + "labels (%.0f%% of the training set does)%n", (Integer) l.get("latest_top20_flipped"), top.size(),
                    100.0 * Metrics.countTrue(flipped) / flipped.length);
            layers.put(layer, l);
        }
        out.put("layers", layers);
        List<Map<String, Object>> snaps = new ArrayList<>();
        for (SnapshotEvent e : service.state().snapshots(run)) {
            Map<String, Object> s = new LinkedHashMap<>();
            s.put("snapshot_id", e.getSnapshotId());
            s.put("step", e.getStep());
            s.put("idempotency_key", e.getIdempotencyKey());
            s.put("layers", rhos(e));
            snaps.add(0, s); // oldest first
        }
        out.put("snapshots", snaps);
        out.put("snapshots_applied_by_trainer", live.applied);
        out.put("epochs", live.epochs);
        System.out.printf("      %d edited snapshot(s) written by the service from alert-triggered edit requests; "
                + "the trainer applied %d and trained on%n", snaps.size(), live.applied.size());
        return out;
    }

    /** How many of these examples (sample ids {@code train-<index>}, as the trainer names them) have flipped labels. */
    static int flippedAmong(List<ExampleScore> examples, boolean[] flipped) {
        int n = 0;
        for (ExampleScore e : examples) {
            String id = e.getSampleId();
            if (id.startsWith("train-")) {
                int i = Integer.parseInt(id.substring("train-".length()));
                n += i >= 0 && i < flipped.length && flipped[i] ? 1 : 0;
            }
        }
        return n;
    }

    static Map<String, Double> rhos(SnapshotEvent e) {
        Map<String, Double> m = new LinkedHashMap<>();
        for (LayerRho lr : e.getLayers()) {
            m.put(lr.getLayer(), lr.getRho());
        }
        return m;
    }


    /**
     * The guard's record (issue 13): its decisions by action, the first alert-triggered edit the
     * trainer applied, the largest "flipped memorized" of every epoch that ended after it, test
     * accuracy before the injection (the last clean epoch) and at the end, and all alerts.
     *
     * @param cleanEpochs epochs trained on the true labels first (the demo's injection epoch, or all in the control)
     */
    static Map<String, Object> guard(CurvewatchService service, String run, DemoNarration live, int cleanEpochs,
                                     Map<String, Double> finalModel) {
        Map<String, Object> out = new LinkedHashMap<>();
        List<GuardDecision> decisions = service.guardDecisions(run);
        Map<String, Long> byAction = new TreeMap<>();
        List<Map<String, Object>> list = new ArrayList<>();
        long firstApplied = -1;
        for (GuardDecision d : decisions) {
            byAction.merge(d.getAction().name(), 1L, Long::sum);
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("action", d.getAction().name());
            m.put("step", d.getStep());
            m.put("layer", d.getLayer());
            m.put("source", d.getSource());
            m.put("layers", d.getLayers().stream().map(LayerRho::getLayer).toList());
            m.put("idempotency_key", d.getIdempotencyKey());
            m.put("reason", d.getReason());
            list.add(m);
            if (firstApplied < 0 && d.getAction() == GuardAction.APPLIED && d.getIdempotencyKey() != null
                    && d.getIdempotencyKey().startsWith("rule:")) {
                firstApplied = d.getStep();
            }
        }
        long edits = byAction.getOrDefault("EDIT", 0L) + byAction.getOrDefault("ESCALATE", 0L);
        out.put("decisions_by_action", byAction);
        out.put("edits", edits);
        long alerts = service.state().rawAlerts().stream().filter(a -> run.equals(a.getRunId()) && a.getStatus() == AlertStatus.FIRING)
                .map(Alert::getFingerprint).distinct().count();
        out.put("firing_alert_fingerprints", alerts);
        out.put("first_alert_edit_applied_after_step", firstApplied);
        double before = Double.NaN;
        double maxAfter = Double.NaN;
        int epochsAfter = 0;
        for (Map<String, Object> e : live.epochs) {
            int epoch = (Integer) e.get("epoch");
            long step = ((Number) e.get("step")).longValue();
            double memorized = (Double) e.get("flipped_memorized");
            if (epoch == cleanEpochs) {
                before = (Double) e.get("test_accuracy");
            }
            if (firstApplied >= 0 && step > firstApplied + 1) { // the epoch trained on from the edited weights
                epochsAfter++;
                maxAfter = Double.isNaN(maxAfter) ? memorized : Math.max(maxAfter, memorized);
            }
        }
        Map<String, Object> last = live.epochs.isEmpty() ? Map.of() : live.epochs.get(live.epochs.size() - 1);
        double finalMemorized = finalModel.getOrDefault("flipped_memorized", Double.NaN);
        if (firstApplied >= 0 && !Double.isNaN(finalMemorized)) {
            maxAfter = Double.isNaN(maxAfter) ? finalMemorized : Math.max(maxAfter, finalMemorized); // the saved model counts too
        }
        out.put("epochs_after_first_edit", epochsAfter);
        out.put("max_flipped_memorized_after_first_edit", Double.isNaN(maxAfter) ? null : maxAfter);
        out.put("test_accuracy_before_injection", Double.isNaN(before) ? null : before);
        out.put("last_epoch_test_accuracy", last.get("test_accuracy"));
        out.put("last_epoch_flipped_memorized", last.get("flipped_memorized"));
        out.put("final_test_accuracy", finalModel.get("test_accuracy"));
        out.put("final_flipped_memorized", finalModel.get("flipped_memorized"));
        out.put("decisions", list);
        System.out.printf("      guard: %d edit(s), decisions %s; first alert-triggered edit applied after step %d; "
                        + "largest flipped memorized in the %d epochs after it: %s; test accuracy %s before the injection, %s at the end%n",
                edits, byAction, firstApplied, epochsAfter, Double.isNaN(maxAfter) ? "-" : String.format("%.3f", maxAfter),
                Double.isNaN(before) ? "-" : String.format("%.4f", before), finalModel.get("test_accuracy"));
        return out;
    }
}
