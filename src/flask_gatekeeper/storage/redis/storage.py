"""``RedisStorage``: the storage protocol on Redis, one script per request.

Decisions use the Redis server's clock, so app hosts with skewed clocks agree; expiries only
collect garbage (a second after the data stops mattering). The registry of network bans
(``lua/networks.lua``) sits under a tag of its own. Each process keeps a copy for
``NETWORK_REFRESH`` seconds; once it is older, a request looks up its networks of every
length, and its script returns the registry along (on Redis Cluster, where the registry sits
on another slot, the copy is read in a call of its own).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Optional, Union

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ... import strategies
from ...decision import (
    DEFAULT_OFFENCE,
    MANUAL,
    REPORTS,
    BanDetail,
    Decision,
    NewBan,
    Reservation,
    Usage,
)
from ...errors import ConfigError, StorageError
from ...identity.addresses import EVERY_LENGTH, NO_LENGTHS, NetworkLengths, network_of
from ...rules import BanRule, Rule
from ...strategies import STRATEGY_CODES
from ...units import instant, microseconds, seconds
from ..base import DEFAULT_KEY_PREFIX, RECORD_DEPRECATED, BanSteps, Clock, check_key_prefix
from ..plan import Scope, within
from .client import (
    DEFAULT_TIMEOUT,
    FAILURES,
    RedisClient,
    check_database,
    refusal,
    storage_error,
    storage_errors,
    unavailable,
    without_password,
)
from .cluster import hit_on_slots, steps_apart
from .encoding import (
    DISTINCT,
    HIT_MODE,
    NO_REPORT_TO,
    RECORD_MODE,
    REGISTRY_TAG,
    SHADOW_KEY,
    Argument,
    BanState,
    ban_rule_arguments,
    client_of,
    decision_of,
    detail_of,
    hash_tag,
    length_text,
    registry_lengths,
    report_flag,
    scope_of_key,
    scope_suffix,
    shadow_positions,
    stored,
)
from .scripts import BAN, HIT, NETWORKS, REFUND, RELEASE, REPORT, SCRIPTS, USAGE, Script, pooled

__all__ = ["NETWORK_REFRESH", "RedisStorage"]

NETWORK_REFRESH = 1.0
"""Seconds a process keeps its copy of the registry of network bans: a network banned by
another process is refused here within about this long (at once by this process)."""

_GLOB_SPECIAL = str.maketrans({char: f"\\{char}" for char in "*?[]\\"})

STEPS_KEPT = 4096
"""How many clients' ``_step_parts`` a Redis storage keeps made (least recently used out)."""


