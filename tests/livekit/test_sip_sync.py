"""`parley livekit sip ensure | status | list | delete` against the LiveKit server-API stand-in, run as a user
runs them (a `parley` process, the official SDK speaking Twirp/protobuf with a signed token)."""

from __future__ import annotations

import json
from pathlib import Path

from livekit.protocol import sip as lksip

from tests.livekit.conftest import livekit_env, parley
from tests.livekit.standin import StandInLiveKit

TRUNKS = """trunks:
  - name: carrier
    outbound: {host: sip.carrier.example, port: 5080, transport: tcp, username: acme-user, password: s3cret,
               caller_id: "+4930123456", from_user: username}
    inbound: {allowed_addresses: [203.0.113.0/24], numbers: ["+4930123456"]}
dispatch_rules:
  - {name: main, numbers: ["+4930123456"], trunks: [carrier], agent: receptionist, variables: {team: sales}}
"""


def _yaml(tmp_path: Path, text: str = TRUNKS) -> Path:
    path = tmp_path / "trunks.yaml"
    path.write_text(text)
    return path


async def test_ensure_twice_makes_one_of_each_and_changes_nothing_the_second_time(
        livekit: tuple[StandInLiveKit, str], tmp_path: Path) -> None:
    standin, url = livekit
    env = livekit_env(standin, url, tmp_path)
    conf = _yaml(tmp_path)
    code, out, err = await parley("livekit", "sip", "ensure", "--file", str(conf), env=env)
    assert code == 0, out + err
    assert "created inbound trunk carrier" in out and "created outbound trunk carrier" in out
    assert "created dispatch rule main" in out
    assert (len(standin.inbound), len(standin.outbound), len(standin.rules)) == (1, 1, 1)
    changes = standin.changes
    assert changes == 3

    code, out, err = await parley("livekit", "sip", "ensure", "--file", str(conf), env=env)
    assert code == 0, out + err
    assert out.count("unchanged") == 3 and "created" not in out and "updated" not in out
    assert standin.changes == changes  # the second run changed nothing
    assert (len(standin.inbound), len(standin.outbound), len(standin.rules)) == (1, 1, 1)

    # what LiveKit got: the carrier wants the SIP username in From, auth as the username, the number in PAI
    out_trunk = next(iter(standin.outbound.values()))
    assert list(out_trunk.numbers) == ["acme-user"] and out_trunk.auth_username == "acme-user"
    assert out_trunk.from_host == "sip.carrier.example" and out_trunk.address == "sip.carrier.example:5080"
    assert out_trunk.transport == lksip.SIP_TRANSPORT_TCP and out_trunk.auth_password == "s3cret"
    assert out_trunk.headers["P-Asserted-Identity"] == "<sip:+4930123456@sip.carrier.example>"
    in_trunk = next(iter(standin.inbound.values()))
    assert list(in_trunk.numbers) == ["+4930123456"] and list(in_trunk.allowed_addresses) == ["203.0.113.0/24"]
    rule = next(iter(standin.rules.values()))
    assert list(rule.trunk_ids) == [in_trunk.sip_trunk_id] and list(rule.numbers) == ["+4930123456"]
    assert rule.attributes["parley.agent"] == "receptionist"
    assert json.loads(rule.metadata)["variables"] == {"team": "sales"}
    assert rule.rule.dispatch_rule_individual.room_prefix == "parley-receptionist-"


async def test_from_user_number_puts_the_caller_id_in_from(livekit: tuple[StandInLiveKit, str],
                                                          tmp_path: Path) -> None:
    standin, url = livekit
    conf = _yaml(tmp_path, TRUNKS.replace("from_user: username", "from_user: number"))
    code, out, err = await parley("livekit", "sip", "ensure", "--file", str(conf),
                                  env=livekit_env(standin, url, tmp_path))
    assert code == 0, out + err
    out_trunk = next(iter(standin.outbound.values()))
    assert list(out_trunk.numbers) == ["+4930123456"] and out_trunk.auth_username == "acme-user"
    assert out_trunk.from_host == "" and "P-Asserted-Identity" not in out_trunk.headers


async def test_status_says_drift_in_words_and_ensure_repairs_it(livekit: tuple[StandInLiveKit, str],
                                                                tmp_path: Path) -> None:
    standin, url = livekit
    env = livekit_env(standin, url, tmp_path)
    conf = _yaml(tmp_path)
    assert (await parley("livekit", "sip", "ensure", "--file", str(conf), env=env))[0] == 0
    code, out, _ = await parley("livekit", "sip", "status", "--file", str(conf), env=env)
    assert code == 0 and "in sync" in out

    # someone edits LiveKit by hand: a number added, the From user set to the number, the rule removed
    in_trunk = next(iter(standin.inbound.values()))
    in_trunk.numbers.append("+4930999999")
    out_trunk = next(iter(standin.outbound.values()))
    del out_trunk.numbers[:]
    out_trunk.numbers.append("+4930123456")
    out_trunk.auth_password = "old"
    standin.rules.clear()
    code, out, err = await parley("livekit", "sip", "status", "--file", str(conf), env=env)
    assert code == 1, out + err
    assert "inbound trunk 'carrier': numbers: remove +4930999999" in out
    assert ("outbound trunk 'carrier': From user (the trunk's number LiveKit puts in From) is '+4930123456' in "
            "LiveKit, Parley's config says 'acme-user'") in out
    assert "auth password differs" in out and "old" not in out
    assert "dispatch rule 'main': missing in LiveKit, will be created" in out
    assert "3 difference(s)" in out

    code, out, err = await parley("livekit", "sip", "ensure", "--file", str(conf), env=env)
    assert code == 0 and "updated inbound trunk carrier" in out and "created dispatch rule main" in out, out + err
    assert list(next(iter(standin.inbound.values())).numbers) == ["+4930123456"]
    code, out, _ = await parley("livekit", "sip", "status", "--file", str(conf), env=env)
    assert code == 0 and "in sync" in out


