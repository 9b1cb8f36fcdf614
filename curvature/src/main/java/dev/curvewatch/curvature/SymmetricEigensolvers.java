package dev.curvewatch.curvature;

import dev.curvewatch.curvature.spi.SymmetricEigensolver;
import java.util.Comparator;
import java.util.ServiceLoader;

/** Picks the {@link SymmetricEigensolver} to use on this machine. */
public final class SymmetricEigensolvers {
    private SymmetricEigensolvers() {
    }

    /** The available registered solver with the highest priority (the OpenBLAS LAPACK one by default). */
    public static SymmetricEigensolver best() {
        return ServiceLoader.load(SymmetricEigensolver.class).stream()
                .map(ServiceLoader.Provider::get)
                .filter(SymmetricEigensolver::isAvailable)
                .max(Comparator.comparingInt(SymmetricEigensolver::priority))
                .orElseThrow(() -> new IllegalStateException("no symmetric eigensolver available"));
    }
}
