"""CLI commands: each module registers its subcommands on the parser."""
