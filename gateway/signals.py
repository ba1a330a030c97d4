"""Handler registration: signals, ``on``, handler names and loading.

Handlers are blinker receivers, one signal per event type; a signal whose
name ends in ``*`` is a prefix wildcard (``message.*``, ``*``). Receivers
are held strongly, whichever way they were connected (field case 8).
:func:`matching_handlers` answers which handlers an event goes to, for
the dispatcher in :mod:`gateway.dispatch`; :func:`load_handlers` imports
the handler modules and entry points whose ``@on`` decorators connect
them.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from blinker import ANY, NamedSignal
from blinker.base import ANY_ID

from .errors import HandlerLoadError

logger = logging.getLogger(__name__)

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)
# Event types are chosen by senders: bound the cache of their handlers.
MAX_CACHED_TYPES = 1024
ENTRY_POINT_GROUP = "gateway.handlers"

_signals: dict[str, GatewaySignal] = {}
_signals_lock = threading.Lock()
_generation = 0
# matching_handlers' answers per (source, event type), valid while
# _generation stays as it was; off once a receiver was connected weakly,
# since blinker drops a dead weak receiver without telling anyone.
_bindings_cache: dict[tuple[str, str], tuple[tuple[int, int], list[Binding]]] = {}
_weak_receivers = False


class GatewaySignal(NamedSignal):
    """A blinker signal whose receivers are held strongly by default.

    Blinker's own default is a weak reference, which silently drops a
    lambda, a ``functools.partial`` or a bound method of an object nobody
    else keeps at the next garbage collection (field case 8).
    """

    def connect(self, receiver: F, sender: Any = ANY, weak: bool = False) -> F:
        """Connect ``receiver``; strongly unless ``weak=True`` is asked."""
        global _generation, _weak_receivers
        connected = super().connect(receiver, sender=sender, weak=weak)
        with _signals_lock:
            _generation += 1
            _weak_receivers = _weak_receivers or weak
        return connected

    def disconnect(self, receiver: Handler, sender: Any = ANY) -> None:
        """Disconnect ``receiver`` from this signal."""
        global _generation
        super().disconnect(receiver, sender=sender)
        with _signals_lock:
            _generation += 1


def signal(name: str) -> GatewaySignal:
    """Return the signal for an event type or a ``prefix*`` pattern.

    The same name always gives the same signal object.
    """
    global _generation
    with _signals_lock:
        found = _signals.get(name)
        if found is None:
            found = _signals[name] = GatewaySignal(name)
            _generation += 1
        return found


def on(event_type: str, *, source: str | None = None) -> Callable[[F], F]:
    """Connect the decorated function to the signal of ``event_type``.

    ``event_type`` is an exact type (``message.delivered``), a prefix
    wildcard (``message.*``) or ``*`` for every event. With ``source``,
    the handler runs only for events of that source. The function is
    called as ``handler(source, event=event)`` and returned unchanged.
    """
    if not event_type or not isinstance(event_type, str):
        raise ValueError("on() needs an event type such as 'message.delivered'.")

    def decorator(function: F) -> F:
        signal(event_type).connect(function, sender=ANY if source is None else source)
        return function

    return decorator


def handler_name(receiver: Handler) -> str:
    """Return a stable name for a receiver, used to record its outcomes."""
    target: Any = receiver
    while isinstance(target, functools.partial):
        target = target.func
    module = getattr(target, "__module__", None) or type(target).__module__
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{qualname}"


@dataclass(frozen=True)
class Binding:
    """One receiver as the dispatcher sees it: its name and callable."""

    name: str
    receiver: Handler
    pattern: str


def matching_handlers(source: str, event_type: str) -> list[Binding]:
    """Return the handlers for an event, exact matches first, names unique.

    The answer is kept per (source, event type) until a signal or a
    receiver is added or removed, so dispatching an event does not scan
    every signal again.
    """
    with _signals_lock:
        # The receiver count catches receivers added or removed behind
        # connect() and disconnect() (blinker's own clean-up, tests).
        version = (
            _generation,
            sum(len(item.receivers) for item in _signals.values()),
        )
        cached = None if _weak_receivers else _bindings_cache.get((source, event_type))
        if cached is not None and cached[0] == version:
            return list(cached[1])
        candidates = [
            item
            for name, item in _signals.items()
            if _pattern_matches(name, event_type)
        ]
    candidates.sort(key=lambda item: (item.name.endswith("*"), -len(item.name)))
    bindings: list[Binding] = []
    seen: set[str] = set()
    for item in candidates:
        for receiver in item.receivers_for(source):
            name = handler_name(receiver)
            if name in seen:
                name = f"{name}[{item.name}]"
            # Two objects of one class (or two partials of one function)
            # share a name; number them in connection order rather than
            # silently skip one.
            base, number = name, 1
            while name in seen:
                number += 1
                name = f"{base}#{number}"
            seen.add(name)
            bindings.append(Binding(name, receiver, item.name))
    with _signals_lock:
        if version[0] == _generation and not _weak_receivers:
            if len(_bindings_cache) >= MAX_CACHED_TYPES:
                _bindings_cache.clear()
            _bindings_cache[(source, event_type)] = (version, list(bindings))
    return bindings


def handlers_by_pattern() -> dict[str, list[str]]:
    """Return the loaded handler names per event type or pattern."""
    with _signals_lock:
        items = list(_signals.items())
    return {
        name: sorted(
            handler_name(receiver)
            for receiver in item.receivers.values()
            if callable(receiver)
        )
        for name, item in sorted(items)
        if item.receivers
    }


def handler_table() -> list[tuple[str, str, tuple[str, ...]]]:
    """Return (pattern, handler name, sources) for every connected handler.

    ``sources`` is empty for a handler that takes events of every source,
    else the source names it was connected for (``on(..., source=...)``).
    Sorted by pattern, then handler name.
    """
    with _signals_lock:
        items = list(_signals.items())
    rows: list[tuple[str, str, tuple[str, ...]]] = []
    for pattern, item in items:
        for receiver_id, receiver in list(item.receivers.items()):
            target = receiver() if isinstance(receiver, weakref.ref) else receiver
            if target is None:
                continue
            senders = item._by_receiver.get(receiver_id, set())
            sources = tuple(
                sorted(str(sender) for sender in senders if sender != ANY_ID)
            )
            rows.append((pattern, handler_name(target), sources))
    return sorted(rows)


def receiver_count() -> int:
    """Return how many receivers are connected across all signals."""
    with _signals_lock:
        return sum(len(item.receivers) for item in _signals.values())


def iter_signals() -> Iterator[tuple[str, GatewaySignal]]:
    """Yield (name, signal) for every signal created so far."""
    with _signals_lock:
        items = list(_signals.items())
    yield from items


def load_handlers(modules: Iterable[str]) -> list[str]:
    """Import handler modules and ``gateway.handlers`` entry points.

    Importing a module runs its ``@on`` decorators. Returns the names
    loaded. Already imported modules are not imported twice.

    :raises HandlerLoadError: naming the module that failed to import.
    """
    loaded: list[str] = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # any import failure stops start-up, named
            raise HandlerLoadError(
                f"handler module {name!r} could not be imported: "
                f"{type(err).__name__}: {err}"
            ) from err
        loaded.append(name)
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as err:  # any import failure stops start-up, named
            raise HandlerLoadError(
                f"handler entry point {entry_point.name!r} ({entry_point.value}) "
                f"could not be loaded: {type(err).__name__}: {err}"
            ) from err
        loaded.append(entry_point.value)
    if loaded:
        logger.info(
            "handlers loaded",
            extra={"modules": ",".join(loaded), "receivers": receiver_count()},
        )
    return loaded


def _pattern_matches(pattern: str, event_type: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type
