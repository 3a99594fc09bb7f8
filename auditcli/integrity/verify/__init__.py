"""`verify()`: stream every file once and check chains, checkpoints, manifests, signatures,
and what is missing, planted or foreign; writer by writer, each against its own chain.

`verifier` walks the store, `filescan` reads one data file, `results` is what they report."""

from .results import LEGACY_HOST, HostReport, VerifyReport, iter_problem_lines
from .verifier import verify

__all__ = ["LEGACY_HOST", "HostReport", "VerifyReport", "iter_problem_lines", "verify"]