async def test_list_and_delete_touch_only_parleys_objects(livekit: tuple[StandInLiveKit, str],
                                                          tmp_path: Path) -> None:
    standin, url = livekit
    env = livekit_env(standin, url, tmp_path)
    foreign = lksip.SIPInboundTrunkInfo(sip_trunk_id="ST_foreign", name="theirs", numbers=["+15550000"])
    standin.inbound[foreign.sip_trunk_id] = foreign
    assert (await parley("livekit", "sip", "ensure", "--file", str(_yaml(tmp_path)), env=env))[0] == 0
    code, out, _ = await parley("livekit", "sip", "list", "--json", env=env)
    rows = json.loads(out)
    assert code == 0 and {(r["kind"], r["name"], r["managed_by_parley"]) for r in rows} == {
        ("inbound trunk", "carrier", True), ("outbound trunk", "carrier", True), ("dispatch rule", "main", True),
        ("inbound trunk", "theirs", False)}
    assert "s3cret" not in out
    code, out, _ = await parley("livekit", "sip", "list", env=env)
    assert code == 0 and "s3cret" not in out
    assert "outbound trunk carrier (ST_" in out and ", parley): address=sip.carrier.example:5080" in out
    assert "inbound trunk theirs (ST_foreign, other): numbers=['+15550000']" in out
    code, out, err = await parley("livekit", "sip", "delete", "--all", env=env)
    assert code == 0, err
    assert "deleted dispatch rule main" in out and "deleted inbound trunk carrier" in out
    assert list(standin.inbound) == ["ST_foreign"] and not standin.outbound and not standin.rules


async def test_a_same_named_trunk_parley_did_not_make_is_a_conflict(livekit: tuple[StandInLiveKit, str],
                                                                    tmp_path: Path) -> None:
    standin, url = livekit
    standin.inbound["ST_x"] = lksip.SIPInboundTrunkInfo(sip_trunk_id="ST_x", name="carrier")
    code, out, _ = await parley("livekit", "sip", "ensure", "--file", str(_yaml(tmp_path)),
                                env=livekit_env(standin, url, tmp_path))
    assert code == 1 and "conflict inbound trunk carrier" in out and "Parley does not manage" in out
    assert standin.inbound["ST_x"].numbers == []  # left alone


async def test_wrong_secret_is_a_clear_error(livekit: tuple[StandInLiveKit, str], tmp_path: Path) -> None:
    standin, url = livekit
    env = livekit_env(standin, url, tmp_path, secret="not-the-secret-" * 4)
    code, out, err = await parley("livekit", "sip", "status", "--file", str(_yaml(tmp_path)), env=env)
    assert code == 1 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "refused the credentials (401" in lines[0] and "LIVEKIT_API_SECRET is not the secret of" in lines[0]
    assert standin.refused and standin.refused[0][1] == 401


async def test_bad_input_is_one_readable_line(livekit: tuple[StandInLiveKit, str], tmp_path: Path) -> None:
    standin, url = livekit
    env = livekit_env(standin, url, tmp_path)
    cases = [
        (("livekit", "sip", "ensure", "--file", str(tmp_path / "nope.yaml")), "file not found"),
        (("livekit", "sip", "delete"), "say which"),
        (("livekit", "sip", "ensure"), "nothing to push"),
    ]
    for args, words in cases:
        code, out, err = await parley(*args, env=env)
        assert code != 0 and words in err and len(err.strip().splitlines()) == 1, (args, err)
    code, _, err = await parley("livekit", "sip", "list", env={**env, "LIVEKIT_URL": ""})
    assert code == 1 and "LIVEKIT_URL is not set" in err and len(err.strip().splitlines()) == 1
    code, _, err = await parley("livekit", "sip", "list", env={**env, "LIVEKIT_URL": "ftp://x"})
    assert code == 1 and "is not a ws://" in err


async def test_passwords_not_listed_back_are_no_drift_but_a_changed_one_is(livekit: tuple[StandInLiveKit, str],
                                                                           tmp_path: Path) -> None:
    standin, url = livekit
    env = livekit_env(standin, url, tmp_path)
    assert (await parley("livekit", "sip", "ensure", "--file", str(_yaml(tmp_path)), env=env))[0] == 0
    for trunk in standin.outbound.values():  # a server that does not list passwords back
        trunk.auth_password = ""
    code, out, _ = await parley("livekit", "sip", "status", "--file", str(_yaml(tmp_path)), env=env)
    assert code == 0 and "in sync" in out
    changed = _yaml(tmp_path, TRUNKS.replace("password: s3cret", "password: n3w-secret"))
    code, out, _ = await parley("livekit", "sip", "status", "--file", str(changed), env=env)
    assert code == 1 and ("outbound trunk 'carrier': Parley's record of credentials (by digest) differs" in out)
    assert "n3w-secret" not in out and "s3cret" not in out
    code, out, _ = await parley("livekit", "sip", "ensure", "--file", str(changed), env=env)
    assert code == 0 and "updated outbound trunk carrier" in out
    assert next(iter(standin.outbound.values())).auth_password == "n3w-secret"
