"""Running SIPp (the real scripted SIP peer, Debian `sip-tester`) from tests, on 127.0.0.1 only.

`uac_scenario()` writes a caller scenario for the variants the tests need (codec, media action,
who hangs up, digest auth, expected final status); `run_sipp()` runs it under a hard timeout and
returns the exit code and output (SIPp exits 0 only when every call succeeded); `sipp_server()`
starts SIPp as the called side and returns once it listens.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.eventually import eventually, udp_port_bound

PCAP_DIR = Path("/usr/share/sip-tester")

_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
"""

_SDP = {
    "PCMU": "m=audio [media_port] RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\n",
    "PCMA": "m=audio [media_port] RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\n",
    "G729": "m=audio [media_port] RTP/AVP 18\na=rtpmap:18 G729/8000\n",
}


def invite(codec: str = "PCMU", auth: bool = False, extra: str = "", branch: str = "[branch]",
           cseq: int = 1, direction: str = "sendrecv") -> str:
    sdp = _SDP[codec]
    te = "a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n" if "101" in sdp else ""
    auth_line = "      [authentication]\n" if auth else ""
    return f"""  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch};rport
      From: "SIPp Caller" <sip:4711@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:4711@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
{auth_line}{extra}      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
{_indent(sdp + te)}      a={direction}

    ]]>
  </send>
"""


def _indent(text: str) -> str:
    return "".join(f"      {line}\n" for line in text.strip().split("\n"))


def in_dialog(method: str, cseq: int, body: str = "", content_type: str = "", extra: str = "",
              retrans: bool = True) -> str:
    ct = f"      Content-Type: {content_type}\n" if content_type else ""
    rt = ' retrans="500"' if retrans else ""
    return f"""  <send{rt}>
    <![CDATA[

      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: "SIPp Caller" <sip:4711@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:4711@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
{extra}{ct}      Content-Length: [len]

{_indent(body) if body else ""}
    ]]>
  </send>
"""


def ack(cseq: int = 1, sdp: bool = False) -> str:
    return in_dialog("ACK", cseq, retrans=False)


def answer_to(request: str) -> str:
    """SIPp answering an in-dialog request we sent (BYE, NOTIFY…) with 200."""
    return f"""  <recv request="{request}" crlf="true"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:4711@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
"""


def uac_scenario(
    codec: str = "PCMU", actions: str = "", pause_ms: int = 1000, bye: str = "local", auth: bool = False,
    expect: int = 200, after_answer: str = "",
) -> str:
    """A caller: INVITE (answering a 401/407 when `auth`), ACK, media actions, pause, then BYE
    (`bye="local"`: SIPp hangs up; `"remote"`: SIPp waits for our BYE). `expect` != 200 ends the
    call on that final status (ACKed)."""
    out = _HEAD.format(name="parley uac") + invite(codec)
    out += '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
    if auth:
        out += '  <recv response="401" auth="true" optional="true" next="auth"/>\n'
        out += '  <recv response="407" auth="true" next="auth"/>\n'
        out += '  <label id="auth"/>\n' + ack_nontwo() + invite(codec, auth=True, cseq=2)
        out += '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
    cseq = 2 if auth else 1
    if expect != 200:
        out += f'  <recv response="{expect}"/>\n' + ack_nontwo(cseq) + "</scenario>\n"
        return out
    out += '  <recv response="200" rtd="true" rrs="true"/>\n' + in_dialog("ACK", cseq, retrans=False)
    if actions:
        out += f"  <nop>\n    <action>\n{actions}    </action>\n  </nop>\n"
    if pause_ms:
        out += f'  <pause milliseconds="{pause_ms}"/>\n'
    out += after_answer
    if bye == "local":
        out += in_dialog("BYE", cseq + 10) + '  <recv response="200" crlf="true"/>\n'
    else:
        out += answer_to("BYE")
    return out + "</scenario>\n"


