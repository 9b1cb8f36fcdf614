package dev.curvewatch.bench;

import dev.curvewatch.curvature.EigenResult;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.spi.SymmetricEigensolver;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Full eigendecomposition of an n x n factor (values + vectors), compared with scipy
 * eigh(driver="evd"). Three warm-up shots: the Java reorder loops run once per call and are
 * still interpreted in the first ones.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3)
@Measurement(iterations = 5)
@Fork(value = 1, jvmArgs = {"-Xmx6g"})
public class EighBenchmark {
    @Param({"1024", "2048", "4096"})
    int n;

    @Param({"FLOAT64"})
    Precision precision;

    private SymmetricEigensolver solver;
    private double[] factor;

    @Setup
    public void setUp() {
        SplittableRandom r = new SplittableRandom(2);
        int tokens = 2 * n;
        float[] x = new float[tokens * n];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextDouble() * 2 - 1);
        }
        FactorAccumulator acc = FactorAccumulator.cumulative(n, Precision.FLOAT64);
        acc.add(0, x, tokens);
        factor = acc.mean();
        solver = SymmetricEigensolvers.best();
    }

    @Benchmark
    public EigenResult decompose() {
        return solver.decompose(factor, n, precision);
    }
}
