"""`audit prove` and `audit verify-bundle`: evidence that travels (see integrity/bundle.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from auditcli.cli import app
from auditcli.cli_options import _FILTER_OPTIONS as FILTER_OPTIONS
from auditcli.cli_options import (
    ActionOpt,
    ActorIdOpt,
    OrgIdOpt,
    SinceOpt,
    TableOrJson,
    TargetIdOpt,
    TargetOpt,
    TeamIdOpt,
    UntilOpt,
    console,
    filters_from_options,
    get_store,
    say,
    write_json,
    write_out,
)
from auditcli.commands.integrity import SigningKeyOpt
from auditcli.errors import IntegrityError, UsageError


@app.command()
def prove(
    ctx: typer.Context,
    action: ActionOpt = None,
    target: TargetOpt = None,
    actor_id: ActorIdOpt = None,
    target_id: TargetIdOpt = None,
    team_id: TeamIdOpt = None,
    org_id: OrgIdOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    consistency: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--consistency",
            metavar="FROM TO",
            help="Instead of entries: prove seal TO's tree extends seal FROM's, both of one"
            " writer's chain (manifest hashes, or WRITER:N).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the bundle to this file (default: stdout)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file at --output.")
    ] = False,
    signing_key: SigningKeyOpt = None,
) -> None:
    """Write an evidence bundle: the entries the filters select (as `query` selects them),
    exactly as stored, each with its Merkle audit path to its writer's newest signed seal (one
    tree head per writer); or, with --consistency, a proof that a later seal's tree extends an
    earlier one's (both of one writer's chain).

    The signing key (one that signed the manifests) signs the bundle's list of entries. Check
    a bundle with `audit verify-bundle FILE --public-key KEY.pub` or docs/verify_bundle.py.

    Example: audit prove --action role_updated --since 2026-07-01 --until 2026-09-30 -o q3.json
    """
    from auditcli.integrity.bundle import prove as prove_entries
    from auditcli.integrity.bundle import prove_consistency

    store = get_store(ctx)
    if consistency is not None:
        if any(ctx.params.get(name) for name in FILTER_OPTIONS):
            raise UsageError("--consistency takes no filters")
        bundle = prove_consistency(store, *consistency, signing_key=signing_key)
        what = f"consistency of seal {consistency[0]} → {consistency[1]}"
    else:
        bundle = prove_entries(store, filters_from_options(ctx, store), signing_key=signing_key)
        what = f"{len(bundle['entries'])} entries"
    import orjson

    data = orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        write_out(data)
    else:
        from auditcli.outfile import write_file

        write_file(output, data, force=force)
    say(f"bundle: {what}, {len(data)} bytes")


@app.command("verify-bundle")
def verify_bundle(
    file: Annotated[Path, typer.Argument(help="The bundle `audit prove` wrote.")],
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help="The store's Ed25519 public key (PEM or ssh-ed25519); repeat for several.",
        ),
    ] = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            "--anchor",
            help="A manifest hash or tree root you kept: it must be the bundle's (earlier) head.",
        ),
    ] = None,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", "-f", help="table for people, json for machines.")
    ] = TableOrJson.table,
) -> None:
    """Check a bundle offline: the manifests' hashes and signatures, the signed list of
    entries, each entry's audit path to the signed tree head (or the consistency proof).
    Reports per entry; exit code 5 when anything fails.

    Example: audit verify-bundle q3.json --public-key seal.key.pub
    """
    from auditcli.integrity import load_public_key
    from auditcli.integrity.bundle_check import verify_bundle as check

    keys = [load_public_key(path) for path in public_key or []]
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{file}: cannot read: {exc.strerror}") from None
    report = check(data, keys, anchor)
    if output_format is TableOrJson.json:
        write_json(report.to_dict())
    else:
        _print_report(report)
    if not report.ok:
        raise IntegrityError(f"the bundle failed {len(report.problems)} check(s)")


def _print_report(report: Any) -> None:
    from rich.text import Text

    from auditcli.render import rows_table

    out = console()
    for head in report.manifests:
        out.print(
            Text(
                f"Tree head of {head['writer']}: manifest #{head['sequence']}"
                f" ({head['sealedAt']}), {head['size']} entries, root {head['root']}"
            ),
            soft_wrap=True,
        )
    trust = "given with --public-key" if report.key_trusted else "carried by the bundle"
    out.print(Text(f"Signing key: {report.key_id or '-'} ({trust})"), soft_wrap=True)
    if report.entries:
        out.print(
            rows_table(
                ("#", "Leaf", "Id", "Action", "Result"),
                (
                    (
                        e.position,
                        f"{e.writer or '?'}:{e.leaf_index}",
                        e.entry_id,
                        e.action,
                        "ok" if e.ok else e.detail,
                    )
                    for e in report.entries
                ),
                width=out.width,
            )
        )
    for problem in report.problems:
        say(f"problem: {problem}")
    for note in report.notes:
        say(f"note: {note}")
    if not report.ok:
        return
    if report.kind == "consistency":
        first, last = report.manifests[0], report.manifests[-1]
        say(
            f"verify-bundle: OK ({last['writer']}'s tree of #{last['sequence']},"
            f" {last['size']} entries, extends its tree of #{first['sequence']},"
            f" {first['size']} entries)"
        )
    else:
        say(
            f"verify-bundle: OK ({len(report.entries)} entries in the signed trees of"
            f" {len(report.manifests)} writer(s))"
        )
