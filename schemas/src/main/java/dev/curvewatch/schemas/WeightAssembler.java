package dev.curvewatch.schemas;

import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.WeightSnapshot;

import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * Puts weight snapshots split into row parts back together, for consumers of the weights topic.
 * Parts of one run/layer arrive in topic order (one key, one partition); {@link #accept} returns
 * the whole W when the last part of a step arrives. At most one step in progress per layer, so
 * memory stays at one weight per layer. A part that does not continue the step in progress
 * (a lost or foreign part) is rejected with a reason and the incomplete step is discarded,
 * never completed with stale rows.
 */
public final class WeightAssembler {

    /** A whole weight: row-major d_out x d_in, and the bias (null if the layer has none). */
    public record Assembled(String runId, String layer, long step, int dOut, int dIn, float[] weight, float[] bias) {
    }

    private static final class InProgress {
        final long step;
        final int parts;
        final float[] weight;
        float[] bias;
        int nextPart;
        int nextRow;

        InProgress(long step, int parts, int rows, int cols) {
            this.step = step;
            this.parts = parts;
            this.weight = new float[Math.multiplyExact(rows, cols)];
        }
    }

    private final Map<String, InProgress> inProgress = new HashMap<>();
    private long discardedSteps;

    /**
     * @param layer the layer as registered by the run (dims are checked against it)
     * @throws InvalidRecordException if the part is malformed ({@link ContractChecks#checkWeights})
     *         or does not continue the step in progress; the caller dead-letters it and goes on
     */
    public Optional<Assembled> accept(WeightSnapshot w, LayerInfo layer) {
        ContractChecks.checkWeights(w, layer);
        String key = CurvewatchTopics.runLayerKey(w.getRunId(), w.getLayer());
        InProgress p = inProgress.get(key);
        if (w.getPart() == 0) {
            if (p != null) {
                discardedSteps++;
            }
            p = new InProgress(w.getStep(), w.getParts(), layer.getDOut(), layer.getDIn());
            inProgress.put(key, p);
        } else if (p == null || p.step != w.getStep() || p.nextPart != w.getPart() || p.parts != w.getParts()) {
            String expected = p == null ? "a part 0" : "part " + p.nextPart + " of " + p.parts + " of step " + p.step;
            if (p != null) {
                inProgress.remove(key);
                discardedSteps++;
            }
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "weights of " + key + ": part " + w.getPart()
                    + " of " + w.getParts() + " of step " + w.getStep() + " arrived while expecting " + expected
                    + (p == null ? "" : "; the incomplete step is discarded"));
        }
        if (w.getRowOffset() != p.nextRow) {
            inProgress.remove(key);
            discardedSteps++;
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "weights of " + key + " step " + w.getStep()
                    + ": part " + w.getPart() + " starts at row " + w.getRowOffset() + ", expected row " + p.nextRow);
        }
        float[] rows = TensorCodec.toFloatArray(w.getWeight(), "weight");
        System.arraycopy(rows, 0, p.weight, p.nextRow * layer.getDIn(), rows.length);
        p.nextRow += w.getWeight().getShape().get(0);
        if (w.getBias() != null) {
            p.bias = TensorCodec.toFloatArray(w.getBias(), "bias");
        }
        p.nextPart++;
        if (p.nextPart < p.parts) {
            return Optional.empty();
        }
        inProgress.remove(key);
        if (p.nextRow != layer.getDOut()) {
            discardedSteps++;
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "weights of " + key + " step " + w.getStep()
                    + ": " + p.parts + " parts hold " + p.nextRow + " rows, the layer has " + layer.getDOut());
        }
        return Optional.of(new Assembled(w.getRunId(), w.getLayer(), w.getStep(), layer.getDOut(), layer.getDIn(),
                p.weight, p.bias));
    }

    /**
     * Drops the steps in progress of every layer of a run (a consumer that forgets a run, e.g.
     * to stay within a bound on runs, must not keep its half-assembled weights).
     */
    public void forgetRun(String runId) {
        String prefix = CurvewatchTopics.runLayerKey(runId, "");
        inProgress.keySet().removeIf(k -> k.startsWith(prefix));
    }

    /** Layers with a step in progress (parts received, the last one not yet). */
    public int inProgress() {
        return inProgress.size();
    }

    /** Steps abandoned because a part was missing, foreign or out of place. */
    public long discardedSteps() {
        return discardedSteps;
    }

    /**
     * How many rows of a d_out x d_in float32 weight go in one part of at most
     * {@code maxRecordBytes}, leaving room for a d_out bias and 4 KiB of other fields (ids are at
     * most 128 characters). Any split into consecutive rows assembles; this is the Java trainer's.
     */
    public static int rowsPerPart(int dOut, int dIn, int maxRecordBytes) {
        long rowBytes = 4L * dIn;
        long room = maxRecordBytes - 4096L - 4L * dOut;
        if (room < rowBytes) {
            throw new IllegalArgumentException("a " + dOut + " x " + dIn + " weight cannot be split into records of "
                    + maxRecordBytes + " bytes");
        }
        return (int) Math.min(dOut, room / rowBytes);
    }
}
