"""``flask gatekeeper ...``: see and manage bans from a shell (a ``flask.commands`` entry
point, so every app with a GateKeeper gets it).

A command runs in a process of its own. With the Redis storage it acts on the live state
every server process shares; with the memory storage that state lives inside each server
process, out of reach, and the commands that would need it say so instead of pretending.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import current_app
from flask.cli import AppGroup

from .config import CONFIG_KEYS
from .decision import retry_after_header
from .errors import GateKeeperError
from .extension import EXTENSION_KEY, GateKeeper
from .pipeline import AppState
from .storage import MemoryStorage

__all__ = ["gatekeeper"]

gatekeeper = AppGroup("gatekeeper", help="See and manage flask-gatekeeper bans and limits.")

MEMORY_NOTE = (
    "The memory storage keeps its state inside each server process: this command runs in "
    "a process of its own and can neither see nor change it. Use the Redis storage "
    "(GATEKEEPER_STORAGE_URI=redis://...) to manage bans from the command line."
)


def _state() -> AppState:
    state = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, AppState):
        raise click.ClickException(f"{current_app.name!r} has no GateKeeper (call init_app)")
    return state


def _live_extension() -> GateKeeper:
    """The app's GateKeeper, when its storage is shared with the server processes."""
    state = _state()
    if isinstance(state.settings.storage, MemoryStorage):
        raise click.ClickException(MEMORY_NOTE)
    assert isinstance(state.owner, GateKeeper)
    return state.owner


@contextmanager
def _clean_errors() -> Iterator[None]:
    """A storage outage or a bad value reads as one ``Error:`` line, not a traceback."""
    try:
        yield
    except GateKeeperError as exc:
        raise click.ClickException(str(exc)) from None


def _key(client: str) -> str:
    """The client as the storage knows it (an IPv6 address becomes its network)."""
    return _state().settings.identifier.key_for(client)


@gatekeeper.command("bans")
def list_bans() -> None:
    """List active bans with the seconds left."""
    with _clean_errors():
        bans = _live_extension().bans()
    if not bans:
        click.echo("no active bans")
    for client, left in sorted(bans.items(), key=lambda item: -item[1]):
        click.echo(f"{client}\t{retry_after_header(left)}s left")


@gatekeeper.command("ban")
@click.argument("client")
@click.option("--duration", type=float, help="Seconds (default: the ban rule's duration).")
def ban(client: str, duration: float | None) -> None:
    """Ban CLIENT (an IP address or a key)."""
    extension = _live_extension()
    with _clean_errors():
        extension.ban(client, duration)
        left = extension.banned_for(client)
    click.echo(f"banned {_key(client)} for {retry_after_header(left)}s")


@gatekeeper.command("unban")
@click.argument("client")
def unban(client: str) -> None:
    """End CLIENT's ban and forget its ban history."""
    with _clean_errors():
        was_banned = _live_extension().unban(client)
    click.echo(f"unbanned {_key(client)}" if was_banned else f"{_key(client)} was not banned")


@gatekeeper.command("reset")
@click.argument("client")
def reset(client: str) -> None:
    """Forget CLIENT: its counters, reports and ban."""
    with _clean_errors():
        _live_extension().reset(client)
    click.echo(f"reset {_key(client)}")


@gatekeeper.command("status")
@click.argument("client", required=False)
def status(client: str | None) -> None:
    """Show the rules and the storage, and CLIENT's ban if one is given."""
    settings = _state().settings
    click.echo(f"enabled: {settings.enabled}{' (dry run)' if settings.dry_run else ''}")
    click.echo(f"storage: {settings.storage!r}")
    for rule in settings.rate_limit_rules:
        click.echo(f"rate limit: {rule}")
    ban_rule = settings.ban_rule
    click.echo(
        f"ban rule: {ban_rule}, banned {ban_rule.duration:g}s" if ban_rule else "ban rule: none"
    )
    if client is not None:
        with _clean_errors():
            left = _live_extension().banned_for(client)
        key = _key(client)
        click.echo(
            f"{key}: banned for {retry_after_header(left)}s" if left else f"{key}: not banned"
        )


@gatekeeper.command("config")
def show_config() -> None:
    """Show every option, its GATEKEEPER_* key, and where its value comes from."""
    state = _state()
    given = state.owner.options if isinstance(state.owner, GateKeeper) else {}
    config = current_app.config
    for option, key in CONFIG_KEYS.items():
        if option in given:
            click.echo(f"{key} = {given[option]!r}  (GateKeeper({option}=...))")
        elif config.get(key) is not None:
            click.echo(f"{key} = {config[key]!r}  (app.config)")
        else:
            click.echo(f"{key}  (default)")
