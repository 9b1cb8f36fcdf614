package dev.curvewatch.workers;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.TensorCodec;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** Deterministic runs and captures for worker tests: capture i of a layer is a function of (seed, layer, i). */
public final class TestCaptures {
    public static final AvroSerializer<Capture> CAPTURES = new AvroSerializer<>(Capture.class);
    public static final AvroSerializer<RunInfo> RUNS = new AvroSerializer<>(RunInfo.class);

    private TestCaptures() {
    }

    public static RunInfo run(String runId, FactorMode mode, double decay, LayerInfo... layers) {
        return RunInfo.newBuilder().setRunId(runId).setModel("test-mlp").setCreatedMs(1L)
                .setLayers(List.of(layers)).setFactorMode(mode).setEmaDecay(decay).build();
    }

    public static LayerInfo layer(String name, int dIn, int dOut) {
        return LayerInfo.newBuilder().setName(name).setDIn(dIn).setDOut(dOut).build();
    }

    /** Activation rows tokens x dIn of capture i (values in [-1, 1) with a per-layer scale). */
    public static float[] activations(long seed, String layer, int i, int tokens, int dIn) {
        return values(seed * 31 + layer.hashCode() * 7L + i * 1_000_003L, tokens * dIn, 1f);
    }

    public static float[] gradients(long seed, String layer, int i, int tokens, int dOut) {
        return values(seed * 37 + layer.hashCode() * 11L + i * 999_983L + 5, tokens * dOut, 3f);
    }

    private static float[] values(long seed, int n, float scale) {
        Random r = new Random(seed);
        float[] v = new float[n];
        for (int k = 0; k < n; k++) {
            v[k] = (r.nextFloat() * 2 - 1) * scale;
        }
        return v;
    }

    public static Capture capture(long seed, String runId, LayerInfo layer, int i, int tokens, long step) {
        List<String> ids = new ArrayList<>();
        for (int t = 0; t < tokens; t++) {
            ids.add("ex-" + i + "-" + t);
        }
        return Capture.newBuilder().setRunId(runId).setLayer(layer.getName()).setStep(step)
                .setActivations(TensorCodec.ofFloats(activations(seed, layer.getName(), i, tokens, layer.getDIn()), tokens, layer.getDIn()))
                .setGradients(TensorCodec.ofFloats(gradients(seed, layer.getName(), i, tokens, layer.getDOut()), tokens, layer.getDOut()))
                .setSampleIds(ids).setTimestampMs(1000L + i).build();
    }

    public static byte[] bytes(Capture c) {
        return CAPTURES.serialize(null, c);
    }
}
