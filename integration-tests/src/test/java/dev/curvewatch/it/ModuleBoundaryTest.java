package dev.curvewatch.it;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Module boundaries of the Java sources, checked on every build (issue 15 item 1):
 * <ul>
 *   <li>an {@code internal} package is used only by the module that owns it (main and test
 *       code alike; imports, static imports and fully qualified names; comments and string
 *       literals do not count);</li>
 *   <li>the main code of {@code service} uses nothing of {@code workers}: the factors topic's
 *       format lives in {@code contracts}, which both depend on.</li>
 * </ul>
 * A source scan rather than a bytecode one, so it needs no other module compiled first.
 */
class ModuleBoundaryTest {
    private static final Pattern INTERNAL_REF = Pattern.compile("\\bdev\\.curvewatch((?:\\.[a-z_][a-z0-9_]*)*?)\\.internal\\b");
    private static final Pattern WORKERS_REF = Pattern.compile("\\bdev\\.curvewatch\\.workers\\b");

    /** Main and test sources of every module listed in the root pom, by module name. */
    static Map<String, List<Path>> sources(Path root) throws IOException {
        String pom = Files.readString(root.resolve("pom.xml"));
        Map<String, List<Path>> out = new HashMap<>();
        Matcher m = Pattern.compile("<module>([^<]+)</module>").matcher(pom);
        while (m.find()) {
            String module = m.group(1).trim();
            List<Path> files = new ArrayList<>();
            for (String tree : List.of("src/main/java", "src/test/java")) {
                Path dir = root.resolve(module).resolve(tree);
                if (Files.isDirectory(dir)) {
                    try (Stream<Path> s = Files.walk(dir)) {
                        s.filter(p -> p.toString().endsWith(".java")).forEach(files::add);
                    }
                }
            }
            out.put(module, files);
        }
        return out;
    }

    /** The Java code of a source file without comments, string and character literals (text blocks included). */
    static String code(String src) {
        StringBuilder out = new StringBuilder(src.length());
        int i = 0;
        int n = src.length();
        while (i < n) {
            char c = src.charAt(i);
            if (c == '/' && i + 1 < n && src.charAt(i + 1) == '/') {
                while (i < n && src.charAt(i) != '\n') {
                    i++;
                }
            } else if (c == '/' && i + 1 < n && src.charAt(i + 1) == '*') {
                int end = src.indexOf("*/", i + 2);
                i = end < 0 ? n : end + 2;
                out.append(' ');
            } else if (src.startsWith("\"\"\"", i)) {
                int end = src.indexOf("\"\"\"", i + 3);
                i = end < 0 ? n : end + 3;
                out.append("\"\"");
            } else if (c == '"' || c == '\'') {
                int j = i + 1;
                while (j < n && src.charAt(j) != c && src.charAt(j) != '\n') {
                    j += src.charAt(j) == '\\' ? 2 : 1;
                }
                i = j + 1;
                out.append(c).append(c);
            } else {
                out.append(c);
                i++;
            }
        }
        return out.toString();
    }

    /** The {@code dev.curvewatch...internal} packages (their roots) a piece of code refers to. */
    static Set<String> internalPackagesUsed(String code) {
        Set<String> out = new TreeSet<>();
        Matcher m = INTERNAL_REF.matcher(code);
        while (m.find()) {
            out.add("dev.curvewatch" + m.group(1) + ".internal");
        }
        return out;
    }

    private static String packageOf(Path root, Path file) {
        String rel = root.relativize(file.getParent()).toString().replace('/', '.');
        int at = rel.indexOf("src.main.java.") >= 0 ? rel.indexOf("src.main.java.") + 14 : rel.indexOf("src.test.java.") + 14;
        return rel.substring(at);
    }

