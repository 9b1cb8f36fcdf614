package dev.curvewatch.curvature.internal;

import java.util.concurrent.atomic.AtomicReference;
import java.util.function.IntSupplier;

/**
 * Runs a LAPACK call on a thread with a 64 MiB stack. The bundled OpenBLAS 0.3.19's threaded
 * {@code getrf} (inside {@code gesv}) takes its work buffers from the calling thread's stack and
 * overflows a Java thread's default 1 MiB: it crashed the JVM at n = 200 here (it ran with 2 MiB
 * at n = 2000). The stack is reserved address space, touched only as deep as it is used.
 */
final class LargeStack {
    private static final long STACK_BYTES = 64L << 20;

    private LargeStack() {
    }

    /** The call's result (a LAPACK {@code info}), computed on a large-stack thread. */
    static int call(String name, IntSupplier lapack) {
        int[] result = new int[1];
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread t = new Thread(null, () -> {
            try {
                result[0] = lapack.getAsInt();
            } catch (Throwable e) {
                failure.set(e);
            }
        }, "curvewatch-lapack-" + name, STACK_BYTES);
        t.start();
        try {
            t.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while LAPACK " + name + " ran", e);
        }
        if (failure.get() != null) {
            throw new IllegalStateException("LAPACK " + name + " failed", failure.get());
        }
        return result[0];
    }
}
