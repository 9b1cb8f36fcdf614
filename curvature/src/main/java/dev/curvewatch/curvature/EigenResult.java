package dev.curvewatch.curvature;

import java.util.Objects;
import java.util.Optional;

/**
 * Outcome of a symmetric eigendecomposition: an {@link Eigenbasis} or the reason there is none.
 * A failed refresh is a value the caller reports (DESIGN §2), never an exception.
 */
public final class EigenResult {
    private final Eigenbasis basis;
    private final String failure;

    private EigenResult(Eigenbasis basis, String failure) {
        this.basis = basis;
        this.failure = failure;
    }

    public static EigenResult success(Eigenbasis basis) {
        return new EigenResult(Objects.requireNonNull(basis), null);
    }

    public static EigenResult failure(String reason) {
        return new EigenResult(null, Objects.requireNonNull(reason));
    }

    public boolean isSuccess() {
        return basis != null;
    }

    /** The basis when the decomposition succeeded. */
    public Optional<Eigenbasis> basis() {
        return Optional.ofNullable(basis);
    }

    /** Why the decomposition failed, when it did. */
    public Optional<String> failureReason() {
        return Optional.ofNullable(failure);
    }

    /** The basis, or an {@link IllegalStateException} carrying the failure reason. */
    public Eigenbasis orThrow() {
        if (basis == null) {
            throw new IllegalStateException("eigendecomposition failed: " + failure);
        }
        return basis;
    }

    @Override
    public String toString() {
        return basis != null ? "EigenResult[" + basis + "]" : "EigenResult[failure=" + failure + "]";
    }
}
