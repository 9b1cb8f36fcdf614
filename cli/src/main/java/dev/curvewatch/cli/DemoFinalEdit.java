package dev.curvewatch.cli;

import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.trainer.experiments.Mlp;
import dev.curvewatch.trainer.experiments.NoisyLabelsScorer;
import dev.curvewatch.trainer.experiments.WatchedTraining;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;

/** Step 6 of the demo: an edit requested through the authenticated REST API, measured on the final model. */
final class DemoFinalEdit {
    private final List<String> layers;

    DemoFinalEdit(List<String> layers) {
        this.layers = List.copyOf(layers);
    }

    /**
     * POSTs an edit of the layer whose latest calibrated edit keeps the most probe accuracy (the
     * service's own signals; never the flipped set), waits for its snapshot, and scores the final
     * model with that layer replaced by the snapshot's weight.
     */
    Map<String, Object> request(CurvewatchService service, String run, String bearer, WatchedTraining.Config tc,
                                          Path runDir) throws IOException, InterruptedException {
        Map<String, Object> out = new LinkedHashMap<>();
        String layer = null;
        double bestAcc = Double.NEGATIVE_INFINITY;
        for (String l : layers) {
            OptionalDouble acc = service.state().latest(run, l, "probe_accuracy_edited");
            OptionalDouble rho = service.state().latest(run, l, "calibrated_rho");
            if (acc.isPresent() && rho.isPresent() && rho.getAsDouble() < 1 && acc.getAsDouble() > bestAcc) {
                bestAcc = acc.getAsDouble();
                layer = l;
            }
        }
        if (layer == null) {
            System.out.println("      no layer has a calibrated edit (rho < 1): nothing to request");
            return out;
        }
        String key = "demo-final-" + run;
        String body = "{\"layers\":[{\"layer\":\"" + layer + "\"}],\"reason\":\"demo: final edit\",\"idempotency_key\":\"" + key + "\"}";
        HttpClient http = HttpClient.newHttpClient();
        HttpRequest.Builder post = HttpRequest.newBuilder(URI.create(service.url() + "/api/runs/" + run + "/edits"))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        int unauthenticated = http.send(post.build(), HttpResponse.BodyHandlers.discarding()).statusCode();
        HttpResponse<String> accepted = http.send(post.header("Authorization", "Bearer " + bearer).build(),
                HttpResponse.BodyHandlers.ofString());
        System.out.printf("      POST /api/runs/%s/edits {%s, calibrated rho}: without the token %d, with it %d %s%n", run, layer,
                unauthenticated, accepted.statusCode(), accepted.body());
        out.put("layer", layer);
        out.put("status_without_token", unauthenticated);
        out.put("status_with_token", accepted.statusCode());
        if (accepted.statusCode() != 202) {
            return out;
        }
        SnapshotEvent snap = null;
        long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
        while (snap == null && System.nanoTime() < deadline) {
            snap = service.state().snapshots(run).stream().filter(e -> key.equals(e.getIdempotencyKey())).findFirst().orElse(null);
            if (snap == null) {
                Thread.sleep(200);
            }
        }
        if (snap == null) {
            System.out.println("      no snapshot for " + key + " within 90 s");
            return out;
        }
        Path file = service.config().snapshotDir().resolve(snap.getUri()).normalize();
        out.put("snapshot_id", snap.getSnapshotId());
        out.put("snapshot_step", snap.getStep());
        out.put("rho", DemoLoop.rhos(snap).get(layer));
        out.put("sha256", snap.getSha256());
        int index = layers.indexOf(layer);
        try (Mlp mlp = WatchedTraining.model(tc); SafetensorsFile f = SafetensorsFile.open(file)) {
            WatchedTraining.loadWeights(mlp, runDir.resolve("weights.safetensors"));
            NoisyLabelsScorer scorer = new NoisyLabelsScorer(mlp, WatchedTraining.data(tc));
            Map<String, Double> before = scorer.evaluate(null, -1);
            Map<String, Double> after = scorer.evaluate(f.readFloat32(layer + ".weight"), index);
            out.put("before", before);
            out.put("after", after);
            System.out.printf("      snapshot %s: %s at rho %.5f, weights of step %d (sha256 %s…)%n", snap.getSnapshotId(), layer,
                    DemoLoop.rhos(snap).get(layer), snap.getStep(), snap.getSha256().substring(0, 12));
            System.out.println("                                   final model   + snapshot");
            for (String k : before.keySet()) {
                System.out.printf("      %-28s %8.4f %12.4f%n", k, before.get(k), after.get(k));
            }
        }
        return out;
    }

}
