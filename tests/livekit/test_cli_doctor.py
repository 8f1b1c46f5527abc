"""`parley livekit join` and the LiveKit line of `parley doctor`, run as a user runs them, against the stand-in."""

from __future__ import annotations

from pathlib import Path

from tests.livekit.conftest import livekit_env, parley
from tests.livekit.standin import StandInLiveKit


def _livekit_line(out: str) -> str:
    lines = [line for line in out.splitlines() if " livekit: " in line]
    assert len(lines) == 1, out
    return lines[0]


async def test_doctor_makes_a_signed_round_trip_and_explains_a_401(livekit: tuple[StandInLiveKit, str],
                                                                   tmp_path: Path) -> None:
    standin, url = livekit
    env = livekit_env(standin, url, tmp_path)
    _, out, _ = await parley("doctor", "--no-providers", "--no-trunks", env=env)
    line = _livekit_line(out)
    assert line.startswith("ok") and f"{url} accepted key 'APIstandin' (signed ListRooms: 0 room(s))" in line
    assert standin.calls["ListRooms"] == 1

    code, out, _ = await parley("doctor", "--no-providers", "--no-trunks",
                                env=livekit_env(standin, url, tmp_path, secret="wrong-secret-" * 4))
    line = _livekit_line(out)
    assert code == 1 and line.startswith("FAIL")
    assert "refused the credentials (401 invalid token: signature is invalid)" in line
    assert "LIVEKIT_API_SECRET is not the secret of LIVEKIT_API_KEY ('APIstandin')" in line

    _, out, _ = await parley("doctor", "--no-providers", "--no-trunks",
                             env={**env, "LIVEKIT_API_KEY": "APIunknown"})
    assert "the server does not know LIVEKIT_API_KEY ('APIunknown')" in _livekit_line(out)

    _, out, _ = await parley("doctor", "--no-providers", "--no-trunks", env={**env, "LIVEKIT_API_SECRET": ""})
    assert "FAIL livekit: LIVEKIT_API_SECRET is not set" in _livekit_line(out)


async def test_join_bad_input_is_one_readable_line(livekit: tuple[StandInLiveKit, str], tmp_path: Path) -> None:
    standin, url = livekit
    env = livekit_env(standin, url, tmp_path)
    for args, words in [
        (("livekit", "join", "demo", "--agent", "nobody"), "unknown agent 'nobody'"),
        (("livekit", "join", "two words", "--agent", "receptionist"), "room name 'two words' is not valid"),
    ]:
        code, _, err = await parley(*args, env=env)
        assert code == 1 and words in err and len(err.strip().splitlines()) == 1, err
    code, _, err = await parley("livekit", "join", "demo", "--agent", "receptionist",
                                env={**env, "LIVEKIT_URL": ""})
    assert code == 1 and "LIVEKIT_URL is not set" in err
    code, _, err = await parley("livekit", "join", "demo", env=env)
    assert code != 0 and "--agent" in err


async def test_join_records_the_call_and_says_why_it_could_not_join(livekit: tuple[StandInLiveKit, str],
                                                                    tmp_path: Path) -> None:
    standin, url = livekit
    env = livekit_env(standin, url, tmp_path)
    code, out, err = await parley("livekit", "join", "demo", "--agent", "receptionist", env=env)
    assert code == 1 and "agent receptionist joining room demo" in out, out + err
    last = err.strip().splitlines()[-1]
    assert "failed: could not join LiveKit room 'demo': cannot connect to the LiveKit room at ws://127.0.0.1" in last
    code, out, err = await parley("calls", "list", "--json", env=env)
    assert code == 0 and '"trunk": "livekit"' in out and '"channel": "livekit"' in out, out + err
