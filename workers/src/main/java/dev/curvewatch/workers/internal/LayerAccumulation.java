package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.curvature.FactorMode;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.workers.WorkerMetrics;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.FloatBuffer;
import java.util.HashSet;
import java.util.Set;
import java.util.function.Function;

/**
 * Adds an accepted capture to its layer's factors: takes the layer on at its first capture when
 * the budget allows it and its checkpoint was not refused at restore, checks the capture's shapes
 * against the factors held, stages the tensors ({@link StagingBuffers}) and counts the work
 * (records, tokens, FLOPs, seconds; GFLOP/s between checkpoints). Used by the poll thread only.
 */
final class LayerAccumulation {
    private static final Logger log = LoggerFactory.getLogger(LayerAccumulation.class);

    private final OwnedLayers layers;
    private final FactorBudget budget;
    private final Precision precision;
    private final WorkerMetrics metrics;
    private final StagingBuffers staging = new StagingBuffers();
    /** Layers refused by the budget, logged once each (every capture of theirs is still a dead letter). */
    private final Set<String> refusedLayers = new HashSet<>();
    private double flopsSinceCheckpoint;
    private long nanosSinceCheckpoint;

    LayerAccumulation(OwnedLayers layers, FactorBudget budget, Precision precision, WorkerMetrics metrics) {
        this.layers = layers;
        this.budget = budget;
        this.precision = precision;
        this.metrics = metrics;
    }

    /**
     * Adds the capture to the factors of its layer (owned by captures partition {@code partition}).
     *
     * @param restoreRefusal why a layer's checkpoint was not restored, or null ({@link LayerRestore#refusal})
     * @return the tokens added
     * @throws InvalidRecordException the layer is refused (budget, restore, EMA decay) or its shape changed: a dead letter
     */
    int add(CaptureValidator.Accepted ok, int partition, Function<String, String> restoreRefusal) {
        Capture c = ok.capture();
        int dIn = ok.layer().getDIn();
        int dOut = ok.layer().getDOut();
        LayerFactors lf = layers.get(ok.key());
        if (lf == null) {
            lf = takeOn(ok, partition, dIn, dOut, restoreRefusal);
        } else if (lf.a.dim() != dIn || lf.g.dim() != dOut) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "layer " + ok.key() + " has factors of d_in="
                    + lf.a.dim() + " d_out=" + lf.g.dim() + " from earlier captures; the run now registers d_in=" + dIn
                    + " d_out=" + dOut);
        }
        int tokens = c.getActivations().getShape().get(0);
        long t0 = System.nanoTime();
        FloatBuffer a = staging.activations(c.getActivations());
        FloatBuffer g = staging.gradients(c.getGradients());
        lf.a.add(c.getStep(), a, tokens);
        lf.g.add(c.getStep(), g, tokens);
        long dt = System.nanoTime() - t0;
        double flops = 2.0 * tokens * ((double) dIn * dIn + (double) dOut * dOut);
        lf.captures++;
        lf.dirty = true;
        flopsSinceCheckpoint += flops;
        nanosSinceCheckpoint += dt;
        metrics.inc("curvewatch_worker_records_total", 1, "result", "accumulated");
        metrics.inc("curvewatch_worker_tokens_total", tokens);
        metrics.inc("curvewatch_worker_accumulate_flops_total", flops);
        metrics.inc("curvewatch_worker_accumulate_seconds_total", dt / 1e9);
        return tokens;
    }

    private LayerFactors takeOn(CaptureValidator.Accepted ok, int partition, int dIn, int dOut,
                                Function<String, String> restoreRefusal) {
        String refusal = restoreRefusal.apply(ok.key());
        if (refusal == null) {
            refusal = budget.refusal(ok.key(), dIn, dOut, layers.factorBytes());
        }
        if (refusal != null) {
            if (refusedLayers.add(ok.key())) {
                log.warn("not accumulating {}: its captures are dead letters: {}", ok.key(), refusal);
            }
            throw new InvalidRecordException(RejectReason.OVERSIZED, refusal);
        }
        RunInfo run = ok.run();
        FactorMode mode = run.getFactorMode() == dev.curvewatch.avro.FactorMode.EMA ? FactorMode.EMA : FactorMode.CUMULATIVE;
        double decay = mode == FactorMode.EMA ? run.getEmaDecay() : 1.0;
        if (mode == FactorMode.EMA && !(decay > 0 && decay <= 1)) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "run '" + run.getRunId()
                    + "' is registered with EMA decay " + decay + ", outside (0, 1]");
        }
        LayerFactors lf = LayerFactors.fresh(ok.key(), ok.capture().getRunId(), ok.capture().getLayer(), partition, dIn, dOut,
                precision, mode, decay);
        layers.put(lf);
        return lf;
    }

    /** A checkpoint committed: publishes the GFLOP/s of the accumulation since the previous one, and starts again. */
    void checkpointed() {
        if (nanosSinceCheckpoint > 0) {
            double gflops = flopsSinceCheckpoint / nanosSinceCheckpoint;
            metrics.gauge("curvewatch_worker_accumulate_gflops", () -> gflops);
        }
        flopsSinceCheckpoint = 0;
        nanosSinceCheckpoint = 0;
    }
}
