"""`parley doctor`: explain what is wrong with this installation, one line per problem with the fix."""

from __future__ import annotations

import asyncio

import typer

from parley.cli.common import console, settings


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        providers: bool = typer.Option(True, "--providers/--no-providers", help="Make a tiny request to each provider."),
        trunks: bool = typer.Option(True, "--trunks/--no-trunks", help="Probe each trunk (OPTIONS, REGISTER)."),
    ) -> None:
        """Check settings, agents, providers, ports and trunks; exit 1 when anything fails."""
        from parley.telephony.doctor import run_checks

        s = settings()

        async def run() -> int:
            failures = 0
            async for finding in run_checks(s, providers=providers, trunks=trunks):
                failures += not finding.ok
                style = "green" if finding.ok else "red"
                console.print(f"[{style}]{finding.line()}[/]", highlight=False, soft_wrap=True)
            return failures

        failures = asyncio.run(run())
        if failures:
            console.print(f"{failures} problem(s) found", highlight=False)
            raise typer.Exit(1)
        console.print("all checks passed", highlight=False)
