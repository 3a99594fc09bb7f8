"""`python -m auditcli`: the same as the `audit` command."""

from .cli import main

main()
