"""``flask gatekeeper ...``: see and manage bans from a shell (a ``flask.commands`` entry
point, so every app with a GateKeeper gets it).

A command runs in a process of its own. With the Redis storage it acts on the live state
every server process shares; with the memory storage that state lives inside each server
process, out of reach, and the commands that would need it say so instead of pretending.

Clients are printed with ``identity.keys.shown`` (control characters escaped, so no key can forge
a line of a listing) and read back from arguments with ``identity.keys.unshown``: a client's text
as a listing prints it names that client.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from .decision import BLOCKLIST, BY_HAND, GLOBAL_SCOPE, MANUAL, Usage
from .errors import ConfigError, GateKeeperError
from .extension import EXTENSION_KEY, GateKeeper
from .gate import Gate
from .identity.addresses import address_lines, written_as_address
from .identity.keys import shown, unshown
from .options import APP_OPTIONS
from .request import with_strategy
from .responses import retry_after_header
from .routes import Mark, default_scope_name
from .rules import RulesFunction
from .storage import MemoryStorage

__all__ = ["gatekeeper"]

gatekeeper = AppGroup("gatekeeper", help="See and manage flask-gatekeeper bans and limits.")

MEMORY_NOTE = (
    "The memory storage keeps its state inside each server process: this command runs in "
    "a process of its own and can neither see nor change it. Use the Redis storage "
    "(GATEKEEPER_STORAGE_URI=redis://...) to manage bans from the command line."
)


def _gate() -> Gate:
    gate = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(gate, Gate):
        raise click.ClickException(f"{current_app.name!r} has no GateKeeper (call init_app)")
    return gate


def _live_extension() -> GateKeeper:
    """The app's GateKeeper, when its storage is shared with the server processes."""
    gate = _gate()
    if isinstance(gate.settings.storage, MemoryStorage):
        raise click.ClickException(MEMORY_NOTE)
    assert isinstance(gate.owner, GateKeeper)
    return gate.owner


@contextmanager
def _clean_errors() -> Iterator[None]:
    """A storage outage or a bad value reads as one ``Error:`` line, not a traceback."""
    try:
        yield
    except GateKeeperError as exc:
        raise click.ClickException(str(exc)) from None


def _key(client: str) -> str:
    """The client as the storage knows it (an IPv6 address becomes its network), shown."""
    return shown(_gate().settings.identifier.key_for(client))


def _client_text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A CLIENT argument, as a listing shows it, read back to the key's own text."""
    return None if value is None else unshown(value)


def _masked(value: object) -> str:
    """A value for display, a URL's password masked (``redis://:***@host``)."""
    text = repr(value)
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


@gatekeeper.command("bans")
def list_bans() -> None:
    """List active bans, the longest first: seconds left, reason, start, strikes."""
    with _clean_errors():
        bans = _live_extension().bans(detail=True)
    if not bans:
        click.echo("no active bans")
    for client, ban in sorted(bans.items(), key=lambda item: -item[1].left):
        strikes = "1 strike" if ban.strikes == 1 else f"{ban.strikes} strikes"
        click.echo(
            f"{shown(client)}\t{retry_after_header(ban.left)}s left\t{ban.reason}"
            f"\tstarted {math.floor(ban.since)}s ago\t{strikes}"
        )


