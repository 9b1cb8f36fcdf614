package dev.curvewatch.curvature.edit;

import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.EigenResult;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.spi.SymmetricEigensolver;
import dev.curvewatch.curvature.safetensors.Dtype;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.curvature.safetensors.SafetensorsFormatException;
import dev.curvewatch.curvature.safetensors.SafetensorsWriter;
import dev.curvewatch.curvature.safetensors.TensorInfo;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Offline curvature edit of safetensors checkpoints (issue 3 item 6): weights named like a
 * PyTorch state_dict ({@code <layer>.weight}, d_out x d_in), factors {@code <layer>.A}
 * (d_in x d_in) and {@code <layer>.G} (d_out x d_out), F32 or F64. The output holds every input
 * tensor, the edited ones replaced in their original dtype, plus {@code __metadata__} recording
 * ρ, kept pairs and kept mass per layer and the code version. Any bad input throws before the
 * output exists: the file is written to a temporary sibling and moved into place atomically.
 */
public final class SafetensorsEditor {
    private final SymmetricEigensolver solver;
    private final String codeVersion;

    public SafetensorsEditor(SymmetricEigensolver solver, String codeVersion) {
        this.solver = solver;
        this.codeVersion = codeVersion;
    }

    /**
     * @param layers layers to edit; empty means those named in {@code rho}'s map or, with a default ρ,
     *               every layer that has a weight and both factors
     * @return one entry per edited layer
     * @throws SafetensorsFormatException for malformed files, missing tensors, wrong shapes, NaN/Inf
     */
    public List<LayerEdit> edit(Path weights, Path factors, RhoSpec rho, List<String> layers, Path out)
            throws IOException {
        try (SafetensorsFile w = SafetensorsFile.open(weights); SafetensorsFile f = SafetensorsFile.open(factors)) {
            List<String> targets = targets(w, f, rho, layers);
            Map<String, double[]> edited = new LinkedHashMap<>();
            List<LayerEdit> report = new ArrayList<>();
            for (String layer : targets) {
                report.add(editLayer(w, f, layer, rho.rhoFor(layer), edited));
            }
            writeAtomically(w, edited, report, out);
            return report;
        }
    }

    private List<String> targets(SafetensorsFile w, SafetensorsFile f, RhoSpec rho, List<String> layers)
            throws SafetensorsFormatException {
        List<String> chosen = new ArrayList<>(layers);
        if (chosen.isEmpty()) {
            if (rho.hasDefault()) {
                for (TensorInfo t : w.tensors()) {
                    String name = t.name();
                    if (name.endsWith(".weight")) {
                        String layer = name.substring(0, name.length() - ".weight".length());
                        if (f.tensor(layer + ".A").isPresent() && f.tensor(layer + ".G").isPresent()) {
                            chosen.add(layer);
                        }
                    }
                }
            } else {
                chosen.addAll(rho.perLayer().keySet());
            }
        }
        if (chosen.isEmpty()) {
            throw new SafetensorsFormatException("no layer to edit: no '<layer>.weight' in " + w.path()
                    + " has both '<layer>.A' and '<layer>.G' in " + f.path());
        }
        for (String layer : chosen) {
            rho.rhoFor(layer); // fails now, before any decomposition, if the layer has no ρ
            for (String name : List.of(layer + ".A", layer + ".G")) {
                if (f.tensor(name).isEmpty()) {
                    throw new SafetensorsFormatException(f.path() + ": missing factor '" + name + "'");
                }
            }
            if (w.tensor(layer + ".weight").isEmpty()) {
                throw new SafetensorsFormatException(w.path() + ": missing weight '" + layer + ".weight'");
            }
        }
        return chosen;
    }

