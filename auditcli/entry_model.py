"""The entry as a pydantic model: the 13 fields under their JSON names, with the constraints
model.py defines. Imported only where a model is needed: the HTTP API's schema, and the
validation (and wording of problems) of an entry that is not plainly valid (model.py)."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from .model import (
    ACTION_PATTERN,
    DESCRIPTION_MAX,
    DISPLAY_MAX,
    EMAIL_MAX,
    EMAIL_PATTERN,
    ID_PATTERN,
    NAME_MAX,
    REF_MAX,
    STAMP_PATTERN,
    TARGET_PATTERN,
)

IdText = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
RefText = Annotated[str, StringConstraints(min_length=1, max_length=REF_MAX)]
Email = Annotated[str, StringConstraints(max_length=EMAIL_MAX, pattern=EMAIL_PATTERN)]
Target = Annotated[str, StringConstraints(pattern=TARGET_PATTERN)]
Action = Annotated[str, StringConstraints(pattern=ACTION_PATTERN)]
Stamp = Annotated[str, StringConstraints(pattern=STAMP_PATTERN)]


class Entry(BaseModel):
    """One audit log entry, exactly the 13 fields of the API's entry under their JSON names."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: IdText
    description: Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX)]
    actorId: RefText
    actorName: Annotated[str, StringConstraints(max_length=NAME_MAX)] | None
    actorEmail: Email | None
    action: Action
    actionDisplayName: Annotated[str, StringConstraints(min_length=1, max_length=DISPLAY_MAX)]
    target: Target
    targetId: RefText
    metadata: dict[str, Any] | None
    organizationId: RefText
    teamId: RefText | None
    createdAt: Stamp

    def to_dict(self) -> dict[str, Any]:
        """The entry as a plain dict in the API's field order."""
        return dict(self.__dict__)
