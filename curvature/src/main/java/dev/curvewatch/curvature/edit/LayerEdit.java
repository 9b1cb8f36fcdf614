package dev.curvewatch.curvature.edit;

/**
 * What the editor did to one layer.
 *
 * @param relativeChange ‖W' − W‖_F / ‖W‖_F
 */
public record LayerEdit(String layer, int rows, int columns, double rho, long keptPairs, double keptMass,
                        double totalMass, double relativeChange) {

    /** keptMass / totalMass. */
    public double keptMassFraction() {
        return totalMass > 0 ? keptMass / totalMass : 1.0;
    }
}
