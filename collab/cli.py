"""The ``collab`` command: run the server, and read, export, import, restore or delete history.

Every subcommand but ``serve`` opens the store named by ``--db`` (default: the
``db_url`` of :class:`~collab.config.Config`, i.e. ``COLLAB_DB_URL`` or
``sqlite:///collab.db``), does one thing and closes it. Errors print one line on
stderr and exit with 1 (2 for usage errors, from argparse); never a traceback.
Texts and exports are written to stdout byte for byte: ``collab export DOC
--format txt`` prints exactly the document's text, without an added newline.

``collab restore DOC --to N`` goes through a running server's HTTP API when given
``--server URL`` (live editors see the restore at once). Without it, it writes the
restore to the store itself, and refuses when a server listens at the configured
address (``COLLAB_HOST``/``COLLAB_PORT``): a server holding the document would never
see an entry written behind its back, and its next snapshot would drop it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from collab.config import Config
from collab.errors import CollabError, InvalidRequest
from collab.history import patch
from collab.history import versions as history
from collab.history.export import FORMATS, Export, export, import_archive
from collab.names import NAME_RULE, valid_name
from collab.store import DocumentInfo, NewEntry, Store, store_from_url

__all__ = ["main", "parser"]

_AT_HELP = "a version id (see `collab history DOC`) or an ISO-8601 time, e.g. 2024-05-01T12:00Z"


class _Failure(Exception):
    """A user-facing failure: print the message, exit 1."""


def _add_db(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--db",
        metavar="URL",
        help="store URL: sqlite:///path.db or postgresql://user@host/db "
        "(default: $COLLAB_DB_URL, else sqlite:///collab.db)",
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser, with a subparser and help text for every command."""
    top = argparse.ArgumentParser(
        prog="collab",
        description="A collaborative text editing server (Yjs / y-websocket protocol) "
        "and tools to read, export and import document history.",
    )
    subs = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub = subs.add_parser(name, help=summary, description=description)
        _add_db(sub)
        return sub

    serve = add(
        "serve",
        "run the server",
        "Serve documents over WebSockets (ws://HOST:PORT/DOC) and the HTTP history API "
        "(/api/...) until SIGINT or SIGTERM. Other settings come from COLLAB_* variables.",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000; 0 = any)")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="what the server logs to stderr (default info: start, stop, refused connections)",
    )

    docs = add("docs", "list documents", "List every document in the store.")
    docs.add_argument("--json", action="store_true", help="print JSON instead of a table")

    hist = add(
        "history",
        "list a document's versions",
        "List a document's versions, oldest first: id, time (UTC), size in characters "
        "and contributors. A version ends after a quiet gap or a number of updates.",
    )
    hist.add_argument("doc", metavar="DOC", help="document name")
    hist.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = add(
        "show",
        "print a document's text",
        "Print a document's text exactly (no newline added), now or at a version.",
    )
    show.add_argument("doc", metavar="DOC", help="document name")
    show.add_argument("--at", metavar="VERSION|TIME", help=_AT_HELP)

    diff = add(
        "diff",
        "compare two versions",
        "Print a unified diff of a document's text between two versions. "
        "Each of A and B is a version id, an ISO-8601 time, or 'now'.",
    )
    diff.add_argument("doc", metavar="DOC", help="document name")
    diff.add_argument("old", metavar="A", help="the older version (id, time or 'now')")
    diff.add_argument("new", metavar="B", help="the newer version (id, time or 'now')")

    exp = add(
        "export",
        "export a document",
        "Write a document to stdout (or --output): txt is exactly the text; md adds a YAML "
        "front matter (doc, version, time, contributors); json holds every root type and "
        "metadata. --all-history writes the whole-history JSON archive that "
        "`collab import` restores.",
    )
    exp.add_argument("doc", metavar="DOC", help="document name")
    exp.add_argument("--at", metavar="VERSION|TIME", help=_AT_HELP)
    exp.add_argument("--format", choices=FORMATS, default="txt", help="output format (txt)")
    exp.add_argument(
        "--all-history", action="store_true", help="export the whole history (JSON archive)"
    )
    exp.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE instead of stdout; into a directory under the export's file name "
        "('/' in the name written %%2F, ':' written %%3A: team-a%%2Fnotes.txt)",
    )

    imp = add(
        "import",
        "import an archive",
        "Restore a whole-history archive (from `collab export DOC --all-history`) into the "
        "store. The document must not exist yet.",
    )
    imp.add_argument("file", metavar="FILE", help="archive file ('-' for stdin)")
    imp.add_argument("--as", dest="name", metavar="NAME", help="import under another name")

    restore = add(
        "restore",
        "restore an old version",
        "Make the document equal an old version again, as one new change recorded in its "
        "history (undo it by restoring the version before it). With --server, through that "
        "running server, so live editors see it at once; without, straight into the store, "
        "which is refused while a server listens at the configured host and port.",
    )
    restore.add_argument("doc", metavar="DOC", help="document name")
    restore.add_argument("--to", required=True, metavar="VERSION|TIME", help=_AT_HELP)
    restore.add_argument("--server", metavar="URL", help="a running server, http://host:port")
    restore.add_argument("--author", metavar="NAME", help="who restores (recorded in history)")

    delete = add(
        "delete",
        "delete a document",
        "Delete a document with its whole history. Asks for confirmation unless --yes.",
    )
    delete.add_argument("doc", metavar="DOC", help="document name")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return top


