package dev.curvewatch.service.internal;

import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.safetensors.SafetensorsWriter;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * The content of an edited snapshot (SERVICE-CONTRACT §4): per layer W' = U_G ((U_Gᵀ W U_A) ⊙ M) U_Aᵀ
 * with the keep-mass mask at the layer's rho, on the float32 spectra the calibration used
 * ({@link LayerRefresh#maskAsSent}), rounded to float32 once; the bias unchanged; provenance in the
 * safetensors metadata. No I/O.
 */
public final class SnapshotEditor {
    /** One layer to edit: its latest weight and eigenbases. */
    public record LayerInput(String layer, int dOut, int dIn, float[] weight, float[] bias, long weightStep, Eigenbasis g,
                             Eigenbasis a, double rho, long factorVersion) {
    }

    /** One edited layer. */
    public record LayerEdited(String layer, int dOut, int dIn, float[] weight, float[] bias, long weightStep, double rho,
                              long factorVersion, long keptPairs) {
    }

    private SnapshotEditor() {
    }

    public static LayerEdited edit(LayerInput in) {
        if (!(in.rho() > 0 && in.rho() <= 1)) {
            throw new IllegalArgumentException("rho must be in (0, 1], got " + in.rho());
        }
        if (in.g().size() != in.dOut() || in.a().size() != in.dIn() || in.weight().length != (long) in.dOut() * in.dIn()) {
            throw new IllegalArgumentException("layer " + in.layer() + ": weight " + in.weight().length + " values, bases "
                    + in.g().size() + " and " + in.a().size() + ", expected " + in.dOut() + " x " + in.dIn());
        }
        if (in.rho() == 1) { // keep every pair: exactly the weight, no rounding through the bases
            return new LayerEdited(in.layer(), in.dOut(), in.dIn(), in.weight().clone(), in.bias(), in.weightStep(), 1.0,
                    in.factorVersion(), (long) in.dOut() * in.dIn());
        }
        KeepMassMask mask = LayerRefresh.maskAsSent(in.g(), in.a(), in.rho());
        float[] edited = new CurvatureEdit(in.g(), in.a()).apply(in.weight(), mask);
        return new LayerEdited(in.layer(), in.dOut(), in.dIn(), edited, in.bias(), in.weightStep(), in.rho(), in.factorVersion(),
                mask.keptPairs());
    }

    /** The safetensors file: {@code <layer>.weight} (float32, d_out x d_in), {@code <layer>.bias} when present, and metadata. */
    public static SafetensorsWriter file(String runId, String snapshotId, String idempotencyKey, String codeVersion,
                                         List<LayerEdited> layers) {
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("curvewatch.run_id", runId);
        meta.put("curvewatch.snapshot_id", snapshotId);
        meta.put("curvewatch.step", Long.toString(step(layers)));
        meta.put("curvewatch.layers", layers.stream().map(LayerEdited::layer).collect(Collectors.joining(",")));
        SafetensorsWriter w = new SafetensorsWriter();
        for (LayerEdited l : layers) {
            meta.put("curvewatch.rho." + l.layer(), Double.toString(l.rho()));
            meta.put("curvewatch.factor_version." + l.layer(), Long.toString(l.factorVersion()));
            meta.put("curvewatch.kept_pairs." + l.layer(), Long.toString(l.keptPairs()));
            meta.put("curvewatch.weight_step." + l.layer(), Long.toString(l.weightStep()));
            w.addFloat32(l.layer() + ".weight", new long[]{l.dOut(), l.dIn()}, l.weight());
            if (l.bias() != null) {
                w.addFloat32(l.layer() + ".bias", new long[]{l.bias().length}, l.bias());
            }
        }
        meta.put("curvewatch.code_version", codeVersion);
        meta.put("curvewatch.idempotency_key", idempotencyKey);
        return w.metadata(meta);
    }

    /** The snapshot's step: the oldest weight step among its layers. */
    public static long step(List<LayerEdited> layers) {
        return layers.stream().mapToLong(LayerEdited::weightStep).min().orElse(0);
    }
}
