package dev.curvewatch.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * SIGTERM to a JVM that runs a component with {@link UntilStopped}: the component's close runs to
 * its end before the JVM halts. The pattern it replaced (the hook only woke the main thread,
 * which then closed) let the JVM halt inside that close.
 */
class UntilStoppedTest {
    /** The child JVM: a component whose close takes a while (a flush), then writes the marker. */
    public static final class Child {
        public static void main(String[] args) throws Exception {
            Path marker = Path.of(args[0]);
            AutoCloseable component = () -> {
                Thread.sleep(500); // stands for a producer flush or a final commit: work the JVM must wait for
                Files.writeString(marker, "closed");
            };
            UntilStopped stop = UntilStopped.watch("test", component);
            System.out.println("ready");
            System.out.flush();
            stop.await();
            Files.writeString(marker, "closed, main returned", java.nio.file.StandardOpenOption.APPEND);
        }
    }

    @Test
    void sigtermClosesTheComponentBeforeTheJvmHalts(@TempDir Path dir) throws Exception {
        Path marker = dir.resolve("marker");
        Process p = new ProcessBuilder(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                System.getProperty("java.class.path"), Child.class.getName(), marker.toString()))
                .redirectErrorStream(true).start();
        try (BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            assertEquals("ready", out.readLine());
            p.destroy(); // SIGTERM
            assertTrue(p.waitFor(30, TimeUnit.SECONDS), "the child stopped");
        } finally {
            p.destroyForcibly();
        }
        assertTrue(Files.exists(marker), "the component was closed before the JVM halted");
        assertTrue(Files.readString(marker).startsWith("closed"), Files.readString(marker));
    }
}
