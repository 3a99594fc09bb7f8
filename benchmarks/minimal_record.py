"""The framework's floor for `audit record`: a minimal Typer app that validates one entry with
pydantic and appends it with orjson (fsynced, like `audit record`).

    python benchmarks/minimal_record.py login --actor-id user-1 --org-id org-1 --out FILE

The benchmark runner times this against `audit record` with the same arguments; the
target (docs/performance.md) is `audit record` <= 0.8x this app's wall time. The model
mirrors the entry's 13 fields and their constraints (patterns, lengths), so the pydantic schema
build is comparable.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from pydantic import BaseModel, ConfigDict, StringConstraints

Ref = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class Entry(BaseModel):
    """One entry: the 13 entry fields with constraints like auditcli's own model."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
    description: Annotated[str, StringConstraints(max_length=8192)]
    actorId: Ref
    actorName: Annotated[str, StringConstraints(max_length=512)] | None
    actorEmail: (
        Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
        | None
    )
    action: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")]
    actionDisplayName: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    target: Annotated[
        str, StringConstraints(pattern="^(USER|ROLE|TEAM|SERVICE_ACCOUNT|ORGANIZATION)$")
    ]
    targetId: Ref
    metadata: dict[str, Any] | None
    organizationId: Ref
    teamId: Ref | None
    createdAt: Annotated[
        str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
    ]


app = typer.Typer(add_completion=False)


@app.command()
def record(
    action: str,
    actor_id: Annotated[str, typer.Option("--actor-id")],
    org_id: Annotated[str, typer.Option("--org-id")],
    target_id: Annotated[str | None, typer.Option("--target-id")] = None,
    out: Annotated[str, typer.Option("--out")] = "minimal.jsonl",
) -> None:
    """Validate one entry and append it to OUT."""
    now = datetime.now(UTC)
    entry = Entry(
        id=str(uuid.uuid4()),
        description=f"{actor_id} did {action}",
        actorId=actor_id,
        actorName=None,
        actorEmail=None,
        action=action,
        actionDisplayName=action.replace("_", " ").title(),
        target="USER",
        targetId=target_id or actor_id,
        metadata=None,
        organizationId=org_id,
        teamId=None,
        createdAt=now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
    )
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, orjson.dumps(entry.model_dump(), option=orjson.OPT_APPEND_NEWLINE))
        os.fsync(fd)
    finally:
        os.close(fd)
    typer.echo(entry.id)


if __name__ == "__main__":
    app()
