"""Block lists (issue 25): ``flask gatekeeper ban --file`` bans every entry of a list
through the storage, and ``denylist`` reads one at start-up; one reader of the format."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask

from flask_gatekeeper import ConfigError, GateKeeper
from flask_gatekeeper.cli import gatekeeper
from flask_gatekeeper.identity.addresses import ListedLine, address_lines
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.testing import FlakyStorage
from support import RULES, AppFactory, index

SPAMHAUS_DROP = """\
; Spamhaus DROP List 2026/12/07 - (c) 2026 The Spamhaus Project SLR
; Last-Modified: Mon, 07 Dec 2026 04:00:00 GMT

1.10.16.0/20 ; SBL256894
2001:db8:dead::/48 ; SBL1
# a FireHOL-style comment
  203.0.113.7   # one address
"""


def status_of(app: Flask, ip: str) -> int:
    return app.test_client().get("/", environ_base={"REMOTE_ADDR": ip}).status_code


# --- the format ---------------------------------------------------------------------------


def test_address_lines_skip_comments_and_blank_lines_and_keep_line_numbers() -> None:
    assert address_lines(SPAMHAUS_DROP) == [
        ListedLine(4, "1.10.16.0/20"),
        ListedLine(5, "2001:db8:dead::/48"),
        ListedLine(7, "203.0.113.7"),
    ]


def test_address_lines_of_an_empty_or_comment_only_list() -> None:
    assert address_lines("") == []
    assert address_lines("; nothing\n#\n\n   \n") == []


# --- flask gatekeeper ban --file ----------------------------------------------------------


@pytest.fixture
def shared(make_app: AppFactory, storage: Storage) -> tuple[Flask, GateKeeper]:
    """An app on each storage, which the CLI treats as shared with the server processes."""
    return make_app(base=RULES, routes=(index,), storage=FlakyStorage(storage))


@pytest.fixture
def drop_list(tmp_path: Path) -> Path:
    """``SPAMHAUS_DROP`` as a file."""
    listed = tmp_path / "drop.txt"
    listed.write_text(SPAMHAUS_DROP)
    return listed


def ban_file(app: Flask, path: Path, *args: str) -> Result:
    return app.test_cli_runner().invoke(gatekeeper, ["ban", "--file", str(path), *args])


def test_ban_file_bans_every_entry_through_the_storage(
    shared: tuple[Flask, GateKeeper], drop_list: Path
) -> None:
    app, gk = shared

    result = ban_file(app, drop_list, "--duration", "3600")

    assert (result.exit_code, result.stdout) == (0, "3 added, 0 already banned, 0 invalid\n")
    with app.app_context():
        details = gk.bans(detail=True)
    assert {client: (ban.left, ban.reason) for client, ban in details.items()} == {
        "1.10.16.0/20": (3600, "blocklist"),
        "2001:db8:dead::/48": (3600, "blocklist"),
        "203.0.113.7": (3600, "blocklist"),
    }
    assert status_of(app, "1.10.20.30") == 403  # inside the /20
    assert status_of(app, "2001:db8:dead:1::5") == 403
    assert status_of(app, "203.0.113.7") == 403
    assert status_of(app, "203.0.113.8") == 200


def test_ban_file_reports_already_banned_and_invalid_lines(
    shared: tuple[Flask, GateKeeper], tmp_path: Path
) -> None:
    app, gk = shared
    with app.app_context():
        gk.ban("198.51.100.0/24", 60)
    listed = tmp_path / "own.txt"
    listed.write_text(
        "198.51.100.0/24\n"  # banned already
        "198.51.100.0/24\n"  # twice in the list
        "300.1.1.0/24 ; not an address\n"
        "user:42\n"  # a key, not an address
        "16.0.0.0/4\n"  # too wide without --force
        "192.0.2.1/24\n"  # host bits set: the key rule bans its network
        "192.0.2.0/24\n"  # so this one is banned already
    )

    result = ban_file(app, listed, "--duration", "600", "--reason", "manual")

    assert result.exit_code == 1
    assert result.stdout == "1 added, 3 already banned, 3 invalid\n"
    invalid = result.stderr.splitlines()
    assert [line.split(":", 1)[0] for line in invalid] == [
        "invalid line 3",
        "invalid line 4",
        "invalid line 5",
    ]
    assert "not an IP address or network" in invalid[1]
    assert "force" in invalid[2]
    with app.app_context():
        details = gk.bans(detail=True)
    assert details["192.0.2.0/24"].reason == "manual"
    assert details["198.51.100.0/24"].left == 600  # the longer ban stands
    assert "16.0.0.0/4" not in details


def test_ban_file_passes_force_through(shared: tuple[Flask, GateKeeper], tmp_path: Path) -> None:
    app, gk = shared
    listed = tmp_path / "wide.txt"
    listed.write_text("16.0.0.0/4\n")

    result = ban_file(app, listed, "--duration", "60", "--force")

    assert (result.exit_code, result.stdout) == (0, "1 added, 0 already banned, 0 invalid\n")
    with app.app_context():
        assert gk.bans() == {"16.0.0.0/4": 60}


def test_ban_file_stops_at_an_outage(shared: tuple[Flask, GateKeeper], drop_list: Path) -> None:
    app, gk = shared
    storage = gk._gate().settings.storage
    assert isinstance(storage, FlakyStorage)
    storage.failing = True

    result = ban_file(app, drop_list, "--duration", "60")

    assert result.exit_code == 1
    assert result.output.startswith("Error: connection refused")


def test_ban_needs_a_client_or_a_file_not_both(
    shared: tuple[Flask, GateKeeper], drop_list: Path
) -> None:
    app, _ = shared
    runner = app.test_cli_runner()

    for args in (["ban"], ["ban", "10.0.0.1", "--file", str(drop_list)]):
        result = runner.invoke(gatekeeper, args)
        assert result.exit_code == 2
        assert "give a CLIENT or --file, not both" in result.output


def test_ban_takes_a_reason(shared: tuple[Flask, GateKeeper]) -> None:
    app, gk = shared
    runner = app.test_cli_runner()

    assert runner.invoke(gatekeeper, ["ban", "10.0.0.1", "--reason", "blocklist"]).exit_code == 0
    assert runner.invoke(gatekeeper, ["ban", "10.0.0.2", "--reason", "reports"]).exit_code == 2
    with app.app_context():
        assert {client: ban.reason for client, ban in gk.bans(detail=True).items()} == {
            "10.0.0.1": "blocklist"
        }
        with pytest.raises(ConfigError, match=r"ban\(\): reason must be one of"):
            gk.ban("10.0.0.3", 60, reason="subnet")


# --- denylist from a file -----------------------------------------------------------------


@pytest.fixture
def deny_app(make_app: AppFactory) -> functools.partial[tuple[Flask, GateKeeper]]:
    return functools.partial(make_app, base={}, routes=(index,))


@pytest.mark.parametrize("as_text", [True, False], ids=["text", "Path"])
def test_denylist_reads_a_file(deny_app: AppFactory, drop_list: Path, as_text: bool) -> None:

    app, _ = deny_app(denylist=str(drop_list) if as_text else drop_list)

    assert status_of(app, "1.10.31.255") == 403
    assert status_of(app, "1.10.32.0") == 200
    assert status_of(app, "2001:db8:dead::1") == 403
    assert status_of(app, "203.0.113.7") == 403


def test_denylist_file_from_the_config(deny_app: AppFactory, tmp_path: Path) -> None:
    listed = tmp_path / "drop.txt"
    listed.write_text("1.10.16.0/20 ; SBL256894\n")

    app, _ = deny_app(config={"GATEKEEPER_DENYLIST": str(listed)})

    assert status_of(app, "1.10.16.1") == 403


def test_denylist_file_line_that_does_not_parse_fails_at_start_up(
    deny_app: AppFactory, tmp_path: Path
) -> None:
    listed = tmp_path / "drop.txt"
    listed.write_text("1.10.16.0/20 ; SBL256894\n\n300.1.1.0/24 ; SBL2\n")

    with pytest.raises(ConfigError) as caught:
        deny_app(config={"GATEKEEPER_DENYLIST": str(listed)})

    message = str(caught.value)
    assert "GATEKEEPER_DENYLIST" in message
    assert f"{str(listed)!r}, line 3: '300.1.1.0/24' is not an IP address or network" in message


def test_denylist_path_that_cannot_be_read_fails_at_start_up(
    deny_app: AppFactory, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.txt"

    with pytest.raises(ConfigError, match=r"denylist: cannot read the block list .*missing\.txt"):
        deny_app(denylist=missing)