def _write(data: bytes | str) -> None:
    out = data.encode("utf-8") if isinstance(data, str) else data
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()


def _at(value: str | None) -> history.At | None:
    if value is None or value.strip().lower() == "now":
        return None
    return history.parse_at(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "".join(line.rstrip() + "\n" for line in lines)


async def _command(args: argparse.Namespace, config: Config, store: Store) -> None:
    doc: str | None = getattr(args, "doc", None)
    if doc is not None and not valid_name(doc, config):
        # repr() keeps the message on one line whatever the name holds (a newline, say).
        raise InvalidRequest(f"{NAME_RULE.format(max=config.max_name_length)} (got {doc!r})")
    if args.command == "docs":
        infos = await store.documents()
        if args.json:
            _write(json.dumps([_info(info) for info in infos], ensure_ascii=False) + "\n")
        elif infos:
            rows = [["NAME", "LAST_SEQ", "UPDATED"]]
            rows += [[i.name, str(i.last_seq), history.iso(i.updated_at)] for i in infos]
            _write(_table(rows))
    elif args.command == "history":
        assert doc is not None
        found = await history.versions(store, config, doc)
        if args.json:
            _write(json.dumps([v.to_json() for v in found], ensure_ascii=False) + "\n")
        else:
            rows = [["VERSION", "AT", "SIZE", "CONTRIBUTORS"]]
            rows += [
                [str(v.id), history.iso(v.at), str(v.size), ", ".join(v.contributors)]
                for v in found
            ]
            _write(_table(rows))
    elif args.command == "show":
        assert doc is not None
        text, _ = await history.text_at(store, config, doc, _at(args.at))
        _write(text)
    elif args.command == "diff":
        assert doc is not None
        text, _ = await history.diff(store, config, doc, _at(args.old), _at(args.new))
        _write(text)
    elif args.command == "export":
        assert doc is not None
        result = await export(
            store, config, doc, args.format, _at(args.at), all_history=args.all_history
        )
        if args.output:
            target = await asyncio.to_thread(_save, Path(args.output), result)
            if target != Path(args.output):
                print(f"wrote {target}", file=sys.stderr)
        else:
            _write(result.body)
    elif args.command == "import":
        source = sys.stdin.buffer.read if args.file == "-" else Path(args.file).read_bytes
        raw = await asyncio.to_thread(source)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidRequest(f"{args.file} is not JSON: {exc}") from None
        name = await import_archive(store, data, name=args.name, config=config)
        print(f"imported {name} ({len(data['entries'])} log entries)", file=sys.stderr)
    elif args.command == "restore":
        assert doc is not None
        seq, version_id = await _restore(store, config, doc, args.to, args.author)
        print(f"restored {doc} to version {version_id} (seq {seq})", file=sys.stderr)
    elif args.command == "delete":
        assert doc is not None
        await history.check_document(store, doc)
        if not args.yes:
            if not sys.stdin.isatty():
                raise _Failure(
                    f"refusing to delete {doc!r} without --yes (stdin is not a terminal)"
                )
            answer = await asyncio.to_thread(input, f"Delete {doc!r} and its whole history? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise _Failure("not deleted")
        await history.delete(store, doc)
        print(f"deleted {doc}", file=sys.stderr)


def _listening(config: Config) -> bool:
    try:
        with socket.create_connection((config.host, config.port), timeout=0.5):
            return True
    except OSError:
        return False


async def _restore(
    store: Store, config: Config, doc: str, to: str, author: str | None
) -> tuple[int, int]:
    """Restore ``doc`` to version ``to`` in the store itself; return (seq, version id)."""
    at = history.parse_at(to)
    if await asyncio.to_thread(_listening, config):
        raise _Failure(
            f"a server is listening on {config.host}:{config.port}: restore through it with "
            f"--server http://{config.host}:{config.port} (a restore written to the store "
            "behind a server's back is lost at its next snapshot)"
        )
    target, version = await history.state_at(store, config, doc, at)
    if version is None:
        raise InvalidRequest(f"{doc!r} has no versions to restore")
    live = await history.doc_at(store, doc, None)
    update = patch.converge(live, target)
    changed: list[object] = []
    subscription = live.observe(changed.append)  # fires only for a transaction that changed
    live.apply_update(update)
    live.unobserve(subscription)
    if not changed:  # already equal: nothing to record
        info = await store.document(doc)
        return (info.last_seq if info else 0), version.id
    entry = NewEntry(doc, update, time.time(), f"{history.RESTORE_CLIENT}{version.id}", author)
    [seq] = await store.append([entry])
    return seq, version.id


async def _restore_remote(args: argparse.Namespace) -> None:
    client = importlib.import_module("collab.client")
    to: str = args.to.strip()
    seq, version_id = await client.restore(
        args.server, args.doc, int(to) if to.isdigit() else to, author=args.author
    )
    print(f"restored {args.doc} to version {version_id} (seq {seq})", file=sys.stderr)


def _save(output: Path, result: Export) -> Path:
    """Write ``result`` to ``output``, or into it under the export's file name if a directory."""
    target = output / result.filename if output.is_dir() else output
    target.write_bytes(result.body)
    return target


def _info(info: DocumentInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "last_seq": info.last_seq,
    }


async def _run(args: argparse.Namespace, config: Config) -> None:
    store = store_from_url(config.db_url)
    await store.open()
    try:
        await _command(args, config, store)
    finally:
        await store.close()


def _fail(message: str) -> NoReturn:
    print(f"collab: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level != "debug":
        # websockets logs every connection opening and closing at INFO; collab logs what matters.
        logging.getLogger("websockets").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``collab`` and ``python -m collab``. Exits with 0, 1 or 2."""
    args = parser().parse_args(argv)
    try:
        config = Config.from_env(
            db_url=args.db,
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
        )
        if args.command == "serve":
            _configure_logging(args.log_level)
            # Imported here: the server pulls in websockets, which the history tools do not need.
            importlib.import_module("collab.server").run(config)
            return
        if args.command == "restore" and args.server:
            asyncio.run(_restore_remote(args))
            return
        asyncio.run(_run(args, config))
    except CollabError as exc:
        _fail(exc.reason)
    except (_Failure, ValueError, OSError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # a bug; still no traceback for the user
        _fail(f"unexpected {type(exc).__name__}: {exc}")
