package dev.curvewatch.cli;

import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CurvewatchTest {
    private record Result(int code, String out, String err) {
    }

    private static Result run(String... args) {
        CommandLine cli = Curvewatch.commandLine();
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cli.setOut(new PrintWriter(out));
        cli.setErr(new PrintWriter(err));
        int code = cli.execute(args);
        return new Result(code, out.toString(), err.toString());
    }

    @Test
    void unknownCommandPrintsUsageAndFails() {
        Result r = run("frobnicate");
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("Unmatched argument") && r.err().contains("Usage: curvewatch"), r.err());
    }

    @Test
    void noCommandIsAUsageError() {
        Result r = run();
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("missing subcommand"), r.err());
    }

    @Test
    void badFlagPrintsUsageAndFails() {
        Result r = run("broker", "--port", "not-a-number");
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("--port") && r.err().contains("Usage: curvewatch broker"), r.err());
        r = run("broker", "--no-such-flag");
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("--no-such-flag"), r.err());
    }

    @Test
    void badFlagsOfTheOtherCommandsPrintTheirUsage() {
        String[][] cases = {
                {"worker", "--metrics-port", "nine"},
                {"demo", "--epochs", "many"},
                {"train", "--policy", "SOMETIMES"},
                {"experiment", "no-such-experiment"},
                {"streams", "--resolve-hold-ms", "later"},
                {"service", "--http-port", "eighty"},
                {"sinks", "--no-such-flag"},
        };
        for (String[] args : cases) {
            Result r = run(args);
            assertNotEquals(0, r.code(), String.join(" ", args));
            assertTrue(r.err().contains("Usage: curvewatch " + args[0]), String.join(" ", args) + ":\n" + r.err());
        }
    }

    @Test
    void helpListsEverySubcommand() {
        Result r = run("--help");
        assertEquals(0, r.code());
        for (String name : Curvewatch.commandLine().getSubcommands().keySet()) {
            assertTrue(r.out().contains(name), name + " missing from help:\n" + r.out());
        }
    }

    @Test
    void sinksWithoutASinkOrWithAnUnsignedWebhookIsAUsageError() {
        Result none = run("sinks", "--bootstrap", "127.0.0.1:1");
        assertEquals(2, none.code());
        Result unsigned = run("sinks", "--bootstrap", "127.0.0.1:1", "--webhook-url", "http://127.0.0.1:1/hook");
        assertEquals(2, unsigned.code());
    }
}
