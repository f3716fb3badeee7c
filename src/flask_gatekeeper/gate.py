"""What happens to a request: identify -> route policy -> one storage call -> decision.

``Gate.check_request`` is the ``before_request`` hook; each step lives in the module of
its name (``identity``, ``routes`` and ``request``, the ``storage``, ``responses``), and
what the gate reports on the way (counters, signals, logs) goes through ``events``.
``count_report`` (``gk.report()``) uses the same identify step and storage-call path.
"""

from __future__ import annotations

import functools
import itertools
import logging
import secrets
import time
import warnings
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

from flask import (
    Flask,
    Request,
    Response,
    after_this_request,
    has_request_context,
    request,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import ClosingIterator

from .decision import (
    DEFAULT_OFFENCE,
    GLOBAL_SCOPE,
    RATE_LIMIT,
    REPORTS,
    RESPONSE,
    SUBNET,
    BanDetail,
    Decision,
    NewBan,
    Reservation,
    ShadowRefusal,
)
from .errors import StorageCallError, StorageError
from .events import Events, Meter
from .identity.addresses import NO_LENGTHS, NetworkLengths, wider_network
from .known import KnownRefusals
from .options import Settings
from .outage import RETRY_INTERVAL, OutageGuard
from .request import PerRequest, ResponsePredicate, current_state, owners, pop_state, state
from .responses import (
    Banned,
    Denied,
    RateLimited,
    StorageUnavailable,
    TooManyInFlight,
    policy_name,
    rate_limit_headers,
    retry_after_header,
)
from .routes import Policies
from .rules import BanRule, ConcurrencyLimit, Rule, SubnetBanRule
from .signals import client_banned
from .state_file import StateFile
from .storage import MemoryStorage
from .storage.base import BanSteps, bans_in_one_step
from .storage.plan import Scope, within

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["DOWN", "Down", "Gate"]

logger = logging.getLogger("flask_gatekeeper")

_NOBODY: tuple[str, ...] = ()

Refusal = Union[Banned, Denied, RateLimited]

_ALONE = {
    "local": "decided by this process's own limits",
    "open": "admitted",
    "closed": "refused with 503",
}
"""What a request whose storage call failed on its own meets, by outage policy."""

BAN_STEPS_KEPT = 4096
"""How many clients' ``BanSteps`` a gate keeps made (least recently used out)."""

READY_RESPONSES = 1024
"""How many refusal responses a gate keeps ready (see ``Gate._refuse``): all of them are
forgotten when one more is needed, so an attack from many clients keeps them bounded."""
T = TypeVar("T")


def _handled(app: Flask, kind: type[HTTPException]) -> bool:
    """Whether the app would handle a refusal of class ``kind`` itself: a handler for its
    status code or for one of its classes (on the app, or a blueprint of this request),
    or trapping of HTTP exceptions. Read from Flask's public ``error_handler_spec``, on
    every refusal, so handlers registered at any time count."""
    if app.config.get("TRAP_HTTP_EXCEPTIONS"):
        return True
    spec = app.error_handler_spec
    # The app's own handlers are under None: the request's blueprints are looked up only
    # when some blueprint has handlers.
    names = (None, *request.blueprints) if len(spec) > (None in spec) else (None,)
    classes = kind.__mro__
    for name in names:
        handlers = spec.get(name)
        if not handlers:
            continue
        for code in (kind.code, None):
            by_class = handlers.get(code)
            if by_class and not by_class.keys().isdisjoint(classes):
                return True
    return False


def _no_network_bans(*, cached: bool = False) -> NetworkLengths:
    """The registry of a storage object that keeps none (one written before network
    bans): no network to look up."""
    return NO_LENGTHS


class _Slot:
    """The slots of the concurrency limits one admitted request holds, given back once,
    whichever way the request ends: its response complete (a streamed one closed by the
    server, which happens after the request's teardown), or an exception no handler took.
    """

    __slots__ = ("_client", "_gate", "_names", "_once", "_token")

    def __init__(self, gate: Gate, client: str, names: tuple[str, ...], token: str) -> None:
        self._gate, self._client, self._names, self._token = gate, client, names, token
        self._once = itertools.count()  # next() is one atomic call: only the first releases

    def on_response(self, response: Response) -> Response:
        """``after_this_request``: a streamed body (a generator, a file) is produced while
        it is sent, so its slots are held until the server closes the response. Any
        other response is complete, an error page run from an ``HTTPException`` too
        (Flask runs it as a WSGI app: its body is a ``ClosingIterator`` over text)."""
        if response.is_streamed and not isinstance(response.response, ClosingIterator):
            response.call_on_close(self.release)
        else:
            self.release()
        return response

    def release(self) -> None:
        if next(self._once) == 0:
            self._gate.release(self._client, self._names, self._token)


def _given_by_the_gate() -> None:
    """The function of a distinct rule whose values the gate sets itself."""
    return


@functools.lru_cache(maxsize=8)
def banned_addresses(rule: SubnetBanRule) -> Scope:
    """The scope, under a network's key, that counts its distinct banned addresses."""
    counter = Rule(rule.count, rule.window, distinct=_given_by_the_gate)
    return Scope.of("banned addresses", (counter,))


def _log_would_refuse(why: str, make: Callable[[], Refusal]) -> None:
    """Log at INFO a refusal that was not made (``why``: a dry run, a shadow rule)."""
    where = f"{request.method} {request.path}" if has_request_context() else "a call"
    logger.info("%s, would refuse %s: %s", why, where, make().description)


def _offence_argument(offence: Optional[str]) -> tuple[str, ...]:
    """``offence`` as the last argument of a storage's ``report`` or ``ban``: none for
    the default offence (or a ban of none), so that call is as it was before offences (a
    storage of the app's own may not know them)."""
    return () if offence is None or offence == DEFAULT_OFFENCE else (offence,)


class Down:
    """What ``Gate.ask_storage`` returns while the storage is down."""


DOWN = Down()


class Gate:
    """One app's request path, with its settings, route policies, storage health and
    events. Lives in ``app.extensions["gatekeeper"]``; ``owner`` is the ``GateKeeper``
    whose decorators' marks it reads."""

    def __init__(self, owner: object, settings: Settings, app: Flask) -> None:
        self.owner = owner
        self.settings = settings
        self.identifier = settings.identifier
        """Who is asking (``identity.proxies``): the request path asks it directly."""
        self.events = Events(app)
        self.policies = Policies(owner, app.view_functions, app.blueprints, settings)
        clock = getattr(settings.storage, "clock", None) or time.monotonic
        self.guard = OutageGuard(settings.on_outage, clock=clock)
        self.fallback: Optional[MemoryStorage] = None
        """With ``on_outage="local"``: the storage that decides while the shared one is
        down, on the same rules; its bans go to the shared storage when it is back."""
        if settings.on_outage == "local":
            self.fallback = MemoryStorage(clock=clock)
        self._usage = bool(settings.headers)
        self._report_to = settings.ban_rule if settings.report_rate_limited else None
        self._one_step = bans_in_one_step(settings.storage)
        """The storage, when it makes the steps after a ban in the ban's own step
        (``storage.base.OneStepBans``): asked once, here."""
        self._steps_of = functools.lru_cache(maxsize=BAN_STEPS_KEPT)(self._make_steps)
        self._processes_checked = not isinstance(settings.storage, MemoryStorage)
        self._network_lengths: Callable[..., NetworkLengths] = getattr(
            settings.storage, "network_lengths", _no_network_bans
        )
        self._warned_no_refund = False
        self._ready: dict[tuple[object, ...], tuple[str, list[tuple[str, str]]]] = {}
        """Refusal responses made, by what makes them (see ``_refuse``)."""
        self.known: Optional[KnownRefusals] = None
        """Refusals of a shared storage, answered again without asking it (``known``)."""
        changes = getattr(settings.storage, "operator_changes", None)
        if settings.cache_refusals and changes is not None:
            clock = getattr(settings.storage, "clock", None) or time.monotonic
            self.known = KnownRefusals(changes, clock, limits=self._report_to is None)
        self.state_file: Optional[StateFile] = None
        if settings.state_file is not None:
            assert isinstance(settings.storage, MemoryStorage)  # load_settings checked
            self.state_file = StateFile(settings.state_file, settings.storage)
            self.state_file.load()

    def add_meter(self, meter: Meter) -> None:
        """Count this app's events with ``meter`` too; an outage that began before (at
        start-up) is told to it now."""
        self.events.add_meter(meter)
        if self.guard.down:
            meter.storage_down(self.events, True)

    # -- the request path -----------------------------------------------------------------

    def check_request(self) -> Optional[Response]:
        """``before_request``: None to admit; a refusal is the ``HTTPException`` raised
        for the app's error handler, or, when no handler would take it, its response
        returned at once (the same bytes, without Flask's exception machinery)."""
        settings = self.settings
        if not settings.enabled:
            return None
        req: Request = request._get_current_object()  # type: ignore[attr-defined]  # once
        if not self._processes_checked:
            self._check_processes(req.environ)
        rule = req.url_rule  # its endpoint, read without the property's call
        endpoint = None if rule is None else rule.endpoint
        # policy_for's own cache read, without its call and its check of the method: 850
        # instructions per request (callgrind); equal to it (tests/test_fast_paths.py)
        policy = self.policies.cache.get((endpoint, req.method))
        if policy is None:
            policy = self.policies.policy_for(endpoint, req.method)
        if policy.bypass:
            return None
        identifier = self.identifier
        lengths = self._network_lengths(cached=True)  # those of the networks banned now
        key = identifier.peer_key(req.remote_addr, policy.key_func, lengths)
        if key is not None:
            # identify's answer for it, without making the Client: 2,800 instructions per
            # request (callgrind); equal to it (tests/test_fast_paths.py)
            denied, also = False, _NOBODY
        else:
            client = identifier.identify(req.headers, req.remote_addr, policy.key_func, lengths)
            if client is None:
                return None
            key, denied, also = client
        if key is None:  # key_func leaves the request alone; its address's ban does not
            return self._ban_only(also[0], also[1:]) if also else None
        if denied:
            denial = partial(Denied, key, ipv6_prefix=self.identifier.ipv6_prefix)
            return self._refuse(Denied, key, None, None, denial, req.environ)
        scopes = policy.scopes
        if policy.per_request is not None:
            computed = self.scopes_for(policy.per_request, key)
            if computed is None:
                return None
            scopes = computed
            also += owners(scopes)
        token = secrets.token_hex(8) if policy.concurrency else None
        jail = policy.offence
        decision = self.hit(key, scopes, usage=self._usage, also=also, token=token, offence=jail)
        if decision is not None:
            if decision.usage is not None:
                fields = rate_limit_headers(scopes, decision.usage, settings.headers)
                state().fields = fields
            if not decision.admitted:
                return self.refuse(key, decision, environ=req.environ, offence=jail)
            self.events.admitted()
            if decision.shadowed:
                self.shadow_refused(key, decision.shadowed)
            if token is not None:
                self._hold(key, scopes, token)
            if policy.count_when:
                self._settle_after_response(key, scopes, policy.count_when, decision.reserved)
        if policy.report_when:
            offence = policy.offence or settings.offence
            self._report_after_response(key, policy.report_when, offence)
        return None

    def _hold(self, client: str, scopes: tuple[Scope, ...], token: str) -> None:
        """Give back the slots that the storage took for ``token`` (in every scope with a
        concurrency limit) once the request ends: only requests that took one pay."""
        names = tuple(scope.name for scope in scopes if scope.concurrency)
        if names:
            slot = _Slot(self, client, names, token)
            state().release_slots = slot.release
            after_this_request(slot.on_response)

    def release_on_error(self, sender: Flask, **extra: Any) -> None:
        """``got_request_exception``: an exception that no handler took ends the request,
        maybe with no response at all (when Flask propagates it): release its slots now."""
        held = current_state()
        if held is not None and held.release_slots is not None:
            held.release_slots()  # once: the response, if one is made, releases nothing

    def release(self, client: str, names: tuple[str, ...], token: str) -> None:
        """Give back the request's slots. It may run after the request's contexts are
        gone; while the storage is down it is skipped (logged), and the leases end. A
        slot the fallback took is given back to it (releasing one it never took is no
        error)."""
        if self.fallback is not None:
            self.fallback.release(client, names, token)
        self.ask_storage(self.settings.storage.release, client, names, token)

    def _report_after_response(
        self, client: str, report_when: tuple[ResponsePredicate, ...], offence: str
    ) -> None:
        """Report the client (of ``offence``) once the response is known, when any of
        ``report_when`` accepts it (``after_this_request``: only requests that need it pay
        for it)."""

        def report_if_matched(response: Response) -> Response:
            try:
                matched = any(predicate(response) for predicate in report_when)
            except Exception:
                logger.exception("a report_when function failed; nothing is reported")
                return response
            if matched:
                self.count_report(client, RESPONSE, offence)
            return response

        after_this_request(report_if_matched)

    def count_report(
        self, client: str, reason: str = REPORTS, offence: str = DEFAULT_OFFENCE
    ) -> bool:
        """One report of ``client`` toward ``offence``'s ban rule: True when it bans (for
        ``reason``). Never raises: without that ban rule, or while the storage is down
        (logged), it reports nothing."""
        ban_rule = self.settings.ban_rules.get(offence)
        if ban_rule is None:
            return False
        if self._one_step is not None:
            return self._count_report_in_one_step(client, ban_rule, reason, offence)
        storage = self.settings.storage
        jail = _offence_argument(offence)
        banned_for = self.ask_storage(storage.report, client, ban_rule, reason, *jail)
        if isinstance(banned_for, Down):
            if self.fallback is None:
                return False
            storage = self.fallback  # counted here while the shared storage is down
            banned_for = storage.report(client, ban_rule, reason, offence)
        if banned_for is not None and self.settings.identifier.is_network(client):
            # A ban of no time changes no ban; it enters this one in the storage's registry
            # of network bans, which requests read (reports alone never do).
            if storage is self.fallback:
                storage.ban(client, 0)
            else:
                self.ask_storage(storage.ban, client, 0)
        self._report_counted(client, banned_for, reason, offence)
        return banned_for is not None

    def _report_counted(
        self, client: str, banned_for: Optional[float], reason: str, offence: str
    ) -> None:
        """A report of ``offence`` that a storage counted without the steps after its ban
        (``banned_for``: the ban it started, if it did): signalled and logged; after a
        ban, the client's remembered 429s go and the subnet ban rule escalates."""
        detail = self.ban_detail(client, banned_for)
        self.events.report_counted(client, banned_for, reason, detail, offence)
        if banned_for is not None:
            self.forget_refusals(client)
            self._escalate(client)

    def _count_report_in_one_step(
        self, client: str, ban_rule: BanRule, reason: str, offence: str
    ) -> bool:
        """``count_report`` on a storage that makes the ban's steps (its detail, the
        registry, the escalation) in the report's own step: one storage call."""
        assert self._one_step is not None
        steps = self._ban_steps(client)
        new = self.ask_storage(
            self._one_step.report_steps, client, ban_rule, reason, steps, offence
        )
        if isinstance(new, Down):
            if self.fallback is None:
                return False
            new = self.fallback.report_steps(client, ban_rule, reason, steps, offence)
        if new is None:
            self.events.report_counted(client, None, reason, None, offence)
            return False
        self._banned_by_report(client, reason, new, offence)
        return True

    def _banned_by_report(self, client: str, reason: str, new: NewBan, offence: str) -> None:
        """Signal and log a report's ban of ``offence`` and what its step did after it
        (the network that the subnet ban rule banned with it), with no storage call."""
        self.events.report_counted(client, new.duration, reason, new.detail, offence)
        self.forget_refusals(client)
        if new.network is not None:
            self._network_banned(new.network, new.network_detail)

    def _ban_steps(self, client: str) -> Optional[BanSteps]:
        """What a storage that makes a ban's steps itself does after a ban of ``client``:
        its detail when someone listens for bans, the registry when it is a network,
        the subnet ban rule's escalation. None when nothing follows. Asked for every
        request that a refusal of may ban, so cheaply: a receiver of any app's bans
        asks for the detail (read in the same step, sent to this app's receivers only),
        and a client whose key has no "/" (an address, a ``key_func`` key) is no
        network: without a subnet ban rule or a receiver, nothing follows its ban."""
        details = bool(client_banned.receivers)
        if not details and self.settings.subnet_ban_rule is None and "/" not in client:
            return None
        return self._steps_of(client, details)

    def _make_steps(self, client: str, details: bool) -> Optional[BanSteps]:
        """``_ban_steps``'s answer, made once per client (``BAN_STEPS_KEPT``)."""
        register = self.identifier.is_network(client)
        rule = self.settings.subnet_ban_rule
        network = (
            None if rule is None else wider_network(client, rule.ipv4_prefix, rule.ipv6_prefix)
        )
        if not (details or register or network):
            return None
        if rule is None or network is None:
            return BanSteps(details, register)
        return BanSteps(details, register, network, banned_addresses(rule), rule.duration)

    def _escalate(self, client: str) -> None:
        """``client`` was just banned (by the ban rule): with a ``subnet_ban_rule``, count
        it among the banned addresses of its network, and ban the network once they
        reach the rule's count within its window. A distinct-value rule counts them, in
        the storage, under the network's key."""
        rule = self.settings.subnet_ban_rule
        if rule is None:
            return
        network = wider_network(client, rule.ipv4_prefix, rule.ipv6_prefix)
        if network is None:  # a key_func key, or a network already as wide
            return
        scope = replace(banned_addresses(rule), values=(client,))
        storage = self.settings.storage
        decision = self.ask_storage(storage.hit, network, (scope,), usage=True)
        if isinstance(decision, Down) or decision.banned:  # the network is banned already
            return
        if decision.admitted and decision.usage is not None and decision.usage.remaining:
            return
        if not isinstance(self.ask_storage(storage.ban, network, rule.duration, SUBNET), Down):
            self._network_banned(network, self.ban_detail(network))

    def _network_banned(self, network: str, detail: Optional[BanDetail]) -> None:
        """The subnet ban rule banned ``network``: signalled and logged."""
        rule = self.settings.subnet_ban_rule
        assert rule is not None  # only its escalation bans for SUBNET
        self.forget_refusals()  # its addresses' 429s would hide the network's 403
        self.events.banned(network, rule.duration, SUBNET, detail)

    def ban_detail(self, client: str, banned_for: Optional[float] = 0) -> Optional[BanDetail]:
        """The client's ban as the ``client_banned`` signal carries it: read from the
        storage only when a ban was made (``banned_for`` not None) and someone listens."""
        if banned_for is None or not self.events.hears_bans():
            return None
        detail = self.ask_storage(self.settings.storage.ban_detail, client)
        return None if isinstance(detail, Down) else detail

    def _settle_after_response(
        self,
        client: str,
        scopes: tuple[Scope, ...],
        count_when: tuple[tuple[str, ResponsePredicate], ...],
        reserved: tuple[Reservation, ...],
    ) -> None:
        """``count_when`` routes: the storage recorded the request in every scope when it
        admitted it, and ``reserved`` says what, in each deferred scope. Once the response
        is known (``after_this_request``: only these routes pay for it), give back (one
        more storage call) what the scopes whose ``count_when`` declines it reserved. A
        function that raises keeps the reservation (logged with its name), and so does a
        storage outage (logged): the safe side. Neither changes the response."""
        predicates = dict(count_when)
        deferred = [scope for scope in scopes if scope.deferred]
        for scope in deferred:  # a key's rules are counted when their route's are
            if scope.name not in predicates:
                predicates[scope.name] = next(
                    f for name, f in count_when if within(scope.name, name)
                )
        storage = self.settings.storage
        refund = getattr(storage, "refund", None)
        if refund is None:  # a storage object written before reservations: the old way
            self._warn_no_refund(storage)

        def settle(response: Response) -> Response:
            counts = [self._counts(predicates[scope.name], response) for scope in deferred]
            if refund is None:
                counted = [scope for scope, count in zip(deferred, counts) if count]
                if counted:
                    self.ask_storage(storage.record, client, counted)  # type: ignore[attr-defined]
                return response
            declined = [  # ``reserved`` is in the order of the deferred scopes
                (scope, taken)
                for scope, taken, count in zip(deferred, reserved, counts)
                if not count
            ]
            if declined:
                scopes_back, taken_back = zip(*declined)
                given_back = self.ask_storage(refund, client, scopes_back, taken_back)
                if isinstance(given_back, Down) and self.fallback is not None:
                    self.fallback.refund(client, scopes_back, taken_back)  # reserved there
            return response

        if deferred:
            after_this_request(settle)

    @staticmethod
    def _counts(predicate: ResponsePredicate, response: Response) -> bool:
        """Whether a ``count_when`` function counts the response; one that raises does
        (its request keeps what it reserved), logged with its name."""
        try:
            return bool(predicate(response))
        except Exception:
            name = getattr(predicate, "__qualname__", None) or repr(predicate)
            logger.exception("the count_when function %s failed; the request is counted", name)
            return True

    def _warn_no_refund(self, storage: object) -> None:
        """Once per gate: a storage without ``refund`` counts after the response."""
        if not self._warned_no_refund:
            self._warned_no_refund = True
            warnings.warn(
                f"{type(storage).__name__} has no refund(): count_when routes are checked "
                "before the view and counted after the response with its record(), which "
                "is deprecated and lets requests in flight together past the limit; "
                "implement Storage.refund",
                DeprecationWarning,
                stacklevel=2,
            )

    def _ban_only(self, client: str, also: tuple[str, ...]) -> Optional[Response]:
        """Refuse the request if ``client``, or one of ``also``, is banned; count nothing."""
        decision = self.hit(client, (), usage=False, also=also)
        if decision is not None and not decision.admitted:
            return self.refuse(client, decision, environ=request.environ)
        return None

    def requester(self) -> Optional[str]:
        """The current request's client key for ``gk.report()``; None when nothing applies to
        it (allow list, or a ``key_func`` that returned None) or the deny list refuses it."""
        policy = self.policies.policy_for(request.endpoint, request.method)
        client = self.identifier.identify(request.headers, request.remote_addr, policy.key_func)
        if client is None or client.denied:
            return None
        return client.key  # None too when key_func leaves the request alone

    def client_ip(self) -> Optional[str]:
        """The current request's address as a client key (proxy-aware, normalised), or
        None when the request has none."""
        address = self.settings.identifier.client_address(request.headers, request.remote_addr)
        return None if address is None else address.key

    def scopes_for(self, per_request: PerRequest, client: str) -> Optional[tuple[Scope, ...]]:
        """The scopes of this request, computed by the app's functions (rules functions,
        ``exempt_when``). One that raises, or returns something that is not rules, is
        logged and met like a storage outage: None (admit) or, failing closed, a 503."""
        try:
            return per_request.scopes_for(
                client, self.settings.strategy, hasher=self.identifier.hasher
            )
        except Exception:
            logger.exception(
                "a rules or exempt_when function failed; %s",
                "refusing it (503)" if self.guard.policy == "closed" else "admitting the request",
            )
            self._unanswered()
            return None

    def hit(
        self,
        client: str,
        scopes: tuple[Scope, ...],
        *,
        usage: bool,
        also: tuple[str, ...] = (),
        token: Optional[str] = None,
        offence: Optional[str] = None,
    ) -> Optional[Decision]:
        """The storage's decision; while it is down, the fallback's (``on_outage="local"``),
        or None to admit ("open"; "closed" raises ``StorageUnavailable``).
        ``also``: other clients whose bans refuse the request (the address behind a
        ``key_func`` key, the client's banned networks, the keys of rules with their
        own); ``token``: the request's slot, taken under ``client``, in every scope with a
        concurrency limit; ``offence``: the route's, which its 429s count toward as
        reports (``report_rate_limited``) instead of the default offence."""
        hit, report_to, usage = self.settings.storage.hit, self._report_to, usage and bool(scopes)
        if offence is not None and report_to is not None:
            # a partial, not ``**{"offence": ...}`` in every call: an empty ``**`` costs
            # the common path about a third of a microsecond; the default offence's call
            # is as it was before offences (a storage of the app's own may not know them)
            report_to, hit = self.settings.ban_rules[offence], partial(hit, offence=offence)
        known = self.known
        if known is not None:
            remembered = known.refusal(client, scopes, also, usage)
            if remembered is not None:
                return remembered
        if report_to is not None and self._one_step is not None:
            steps = self._ban_steps(client)
            if steps is not None:  # its refusal may ban: the storage makes what follows
                jail = offence or DEFAULT_OFFENCE
                hit = partial(self._one_step.hit, steps=steps, offence=jail)
        decision: Union[Decision, Down]
        if self.guard.down:
            decision = self.ask_storage(
                hit, client, scopes, usage=usage, report_to=report_to, also=also, token=token
            )
        else:
            # ask_storage(hit, ...) while the storage is up, without its call and its outage
            # bookkeeping (a call made while the storage is up ends no outage): 4,800
            # instructions per request (callgrind); equal to it (tests/test_fast_paths.py)
            try:
                decision = hit(
                    client, scopes, usage=usage, report_to=report_to, also=also, token=token
                )
            except Exception as exc:  # each failure as its class says (see _failed)
                self._failed(exc, self.settings.storage.hit)
                decision = DOWN
        if not isinstance(decision, Down):
            if known is not None and not decision.admitted:
                known.learn(client, scopes, decision)
            return decision
        if self.fallback is not None:
            steps = self._ban_steps(client) if report_to is not None else None
            return self.fallback.hit(
                client,
                scopes,
                usage=usage,
                report_to=report_to,
                also=also,
                token=token,
                steps=steps,
                offence=offence or DEFAULT_OFFENCE,
            )
        self._unanswered()
        return None

    def forget_refusals(self, client: Optional[str] = None) -> None:
        """An operator ended or shortened refusals here: this process forgets what it
        remembers at once (the others within a second: the storage counts the change).
        With ``client``: this process banned it, so its remembered 429s go (the next
        request meets the ban)."""
        if self.known is not None:
            self.known.forget(client)

    def _unanswered(self) -> None:
        """No decision could be made: refuse with 503 when failing closed, else admit."""
        if self.guard.policy == "closed":
            raise StorageUnavailable(RETRY_INTERVAL)
        self.events.admitted()

    def ask_storage(self, call: Callable[..., T], *args: Any, **options: Any) -> Union[T, Down]:
        """``call(*args, **options)``'s result, or ``DOWN`` when it has none: while the
        storage is down (counted, logged once per outage, signalled; a down storage is
        tried again once a second), or when this call alone failed (see ``_failed``)."""
        guard = self.guard
        if guard.down and not guard.may_probe():
            return DOWN
        outages = guard.outages
        result: Union[T, Down]
        try:
            result = call(*args, **options)
        except Exception as exc:  # each failure as its class says (see _failed)
            if self._failed(exc, call) or not isinstance(exc, StorageCallError):
                return DOWN  # an outage, or an error that says nothing of the storage's health
            result = DOWN  # the storage answered, refusing this call: it is up
        if guard.down and guard.recovered(outages):
            self.events.storage_down(False)
            self._back_from_outage()
        return result

    def _back_from_outage(self) -> None:
        """The shared storage answers again: the bans the fallback made meanwhile go to it
        (so no ban is lost), with their reason and offence, and the fallback starts afresh
        for the next outage."""
        fallback = self.fallback
        if fallback is None:
            return
        self.fallback = MemoryStorage(clock=fallback.clock)
        storage = self.settings.storage
        for client, detail in fallback.ban_details().items():
            jail = _offence_argument(detail.offence)
            handed = self.ask_storage(storage.ban, client, detail.left, detail.reason, *jail)
            if isinstance(handed, Down):
                return  # down again: the rest stay with this process's new outage

    def _failed(self, error: Exception, call: Callable[..., object]) -> bool:
        """A storage call failed: counted and signalled. A ``StorageError``, or an
        ``OSError`` (a storage of the app's own that lets its socket's errors through),
        is an outage (True): logged once, the outage policy for every request until the
        storage answers. A ``StorageCallError``, or any other exception, is this call's
        own (a bug, logged with its cause every time): the outage policy for this request
        alone, nothing for the others (False)."""
        self.events.storage_failed(error)
        if isinstance(error, (StorageError, OSError)) and not isinstance(error, StorageCallError):
            self.guard.failed(error)
            self.events.storage_down(True)
            return True
        logger.error(
            "the storage's %s call failed on its own, a bug rather than an outage: this "
            "call goes unanswered (a request is met as in an outage: %s), and other calls "
            "go on as usual",
            getattr(getattr(call, "func", call), "__name__", repr(call)),  # a partial's too
            _ALONE[self.guard.policy],
            exc_info=error,
        )
        return False

    def refuse(
        self,
        client: str,
        decision: Decision,
        *,
        environ: Optional[WSGIEnvironment] = None,
        offence: Optional[str] = None,
    ) -> Optional[Response]:
        """Refuse what the storage did not admit: banned, rate limited, or with too many
        requests in flight (see ``_refuse``). ``offence``: the one the refusal counted
        toward as a report (None: the default offence)."""
        wait = decision.retry_after
        if decision.banned:
            jail = decision.offence  # None: the default offence's (or no ban rule's) ban
            rules = self.settings.ban_rules
            ban_rule = None if decision.manual else rules.get(jail or DEFAULT_OFFENCE)
            who = decision.banned_as or client
            prefix = self.identifier.ipv6_prefix
            make_ban = partial(Banned, who, wait, ban_rule, ipv6_prefix=prefix, offence=jail)
            # ``policy``: the offence, which the body names (ready responses differ by it)
            return self._refuse(Banned, who, wait, ban_rule, make_ban, environ, jail)
        if decision.ban is not None:  # the storage made the ban's steps in its own step
            self._banned_by_report(client, RATE_LIMIT, decision.ban, offence or DEFAULT_OFFENCE)
        elif self._report_to is not None:
            self._report_counted(client, decision.new_ban, RATE_LIMIT, offence or DEFAULT_OFFENCE)
        prefix = self.identifier.ipv6_prefix
        if decision.concurrency:
            limit = ConcurrencyLimit(decision.concurrency)
            name = policy_name(limit, decision.scope)
            too_many = partial(TooManyInFlight, client, limit, policy=name, ipv6_prefix=prefix)
            return self._refuse(
                TooManyInFlight, client, wait, limit, too_many, environ, name, decision.scope
            )
        rule = decision.rule
        assert rule is not None  # a refusal by a rule names it
        name = policy_name(rule, decision.scope)
        limited = partial(RateLimited, client, wait, rule, policy=name, ipv6_prefix=prefix)
        return self._refuse(RateLimited, client, wait, rule, limited, environ, name, decision.scope)

    def shadow_refused(self, client: str, shadowed: tuple[ShadowRefusal, ...]) -> None:
        """An admitted request that shadow rules would have refused: counted, signalled
        and logged for each rule as a dry run's refusal is."""
        self.events.shadow_refused(client, shadowed)
        if logger.isEnabledFor(logging.INFO):
            prefix = self.identifier.ipv6_prefix
            for refusal in shadowed:
                rule, wait = refusal.rule, refusal.retry_after
                name = policy_name(rule, refusal.scope)
                limited = partial(RateLimited, client, wait, rule, policy=name, ipv6_prefix=prefix)
                _log_would_refuse("shadow rule", limited)

    def _refuse(
        self,
        kind: type[Refusal],
        client: str,
        wait: Optional[float],
        rule: Union[Rule, BanRule, ConcurrencyLimit, None],
        make: Callable[[], Refusal],
        environ: Optional[WSGIEnvironment] = None,
        policy: Optional[str] = None,
        scope: str = GLOBAL_SCOPE,
    ) -> Optional[Response]:
        """Count and signal the refusal of ``client`` (``kind``, made by ``make``, by
        ``rule`` of ``scope`` for a 429); then
        raise it, or, given the request's ``environ`` (the hook's own refusals), return
        its response for that request when the app has no handler that would take it.
        In a dry run, only log it.

        A response is a function of the refusal's kind, client, whole seconds to wait,
        rule, policy name and the request's ``Accept``: its body and headers are kept
        for the next refusal that has the same (bounded: ``READY_RESPONSES``), which is
        then answered without making the exception."""
        dry_run = self.settings.dry_run
        if issubclass(kind, RateLimited):
            assert isinstance(rule, (Rule, ConcurrencyLimit))  # a 429 names its rule
            self.events.rate_limited(client, rule, wait, dry_run, scope)
        else:
            self.events.refused_banned(client, wait, dry_run)
        if dry_run:
            _log_would_refuse("dry run", make)
            return None
        app = self.events.app()
        if environ is None or _handled(app, kind):
            raise make()
        seconds = None if wait is None else retry_after_header(wait)
        key = (kind, client, seconds, str(rule), policy, environ.get("HTTP_ACCEPT"))
        ready = self._ready
        parts = ready.get(key)
        if parts is None:
            if len(ready) >= READY_RESPONSES:
                ready.clear()
            parts = ready[key] = make().response_parts(environ)
        body, headers = parts
        return app.response_class(body, kind.code, list(headers))

    def _check_processes(self, environ: dict[str, Any]) -> None:
        """Warn once per process when a multi-process server runs the memory storage; the
        process that serves takes its state file (a parent that forks workers never does)."""
        self._processes_checked = True
        if self.state_file is not None:
            self.state_file.start()
        if environ.get("wsgi.multiprocess"):
            logger.warning(
                "this server runs several processes, and the memory storage counts in each "
                "one apart: every limit is multiplied by the number of workers and reports "
                "spread over them never ban. Share the counts with the Redis storage: "
                'GateKeeper(app, storage="redis://...") or GATEKEEPER_STORAGE_URI'
            )

    def add_headers(self, response: Response) -> Response:
        """``after_request``: the RateLimit fields computed for this request, if any."""
        held = pop_state()
        if held is not None and held.fields:
            response.headers.extend(held.fields)
        return response
