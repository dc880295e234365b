"""Command-line options that may also come from ``CHATPROTO_*`` environment variables.

Containers and service managers configure a server through its environment;
a flag given on the command line still wins. Every long option ``--foo-bar``
of a parser can be set as ``CHATPROTO_FOO_BAR``: the value is converted and
checked exactly as the flag's would be, and becomes the option's default, so
argparse applies it only where the command line says nothing. A bad value is
a usage error that names the variable, never a traceback or a silent default.

Switches (``--uvloop``) take ``1``/``true``/``yes``/``on`` or
``0``/``false``/``no``/``off``; their ``--no-...`` form turns them off again
from the command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

__all__ = ["ENV_PREFIX", "apply_environment", "env_name"]

#: Every variable this module reads starts with this.
ENV_PREFIX = "CHATPROTO_"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
#: Options that describe the program rather than configure it.
_NOT_FROM_ENV = frozenset({"help", "version"})


def env_name(action: argparse.Action) -> str | None:
    """The variable that sets ``action`` (``--max-clients``: ``CHATPROTO_MAX_CLIENTS``)."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    if not longs or action.dest in _NOT_FROM_ENV:
        return None
    return ENV_PREFIX + longs[0][2:].replace("-", "_").upper()


def apply_environment(
    parser: argparse.ArgumentParser, environ: Mapping[str, str]
) -> dict[str, object]:
    """Make the ``CHATPROTO_*`` variables in ``environ`` the defaults of ``parser``'s options.

    Call before ``parse_args``. Each option's help gains ``[env NAME]``.
    Returns the values taken, by destination (for messages that should name
    their source). Exits with a usage error (status 2) naming the variable
    when a value is invalid.
    """
    taken: dict[str, object] = {}
    for action in parser._actions:  # argparse's own list; there is no public one
        name = env_name(action)
        if name is None:
            continue
        if action.help is not None and action.help is not argparse.SUPPRESS:
            action.help = f"{action.help} [env {name}]"
        raw = environ.get(name)
        if raw is None:
            continue
        try:
            value = _convert(action, raw)
        except (TypeError, ValueError) as exc:
            parser.error(f"environment variable {name}={raw!r}: {exc}")
        taken[action.dest] = value
    parser.set_defaults(**taken)
    return taken


def _convert(action: argparse.Action, raw: str) -> object:
    """``raw`` as the option would have taken it from the command line."""
    if action.nargs == 0:  # a switch: store_true, store_false, BooleanOptionalAction
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            raise ValueError("expected one of 1, true, yes, on, 0, false, no, off")
        on = word in _TRUE
        # store_false stores False when given; "true" in the variable means "given".
        return on if action.const is not False else not on
    if action.nargs is not None:
        raise TypeError(f"{action.option_strings[0]} takes several values; set it as a flag")
    convert = action.type if callable(action.type) else str
    try:
        value = convert(raw)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        kind = "a whole number" if convert is int else "a number" if convert is float else "valid"
        raise ValueError(f"not {kind}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(str(c) for c in action.choices)
        raise ValueError(f"invalid choice {value!r} (choose from {choices})")
    return value
