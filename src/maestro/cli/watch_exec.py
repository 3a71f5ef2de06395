"""``maestro watch --exec CMD``: one process per change, the change as JSON on stdin.

``CMD`` is split as a shell would split it (quotes, backslashes) but run
without a shell: write ``sh -c '...'`` for pipes and redirections.  Each
change starts one process, after the change's line is printed, and the
watch waits for it before reading on, so the command sees the changes one
at a time and in order.  Its stdin is the change as one JSON object (the
``--json`` line, newline-terminated); its environment adds
``MAESTRO_EVENT_KIND``, ``MAESTRO_SESSION_ID`` and ``MAESTRO_EVENT_CURSOR``;
its stdout and stderr are the watch's.

A command that exits non-zero, is killed or cannot be started is reported
on stderr (``warning: ...``) and the watch goes on with the next change: a
reaction that fails once must not stop the record being followed.  A
program that is not found at all is a usage error before anything is read.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys

import click

from maestro import ChangeEvent
from maestro.textsafe import visible

__all__ = ["EventCommand"]


class EventCommand:
    """The ``--exec`` command, run once per change."""

    def __init__(self, command: str) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as error:
            raise click.UsageError(f"--exec: {error}") from None
        if not self.argv:
            raise click.UsageError("--exec needs a command, such as --exec ./on-change.sh")
        if shutil.which(self.argv[0]) is None:
            raise click.UsageError(
                f"--exec: no program {visible(self.argv[0])} found (an executable path, "
                "or a name on PATH)"
            )
        self.failures = 0

    def __call__(self, event: ChangeEvent) -> None:
        data = json.dumps(event.to_dict(), ensure_ascii=False) + "\n"
        env = {
            **os.environ,
            "MAESTRO_EVENT_KIND": event.kind.value,
            "MAESTRO_SESSION_ID": event.session_id or "",
            "MAESTRO_EVENT_CURSOR": event.cursor,
        }
        sys.stdout.flush()  # the change's line comes before what the command prints
        what = f"{event.kind.value} of {(event.session_id or 'the feed')[:8]} at {event.cursor}"
        name = visible(self.argv[0])
        try:
            done = subprocess.run(self.argv, input=data.encode(), env=env, check=False)
        except OSError as error:
            self._report(f"--exec {name} could not start for the {what}: {error.strerror}")
            return
        if done.returncode < 0:
            try:
                cause = signal.Signals(-done.returncode).name
            except ValueError:
                cause = f"signal {-done.returncode}"
            self._report(f"--exec {name} was killed by {cause} for the {what}")
        elif done.returncode:
            self._report(f"--exec {name} exited {done.returncode} for the {what}")

    def _report(self, message: str) -> None:
        self.failures += 1
        click.echo(f"warning: {message}; watching goes on", err=True)
