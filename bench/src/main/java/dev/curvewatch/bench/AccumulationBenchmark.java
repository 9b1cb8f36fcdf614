package dev.curvewatch.bench;

import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
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
 * One capture batch into a FLOAT32 factor: NaN scan + syrk. Compared with torch
 * {@code A.addmm_(X.T, X)} by GEMM-equivalent throughput 2·tokens·dim² / time.
 * {@code input=DIRECT} is a native-order direct buffer (no copy), {@code ARRAY} a float[]
 * (copied once into native memory).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 2)
@Fork(value = 1, jvmArgs = {"-Xmx4g"})
public class AccumulationBenchmark {
    @Param({"512", "4096"})
    int tokens;

    @Param({"512", "1024", "2048", "4096"})
    int dim;

    @Param({"DIRECT"})
    String input;

    private FactorAccumulator acc;
    private FloatBuffer direct;
    private float[] array;

    @Setup
    public void setUp() {
        SplittableRandom r = new SplittableRandom(1);
        array = new float[tokens * dim];
        for (int i = 0; i < array.length; i++) {
            array[i] = (float) (r.nextDouble() * 2 - 1);
        }
        direct = ByteBuffer.allocateDirect(array.length * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
        direct.put(0, array);
        acc = FactorAccumulator.cumulative(dim, Precision.FLOAT32);
    }

    @Benchmark
    public void add() {
        if (input.equals("DIRECT")) {
            acc.add(0, direct, tokens);
        } else {
            acc.add(0, array, tokens);
        }
    }
}
