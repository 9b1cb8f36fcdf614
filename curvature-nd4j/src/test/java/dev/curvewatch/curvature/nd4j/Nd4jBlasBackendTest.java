package dev.curvewatch.curvature.nd4j;

import dev.curvewatch.curvature.spi.BlasBackend;
import dev.curvewatch.curvature.spi.BlasBackendContract;
import org.junit.jupiter.api.Test;

import java.util.ServiceLoader;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** The shared backend contract on ND4J (CPU here; the same suite runs on CUDA via bench/gpu-worker.sh). */
class Nd4jBlasBackendTest extends BlasBackendContract {
    private static final Nd4jBlasBackend BACKEND = new Nd4jBlasBackend();

    @Override
    protected BlasBackend backend() {
        return BACKEND;
    }

    @Test
    void registeredThroughServiceLoader() {
        assertTrue(ServiceLoader.load(BlasBackend.class).stream().anyMatch(p -> p.type() == Nd4jBlasBackend.class));
        System.out.println("ND4J backend: " + BACKEND.name() + ", priority " + BACKEND.priority());
    }
}
