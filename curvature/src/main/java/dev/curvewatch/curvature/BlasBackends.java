package dev.curvewatch.curvature;

import dev.curvewatch.curvature.spi.BlasBackend;
import java.util.Comparator;
import java.util.ServiceLoader;

/** Picks the {@link BlasBackend} to use on this machine. */
public final class BlasBackends {
    private static volatile BlasBackend cached;

    private BlasBackends() {
    }

    /** The available registered backend with the highest priority (OpenBLAS by default); cached. */
    public static BlasBackend best() {
        BlasBackend b = cached;
        if (b == null) {
            b = ServiceLoader.load(BlasBackend.class).stream()
                    .map(ServiceLoader.Provider::get)
                    .filter(BlasBackend::isAvailable)
                    .max(Comparator.comparingInt(BlasBackend::priority))
                    .orElseThrow(() -> new IllegalStateException("no BLAS backend available"));
            cached = b;
        }
        return b;
    }
}
