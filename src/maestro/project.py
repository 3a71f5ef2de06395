"""The project a session belongs to, stable across hosts and checkouts.

A team points every repository at one shared store; each host checks the
repository out wherever it likes, so the root path cannot name the project.
The identity is, in order:

1. ``MAESTRO_PROJECT`` (or a store URL's ``project`` parameter, read by the
   store);
2. the repository's ``origin`` remote, normalised: scheme, user, password
   and a trailing ``.git`` dropped, the host lowercased, ``host:path`` read
   as ``host/path`` (``git@github.com:Org/App.git`` and
   ``https://github.com/Org/App`` are both ``github.com/Org/App``);
3. the name of the main worktree's directory.

The file store holds one repository's sessions, so there the project is
implicit and never stored.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["normalise_remote", "project_identity"]

_SCP = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")


def normalise_remote(url: str) -> str | None:
    """The project name of a remote URL, or ``None`` when it names nothing usable."""
    url = url.strip()
    if not url:
        return None
    if "://" in url:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.port is not None and parts.scheme not in ("http", "https", "ssh", "git"):
            host = f"{host}:{parts.port}"
        path = parts.path
        if parts.scheme == "file" or not host:
            name = Path(path.rstrip("/")).name
            return name.removesuffix(".git") or None
    else:
        match = _SCP.match(url)
        if match is None:  # a local path
            name = Path(url.rstrip("/")).name
            return name.removesuffix(".git") or None
        host, path = match.group(1).lower(), match.group(2)
    path = path.strip("/").removesuffix(".git").rstrip("/")
    return f"{host}/{path}" if path else host or None


def _origin(root: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def project_identity(root: Path | None) -> str:
    """The project of the repository at ``root`` (see the module docstring)."""
    given = os.environ.get("MAESTRO_PROJECT", "").strip()
    if given:
        return given
    if root is None:
        return "default"
    remote = _origin(root)
    if remote:
        name = normalise_remote(remote)
        if name:
            return name
    return root.name or "default"