@gatekeeper.command("ban")
@click.argument("client", required=False, callback=_client_text)
@click.option(
    "--file",
    "block_list",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ban every address or network of a block list (one a line; ';' and '#' start "
    "comments), such as Spamhaus DROP or FireHOL.",
)
@click.option("--duration", type=float, help="Seconds (default: the ban rule's duration).")
@click.option(
    "--reason",
    type=click.Choice(BY_HAND),
    help="The ban's reason, as listings and signals show it (default: manual, or "
    "blocklist with --file).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Ban even a network wider than /8 (IPv4) or /32 (IPv6), or one holding a trusted "
    "proxy or an allow-listed address.",
)
def ban(
    client: str | None,
    block_list: Path | None,
    duration: float | None,
    reason: str | None,
    force: bool,
) -> None:
    """Ban CLIENT (an IP address, a network such as 203.0.113.0/24, or a key), or every
    entry of a block list (--file)."""
    if block_list is not None and client is None:
        _ban_list(_live_extension(), block_list, duration, reason or BLOCKLIST, force)
        return
    if client is None or block_list is not None:
        raise click.UsageError("give a CLIENT or --file, not both")
    extension = _live_extension()
    with _clean_errors():
        extension.ban(client, duration, force=force, reason=reason or MANUAL)
        left = extension.banned_for(client)
    click.echo(f"banned {_key(client)} for {retry_after_header(left)}s")


def _ban_list(
    extension: GateKeeper, block_list: Path, duration: float | None, reason: str, force: bool
) -> None:
    """Ban each entry of ``block_list`` through ``GateKeeper.ban`` (the one key rule and its
    safety checks), then say how many were added, already banned, or invalid and where.
    A storage outage stops the command; an entry that is not an address or network, or a
    ban that needs ``--force``, is counted invalid and the rest go on."""
    identifier = _gate().settings.identifier
    added = already = 0
    invalid: list[str] = []
    with _clean_errors():
        banned = extension.bans()
        for entry in address_lines(block_list.read_text(encoding="utf-8")):
            try:
                if not written_as_address(entry.text):
                    raise ConfigError("not an IP address or network")
                key = identifier.key_for(entry.text)
                extension.ban(entry.text, duration, force=force, reason=reason)
            except ConfigError as exc:
                invalid.append(f"line {entry.number}: {shown(entry.text)}: {exc}")
                continue
            already += key in banned
            added += key not in banned
            banned[key] = 0.0
    for line in invalid:
        click.echo(f"invalid {line}", err=True)
    click.echo(f"{added} added, {already} already banned, {len(invalid)} invalid")
    if invalid:
        raise SystemExit(1)


@gatekeeper.command("unban")
@click.argument("client", callback=_client_text)
def unban(client: str) -> None:
    """End CLIENT's ban and forget its ban history."""
    with _clean_errors():
        was_banned = _live_extension().unban(client)
    click.echo(f"unbanned {_key(client)}" if was_banned else f"{_key(client)} was not banned")


@gatekeeper.command("reset")
@click.argument("client", callback=_client_text)
def reset(client: str) -> None:
    """Forget CLIENT: its counters, reports and ban."""
    with _clean_errors():
        _live_extension().reset(client)
    click.echo(f"reset {_key(client)}")


@gatekeeper.command("status")
@click.argument("client", required=False, callback=_client_text)
def status(client: str | None) -> None:
    """Show the storage, the global rules and each route's whole policy; for CLIENT, its
    ban and where it stands against the global rules and each route's own (read without
    counting)."""
    gate = _gate()
    settings = gate.settings
    click.echo(f"enabled: {settings.enabled}{' (dry run)' if settings.dry_run else ''}")
    click.echo(f"storage: {_masked(settings.storage)}")
    for label, rules in (
        ("rate limit", settings.rate_limit_rules),
        ("default rate limit, per route", settings.default_rules),
    ):
        if isinstance(rules, RulesFunction):
            click.echo(f"{label}: computed for each request by {rules.func!r}")
        else:
            for rule in rules:
                click.echo(f"{label}: {rule}")
    for endpoint in sorted(current_app.view_functions):
        for line in _route_policy(gate, endpoint):
            click.echo(line)
    ban_rule = settings.ban_rule
    click.echo(
        f"ban rule: {ban_rule}, banned {ban_rule.duration:g}s" if ban_rule else "ban rule: none"
    )
    if client is not None:
        extension = _live_extension()
        with _clean_errors():
            left = extension.banned_for(client)
            usages = extension.usage(client)
            routes: dict[tuple[str, str], tuple[Usage, str]] = {}
            for endpoint in sorted(current_app.view_functions):
                for use in _route_usage(gate, extension, client, endpoint):
                    routes.setdefault((use.scope, str(use.rule)), (use, endpoint))
        key = _key(client)
        click.echo(
            f"{key}: banned for {retry_after_header(left)}s" if left else f"{key}: not banned"
        )
        for use, where in [(use, "") for use in usages] + list(routes.values()):
            whole = f", whole again in {math.ceil(use.reset)}s" if use.reset else ""
            route = f" (route {where})" if where else ""
            click.echo(f"{key}: {use.remaining} left of {use.rule}{whole}{route}")


def _function_name(function: object) -> str:
    return getattr(function, "__qualname__", None) or repr(function)


def _mark_options(mark: Mark) -> list[str]:
    """What a ``specific`` mark says besides its rules, as the call spelled it."""
    options = ["standalone"] if mark.standalone else []
    if mark.scope is not None:
        options.append(f"scope={mark.scope!r}")
    if mark.cost != 1:
        cost = mark.cost if isinstance(mark.cost, (int, float)) else _function_name(mark.cost)
        options.append(f"cost={cost}")
    if mark.concurrency:
        options.append(f"concurrency={mark.concurrency}")
    functions = ("key_func", "count_when", "report_when", "exempt_when")
    for name in functions:
        function = getattr(mark, name)
        if function is not None:
            options.append(f"{name}={_function_name(function)}")
    return options


def _route_policy(gate: Gate, endpoint: str) -> Iterator[str]:
    """The lines of a route's whole policy: for each ``specific`` mark (its methods, if
    it names them), its rules and its other options; or that it is bypassed."""
    marks = gate.policies.route_marks(endpoint)
    if any(mark.bypass for mark in marks):
        yield f"route {endpoint}: bypassed"
        return
    defaults = _default_methods(gate, endpoint)
    if defaults:
        some = "" if defaults == _route_methods(endpoint) else f" [{', '.join(defaults)}]"
        yield f"route {endpoint}{some}: default rules"
    for mark in marks:
        methods = f" [{', '.join(sorted(mark.methods))}]" if mark.methods else ""
        head = f"route {endpoint}{methods}"
        if isinstance(mark.rules, RulesFunction):
            yield f"{head}: rate limit computed for each request by {mark.rules.func!r}"
        else:
            for rule in with_strategy(tuple(mark.rules), gate.settings.strategy):
                yield f"{head}: {rule}"
        options = _mark_options(mark)
        if options:
            yield f"{head}: {', '.join(options)}"


def _route_usage(gate: Gate, extension: GateKeeper, client: str, endpoint: str) -> list[Usage]:
    """Where ``client`` stands against a route's own rules (the global ones are listed
    once), for each method the route answers; none for a route's rules computed per
    request."""
    marks = gate.policies.route_marks(endpoint)
    if any(isinstance(mark.rules, RulesFunction) for mark in marks):
        return []  # they may need the request's data
    usages = [
        use
        for method in _route_methods(endpoint)
        for use in extension.usage(client, endpoint, method)
    ]
    return [use for use in usages if use.scope != GLOBAL_SCOPE]


def _route_methods(endpoint: str) -> list[str]:
    """The methods a route answers, but the ones Flask adds (HEAD, OPTIONS)."""
    methods: set[str] = set()
    for url_rule in current_app.url_map.iter_rules(endpoint):
        methods |= (url_rule.methods or set()) - {"HEAD", "OPTIONS"}
    return sorted(methods)


def _default_methods(gate: Gate, endpoint: str) -> list[str]:
    """The methods of a route on which the app's ``default_rules`` count."""
    scope = default_scope_name(endpoint)
    found = []
    for method in _route_methods(endpoint):
        policy = gate.policies.policy_for(endpoint, method)
        items = policy.per_request.scopes if policy.per_request else policy.scopes
        if any(item.name == scope for item in items):
            found.append(method)
    return found


@gatekeeper.command("config")
def show_config() -> None:
    """Show every option's GATEKEEPER_* key, the value in force and where it comes from."""
    sources = _gate().settings.sources
    for option in APP_OPTIONS:
        value, source = sources[option.name]
        where = {option.name: f"GateKeeper({option.name}=...)", option.key: "app.config"}.get(
            source, "default"
        )
        secret = option.name == "hash_keys" and isinstance(value, (str, bytes))
        click.echo(
            f"{option.key} = {'<a key of its own>' if secret else _masked(value)}  ({where})"
        )
