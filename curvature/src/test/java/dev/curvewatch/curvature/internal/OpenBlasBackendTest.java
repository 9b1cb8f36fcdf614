package dev.curvewatch.curvature.internal;

import dev.curvewatch.curvature.spi.BlasBackend;
import dev.curvewatch.curvature.spi.BlasBackendContract;

class OpenBlasBackendTest extends BlasBackendContract {
    @Override
    protected BlasBackend backend() {
        return new OpenBlasBackend();
    }
}