def ack_nontwo(cseq: int = 1) -> str:
    """ACK for a non-2xx final: same branch as the INVITE it answers ([last_Via:] keeps it)."""
    return f"""  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "SIPp Caller" <sip:4711@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


def play_pcap(name: str) -> str:
    return f'      <exec play_pcap_audio="{PCAP_DIR / name}"/>\n'


def rtp_stream(path: Path, pt: int = 0) -> str:
    return f'      <exec rtp_stream="{path},1,{pt}"/>\n'


@dataclass
class SippResult:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"sipp exit {self.code}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"


def sipp_available() -> None:
    if not shutil.which("sipp"):
        pytest.skip("sipp is not installed (make test installs sip-tester)")


async def run_sipp(
    scenario: str | Path, target: str | None, tmp_path: Path, port: int, calls: int = 1,
    extra: list[str] | None = None, timeout: float = 30.0, builtin: str | None = None,
) -> SippResult:
    """Run SIPp once; `scenario` is XML text (written to tmp_path) or a path; `builtin` e.g. "uas"."""
    sipp_available()
    args = ["timeout", "-k", "2", str(int(timeout)), "sipp"]
    if builtin:
        args += ["-sn", builtin]
    else:
        path = scenario if isinstance(scenario, Path) else tmp_path / f"scenario-{port}.xml"
        if not isinstance(scenario, Path):
            path.write_text(scenario)
        args += ["-sf", str(path)]
    if target:
        args.append(target)
    media_port = free_port() & ~1
    args += ["-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(port), "-mp", str(media_port), "-m", str(calls),
             "-nostdin",
             "-timeout", f"{int(timeout) - 2}s", "-trace_err", "-error_file", str(tmp_path / f"sipp-{port}-err.log")]
    args += extra or []
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(tmp_path)
    )
    out, err = await proc.communicate()
    errlog = tmp_path / f"sipp-{port}-err.log"
    err_text = err.decode(errors="replace") + (errlog.read_text(errors="replace") if errlog.exists() else "")
    return SippResult(proc.returncode or 0, out.decode(errors="replace"), err_text)


async def sipp_server(scenario: str | Path, tmp_path: Path, port: int, **kwargs: Any) -> asyncio.Task[SippResult]:
    """Start SIPp answering on UDP `port` (`run_sipp` without a target) and return its task once SIPp
    has bound the port; the task's result is the `SippResult`. Fails at once if SIPp exits first."""
    task = asyncio.ensure_future(run_sipp(scenario, None, tmp_path, port, **kwargs))
    await eventually(lambda: task.done() or udp_port_bound(port), what=f"SIPp listening on UDP {port}")
    if task.done():
        raise AssertionError(f"SIPp exited before it listened: {task.result()}")
    return task


def cancel_scenario() -> str:
    """INVITE, wait for 180, CANCEL it; expect 200 (CANCEL) and 487 (INVITE), ACK the 487."""
    out = _HEAD.format(name="cancel") + invite("PCMU")
    out += '  <recv response="100" optional="true"/>\n  <recv response="180"/>\n'
    out += """  <send retrans="500">
    <![CDATA[

      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "SIPp Caller" <sip:4711@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
"""
    return out + ack_nontwo(1) + "</scenario>\n"


def retransmit_scenario() -> str:
    """The same INVITE (same branch) sent twice before any answer: one call must result."""
    branch = "z9hG4bK-retrans-[call_number]"
    first = invite("PCMU", branch=branch)
    again = first.replace('<send retrans="500">', "<send>")
    out = _HEAD.format(name="retransmit") + first + '  <recv response="100"/>\n' + again
    out += '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
    out += '  <recv response="200" rrs="true"/>\n' + in_dialog("ACK", 1, retrans=False)
    out += '  <pause milliseconds="300"/>\n' + in_dialog("BYE", 2) + '  <recv response="200"/>\n'
    return out + "</scenario>\n"


def reinvite(cseq: int, direction: str) -> str:
    body = (
        "v=0\no=sipp 53655765 2353687638 IN IP[local_ip_type] [local_ip]\ns=-\n"
        "c=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0 101\n"
        "a=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n"
        f"a={direction}"
    )
    return (
        in_dialog("INVITE", cseq, body=body, content_type="application/sdp")
        + '  <recv response="100" optional="true"/>\n'
        + f'  <recv response="200">\n    <action>\n      <ereg regexp="a=(sendrecv|recvonly|sendonly|inactive)" '
        f'search_in="body" check_it="true" assign_to="dir{cseq}"/>\n    </action>\n  </recv>\n'
        + in_dialog("ACK", cseq, retrans=False, extra=f"      X-Dir: [$dir{cseq}]\n")
    )


def info_dtmf(cseq: int, digit: str) -> str:
    return in_dialog("INFO", cseq, body=f"Signal={digit}\nDuration=160", content_type="application/dtmf-relay") + \
        '  <recv response="200"/>\n'


def refer(cseq: int, target: str) -> str:
    """SIPp REFERs us to `target`, expects 202 and two NOTIFYs, the last with a 200 sipfrag."""
    return (
        in_dialog("REFER", cseq, extra=f"      Refer-To: <{target}>\n      Referred-By: <sip:4711@[local_ip]>\n")
        + '  <recv response="202"/>\n'
        + answer_to("NOTIFY")
        + """  <recv request="NOTIFY">
    <action>
      <ereg regexp="SIP/2.0 200 OK" search_in="body" check_it="true" assign_to="frag"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      X-Frag: [$frag]
      Content-Length: 0

    ]]>
  </send>
"""
    )


def out_of_dialog(method: str, expect: int, check: str = "") -> str:
    """One out-of-dialog request (OPTIONS keep-alive, an unsupported method…) and its final status."""
    action = ""
    if check:
        action = (f'    <action>\n      <ereg regexp="{check}" search_in="msg" check_it="true" '
                  f'assign_to="seen_{method}"/>\n    </action>\n')
    use = f"      X-Seen: [$seen_{method}]\n" if check else ""
    return f"""  <send retrans="500">
    <![CDATA[

      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:4711@[local_ip]:[local_port]>;tag=[pid]{method}[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 {method}
      Max-Forwards: 70
{use}      Content-Length: 0

    ]]>
  </send>
  <recv response="{expect}">
{action}  </recv>
"""