    private LayerEdit editLayer(SafetensorsFile w, SafetensorsFile f, String layer, double rho,
                                Map<String, double[]> edited) throws IOException {
        TensorInfo wi = w.tensor(layer + ".weight").orElseThrow();
        if (wi.rank() != 2 || (wi.dtype() != Dtype.F32 && wi.dtype() != Dtype.F64)) {
            throw new SafetensorsFormatException(w.path() + ": '" + wi.name() + "' must be a 2-D F32 or F64 tensor, is "
                    + wi);
        }
        int dOut = Math.toIntExact(wi.dim(0));
        int dIn = Math.toIntExact(wi.dim(1));
        double[] weight = finite(w, wi.name());
        Eigenbasis g = basis(f, layer + ".G", dOut);
        Eigenbasis a = basis(f, layer + ".A", dIn);
        CurvatureEdit edit = new CurvatureEdit(g, a);
        KeepMassMask mask = edit.select(rho);
        double[] result = edit.apply(weight, mask);
        double diff = 0;
        double norm = 0;
        for (int i = 0; i < weight.length; i++) {
            diff += (result[i] - weight[i]) * (result[i] - weight[i]);
            norm += weight[i] * weight[i];
        }
        edited.put(wi.name(), result);
        return new LayerEdit(layer, dOut, dIn, rho, mask.keptPairs(), mask.keptMass(), mask.totalMass(),
                norm > 0 ? Math.sqrt(diff / norm) : 0);
    }

    private Eigenbasis basis(SafetensorsFile f, String name, int side) throws IOException {
        TensorInfo t = f.tensor(name).orElseThrow();
        if (t.rank() != 2 || t.dim(0) != side || t.dim(1) != side) {
            throw new SafetensorsFormatException(f.path() + ": factor '" + name + "' must be " + side + "x" + side
                    + ", is " + t);
        }
        EigenResult r = solver.decompose(finite(f, name), side, Precision.FLOAT64);
        if (!r.isSuccess()) {
            throw new SafetensorsFormatException(f.path() + ": factor '" + name + "' cannot be decomposed: "
                    + r.failureReason().orElse("?"));
        }
        return r.orThrow();
    }

    private static double[] finite(SafetensorsFile file, String name) throws IOException {
        double[] v = file.readAsDoubles(name);
        for (int i = 0; i < v.length; i++) {
            if (!Double.isFinite(v[i])) {
                throw new SafetensorsFormatException(file.path() + ": tensor '" + name + "' has non-finite value "
                        + v[i] + " at flat index " + i);
            }
        }
        return v;
    }

    private void writeAtomically(SafetensorsFile w, Map<String, double[]> edited, List<LayerEdit> report, Path out)
            throws IOException {
        SafetensorsWriter writer = new SafetensorsWriter().metadata(w.metadata());
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("curvewatch.code_version", codeVersion);
        meta.put("curvewatch.eigenvectors", "recomputed from the factors with " + solver.name() + " in FLOAT64");
        for (LayerEdit e : report) {
            meta.put("curvewatch.rho." + e.layer(), Double.toString(e.rho()));
            meta.put("curvewatch.kept_pairs." + e.layer(), Long.toString(e.keptPairs()));
            meta.put("curvewatch.kept_mass." + e.layer(), Double.toString(e.keptMassFraction()));
        }
        writer.metadata(meta);
        for (TensorInfo t : w.tensors()) {
            double[] values = edited.get(t.name());
            if (values == null) {
                writer.add(t.name(), t.dtype(), t.shape(), w.data(t.name()));
            } else {
                writer.add(t.name(), t.dtype(), t.shape(), encode(values, t.dtype()));
            }
        }
        Path target = out.toAbsolutePath();
        Path tmp = Files.createTempFile(target.getParent(), "." + target.getFileName(), ".tmp");
        try {
            writer.write(tmp);
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    private static ByteBuffer encode(double[] values, Dtype dtype) {
        ByteBuffer b = ByteBuffer.allocate(values.length * dtype.bytes()).order(ByteOrder.LITTLE_ENDIAN);
        for (double v : values) {
            if (dtype == Dtype.F32) {
                b.putFloat((float) v);
            } else {
                b.putDouble(v);
            }
        }
        return b.flip();
    }
}
