"""`audit seal`, `audit verify` and `audit keys generate`: tamper evidence (see integrity.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from auditcli.cli import app
from auditcli.cli_options import (
    SinceOpt,
    TableOrJson,
    UntilOpt,
    get_store,
    pick_format,
    progress_bar,
    say,
    screen,
    write_json,
    write_out,
)
from auditcli.errors import IntegrityError, UsageError

keys_app = typer.Typer(
    help="Ed25519 keys that sign manifests.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(keys_app, name="keys")


SigningKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--signing-key",
        metavar="FILE",
        envvar="AUDIT_SIGNING_KEY",
        help="Ed25519 private key (PEM) that signs the manifest (default: $AUDIT_SIGNING_KEY).",
    ),
]


TsaCaOpt = Annotated[
    Path | None,
    typer.Option("--tsa-ca", help="PEM CA bundle that RFC 3161 timestamp tokens must chain to."),
]


# ----------------------------------------------------------------------------- seal
@app.command()
def seal(
    ctx: typer.Context,
    signing_key: SigningKeyOpt = None,
    writer: Annotated[
        list[str] | None,
        typer.Option(
            "--writer",
            metavar="WRITER",
            help="Seal this writer's chain only (repeatable). Default: every writer in the store"
            " whose chain this key signs (a host: itself; a shared volume: all).",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary on stderr; warnings only (cron).")
    ] = False,
    tsa: Annotated[
        str | None,
        typer.Option("--tsa", help="RFC 3161 timestamp authority URL: timestamp the manifest."),
    ] = None,
    tsa_ca: TsaCaOpt = None,
) -> None:
    """Checkpoint each writer's files in a new manifest of its own chain; print its hash.

    Run it hourly from cron; it writes a manifest even when nothing changed, so a gap shows.
    Ship the printed hash off-host to anchor the chain (`audit verify --anchor HASH`). With
    several writers, each line is `HASH  WRITER`.

    Example: audit seal --signing-key /etc/auditcli/seal.key
    """
    from auditcli.integrity import default_writers, seal_writers
    from auditcli.integrity.timestamp import prepare_tsa, stamp_manifest

    store = get_store(ctx)
    if signing_key is not None:
        _warn_if_exposed(signing_key)
    if tsa_ca is not None and tsa is None:
        raise UsageError("--tsa-ca: give --tsa URL too")
    roots = prepare_tsa(tsa, tsa_ca) if tsa else None
    skipped: list[str] = []
    if writer:
        writers = writer
    else:
        writers, skipped = default_writers(store, signing_key)
    failures: list[tuple[str, str]] = []
    with progress_bar(ctx, "sealing") as progress:
        results = seal_writers(
            store, writers, signing_key=signing_key, failures=failures, progress=progress
        )
    warnings = 0
    for result in results:
        manifest = result.manifest
        signed = f"signed by {result.key_id}" if result.key_id else "unsigned (no signing key)"
        if not quiet:
            say(
                f"sealed manifest #{manifest.sequence} of {result.writer} ({manifest.path.name}):"
                f" {result.files} files, {result.lines} entries ({result.new_lines} new since"
                f" the last seal, {result.changed} file(s) listed), {signed}"
            )
        for warning in result.warnings:
            say(f"warning: {result.writer}: {warning}")
        warnings += len(result.warnings)
    for name in skipped:
        say(f"note: {name} not sealed: its chain is signed by another key (use --writer {name})")
    lines = [
        f"{r.manifest.hash}\n" if len(results) == 1 else f"{r.manifest.hash}  {r.writer}\n"
        for r in results
    ]
    write_out("".join(lines).encode())
    for r in results:
        if tsa:
            stamp = stamp_manifest(store, r.manifest, tsa, roots)
            if not quiet:
                say(f"{r.manifest.name}: timestamped by {stamp.tsa} at {stamp.time}")
    for name, message in failures:
        say(f"error: {name} not sealed: {message}")
    if failures:
        raise IntegrityError(f"{len(failures)} chain(s) not sealed; run `audit verify`")
    if warnings:
        raise IntegrityError(
            f"{warnings} file(s) changed against the previous seal; run `audit verify`"
        )


def _warn_if_exposed(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # load_signing_key reports it
    if mode & 0o077:
        say(f"warning: {path} is readable by group or others (chmod 600 it)")


# ----------------------------------------------------------------------------- verify
@app.command()
def verify(
    ctx: typer.Context,
    since: SinceOpt = None,
    until: UntilOpt = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            metavar="FILE",
            envvar="AUDIT_PUBLIC_KEY",
            help="Trusted Ed25519 public key (PEM or ssh-ed25519); every manifest must be signed"
            " by one. Repeat for several keys.",
        ),
    ] = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            "--anchor",
            metavar="HASH",
            help="A manifest hash kept off-host; it must still be in the chain.",
        ),
    ] = None,
    max_seal_age: Annotated[
        str | None,
        typer.Option(
            "--max-seal-age",
            metavar="DURATION",
            help="Fail when the newest manifest is older than this (e.g. 2h), or there is none.",
        ),
    ] = None,
    fleet: Annotated[
        Path | None,
        typer.Option(
            "--fleet",
            metavar="FILE",
            help="Fleet file (TOML, kept outside the store): the writers that must be present"
            " and the public key of each (see docs/fleet.md).",
        ),
    ] = None,
    tsa_ca: TsaCaOpt = None,
    output_format: Annotated[
        TableOrJson | None,
        typer.Option("--format", "-f", help="Default: table on a terminal, else json."),
    ] = None,
) -> None:
    """Check every line's chain link, every file against every checkpoint, the manifest chain
    and its signatures; name each problem by file, line and kind. Exit code 5 on any problem.

    Example: audit verify --public-key /etc/auditcli/seal.key.pub
    """
    from auditcli.integrity import load_fleet, load_public_key
    from auditcli.integrity import verify as verify_store
    from auditcli.integrity.timestamp import check_timestamps, load_roots
    from auditcli.timeparse import parse_bound

    store = get_store(ctx)
    first = (
        parse_bound(since, end=False, clock=store.clock, option="--since")[:10] if since else None
    )
    last = parse_bound(until, end=True, clock=store.clock, option="--until")[:10] if until else None
    if first and last and first > last:
        raise UsageError("--since is after --until")
    age_since = None
    if max_seal_age is not None:
        if not max_seal_age.strip()[-1:].isalpha():
            raise UsageError("--max-seal-age: give a duration such as 90m, 2h or 1d")
        age_since = parse_bound(max_seal_age, end=False, clock=store.clock, option="--max-seal-age")
    keys = [load_public_key(path) for path in public_key or []]
    with progress_bar(ctx, "verifying") as progress:
        report = verify_store(
            store,
            first_day=first,
            last_day=last,
            public_keys=keys,
            anchor=anchor,
            max_seal_age_since=age_since,
            fleet=load_fleet(fleet) if fleet is not None else None,
            progress=progress,
        )
    check_timestamps(store, report, load_roots(tsa_ca) if tsa_ca else None)
    if pick_format(output_format, TableOrJson.table, TableOrJson.json) is TableOrJson.json:
        write_json(report.to_dict())
        for note in report.notes:
            say(f"note: {note}")
    else:
        with screen(ctx) as out:
            _print_report(out, report)
    if report.ok:
        say("verify: OK")
    if not report.ok:
        raise IntegrityError(f"verify found {len(report.problems)} problem(s)")


def _print_report(out: Any, report: Any) -> None:
    from rich.text import Text

    from auditcli.render import Column, fit_table, rows_table

    latest = report.latest
    signatures = {
        "verified": "verified with the fleet's keys"
        if report.fleet
        else "verified with --public-key",
        "embedded": "consistent (key not given)",
        "unsigned": "unsigned",
        "none": "-",
    }[report.signed]
    rows = [
        ("Partitions", report.partitions),
        ("Files", report.files),
        ("Entries", report.entries),
        ("Manifests", report.manifests if latest else "0 (never sealed)"),
        ("Latest seal", _latest_seal(latest)),
        ("Signatures", signatures),
        ("Checkpoints", report.checkpoints),
        ("Not yet covered", report.uncovered),
        ("Deleted by retention", report.receipted_files),
        ("Problems", len(report.problems)),
    ]
    out.print(rows_table(("Verify", "Result"), rows, width=out.width))
    if latest:
        out.print(Text(f"Latest manifest: {latest['hash']}"), soft_wrap=True)
    if len(report.hosts) > 1 or report.fleet:
        host_columns = (
            Column("Host", fold=24),
            Column("Files", numeric=True, priority=2),
            Column("Entries", numeric=True),
            Column("Last seal"),
            Column("Key", priority=1),
            Column("Problems", numeric=True),
        )
        out.print(
            fit_table(
                host_columns,
                [_host_row(host) for host in report.hosts],
                width=out.width,
                title="Hosts",
            )
        )
    if report.problems:
        shown = report.problems[:500]
        columns = (
            Column("File"),
            Column("Line", numeric=True),
            Column("Kind", max_width=16),
            Column("Detail", fold=36),
        )
        table = fit_table(
            columns,
            [(p.file, "" if p.line is None else p.line, p.kind, p.detail) for p in shown],
            width=out.width,
            title="Problems",
        )
        out.print(table)
        if len(report.problems) > len(shown):
            out.print(Text(f"… and {len(report.problems) - len(shown)} more (use --format json)"))
    for note in report.notes:
        say(f"note: {note}")


def _latest_seal(latest: dict[str, Any] | None) -> str:
    """`#5 2026-…Z`, with the writer whose chain it heads (none for the legacy chain)."""
    if not latest:
        return "-"
    of = f" of {latest['writer']}" if latest.get("writer") else ""
    return f"#{latest['sequence']}{of} {latest['sealedAt']}"


def _host_row(host: Any) -> tuple[Any, ...]:
    """One row of the per-host table: a short key id, the last seal to the minute."""
    latest = host.latest
    seal = f"#{latest['sequence']} {latest['sealedAt'][:16].replace('T', ' ')}" if latest else "-"
    if host.chain == "legacy":
        seal = "legacy chain"
    key = {"unsigned": "unsigned", "none": "-"}.get(host.signed)
    if key is None:
        key = ", ".join(k[7:19] + "…" for k in host.key_ids) or "-"
    name = host.writer if host.in_fleet is not False else f"{host.writer} (not in fleet)"
    return (name, host.files, host.entries, seal, key, host.problems or "OK")


# ----------------------------------------------------------------------------- keys
@keys_app.command("generate")
def keys_generate(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Private key path (required); the public key goes to FILE.pub.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing key files.")] = False,
    out_old: Annotated[
        Path | None, typer.Option("--out", hidden=True, help="Old spelling of --output.")
    ] = None,
) -> None:
    """Create an Ed25519 key pair: FILE (private, mode 0600) and FILE.pub (public).

    Keep the private key where only `audit seal` can read it (not the writers); give auditors
    FILE.pub for `audit verify --public-key`.

    Example: audit keys generate --output /etc/audit/seal.key
    """
    from auditcli.integrity import generate_keys

    out = output or out_old
    if out is None:
        raise UsageError("missing option '--output'/'-o' (the private key file)")
    key_id = generate_keys(out, force=force)
    say(f"wrote {out} (private, 0600) and {out}.pub (public)")
    write_out(f"{key_id}\n".encode())
    if os.environ.get("AUDIT_SIGNING_KEY") is None:
        say(f"sign with: audit seal --signing-key {out}   (or export AUDIT_SIGNING_KEY={out})")
