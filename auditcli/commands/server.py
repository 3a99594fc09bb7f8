"""`audit serve` (the audit-log HTTP API) and `audit service-account create|list|delete`."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from auditcli.cli import app
from auditcli.cli_options import (
    TableOrJson,
    TableOrJsonOpt,
    deliver,
    get_store,
    pick_format,
    say,
    screen,
    write_json,
)
from auditcli.errors import UsageError


class Role(StrEnum):
    admin = "admin"
    member = "member"


def default_actor_id() -> str:
    """Who runs a service-account command when neither --actor-id nor AUDIT_ACTOR_ID says:
    the local login name (an audit entry must name somebody)."""
    import getpass

    try:
        return getpass.getuser() or "cli"
    except (KeyError, OSError):  # no passwd entry (containers running as a bare uid)
        return "cli"


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------- serve
@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; loopback unless you say otherwise.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="TCP port.")] = 8080,
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, max=64, help="Worker processes (queries are CPU-bound)."),
    ] = 1,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log", help="Log each request line (never its headers)."
        ),
    ] = True,
    ssl_certfile: Annotated[
        Path | None, typer.Option("--ssl-certfile", help="Serve HTTPS with this certificate (PEM).")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option("--ssl-keyfile", help="The certificate's private key (PEM).")
    ] = None,
) -> None:
    """Serve the audit log API: GET /api/v1/audit-logs with a service-account bearer token.

    Example: audit serve --port 8080, then
    curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:8080/api/v1/audit-logs?limit=50&action=login"
    """
    try:
        import uvicorn

        from auditcli.server import create_app, log_config
    except ImportError as exc:
        raise UsageError(
            f"audit serve needs the server extra ({exc.name} is missing): "
            "pip install 'auditcli[server]'"
        ) from None
    from auditcli.accounts import AccountStore

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise UsageError("--ssl-certfile and --ssl-keyfile go together")
    store = get_store(ctx)
    admins = [a for a in AccountStore(store).accounts() if a.role == "admin"]
    scheme = "https" if ssl_certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    say(
        f"Serving {store.root} at {scheme}://{shown}:{port}/api/v1/audit-logs "
        "(schema: /openapi.json)"
    )
    if not admins:
        say(
            "warning: no admin service account yet: "
            "audit service-account create NAME --org-id ORG --role admin"
        )
    if not _is_loopback(host) and ssl_certfile is None:
        say(
            f"warning: listening on {host} over plain HTTP: tokens cross the network in clear; "
            "use --ssl-certfile/--ssl-keyfile or a TLS proxy"
        )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": access_log,
        "server_header": False,
        "proxy_headers": False,  # X-Forwarded-For is not trusted unless a proxy is configured
        "ssl_certfile": str(ssl_certfile) if ssl_certfile else None,
        "ssl_keyfile": str(ssl_keyfile) if ssl_keyfile else None,
        "log_config": log_config(),  # the access log never shows a query string
        # SIGTERM: requests still running after 2 s are cancelled (their store work runs on
        # daemon threads, which do not hold the process), so the server stops within 5 s.
        "timeout_graceful_shutdown": 2,
    }
    if workers > 1:
        # Each worker process imports the app factory and finds the log directory here.
        os.environ["AUDIT_LOG_DIR"] = str(store.root)
        os.environ["AUDIT_WRITER_ID"] = store.writer_id  # also when the config file set it
        uvicorn.run(
            "auditcli.server:app_from_environment", factory=True, workers=workers, **options
        )
    else:
        uvicorn.run(create_app(store), **options)


# ----------------------------------------------------------------------------- service-account
accounts_app = typer.Typer(
    help="Service accounts and their API tokens (for audit serve).", no_args_is_help=True
)
app.add_typer(accounts_app, name="service-account")

ActorIdOpt = Annotated[
    str | None,
    typer.Option(
        "--actor-id",
        envvar="AUDIT_ACTOR_ID",
        help="Who does this, for the audit entry (default: your login name).",
    ),
]
ActorNameOpt = Annotated[
    str | None,
    typer.Option(
        "--actor-name", envvar="AUDIT_ACTOR_NAME", help="Name of who does it, for the log entry."
    ),
]
ActorEmailOpt = Annotated[
    str | None,
    typer.Option(
        "--actor-email", envvar="AUDIT_ACTOR_EMAIL", help="Email of who does it, for the log entry."
    ),
]


def _actor(
    actor_id: str | None, actor_name: str | None, actor_email: str | None
) -> dict[str, str | None]:
    return {
        "actorId": actor_id or default_actor_id(),
        "actorName": actor_name,
        "actorEmail": actor_email,
    }


@accounts_app.command("create")
def account_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique name, e.g. siem-poller.")],
    org_id: Annotated[
        str, typer.Option("--org-id", help="The organization whose entries the token may read.")
    ],
    role: Annotated[
        Role, typer.Option("--role", help="admin may read audit logs; member may not (403).")
    ],
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            metavar="WHEN",
            help="12h, 90d, 2w, 3mo, 1y, a date or time, or never (default).",
        ),
    ] = None,
    actor_id: ActorIdOpt = None,
    actor_name: ActorNameOpt = None,
    actor_email: ActorEmailOpt = None,
) -> None:
    """Create a service account and print its token, once, alone on stdout.

    Only a hash of the token is stored; records service_account_created.
    Example: TOKEN=$(audit service-account create siem --org-id org-456 --role admin --expires 90d)
    """
    from auditcli.accounts import AccountStore

    store = get_store(ctx)
    account, token = AccountStore(store).create(
        name, org_id, role.value, expires=expires, actor=_actor(actor_id, actor_name, actor_email)
    )
    deliver(
        token.encode() + b"\n",
        f"service account {account.name} ({account.id}) IS created, but its token could not be"
        " shown: delete the account and create it again",
    )
    until = f"expires {account.expires_at}" if account.expires_at else "never expires"
    say(
        f"Created service account {account.name} ({account.id}): organization "
        f"{account.organization_id}, role {account.role}, {until}."
    )
    say("The token above is shown only this once; only its hash is stored.")


@accounts_app.command("list")
def account_list(
    ctx: typer.Context,
    fmt: TableOrJsonOpt = None,
) -> None:
    """List service accounts (never their tokens).

    Example: audit service-account list --format json
    """
    from auditcli.accounts import AccountStore
    from auditcli.render import Column, fit_table, short_time

    accounts = AccountStore(get_store(ctx))
    accounts.settle()  # a create or delete that a kill interrupted: completed or undone
    now = accounts.now()
    items = [account.public(now) for account in accounts.accounts()]
    if pick_format(fmt, TableOrJson.table, TableOrJson.json) is TableOrJson.json:
        write_json(items)
        return
    # The table is for people (exact times and the creator are in --format json).
    columns = (
        Column("Name"),
        Column("ID", priority=3),
        Column("Organization", priority=2),
        Column("Role"),
        Column("Expires (UTC)", priority=1),
        Column("Status"),
    )
    rows = [
        (
            i["name"],
            i["id"],
            i["organizationId"],
            i["role"],
            short_time(i["expiresAt"])[:16] if i["expiresAt"] else "never",
            i["status"],
        )
        for i in items
    ]
    with screen(ctx) as out:
        caption = f"{len(items)} service account(s)"
        out.print(fit_table(columns, rows, width=out.width, caption=caption))


@accounts_app.command("delete")
def account_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The account's name.")],
    actor_id: ActorIdOpt = None,
    actor_name: ActorNameOpt = None,
    actor_email: ActorEmailOpt = None,
) -> None:
    """Delete a service account: its token stops working at once. Records service_account_deleted.

    Example: audit service-account delete siem
    """
    from auditcli.accounts import AccountStore

    account = AccountStore(get_store(ctx)).delete(
        name, actor=_actor(actor_id, actor_name, actor_email)
    )
    typer.echo(f"deleted service account {account.name} ({account.id})")
