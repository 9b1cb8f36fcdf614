package dev.curvewatch.trainer;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The trainer library (this package and the test kit) stands on its own: nothing in it names the
 * experiments package, so a trainer that embeds the library gets none of the experiments' code.
 */
class LibraryBoundaryTest {
    @Test
    void theLibraryAndTheTestKitNameNothingOfTheExperiments() throws IOException {
        Path main = Path.of("src", "main", "java", "dev", "curvewatch", "trainer");
        List<String> offenders = new ArrayList<>();
        int read = 0;
        for (Path dir : List.of(main, main.resolve("testing"))) {
            try (Stream<Path> files = Files.list(dir)) {
                for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
                    read++;
                    if (Files.readString(f).contains("dev.curvewatch.trainer.experiments")) {
                        offenders.add(f.getFileName().toString());
                    }
                }
            }
        }
        assertTrue(read >= 10, "read the library's sources (" + read + ")");
        assertEquals(List.of(), offenders, "library classes that name the experiments");
    }
}
