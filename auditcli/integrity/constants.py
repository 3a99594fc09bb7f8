"""Constants shared by the integrity modules: names, formats, limits of the verifier."""

import re

from auditcli import chain

MANIFEST_DIR = "_manifests"
FORMAT = "auditcli-manifest/1"
#: Seals that carry a Merkle tree head (see tree.py); format 1 manifests keep verifying.
TREE_FORMAT = "auditcli-manifest/2"
FORMATS = (FORMAT, TREE_FORMAT)
SIGNING_ENV = "AUDIT_SIGNING_KEY"
_SIGNED_TAG = b"auditcli-manifest/1\n"
_MANIFEST_NAME = re.compile(r"^(\d{9})-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)\.json$")
_FILE_NAME = re.compile(r"^date=(\d{4}-\d{2}-\d{2})/([^/]+?)(\.jsonl|\.jsonl\.gz)$")
_HEX64 = re.compile(rb"^[0-9a-f]{64}$")
_TAGGED = re.compile(r"^sha256:[0-9a-f]{64}$")

# Stored line without its newline: content[:-84] + "}" is the entry, [-66:-2] the link in hex.
_TAIL = chain.SUFFIX_LEN - 1
_HEX_START, _HEX_END = -(_TAIL - len(chain.SUFFIX_HEAD)), -2
_MIN_LINE = chain.SUFFIX_LEN + 40
_CREATED_DAY = chain.CREATED_START + 1  # createdAt[:10] of a line without its newline
_WINDOW = 64  # lines kept around a chain break to find where a moved line belongs
_MAX_BAD_SEARCH = 64  # bad lines per incident whose predecessor is searched for
_MAX_PROBLEMS_PER_FILE = 200
_MAX_INCIDENT = 4096
_MAX_SEARCHES_PER_FILE = 512  # bounds the cost of a file broken throughout
_CLOCK_SLACK = 2.0  # seconds: file times vs the seal's clock (see check_planted)
