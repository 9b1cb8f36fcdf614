package dev.curvewatch.curvature;

/** Floating-point width used to store or compute a quantity. */
public enum Precision {
    FLOAT32(4),
    FLOAT64(8);

    private final int bytes;

    Precision(int bytes) {
        this.bytes = bytes;
    }

    /** Size of one element in bytes. */
    public int bytes() {
        return bytes;
    }
}
