package dev.curvewatch.cli;

import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.edit.LayerEdit;
import dev.curvewatch.curvature.edit.RhoSpec;
import dev.curvewatch.curvature.edit.SafetensorsEditor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code curvewatch edit}: the curvature edit of a safetensors checkpoint from precomputed K-FAC factors. */
@Command(name = "edit", mixinStandardHelpOptions = true,
        description = "Apply the keep-mass curvature edit W' = U_G (C ⊙ M) U_Aᵀ to layers of a safetensors checkpoint, "
                + "with factors <layer>.A (d_in x d_in) and <layer>.G (d_out x d_out) from another safetensors file.")
public final class EditCommand implements Callable<Integer> {
    @Option(names = "--weights", required = true, description = "Weights, state_dict names: <layer>.weight (d_out x d_in).")
    Path weights;

    @Option(names = "--factors", required = true, description = "Factors <layer>.A and <layer>.G, F32 or F64.")
    Path factors;

    @Option(names = "--rho", required = true,
            description = "Kept curvature mass: a number (0.6), a per-layer map (fc1=0.6,fc2=0.9) or both (0.9,fc1=0.6).")
    String rho;

    @Option(names = "--layers", split = ",",
            description = "Layers to edit (default: those in the --rho map, or every layer with both factors).")
    List<String> layers = List.of();

    @Option(names = "--out", required = true, description = "Output file: every input tensor, edited ones replaced.")
    Path out;

    @Override
    public Integer call() {
        try {
            RhoSpec spec = RhoSpec.parse(rho);
            SafetensorsEditor editor = new SafetensorsEditor(SymmetricEigensolvers.best(), CodeVersion.get());
            for (LayerEdit e : editor.edit(weights, factors, spec, layers, out)) {
                System.out.printf("%s: %dx%d rho=%s kept %d of %d pairs (%.4f of the mass), |dW|/|W| = %.4g%n",
                        e.layer(), e.rows(), e.columns(), e.rho(), e.keptPairs(), (long) e.rows() * e.columns(),
                        e.keptMassFraction(), e.relativeChange());
            }
            System.out.println("wrote " + out);
            return 0;
        } catch (IOException | IllegalArgumentException e) {
            System.err.println("curvewatch edit: " + e.getMessage());
            return 2;
        }
    }
}
