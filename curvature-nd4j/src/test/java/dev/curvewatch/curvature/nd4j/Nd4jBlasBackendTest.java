package dev.curvewatch.curvature.nd4j;

import dev.curvewatch.curvature.spi.BlasBackend;
import dev.curvewatch.curvature.spi.BlasBackendContract;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ServiceLoader;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The shared backend contract on ND4J: CPU in the default build; CUDA in the {@code cuda} build
 * (bench/gpu-worker.sh). The CUDA build on a machine without a usable GPU skips the suite with
 * ND4J's reason; {@link Nd4jFallbackTest} checks what it falls back to.
 */
class Nd4jBlasBackendTest extends BlasBackendContract {
    private static final Nd4jBlasBackend BACKEND = new Nd4jBlasBackend();

    @Override
    protected BlasBackend backend() {
        return BACKEND;
    }

    @BeforeEach
    void cudaBuildNeedsAGpu() {
        if (Nd4jFallbackTest.cudaBuild()) {
            Assumptions.assumeTrue(BACKEND.isAvailable(),
                    () -> "CUDA build without a usable GPU: " + Nd4jBlasBackend.unavailableReason());
        }
    }

    @Test
    void registeredThroughServiceLoader() {
        assertTrue(ServiceLoader.load(BlasBackend.class).stream().anyMatch(p -> p.type() == Nd4jBlasBackend.class));
        System.out.println("ND4J backend: " + BACKEND.name() + ", priority " + BACKEND.priority());
    }
}
