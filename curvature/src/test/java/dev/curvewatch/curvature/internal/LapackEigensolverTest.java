package dev.curvewatch.curvature.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.spi.SymmetricEigensolver;
import dev.curvewatch.curvature.spi.SymmetricEigensolverContract;
import org.junit.jupiter.api.Test;

class LapackEigensolverTest extends SymmetricEigensolverContract {
    @Override
    protected SymmetricEigensolver solver() {
        return new LapackEigensolver();
    }

    @Test
    void isTheDefaultThroughServiceLoader() {
        assertEquals(LapackEigensolver.class, SymmetricEigensolvers.best().getClass());
    }
}
