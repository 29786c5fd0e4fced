"""Command-line flags for :class:`~collab.config.Config`, generated from the dataclass.

Each setting becomes one flag, named after it (``--unload-grace-seconds``,
``--retention-keep-all-seconds``; booleans as ``--x`` / ``--no-x``), whose help
shows its default and its ``COLLAB_*`` variable. A flag's text is read by the
same :meth:`Setting.parse <collab.config.Setting.parse>` as the variable's, so a
value means the same in both places. A field added to ``Config`` gets its flag
without touching this module.

Precedence: a flag given on the command line wins over its variable, which wins
over the default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from collab.config import Config, Setting, read_env, settings

__all__ = ["ALIASES", "add_settings", "config_from"]

#: Older, shorter spellings kept working next to the generated flag.
ALIASES: Mapping[str, tuple[str, ...]] = {"db_url": ("--db",)}

_DEST = "config."
_METAVARS = {str: "TEXT", int: "N", float: "NUM", bool: "BOOL"}
#: Name endings that say more than the type (cosmetic: only the help shows them).
_UNITS = {
    "_url": "URL",
    "_seconds": "SECONDS",
    "_timeout": "SECONDS",
    "_interval": "SECONDS",
    "_delay": "SECONDS",
    "_bytes": "BYTES",
    "_size": "BYTES",
}


def add_settings(
    parser: argparse.ArgumentParser,
    names: Iterable[str] | None = None,
    title: str = "settings (each also a COLLAB_* variable; a flag wins over its variable)",
) -> None:
    """Add a flag for every setting, or for those ``names``, to ``parser``, in one group.

    A flag left out of the command line leaves nothing in the parsed namespace,
    so :func:`config_from` falls back to the variable, then the default. A bad
    value is a usage error (argparse exits with 2) naming the flag.
    """
    wanted = None if names is None else set(names)
    group = parser.add_argument_group(title)
    for s in settings():
        if wanted is None or s.name in wanted:
            _add(group, s)


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """The Config that ``args`` (parsed by a parser given :func:`add_settings`) and the
    ``COLLAB_*`` variables of ``environ`` describe.

    Raises:
        ValueError: a variable holds a bad value (the message names it).
    """
    values = read_env(environ)
    values.update(
        {key[len(_DEST) :]: value for key, value in vars(args).items() if key.startswith(_DEST)}
    )
    return Config.from_values(values)


def _add(group: argparse._ArgumentGroup, s: Setting) -> None:
    flags = [*ALIASES.get(s.name, ()), s.flag]
    help_text = f"{s.help} " if s.help else ""
    help_text = f"{help_text}(default: {s.show(s.default)}; ${s.env})".replace("%", "%%")
    if s.kind is bool and not s.optional:
        group.add_argument(
            *flags,
            dest=_DEST + s.name,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=help_text,
        )
        return
    metavar = "{" + ",".join(s.choices) + "}" if s.choices else _metavar(s)
    if s.many:
        # Repeatable: each occurrence adds one item (its text is not split on commas).
        group.add_argument(
            *flags,
            dest=_DEST + s.name,
            type=str,
            action=_Extend,
            default=argparse.SUPPRESS,
            metavar=metavar,
            help=help_text,
        )
        return
    group.add_argument(
        *flags,
        dest=_DEST + s.name,
        type=_reader(s),
        default=argparse.SUPPRESS,
        metavar=metavar + ("|none" if s.optional else ""),
        help=help_text,
    )


class _Extend(argparse.Action):
    """Collects every occurrence of a repeatable flag into one tuple."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        previous = getattr(namespace, self.dest, ())
        setattr(namespace, self.dest, (*previous, str(values)))


def _metavar(s: Setting) -> str:
    unit = next((u for end, u in _UNITS.items() if s.name.endswith(end)), None)
    return unit if unit is not None and s.kind is not bool else _METAVARS[s.kind]


def _reader(s: Setting) -> Callable[[str], Any]:
    def read(raw: str) -> Any:
        try:
            return s.parse(raw)
        except ValueError as exc:
            # argparse puts "argument --flag: " in front.
            raise argparse.ArgumentTypeError(str(exc)) from None

    read.__name__ = s.name  # argparse names the type in some messages
    return read
