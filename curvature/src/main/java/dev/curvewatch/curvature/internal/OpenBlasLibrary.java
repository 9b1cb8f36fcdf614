package dev.curvewatch.curvature.internal;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.openblas.global.openblas;

/** Loads the bundled OpenBLAS once; a failure makes the CPU backends unavailable instead of crashing. */
final class OpenBlasLibrary {
    private static final boolean LOADED = load();

    private OpenBlasLibrary() {
    }

    static boolean isLoaded() {
        return LOADED;
    }

    private static boolean load() {
        try {
            Loader.load(openblas.class);
            return true;
        } catch (Throwable e) {
            System.getLogger(OpenBlasLibrary.class.getName()).log(System.Logger.Level.WARNING,
                    "bundled OpenBLAS could not be loaded: " + e);
            return false;
        }
    }
}
