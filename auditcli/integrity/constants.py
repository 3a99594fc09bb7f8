"""Constants shared by the integrity modules: names, formats, limits of the verifier."""

import re

from auditcli import chain

MANIFEST_DIR = "_manifests"
#: The body format of the flat chain of stores written before per-writer chains (read only now).
LEGACY_FORMAT = "auditcli-manifest/1"
#: Per-writer chains: `_manifests/<writer>/NNNNNNNNN-<time>[.receipt].json`, bodies name `writer`
#: and list only the files that changed since the writer's previous seal.
FORMAT = "auditcli-manifest/2"
#: Manifest kinds a verifier of this version understands; any other kind fails closed.
KINDS = ("seal", "receipt")
#: Per-writer seals that also carry a Merkle tree head (`merkle`, see tree.py); receipts and
#: seals written before it stay format 2 and keep verifying.
TREE_FORMAT = "auditcli-manifest/3"
#: The formats a per-writer chain may hold.
FORMATS = (FORMAT, TREE_FORMAT)
SIGNING_ENV = "AUDIT_SIGNING_KEY"
# The domain tag is the same for both formats: the body's `format` already tells them apart.
_SIGNED_TAG = b"auditcli-manifest/1\n"
# Matched whole (fullmatch): `$` would also accept a trailing newline.
_MANIFEST_NAME = re.compile(r"(\d{9})-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)(\.receipt)?\.json")
#: A writer id as the store allows it (see store._SEGMENT, without the `+N` of a segment).
_WRITER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
_FILE_NAME = re.compile(r"date=(\d{4}-\d{2}-\d{2})/([^/]+?)(\.jsonl|\.jsonl\.gz)")
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_TAGGED = re.compile(r"sha256:[0-9a-f]{64}")

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
#: Under `_index/`: each writer's Merkle leaf hashes (derived data, checked against tree heads).
MERKLE_DIR = "merkle"
