package dev.curvewatch.bench;

import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.KeepMassSelector;
import java.util.Arrays;
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

/** Keep-mass selection for an OLMo-sized MLP projection (11008 x 4096) with heavy-tailed spectra. */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(1)
public class SelectionBenchmark {
    @Param({"11008"})
    int rows;

    @Param({"4096"})
    int columns;

    @Param({"0.6", "0.9999"})
    double rho;

    private double[] lambda;
    private double[] mu;

    @Setup
    public void setUp() {
        SplittableRandom r = new SplittableRandom(3);
        lambda = pareto(r, rows);
        mu = pareto(r, columns);
    }

    private static double[] pareto(SplittableRandom r, int n) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            v[i] = Math.pow(1 - r.nextDouble(), -1 / 1.3) - 1 + 1e-6;
        }
        Arrays.sort(v);
        for (int i = 0; i < n / 2; i++) {
            double t = v[i];
            v[i] = v[n - 1 - i];
            v[n - 1 - i] = t;
        }
        return v;
    }

    @Benchmark
    public KeepMassMask select() {
        return KeepMassSelector.select(lambda, mu, rho);
    }
}
