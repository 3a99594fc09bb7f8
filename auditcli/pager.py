"""Long output on a terminal goes through a pager, as git and gh do: `AUDIT_PAGER`, else
`PAGER`, else `less -FRX`; an empty value or `cat` means none. Never used on a pipe."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

DEFAULT_PAGER = "less -FRX"


def pager_command() -> list[str] | None:
    """The pager to run, split like a shell would, or None for no pager."""
    raw = os.environ.get("AUDIT_PAGER")
    if raw is None:
        raw = os.environ.get("PAGER", DEFAULT_PAGER)
    try:
        words = shlex.split(raw)
    except ValueError:
        return None  # an unbalanced quote: show the output rather than fail the command
    if not words or words == ["cat"]:
        return None
    return words


def page(text: str, command: list[str]) -> None:
    """Show `text` through `command`; write it to stdout when the pager cannot be started."""
    # As git does: less gets FRX (quit if one screen, keep colours, no clear) unless LESS is set.
    env = {"LESS": "FRX", **os.environ}
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, env=env)
    except OSError:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    assert proc.stdin is not None
    try:
        proc.stdin.write(text.encode("utf-8", "replace"))
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the reader quit the pager before the end: that is how paging ends
    while True:
        try:
            proc.wait()
            break
        except KeyboardInterrupt:
            continue  # Ctrl-C belongs to the pager (less uses it); wait for it to exit
