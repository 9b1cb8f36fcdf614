package dev.curvewatch.schemas;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ConfigLayersTest {
    private static final ConfigLayers LAYERS = new ConfigLayers("CURVEWATCH_THING_");

    @Test
    void defaultsThenFileThenEnvironmentThenOverrides(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("thing.properties");
        Files.writeString(file, "a=file\nb=file\nc=file\n d.e = spaced \n");
        Map<String, String> v = LAYERS.load(Map.of("a", "default", "b", "default", "c", "default", "z", "default"), file, "thing config",
                Map.of("CURVEWATCH_THING_B", "env", "CURVEWATCH_THING_C", "env", "CURVEWATCH_OTHER_C", "other", "CURVEWATCH_THING_", "empty"),
                Map.of("c", "flag"));
        assertEquals("file", v.get("a"));
        assertEquals("env", v.get("b"));
        assertEquals("flag", v.get("c"));
        assertEquals("default", v.get("z"));
        assertEquals("spaced", v.get("d.e"));
        assertFalse(v.containsKey(""), "a bare prefix names no key");
    }

    @Test
    void environmentNamesBecomeDottedLowerCaseKeys() {
        assertEquals(Map.of("refresh.interval.ms", "5"), LAYERS.fromEnvironment(Map.of("CURVEWATCH_THING_REFRESH_INTERVAL_MS", " 5 ")));
    }

    @Test
    void anUnreadableFileIsNamed(@TempDir Path dir) {
        IllegalArgumentException missing = assertThrows(IllegalArgumentException.class,
                () -> LAYERS.load(Map.of(), dir.resolve("absent.properties"), "thing config", Map.of(), Map.of()));
        assertTrue(missing.getMessage().startsWith("thing config "), missing.getMessage());
    }
}
