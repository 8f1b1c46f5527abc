"""`parley sip echo`: answer every call and echo its audio (or play a tone) to test a trunk or phone."""

from __future__ import annotations

import asyncio

import typer

from parley.cli.common import console, fail


def register(app: typer.Typer) -> None:
    sip = typer.Typer(help="SIP tools: test a trunk or softphone by hand.", no_args_is_help=True)
    app.add_typer(sip, name="sip")

    @sip.command("echo")
    def echo(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(5060, "--port", min=0, max=65535, help="SIP port (UDP and/or TCP)."),
        transport: str = typer.Option("both", "--transport", help="udp, tcp or both."),
        tone: float = typer.Option(None, "--tone", min=20, max=8000, help="Play a sine of HZ instead of echoing."),
        public_host: str = typer.Option(None, "--public-host", help="Address to put in Contact/SDP (NAT)."),
        rtp_ports: str = typer.Option("20000-30000", "--rtp-ports", help="RTP port range LO-HI."),
    ) -> None:
        """Answer every call; echo the caller's audio back (or play --tone HZ). Ctrl-C stops."""
        transports = {"udp": ("udp",), "tcp": ("tcp",), "both": ("udp", "tcp")}.get(transport.lower())
        if transports is None:
            fail(f"--transport must be udp, tcp or both, not {transport!r}")
        try:
            lo_text, hi_text = rtp_ports.split("-")
            port_range = (int(lo_text), int(hi_text))
            if not 1024 <= port_range[0] < port_range[1] <= 65535:
                raise ValueError
        except ValueError:
            fail(f"--rtp-ports must look like 20000-30000 within 1024..65535, not {rtp_ports!r}")
        try:
            asyncio.run(_serve(host, port, transports, tone, public_host, port_range))
        except KeyboardInterrupt:
            pass
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


async def _serve(host: str, port: int, transports: tuple[str, ...], tone: float | None,
                 public_host: str | None, port_range: tuple[int, int]) -> None:
    import numpy as np

    from parley.sip.call import Call, IncomingCall
    from parley.sip.endpoint import SipEndpoint

    ep = SipEndpoint(host=host, port=port, transports=transports, public_host=public_host,
                     rtp_port_range=port_range, user_agent="Parley-echo/0.1")

    async def media(call: Call) -> None:
        phase = 0
        while (frame := await call.rtp.read_frame()) is not None:
            if tone is None:
                call.rtp.write(frame)
                continue
            rate = call.rtp.codec.sample_rate
            n = np.arange(phase, phase + len(frame))
            call.rtp.write((8000 * np.sin(2 * np.pi * tone * n / rate)).astype(np.int16))
            phase += len(frame)

    async def on_incoming(incoming: IncomingCall) -> None:
        console.print(f"call from {incoming.from_uri} to {incoming.called_number or incoming.to_uri} "
                      f"via {incoming.transport} {incoming.source_address[0]}:{incoming.source_address[1]}")
        call = await incoming.accept()
        call.on_dtmf = lambda digit: console.print(f"  dtmf {digit}")
        console.print(f"  answered {call.call_id} codec {call.negotiated.codec}")
        await media(call)
        console.print(f"  ended {call.call_id}: {await call.wait_ended()}")

    ep.on_incoming = on_incoming
    await ep.start()
    mode = f"playing {tone:g} Hz" if tone else "echoing audio"
    console.print(f"parley sip echo listening on {'+'.join(transports)} {host}:{ep.port}, {mode}", highlight=False)
    try:
        await asyncio.Event().wait()
    finally:
        await ep.close()
