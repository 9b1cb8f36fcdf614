package dev.curvewatch.contracts;

/**
 * The newest manifest of a layer cannot be matched by its chunks (missing chunk, other version,
 * wrong length, checksum). A worker stops rather than continue from a wrong state.
 */
public final class CheckpointCorruptException extends RuntimeException {
    public CheckpointCorruptException(String message) {
        super(message);
    }
}
