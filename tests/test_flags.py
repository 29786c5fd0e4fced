"""collab.flags: one flag per Config setting, for `collab serve` and the read commands."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import httpx
import pytest

from collab.cli import READ_SETTINGS, parser
from collab.config import Config, Retention
from collab.flags import config_from
from collab.store import store_from_url
from tests.history_fixtures import Editors
from tests.serverproc import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent


def leaves(cls: type = Config, prefix: str = "") -> dict[str, typing.Any]:
    """Every leaf field of the dataclass, by its flat name, with its default; walked here
    from ``dataclasses.fields`` rather than taken from collab.config.settings()."""
    found: dict[str, typing.Any] = {}
    defaults = cls()
    for f in dataclasses.fields(cls):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            found.update(leaves(type(value), f"{prefix}{f.name}_"))
        else:
            found[prefix + f.name] = value
    return found


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    environ.update(PYTHONPATH=str(ROOT), COLUMNS="200", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "collab", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=60,
        check=False,
    )


def parse(*argv: str, env: dict[str, str] | None = None) -> Config:
    return config_from(parser().parse_args(argv), env or {})


def shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def test_serve_help_lists_every_setting_with_its_default_and_variable() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    # One entry per option: its flags, then its help, however argparse wrapped them.
    entries = [" ".join(entry.split()) for entry in re.split(r"\n  (?=-)", result.stdout)]
    fields = leaves()
    assert len(fields) > 25 and "retention_keep_all_seconds" in fields
    for name, default in fields.items():
        flag = "--" + name.replace("_", "-")
        [entry] = [e for e in entries if re.search(rf"(^|, ){flag}[ ,]", e)]
        assert f"(default: {shown(default)}; $COLLAB_{name.upper()})" in entry, entry
        if isinstance(default, bool):
            assert entry.startswith(f"{flag}, --no-{name.replace('_', '-')} ")


@pytest.mark.parametrize(
    ("name", "flag_value", "env_value", "expected"),
    [
        ("port", "7", "9", 7),
        ("unload_grace_seconds", "0.5", "120", 0.5),
        ("outbox_max_bytes", "1024", "2048", 1024),
        ("ping_interval", "none", "5", None),
        ("retention_keep_all_seconds", "60", "none", 60.0),
        ("db_url", "sqlite:///flag.db", "sqlite:///env.db", "sqlite:///flag.db"),
    ],
)
def test_flag_wins_over_variable_which_wins_over_default(
    name: str, flag_value: str, env_value: str, expected: object
) -> None:
    def value(config: Config) -> object:
        if name.startswith("retention_"):
            return getattr(config.retention, name.removeprefix("retention_"))
        return getattr(config, name)

    flag = "--" + name.replace("_", "-")
    env = {f"COLLAB_{name.upper()}": env_value}
    default = value(Config())
    assert value(parse("serve")) == default
    from_env = value(parse("serve", env=env))
    assert from_env != default and from_env != expected
    assert value(parse("serve", flag, flag_value, env=env)) == expected


def test_a_tuple_setting_is_a_repeatable_flag_and_a_comma_separated_variable() -> None:
    env = {"COLLAB_WEBHOOK_URL": "http://a.example/hook, http://b.example/hook,"}
    assert parse("serve").webhook_url == ()
    assert parse("serve", env=env).webhook_url == ("http://a.example/hook", "http://b.example/hook")
    flags = parse(
        "serve", "--webhook-url", "http://c/x?a=1,2", "--webhook-url", "http://d/", env=env
    )
    assert flags.webhook_url == ("http://c/x?a=1,2", "http://d/")  # a flag's text is not split
    assert parse("serve", env={"COLLAB_WEBHOOK_URL": ""}).webhook_url == ()


def test_booleans_are_flag_pairs() -> None:
    off = {"COLLAB_HISTORY_ENABLED": "off"}
    assert parse("serve", env=off).history_enabled is False
    assert parse("serve", "--history-enabled", env=off).history_enabled is True
    assert parse("serve", "--no-history-enabled").history_enabled is False


def test_the_old_flags_still_work() -> None:
    args = parser().parse_args(
        ["serve", "--host", "0.0.0.0", "--port", "0", "--db", "memory://", "--log-level", "debug"]
    )
    config = config_from(args, {})
    assert (config.host, config.port, config.db_url) == ("0.0.0.0", 0, "memory://")
    assert args.log_level == "debug"
    assert parse("show", "notes", "--db", "memory://").db_url == "memory://"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["serve", "--unload-grace-seconds", "soon"], "--unload-grace-seconds"),
        (["serve", "--port", "-1"], "--port"),
        (["serve", "--version-gap-seconds", "nan"], "--version-gap-seconds"),
        (["serve", "--retention-hourly-seconds", "none"], "--retention-hourly-seconds"),
        (["history", "notes", "--version-max-updates", "1.5"], "--version-max-updates"),
    ],
)
def test_a_bad_value_stops_with_one_line_naming_the_flag(args: list[str], flag: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"collab {args[0]}: error: argument {flag}: '{args[-1]}' is not")


def test_a_bad_variable_stops_with_one_line_naming_it() -> None:
    result = run("docs", env={"COLLAB_VERSION_GAP_SECONDS": "a minute"})
    assert result.returncode == 2
    assert (
        result.stderr
        == "collab: error: COLLAB_VERSION_GAP_SECONDS: 'a minute' is not a number >= 0\n"
    )


def test_read_commands_take_every_setting_the_history_code_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The settings the read commands have flags for cover every ``config.X`` that the
    modules they run read, so a new history setting cannot be left to the server alone."""
    read: set[str] = set()
    for module in [*ROOT.glob("collab/history/*.py"), *ROOT.glob("collab/store/*.py")]:
        read |= attributes_of_config(module)
    read |= attributes_of_config(ROOT / "collab" / "names.py")
    # Other objects named ``config`` (Alembic's, in store/schema.py) are not settings.
    read &= {f.name for f in dataclasses.fields(Config)}
    used: set[str] = set()
    for name in read:
        default = getattr(Config(), name)
        if dataclasses.is_dataclass(default):
            used |= set(leaves(type(default), f"{name}_"))
        else:
            used.add(name)
    assert "version_gap_seconds" in used and "retention_hourly_seconds" in used
    assert used <= set(READ_SETTINGS), used - set(READ_SETTINGS)
    for command in ("docs", "history", "show", "diff", "export", "import", "delete"):
        with pytest.raises(SystemExit):
            parser().parse_args([command, "--help"])
        listed = capsys.readouterr().out
        for name in READ_SETTINGS:
            assert f"$COLLAB_{name.upper()})" in listed, (command, name)


