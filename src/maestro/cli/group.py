"""The ``maestro`` group: its global options, and its commands, each loaded when it runs.

A command's module is imported only when that command is asked for (by
running it, by its ``--help``, or by ``maestro --help``, which lists them
all), so a call starts with only the code it needs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import click

from maestro.cli.context import (
    _EPILOG,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Context,
    _install_log_handler,
    _json_error,
    fail,
)
from maestro.cli.fields import (
    _WRITES_A_SESSION,
    _check_fields,
    _split_json_fields,
    _wants_json,
    session_fields,
)
from maestro.textsafe import visible


def _obj(ctx: click.Context) -> Context:
    obj = ctx.find_object(Context)
    assert obj is not None  # the group's callback made it before any command parses
    return obj


def _set_root(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        _obj(ctx).root = value


def _set_store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        _obj(ctx).store = value


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        obj = _obj(ctx)
        obj.as_json = True
        pending = ctx.meta.get(_PENDING)
        if pending is not None:
            obj.json_fields = pending


_PENDING = "maestro.json_fields"


class MaestroCommand(click.Command):
    """A command that also takes the global --root, --store and --json after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = {name for param in self.params for name in getattr(param, "opts", [])}
        extra: list[click.Parameter] = [
            click.Option(
                ["--root"],
                type=click.Path(file_okay=False, path_type=Path),
                expose_value=False,
                callback=_set_root,
                help="As `maestro --root`.",
            ),
            click.Option(
                ["--store"],
                metavar="URL",
                expose_value=False,
                callback=_set_store,
                help="As `maestro --store`.",
            ),
        ]
        if "--json" not in names:
            extra.append(
                click.Option(
                    ["--json"],
                    is_flag=True,
                    expose_value=False,
                    callback=_set_json,
                    help="Print JSON; --json=a,b prints only those fields.",
                )
            )
        self.params.extend(param for param in extra if param.opts[0] not in names)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten, fields = _split_json_fields(args, leading=False)
        if fields is not None:
            ctx.meta[_PENDING] = fields
        rest = super().parse_args(ctx, rewritten)
        obj = ctx.find_object(Context)
        if obj is not None and obj.json_fields is not None and self.name in _WRITES_A_SESSION:
            # Checked before the change is made, not after it printed nothing.
            try:
                _check_fields(obj.json_fields, session_fields())
            except CommandError as error:
                raise click.UsageError(str(error), ctx=ctx) from None
        return rest


class MaestroGroup(click.Group):
    """The ``maestro`` group: its commands take the global options too, and a
    usage error under --json is a JSON object on stderr."""

    command_class = MaestroCommand

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["maestro.argv"] = list(args)
        try:
            rewritten, fields = _split_json_fields(args, leading=True)
            if fields is not None:
                ctx.meta[_PENDING] = fields
            return super().parse_args(ctx, rewritten)
        except click.UsageError as error:
            self._json_usage(ctx, error)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            self._json_usage(ctx, error)
            raise

    @staticmethod
    def _json_usage(ctx: click.Context, error: click.UsageError) -> None:
        obj = ctx.find_object(Context)
        if (obj is not None and obj.as_json) or _wants_json(ctx.meta.get("maestro.argv", [])):
            _json_error("UsageError", " ".join(error.format_message().split()), EXIT_USAGE)
            raise click.exceptions.Exit(EXIT_USAGE)


_MAIN_EPILOG = (
    _EPILOG
    + """
\b
IDs: a full session id, or a unique prefix of 6 or more characters.
Ages: 30m, 2h, 2d, 1w; dates: 2026-01-07 or 2026-01-07T13:00:00+02:00.
\b
Shell completion (commands, options, states, session ids):
  bash  eval "$(_MAESTRO_COMPLETE=bash_source maestro)"    in ~/.bashrc
  zsh   eval "$(_MAESTRO_COMPLETE=zsh_source maestro)"     in ~/.zshrc
  fish  _MAESTRO_COMPLETE=fish_source maestro | source     in
        ~/.config/fish/completions/maestro.fish
"""
)


# ---------------------------------------------------------------- the group