class RedisStorage:
    """Storage in Redis (or Valkey, Redis Cluster): one round trip per request.

    ``client`` is a ready ``redis.Redis`` or ``redis.RedisCluster``; ``from_url`` builds
    one with short timeouts. ``clock`` replaces the server's clock in tests.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock: Optional[Clock] = None,
    ) -> None:
        self.client = client
        self.key_prefix = check_key_prefix(key_prefix, "key_prefix")
        self.clock = clock
        self._clustered = any(cls.__name__ == "RedisCluster" for cls in type(client).__mro__)
        self._pooled = pooled(client)
        self._registry: tuple[float, NetworkLengths] = (-math.inf, NO_LENGTHS)
        """This process's copy of the registry of network bans, and when it was read (on
        ``clock``, else ``time.monotonic``)."""
        self._changes: tuple[float, int] = (-math.inf, 0)
        """The count of operator changes, read with the registry, and when."""
        self._step_parts = functools.lru_cache(maxsize=STEPS_KEPT)(self._make_step_parts)

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> RedisStorage:
        """``redis://``, ``rediss://`` or ``unix://`` URL, with short timeouts and one
        immediate retry on a connection error (a pooled connection may have died with a
        restarted server). Never on a timeout: the script may have run, and running it
        again would count the request twice."""
        try:
            check_database(url)
            client = redis.Redis.from_url(
                url,
                socket_timeout=DEFAULT_TIMEOUT,
                socket_connect_timeout=DEFAULT_TIMEOUT,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {without_password(url)!r}: {exc}") from None
        return cls(client, key_prefix=key_prefix)

    @property
    def location(self) -> str:
        """Where the data lives, as a URL without credentials (``redis://host:port/db``,
        ``unix://path``), or the client's class when it does not say."""
        pool = getattr(self.client, "connection_pool", None)
        options = getattr(pool, "connection_kwargs", {})
        if "path" in options:
            return f"unix://{options['path']}?db={options.get('db', 0)}"
        if "host" in options:
            return f"redis://{options['host']}:{options.get('port', 6379)}/{options.get('db', 0)}"
        return type(self.client).__name__

    def __repr__(self) -> str:
        return f"RedisStorage({self.location!r}, key_prefix={self.key_prefix!r})"

    def check(self) -> None:
        """Connect, authenticate, select the database and load every script, once, at
        start-up: ``ConfigError`` for what will never work (credentials refused, no such
        database, a server that is not Redis or runs no scripts), ``StorageError`` when
        Redis does not answer now (it may later: requests follow the outage policy)."""
        try:
            for script in SCRIPTS:
                self.client.script_load(script.source)
        except FAILURES as exc:
            if unavailable(exc):
                raise StorageError(f"Redis at {self.location} does not answer: {exc}") from exc
            raise ConfigError(f"Redis at {self.location}: {refusal(exc)}") from None

    def _key(self, client: str, suffix: str) -> str:
        return f"{self.key_prefix}{{{hash_tag(client)}}}:{suffix}"

    def _now_argument(self) -> Union[int, str]:
        return "" if self.clock is None else instant(self.clock())

    def _registry_key(self, suffix: str) -> str:
        return f"{self.key_prefix}{{{REGISTRY_TAG}}}:{suffix}"

    def _copy_time(self) -> float:
        return (self.clock or time.monotonic)()

    def _keep(self, read_at: float, answer: list[Any]) -> NetworkLengths:
        """Keep the registry's answer (the count of operator changes, then the lengths
        in use), read at ``read_at``, as this process's copy."""
        count, *members = answer
        lengths = registry_lengths(members)
        self._registry = (read_at, lengths)
        self._changes = (read_at, int(count))
        return lengths

    def _registry_call(
        self, action: str, entry: Optional[tuple[str, tuple[int, int], int]] = None
    ) -> NetworkLengths:
        """Run ``networks.lua``: "read" the registry, or "add" or "remove" an ``entry``
        (a network's key, its version and length, when its ban ends); the answer becomes
        this process's copy."""
        keys = [self._registry_key("lengths"), self._registry_key("changes")]
        args: list[Union[int, str]] = [self._now_argument(), action]
        if entry is not None:
            network, (version, length), end = entry
            keys.append(self._registry_key(f"{version}/{length}"))
            args += [network, f"{version}/{length}", end]
        read_at = self._copy_time()
        return self._keep(read_at, self._run(NETWORKS, keys, args))

    def _run(self, script: Script, keys: list[str], args: Sequence[Argument]) -> Any:
        try:
            if self._pooled is not None:
                return self._pooled(script, keys, args)
            return script(self.client, keys, args)
        except FAILURES as exc:
            raise storage_error(exc) from exc

    def _scopes(
        self, client: str, scopes: Sequence[Scope]
    ) -> tuple[list[str], list[Argument], list[tuple[Rule, str]]]:
        """The scopes' keys and arguments as the scripts read them, and their rules (with
        their scope's name) in the scripts' order: each scope's logged, then stateful,
        then distinct."""
        keys: list[str] = []
        args: list[Argument] = []
        rules: list[tuple[Rule, str]] = []
        for scope in scopes:
            who = scope.owner or client
            where = scope_suffix(scope.name)
            keys.append(self._key(who, f"log{where}"))
            longest = max((rule.window for rule in scope.logged), default=0)
            args += [scope.depth, microseconds(longest), scope.cost, int(scope.deferred)]
            args += [scope.concurrency, scope.lease_us, len(scope.logged)]
            for rule in scope.logged:
                args += [rule.count, rule.window_us]
            args.append(len(scope.stateful))
            for rule in scope.stateful:
                window = rule.window_us
                strategy = rule.strategy or ""
                apart = SHADOW_KEY if rule.shadow else ""  # as the memory's _state_key
                keys.append(self._key(who, f"{strategy}{where}:{rule.count}/{window}{apart}"))
                code = STRATEGY_CODES[strategy]
                args += [rule.count, window, code, strategies.offset(who, window)]
            args.append(len(scope.distinct))
            for index, (rule, value) in enumerate(zip(scope.distinct, scope.values)):
                keys.append(self._distinct_key(who, scope, index))
                text = b"" if value is None else value.encode("utf-8", "surrogatepass")
                args += [rule.count, rule.window_us, int(value is not None), text]
            args.append(shadow_positions(scope))
            if scope.concurrency:  # the request's client's slots, never an owner's
                keys.append(self._key(client, f"slots{where}"))
            rules += [(rule, scope.name) for rule in scope.logged + scope.stateful + scope.distinct]
        return keys, args, rules

    def _distinct_key(self, who: str, scope: Scope, index: int) -> str:
        """The key of the values that the scope's ``index``-th distinct rule holds for ``who``."""
        return self._key(who, f"{DISTINCT}{scope_suffix(scope.name)}:{scope.distinct_ids[index]}")

    def _make_step_parts(
        self, client: str, steps: BanSteps
    ) -> tuple[tuple[str, ...], tuple[Argument, ...]]:
        """The KEYS and the STEP_ARGS arguments that ``steps`` add to a script that may
        ban ``client`` (``after_ban`` in ``steps.lua``). On Redis Cluster, only the
        details (the client's ban, on the client's slot); ``steps_apart`` does the rest.
        Kept for the last ``STEPS_KEPT`` clients (``_step_parts``): every request that
        may ban sends them, and the gate gives each client the same ``steps``."""
        details = int(steps.details or steps.register)
        if self._clustered:
            return (), (0, details, client, "", "", "", 0, 0, 0)
        length = length_text(client) if steps.register else ""
        network, addresses = steps.network, steps.addresses
        keys = []
        if length or (network and addresses):
            keys += [self._registry_key("lengths"), self._registry_key("changes")]
        if length:
            keys.append(self._registry_key(length))
        if not network or addresses is None:
            return tuple(keys), (len(keys), details, client, length, "", "", 0, 0, 0)
        wider = length_text(network)
        keys += [self._key(network, "ban"), self._distinct_key(network, addresses, 0)]
        keys.append(self._registry_key(wider or "none"))
        rule = addresses.distinct[0]
        rule_args = (rule.count, rule.window_us, microseconds(steps.duration))
        return tuple(keys), (len(keys), details, client, length, network, wider, *rule_args)

    def _new_ban(
        self, client: str, duration: float, answer: list[Any], steps: BanSteps, read_at: float
    ) -> NewBan:
        """``after_ban``'s ``answer`` (the client's ban, the network's, the registry's
        answer) as a ``NewBan``: on Redis Cluster, the steps of other slots made apart."""
        own, wider, registry = answer if answer else ([], [], [])
        if registry:
            self._keep(read_at, registry)
        if self._clustered:
            own, wider = steps_apart(self, client, steps, own)
        network = steps.network if wider else None
        if not steps.details:
            return NewBan(duration, None, network)
        return NewBan(duration, detail_of(own), network, detail_of(wider))

    def _hit(
        self,
        client: str,
        scopes: Sequence[Scope],
        mode: int,
        usage: bool = False,
        report_to: Optional[BanRule] = None,
        also: Sequence[str] = (),
        token: Optional[str] = None,
        registry: bool = False,
        steps: Optional[BanSteps] = None,
        offence: str = DEFAULT_OFFENCE,
    ) -> tuple[list[Any], list[tuple[Rule, str]]]:
        """Run ``hit.lua``: its answer, and the rules its indices point into. ``registry``:
        the answer brings the registry of network bans along; ``steps``: what follows a
        ban that ``report_to`` makes (``_step_parts``)."""
        scope_keys, scope_args, rules = self._scopes(client, scopes)
        other_bans = [self._key(other, "ban") for other in also]
        keys = [self._key(client, "ban"), self._reports_key(client, offence), *other_bans]
        if registry:
            keys += [self._registry_key("lengths"), self._registry_key("changes")]
        keys += scope_keys
        args: list[Argument] = [
            self._now_argument(),
            int(usage),
            report_flag(report_to, offence, steps),
            *(ban_rule_arguments(report_to) if report_to is not None else NO_REPORT_TO),
            mode,
            len(other_bans),
            token or "",
            int(registry),
            *scope_args,
        ]
        if report_to is not None and steps is not None:
            step_keys, step_args = self._step_parts(client, steps)
            keys += step_keys
            args += step_args
        return self._run(HIT, keys, args), rules

    def hit(
        self,
        client: str,
        scopes: Sequence[Scope],
        *,
        usage: bool = False,
        report_to: Optional[BanRule] = None,
        also: Sequence[str] = (),
        token: Optional[str] = None,
        steps: Optional[BanSteps] = None,
        offence: str = DEFAULT_OFFENCE,
    ) -> Decision:
        """``steps``: see ``BanSteps``; one script does it all on one server."""
        if self._clustered and (also or any(scope.owner for scope in scopes)):
            decision = hit_on_slots(self, client, scopes, usage, report_to, also, token, offence)
            if steps is None or decision.new_ban is None:
                return decision
            new = self._new_ban(client, decision.new_ban, [], steps, self._copy_time())
            return replace(decision, ban=new)
        read_at = self._copy_time()
        registry = not self._clustered and read_at - self._registry[0] >= NETWORK_REFRESH
        answer, rules = self._hit(
            client, scopes, HIT_MODE, usage, report_to, also, token, registry, steps, offence
        )
        if registry:
            self._keep(read_at, answer[7])
        decision = decision_of(answer, rules, scopes, also, usage)
        if steps is None or decision.new_ban is None:
            return decision
        new = self._new_ban(client, decision.new_ban, answer[9], steps, read_at)
        return replace(decision, ban=new)

    def _ban_state(self, client: str) -> BanState:
        """The microseconds left of the client's ban (0: none), 1 when it was set by hand,
        and its offence: one script on the client's slot."""
        left, by_hand, offence = self._run(
            BAN, [self._key(client, "ban")], [self._now_argument(), "state", 0]
        )
        return int(left), int(by_hand), offence

    def record(self, client: str, scopes: Sequence[Scope]) -> None:
        """Deprecated: count the request in every rule of ``scopes``, checking nothing.
        ``hit`` records ``count_when`` routes' scopes itself now, and ``refund`` takes
        back what the response does not count."""
        warnings.warn(RECORD_DEPRECATED, DeprecationWarning, stacklevel=2)
        for who, group in self._slots(client, scopes):
            self._hit(who, [scopes[index] for index in group], RECORD_MODE)

    def _slots(self, client: str, scopes: Sequence[Scope]) -> list[tuple[str, list[int]]]:
        """The scopes' indices grouped by the slot their keys sit on, in order of first
        appearance, each with the client whose slot it is: one group, the client's, on one
        server; on Redis Cluster, one per key that the scopes count under."""
        groups: dict[str, list[int]] = {}
        for index, scope in enumerate(scopes):
            who = scope.owner if self._clustered and scope.owner else client
            groups.setdefault(who, []).append(index)
        return list(groups.items())

    def refund(self, client: str, scopes: Sequence[Scope], reserved: Sequence[Reservation]) -> None:
        """One script (``refund.lua``); on Redis Cluster one per key that the scopes
        count under, each on its own slot."""
        for _, group in self._slots(client, scopes[: len(reserved)]):
            keys, args, _ = self._scopes(client, [scopes[index] for index in group])
            taken: list[Argument] = []
            for reservation in (reserved[index] for index in group):
                taken.append(reservation.stamp)
                taken += [repr(state) for state in reservation.states]
                taken += [int(added) for added in reservation.added]
            self._run(REFUND, keys, [self._now_argument(), len(taken), *taken, *args])

    def release(self, client: str, scope_names: Sequence[str], token: str) -> None:
        """One command: a ``ZREM``, or ``release.lua`` for slots in several scopes."""
        keys = [self._key(client, f"slots{scope_suffix(name)}") for name in scope_names]
        if len(keys) > 1:
            self._run(RELEASE, keys, [token])
            return
        with storage_errors():
            self.client.zrem(keys[0], token)

    def usage(self, client: str, scopes: Sequence[Scope]) -> list[Usage]:
        """One script (``usage.lua``); on Redis Cluster one per key that the scopes count
        under, each on its own slot."""
        per_scope: dict[int, list[Usage]] = {}
        for _, group in self._slots(client, scopes):
            keys, args, rules = self._scopes(client, [scopes[index] for index in group])
            answer = iter(self._run(USAGE, keys, [self._now_argument(), *args]))
            seen = [
                Usage(rule, next(answer), seconds(next(answer)), scope_name)
                for rule, scope_name in rules
            ]
            for index in group:
                scope = scopes[index]
                taken = len(scope.logged) + len(scope.stateful) + len(scope.distinct)
                per_scope[index], seen = seen[:taken], seen[taken:]
        return [use for index in range(len(scopes)) for use in per_scope[index]]

    def _reports_key(self, client: str, offence: str) -> str:
        """The offence's reports (a list, newest first): the default offence's key is
        the one flask-gatekeeper had before offences."""
        return self._key(client, "reports" if offence == DEFAULT_OFFENCE else f"reports:{offence}")

    def report(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str = REPORTS,
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[float]:
        duration = self._run_report(client, ban_rule, reason, offence)
        return seconds(duration) if duration >= 0 else None

    def _run_report(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str,
        offence: str,
        step_parts: tuple[Sequence[str], Sequence[Argument]] = ((), ()),
    ) -> Any:
        """Run ``report.lua``, with the KEYS and arguments of the steps after a ban
        (``_step_parts``) when given: its answer."""
        step_keys, step_args = step_parts
        keys = [self._reports_key(client, offence), self._key(client, "ban"), *step_keys]
        args: list[Argument] = [self._now_argument(), *ban_rule_arguments(ban_rule), reason]
        args += [stored(offence), *step_args]
        return self._run(REPORT, keys, args)

    def report_steps(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str,
        steps: Optional[BanSteps],
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[NewBan]:
        """``report`` and the ``steps`` after its ban in one script (``report.lua``); on
        Redis Cluster, the steps of other slots apart (``steps_apart``)."""
        if steps is None:
            duration = self.report(client, ban_rule, reason, offence)
            return None if duration is None else NewBan(duration)
        step_parts = self._step_parts(client, steps)
        read_at = self._copy_time()
        duration, answer = self._run_report(client, ban_rule, reason, offence, step_parts)
        if duration < 0:
            return None
        return self._new_ban(client, seconds(duration), answer, steps, read_at)

    def _ban_action(
        self,
        client: str,
        action: str,
        duration: float = 0,
        reason: str = MANUAL,
        offence: str = DEFAULT_OFFENCE,
    ) -> int:
        args = [self._now_argument(), action, microseconds(duration), reason, stored(offence)]
        return int(self._run(BAN, [self._key(client, "ban")], args))

    def ban(
        self, client: str, duration: float, reason: str = MANUAL, offence: str = DEFAULT_OFFENCE
    ) -> None:
        end = self._ban_action(client, "ban", duration, reason, offence)
        network = network_of(client)
        if network is not None:  # a second call: the registry has a tag of its own
            self._registry_call("add", (client, network, end))

    def unban(self, client: str) -> bool:
        end = self._ban_action(client, "unban")  # when the ban would have ended, 0 if none
        network = network_of(client)
        if end and network is not None:
            self._registry_call("remove", (client, network, end))
        self._changed()
        return end > 0

    def _changed(self) -> None:
        """Count one operator action that may end refusals (an unban, a reset): every
        process's ``KnownRefusals`` forgets what it remembers once it reads the count,
        which comes along with the registry of network bans (same hash tag)."""
        with storage_errors():
            self.client.incr(self._registry_key("changes"))

    def operator_changes(self, *, cached: bool = False) -> Optional[int]:
        """How many operator actions ended refusals so far: this process's copy, read
        along with the registry (no call), or None with ``cached`` when it is older than
        ``NETWORK_REFRESH``; without ``cached``, read now (one script, the registry's)."""
        read_at, count = self._changes
        if cached:
            return count if self._copy_time() - read_at < NETWORK_REFRESH else None
        self._registry_call("read")
        return self._changes[1]

    def network_lengths(self, *, cached: bool = False) -> NetworkLengths:
        """The registry (one script), or with ``cached`` this process's copy while it is
        younger than ``NETWORK_REFRESH``; once older, ``EVERY_LENGTH``, and the next
        request's script reads the registry along. On Redis Cluster that script cannot
        reach the registry's slot, so an older copy is read again in a call of its own
        (kept as it is, for another second, when the call fails: the request's own call
        will meet the failure)."""
        if not cached:
            return self._registry_call("read")
        read_at, lengths = self._registry
        if self._copy_time() - read_at < NETWORK_REFRESH:
            return lengths
        if not self._clustered:
            return EVERY_LENGTH
        try:
            return self._registry_call("read")
        except StorageError:
            self._registry = (self._copy_time(), lengths)
            return lengths

    def banned_for(self, client: str) -> float:
        return seconds(self._ban_action(client, "left"))

    def _scan(self, pattern: str) -> list[str]:
        with storage_errors():
            return [
                key.decode() if isinstance(key, bytes) else str(key)
                for key in self.client.scan_iter(match=pattern, count=1000)
            ]

    def bans(self) -> dict[str, float]:
        """Every active ban (a SCAN over the prefix: for operators, not for requests)."""
        return {client: detail.left for client, detail in self.ban_details().items()}

    def ban_details(self) -> dict[str, BanDetail]:
        """Every active ban and its details (a SCAN, then one read per ban)."""
        head, tail = f"{self.key_prefix}{{", "}:ban"
        found = {}
        for key in self._scan(f"{head.translate(_GLOB_SPECIAL)}*{tail}"):
            detail = self._detail(key)
            if detail is not None:
                found[client_of(key[len(head) : -len(tail)])] = detail
        return found

    def ban_detail(self, client: str) -> Optional[BanDetail]:
        return self._detail(self._key(client, "ban"))

    def _detail(self, ban_key: str) -> Optional[BanDetail]:
        return detail_of(self._run(BAN, [ban_key], [self._now_argument(), "detail", 0]))

    def reset(self, client: str, scope: Optional[str] = None) -> None:
        """Forget the client (a SCAN of its keys: for operators, not for requests)."""
        if scope is None and network_of(client) is not None:
            self.unban(client)  # first, for the registry to learn when its ban ends
        head = self._key(client, "")
        keys = self._scan(f"{head.translate(_GLOB_SPECIAL)}*")
        if scope is not None:
            names = [(key, scope_of_key(key[len(head) :])) for key in keys]
            keys = [key for key, name in names if name is not None and within(name, scope)]
        if keys:
            with storage_errors():
                self.client.delete(*keys)
        self._changed()
