"""The one callback type long-running core functions report progress to.

The core never prints: a function that can take more than about a second (import, export,
rotate, verify, seal, the replays of state and history, report, building a line index) takes an
optional `progress` argument of this type and calls it now and then. The CLI draws it on stderr
(`cli_options.progress_bar`); a library user may pass anything callable, or nothing.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Reports work done: `entries` handled so far (cumulative); where the size of the work is
    known, `done` of `total` units (bytes, files, days: whatever the caller counts in); `phase`
    names the current stage when a job has several ("validating", "writing")."""

    def __call__(
        self,
        entries: int,
        *,
        done: int | None = None,
        total: int | None = None,
        phase: str | None = None,
    ) -> None: ...