    private static Path repositoryRoot() {
        Path dir = Path.of(System.getProperty("user.dir")).toAbsolutePath();
        while (dir != null && !(Files.exists(dir.resolve("pom.xml")) && Files.isDirectory(dir.resolve("integration-tests")))) {
            dir = dir.getParent();
        }
        assertTrue(dir != null, "repository root not found above " + System.getProperty("user.dir"));
        return dir;
    }

    @Test
    void internalPackagesAreUsedOnlyByTheirOwnModule() throws IOException {
        Path root = repositoryRoot();
        Map<String, List<Path>> sources = sources(root);
        assertTrue(sources.containsKey("contracts") && sources.containsKey("workers") && sources.containsKey("service"),
                "modules read from the root pom: " + sources.keySet());
        // which module owns each internal package (by where its sources are)
        Map<String, String> owner = new HashMap<>();
        sources.forEach((module, files) -> files.stream().map(f -> packageOf(root.resolve(module), f))
                .filter(p -> p.endsWith(".internal") || p.contains(".internal."))
                .forEach(p -> owner.put(p.substring(0, p.indexOf(".internal") + ".internal".length()), module)));
        assertTrue(owner.containsKey("dev.curvewatch.workers.internal"), "internal packages found: " + owner.keySet());
        List<String> violations = new ArrayList<>();
        int scanned = 0;
        for (Map.Entry<String, List<Path>> e : sources.entrySet()) {
            for (Path f : e.getValue()) {
                scanned++;
                for (String pkg : internalPackagesUsed(code(Files.readString(f)))) {
                    String own = owner.get(pkg);
                    if (!e.getKey().equals(own)) {
                        violations.add(root.relativize(f) + " uses " + pkg + " of module " + (own == null ? "(none)" : own));
                    }
                }
            }
        }
        assertTrue(scanned > 200, "only " + scanned + " source files found");
        assertEquals(List.of(), violations, "internal packages used across modules");
    }

    @Test
    void serviceMainCodeDoesNotUseWorkers() throws IOException {
        Path root = repositoryRoot();
        List<String> violations = new ArrayList<>();
        try (Stream<Path> s = Files.walk(root.resolve("service/src/main/java"))) {
            s.filter(p -> p.toString().endsWith(".java")).forEach(p -> {
                try {
                    if (WORKERS_REF.matcher(code(Files.readString(p))).find()) {
                        violations.add(root.relativize(p).toString());
                    }
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
        }
        assertEquals(List.of(), violations, "service main code referring to dev.curvewatch.workers");
        String pom = Files.readString(root.resolve("service/pom.xml"));
        Matcher dep = Pattern.compile("<dependency>(?:(?!</dependency>).)*curvewatch-workers(?:(?!</dependency>).)*</dependency>",
                Pattern.DOTALL).matcher(pom);
        while (dep.find()) {
            assertTrue(dep.group().contains("<scope>test</scope>"), "service depends on workers outside test scope: " + dep.group());
        }
    }

    @Test
    void theScannerSeesImportsStaticImportsAndQualifiedNamesButNotCommentsOrStrings() {
        String src = """
                package dev.curvewatch.service;
                import dev.curvewatch.workers.internal.CheckpointCodec;
                import static dev.curvewatch.curvature.internal.NativeMatrix.copyOf;
                // dev.curvewatch.streams.internal.Foo in a comment
                /* dev.curvewatch.deploy.internal.FreePorts in a block comment */
                class X {
                    String s = "dev.curvewatch.metrics.internal.Y";
                    Object o = new dev.curvewatch.service.internal.Json();
                }
                """;
        assertEquals(Set.of("dev.curvewatch.workers.internal", "dev.curvewatch.curvature.internal", "dev.curvewatch.service.internal"),
                internalPackagesUsed(code(src)));
        assertTrue(WORKERS_REF.matcher(code("import dev.curvewatch.workers.Worker;")).find());
        assertTrue(!WORKERS_REF.matcher(code("/** see dev.curvewatch.workers.Worker */ class Y {}")).find());
    }
}
