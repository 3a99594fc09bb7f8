"""`audit redact`: erase a person's personal data, keeping the record and `verify` green
(see auditcli/redact.py)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from auditcli.cli import app
from auditcli.cli_options import (
    ActionOpt,
    ActorIdOpt,
    OrgIdOpt,
    SinceOpt,
    TargetIdOpt,
    TargetOpt,
    TeamIdOpt,
    UntilOpt,
    filters_from_options,
    get_store,
    say,
)
from auditcli.errors import inert


@app.command()
def redact(
    ctx: typer.Context,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", metavar="TEXT", help='Why (recorded): e.g. "GDPR Art. 17 request #42".'
        ),
    ],
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            metavar="KEY",
            help="Also remove this metadata key (or metadata.KEY, description); repeatable.",
        ),
    ] = None,
    operator: Annotated[
        str | None,
        typer.Option(
            "--operator", metavar="ID", help="Who redacts, recorded (default: the login name)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show which fields of which entries would change.")
    ] = False,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            metavar="FILE",
            envvar="AUDIT_SIGNING_KEY",
            help="Ed25519 private key (PEM) signing the redaction receipt (required).",
        ),
    ] = None,
    action: ActionOpt = None,
    target: TargetOpt = None,
    actor_id: ActorIdOpt = None,
    target_id: TargetIdOpt = None,
    team_id: TeamIdOpt = None,
    org_id: OrgIdOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Replace the personal data of the selected entries with [redacted]: the actor's name
    and email (with --actor-id), their names and emails inside descriptions, and personal
    metadata keys. Ids, action, time, organization and team stay. Writes a signed redaction
    receipt and records an entries_redacted entry; `audit verify` stays green.

    Example: audit redact --actor-id user-42 --reason "GDPR Art. 17 request #42"
    """
    from auditcli.redact import redact_entries

    store = get_store(ctx)
    filters = filters_from_options(ctx, store)
    who = operator or getpass.getuser()
    report = redact_entries(
        store,
        filters,
        reason=reason,
        operator=who,
        extra_fields=field or (),
        signing_key=signing_key,
        dry_run=dry_run,
    )
    if dry_run:
        for change in report.changes:
            fields = ", ".join(change.fields) or "(whole line)"
            typer.echo(inert(f"{change.file.name}:{change.line} {change.entry_id}: {fields}"))
    verb = "would redact" if dry_run else "redacted"
    summary = f"{verb} {len(report.changes)} entries in {len(report.files)} file(s)"
    if report.v1_lines:
        summary += f" ({report.v1_lines} chain version 1: replaced whole)"
    if report.receipt and not dry_run:
        summary += f"; receipt {report.receipt}"
    typer.echo(summary)
    if report.v1_lines:
        # Why the proof is weaker, and how to get the stronger one for lines still to come.
        say(
            f"note: {report.v1_lines} line(s) are chain version 1 (the store was not redactable "
            "when they were written): only the signed receipt vouches that no other field "
            "changed; `audit init --redactable` makes future lines provable field by field"
        )
    if report.too_long:
        from auditcli.errors import IntegrityError

        raise IntegrityError(
            f"{len(report.too_long)} entries left unredacted: redacted, their line would be over "
            f"the stored line limit (first: {report.too_long[0]})"
        )
