"""What auditors ask: a resource's timeline with before → after changes, the access state at an
instant, what changed between two instants, and the data of the access-review report.

Everything here is a *replay*: the entries are read in time order (`createdAt`, ties broken by
`id`, the same order as `audit query --order asc`) and applied to an in-memory model of system
admins, organization members, teams with their members, custom roles and service accounts. The
order is the entries' own time, never the order in which they were stored, so entries imported
late still land where they belong; being stored out of time order is itself reported.

Metadata conventions the replay reads (the API leaves `metadata` free-form; these are the
shapes `sample_logs/` and `benchmarks/gen_entries.py` use):

* `org_admin_added` / `org_admin_removed`, `user_added` / `user_removed`: `targetId` is the user.
* `team_created` / `team_deleted`: `targetId` is the team (`teamId` too);
  `metadata.input.name` is the team's name.
* `user_added_to_team`: `targetId` = `teamId` = the team, `metadata.input.userId` the user,
  `metadata.input.role` the role in the team. `user_removed_from_team`: `metadata.input.userId`.
  `user_role_changed_in_team`: `metadata.input.userId`, `.from` and `.to`.
* `role_created` / `role_updated`: `targetId` is the role, `metadata.input` holds its attributes
  (`name`, `permissions`, `description`, …); an update is diffed against the last known values
  (lists as added / removed items). `service_account_created` likewise.
* Removing a user from the organization ends their system-admin grant and team memberships;
  deleting a team ends its memberships. Both are cited as the entry that ended them.

Nothing before the first recorded entry is known: a grant older than the log is invisible.
Contradictions (a removal with no prior grant, a second grant, a role change whose `from` is not
the recorded role, an event on a deleted team) are reported as anomalies and never hidden.

The package, by job: `model` (actions, citations, anomalies, changes), `replay` (the access
model), `reading` (lines in time order, storage-order anomalies), `state`, `history` and
`report_data` (the three questions), `checkpoints` (derived snapshots that let a question
replay only its window).
"""

from .history import HistoryResult, history
from .model import (
    KIND_READS,
    KINDS,
    SCOPE_OF_ACTION,
    STATE_ACTIONS,
    TEAM_MEMBER_ACTIONS,
    UNKNOWN_BEFORE_NOTE,
    Anomaly,
    Change,
    Cite,
    TimelineItem,
    cite_of,
    diff_attrs,
    show_value,
)
from .reading import OUT_OF_ORDER_TOLERANCE, action_of, first_recorded, storage_order_anomalies
from .replay import Replay, row_key
from .report_data import SECTION_ACTIONS, ReportData, report_data
from .state import StateResult, access_state

__all__ = [
    "KINDS",
    "KIND_READS",
    "OUT_OF_ORDER_TOLERANCE",
    "SCOPE_OF_ACTION",
    "SECTION_ACTIONS",
    "STATE_ACTIONS",
    "TEAM_MEMBER_ACTIONS",
    "UNKNOWN_BEFORE_NOTE",
    "Anomaly",
    "Change",
    "Cite",
    "HistoryResult",
    "Replay",
    "ReportData",
    "StateResult",
    "TimelineItem",
    "access_state",
    "action_of",
    "cite_of",
    "diff_attrs",
    "first_recorded",
    "history",
    "report_data",
    "row_key",
    "show_value",
    "storage_order_anomalies",
]