#: Where each command is defined: its module registers it on ``cli`` when imported.
COMMAND_MODULES = {
    **dict.fromkeys(("create", "show", "path", "rerun", "list", "search"), "sessions"),
    **dict.fromkeys(
        (
            "transition",
            "pause",
            "resume",
            "fail",
            "complete",
            "update",
            "increment",
            "heartbeat",
            "delete",
        ),
        "changes",
    ),
    **dict.fromkeys(("stats", "stale", "gc", "export", "import", "doctor"), "maintenance"),
    "watch": "watch",
    "demo": "demo",
    "db": "db",
    "mcp": "mcp",
    "serve": "serve",
}


class LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands by name, each module imported when one of its commands is
    first looked up (listing the names imports nothing)."""

    def __init__(self, modules: dict[str, str]) -> None:
        self._modules = dict(modules)
        self._commands: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        command = self._commands.get(name)
        if command is None:
            module = self._modules[name]  # KeyError: no such command
            importlib.import_module(f"maestro.cli.{module}")  # its decorators register it
            command = self._commands[name]
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._commands[name] = command
        self._modules.setdefault(name, "")

    def __delitem__(self, name: str) -> None:
        del self._modules[name]
        self._commands.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, name: object) -> bool:
        return name in self._modules


class _OneLineUsage(MaestroGroup):
    """A group whose usage errors are one line, like every other error.

    Click prints a usage block, a hint and the error on four lines; a script
    reading stderr, and a person, want the one line saying what was wrong.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            result = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.UsageError as error:
            below = error.ctx.command_path.split()[1:] if error.ctx is not None else []
            path = " ".join(["maestro", *below])
            message = " ".join(error.format_message().split())
            click.echo(f"error: {visible(message)} (see `{path} --help`)", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_ERROR)
        except BrokenPipeError:
            # The reader went away (| head): quiet, as Click itself would be.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for good
            sys.exit(EXIT_ERROR)
        # Without standalone mode Click returns the exit code a command asked for.
        sys.exit(result if isinstance(result, int) else EXIT_OK)


@click.group(
    cls=_OneLineUsage,
    commands=LazyCommands(COMMAND_MODULES),
    epilog=_MAIN_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MAESTRO_ROOT",
    help="Directory holding .flow/maestro (default: $MAESTRO_ROOT, the repository's main "
    "checkout, also from a linked worktree, the cwd).",
)
@click.option(
    "--store",
    metavar="URL",
    envvar="MAESTRO_STORE",
    help="Store URL: a path or file:PATH (a root, like --root), memory:, "
    "postgresql://USER@HOST/DB (default: $MAESTRO_STORE; overrides --root).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option(
    "--all-projects",
    is_flag=True,
    envvar="MAESTRO_ALL_PROJECTS",
    help="On a store shared by several projects (postgresql://), show every project's "
    "sessions, not only this repository's.",
)
@click.version_option(package_name="maestro-sessions", prog_name="maestro")
@click.pass_context
def cli(
    click_ctx: click.Context,
    root: Path | None,
    store: str | None,
    as_json: bool,
    all_projects: bool,
) -> None:
    """Record, query and steer the sessions of the Maestro orchestrator.

    Sessions live in <root>/.flow/maestro/sessions, one directory each.
    Tables and charts are for people; --json prints the same data as JSON
    (timestamps ISO 8601 UTC) for scripts.  Colours are off when the
    output is not a terminal or NO_COLOR is set.

    \b
    Example:
      maestro create "Add OAuth login"
      maestro list --active --since 2d
      maestro show 3f01b5
      maestro --json list --status failed | jq '.[].session_id'
    """
    _install_log_handler()
    fields = click_ctx.meta.pop(_PENDING, None) if as_json else None
    click_ctx.obj = Context(root=root, as_json=as_json, store=store or None, json_fields=fields)
    click_ctx.obj.all_projects = all_projects
    if root is not None and not store and not root.is_dir():
        # A mistyped root would otherwise become a new, empty store.
        source = "--root" if _from_command_line(click_ctx, "root") else "MAESTRO_ROOT"
        fail(click_ctx.obj, CommandError(f"{source} {root}: no such directory", EXIT_USAGE))


def _from_command_line(click_ctx: click.Context, name: str) -> bool:
    from click.core import ParameterSource

    return click_ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


def main(argv: list[str] | None = None) -> None:
    """The Click command line alone (:func:`maestro.cli.main` tries the direct path first)."""
    cli.main(args=argv, prog_name="maestro")
