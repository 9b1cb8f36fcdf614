package dev.curvewatch.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code ./curvewatch} launcher. Each subcommand is one class over a module's public API. */
@Command(name = "curvewatch", mixinStandardHelpOptions = true, versionProvider = CodeVersion.class,
        description = "Watches fine-tunes for memorization through K-FAC curvature, live, on Kafka.",
        subcommands = {
                BrokerCommand.class,
                DemoCommand.class,
                EditCommand.class,
                ExperimentCommand.class,
                ServiceCommand.class,
                SinksCommand.class,
                StreamsCommand.class,
                TrainCommand.class,
                WorkerCommand.class,
        })
public final class Curvewatch implements Runnable {
    @CommandLine.Spec
    private CommandLine.Model.CommandSpec spec;

    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }

    /** The configured command line: usage on bad input, exit code 2 for usage errors. */
    public static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new Curvewatch());
        cli.setParameterExceptionHandler((e, args) -> {
            var err = e.getCommandLine().getErr();
            err.println("curvewatch: " + e.getMessage());
            CommandLine.UnmatchedArgumentException.printSuggestions(e, err);
            e.getCommandLine().usage(err);
            return 2;
        });
        return cli;
    }

    @Override
    public void run() {
        // no subcommand given: that is a usage error, not a success
        throw new CommandLine.ParameterException(spec.commandLine(), "missing subcommand");
    }
}
