package dev.curvewatch.trainer;

/** A watched linear layer as the trainer holds it: W is d_out x d_in row-major, with or without a bias. */
public record LayerShape(String name, int dOut, int dIn, boolean hasBias) {
    public LayerShape {
        if (dOut < 1 || dIn < 1) {
            throw new IllegalArgumentException("layer " + name + " needs positive dimensions, got " + dOut + "x" + dIn);
        }
    }
}