def attributes_of_config(path: Path) -> set[str]:
    """Names X in ``config.X`` / ``self._config.X`` expressions of a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if name in ("config", "_config"):
                found.add(node.attr)
    return found


def test_retention_is_a_setting_too() -> None:
    assert {f.name for f in dataclasses.fields(Retention)} == {
        n.removeprefix("retention_")
        for n in leaves()
        if n.startswith("retention_") and n != "retention_interval"
    }


async def test_cli_and_server_agree_on_versions_cut_by_a_non_default_gap(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'collab.db'}"
    store = store_from_url(url)
    await store.open()
    try:
        editors = Editors(store, "notes", 1, ["alice"])
        for gap in (1, 20, 1, 20, 1, 90):
            await editors.insert(0, 100, "x", gap=gap)
    finally:
        await store.close()

    def cli_versions(*flags: str, env: dict[str, str] | None = None) -> list[int]:
        result = run("history", "notes", "--json", "--db", url, *flags, env=env)
        assert result.returncode == 0, result.stderr
        return [v["id"] for v in json.loads(result.stdout)]

    default = cli_versions()
    ten = cli_versions("--version-gap-seconds", "10")
    assert ten != default  # the gap matters for this document
    assert cli_versions(env={"COLLAB_VERSION_GAP_SECONDS": "10"}) == ten
    for flags, env in (
        (["--version-gap-seconds", "10"], {}),
        ([], {"COLLAB_VERSION_GAP_SECONDS": "10"}),
    ):
        server = ServerProcess(url, free_port(), tmp_path / "server.log", flags=flags, env=env)
        await server.start()
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(
                    f"http://127.0.0.1:{server.port}/api/docs/notes/versions"
                )
        finally:
            assert await server.terminate() == 0
        assert [v["id"] for v in response.json()["versions"]] == ten
