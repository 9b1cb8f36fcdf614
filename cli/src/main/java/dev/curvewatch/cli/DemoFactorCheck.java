package dev.curvewatch.cli;

import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.contracts.FactorCheckpoints;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.KafkaClientSettings;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Step 4 of the demo: waits until the worker's factor checkpoints cover every token the trainer
 * published, then compares them with the trainer's own in-process factors (the same captures, so
 * equal up to rounding) and summarises their spectra.
 */
final class DemoFactorCheck {
    private final List<String> layers;
    private final int timeoutS;

    DemoFactorCheck(List<String> layers, int timeoutS) {
        this.layers = List.copyOf(layers);
        this.timeoutS = timeoutS;
    }

    /** Tokens per layer the trainer published: the in-process factors' counts in its summary. */
    @SuppressWarnings("unchecked")
    Map<String, Long> expectedTokens(Map<String, Object> trained) {
        Map<String, Object> spectra = (Map<String, Object>) trained.get("spectra");
        Map<String, Long> tokens = new LinkedHashMap<>();
        for (String layer : layers) {
            tokens.put(layer, ((Number) ((Map<String, Object>) spectra.get(layer)).get("tokens")).longValue());
        }
        return tokens;
    }

    /** Polls the factors topic until each layer's latest manifest covers the published tokens; null on timeout. */
    Map<String, FactorCheckpoint> awaitFactors(String bootstrap, LocalKafka kafka, String run,
                                                       Map<String, Long> expected) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(timeoutS).toNanos();
        Map<String, FactorCheckpoint> byLayer = new LinkedHashMap<>();
        while (System.nanoTime() < deadline) {
            byLayer.clear();
            try {
                // the scan may take the time left (the whole topic, every version, on a loaded machine): a fixed 10 s threw
                for (FactorCheckpoint cp : FactorCheckpoints.readLatest(KafkaClientSettings.forBootstrap(bootstrap),
                        kafka.topics(), Duration.ofNanos(Math.max(1_000_000_000L, deadline - System.nanoTime()))).values()) {
                    if (cp.runId().equals(run)) {
                        byLayer.put(cp.layer(), cp);
                    }
                }
            } catch (org.apache.kafka.common.errors.TimeoutException slow) {
                // a loaded machine: the worker is still writing; try again until the deadline
                System.out.println("      (factors topic not read to its end yet: " + slow.getMessage() + "; trying again)");
            }
            boolean complete = true;
            for (Map.Entry<String, Long> e : expected.entrySet()) {
                FactorCheckpoint cp = byLayer.get(e.getKey());
                complete &= cp != null && cp.tokenCount() == e.getValue();
            }
            if (complete) {
                return byLayer;
            }
            Thread.sleep(1000);
        }
        return null;
    }

    /** Worker factors vs the trainer's in-process ones (same captures, so equal up to rounding), plus spectra. */
    Map<String, Object> compareAndSummarise(Map<String, FactorCheckpoint> factors, Path trainerFactors)
            throws IOException {
        Map<String, Object> out = new LinkedHashMap<>();
        try (SafetensorsFile f = SafetensorsFile.open(trainerFactors)) {
            for (String layer : layers) {
                FactorCheckpoint cp = factors.get(layer);
                double[] a = cp.meanA();
                double[] g = cp.meanG();
                double errA = relativeError(a, f.readAsDoubles(layer + ".A"));
                double errG = relativeError(g, f.readAsDoubles(layer + ".G"));
                SpectrumSummary sa = SpectrumSummary.of(SymmetricEigensolvers.best()
                        .decompose(a, (int) Math.round(Math.sqrt(a.length)), Precision.FLOAT64).orThrow().values());
                SpectrumSummary sg = SpectrumSummary.of(SymmetricEigensolvers.best()
                        .decompose(g, (int) Math.round(Math.sqrt(g.length)), Precision.FLOAT64).orThrow().values());
                System.out.printf("      %s: checkpoint v%d, %d tokens; vs trainer's in-process factors: "
                        + "rel. error A %.2e, G %.2e%n", layer, cp.version(), cp.tokenCount(), errA, errG);
                System.out.printf("        A: %s%n        G: %s%n", sa, sg);
                Map<String, Object> l = new LinkedHashMap<>();
                l.put("version", cp.version());
                l.put("tokens", cp.tokenCount());
                l.put("relative_error_A_vs_trainer", errA);
                l.put("relative_error_G_vs_trainer", errG);
                l.put("spectrum_A", sa);
                l.put("spectrum_G", sg);
                out.put(layer, l);
            }
        }
        return out;
    }

    /** ‖x − y‖_F / ‖y‖_F. */
    static double relativeError(double[] x, double[] y) {
        if (x.length != y.length) {
            return Double.POSITIVE_INFINITY;
        }
        double num = 0;
        double den = 0;
        for (int i = 0; i < x.length; i++) {
            double d = x[i] - y[i];
            num += d * d;
            den += y[i] * y[i];
        }
        return Math.sqrt(num / den);
    }
}
