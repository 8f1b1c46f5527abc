"""The `parley` command line (Typer + Rich). One module per command group; see `main.COMMAND_MODULES`."""
