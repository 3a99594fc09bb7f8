"""The entry as a pydantic model: the 13 fields under their JSON names, with the constraints of
model.TEXT_RULES. Imported only where a model is needed: the HTTP API's schema, and the
validation (and wording of problems) of an entry that is not plainly valid (model.py)."""

from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, StringConstraints

from .model import NULLABLE, TEXT_RULES


def _text(name: str) -> StringConstraints:
    """Field `name`'s rule (model.TEXT_RULES) as pydantic's constraints."""
    rule = TEXT_RULES[name]
    return StringConstraints(
        min_length=rule.min_length or None,
        max_length=rule.max_length,
        pattern=None if rule.pattern is None else f"^{rule.pattern}$",
    )


class Entry(BaseModel):
    """One audit log entry, exactly the 13 fields of the API's entry under their JSON names."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[str, _text("id")]
    description: Annotated[str, _text("description")]
    actorId: Annotated[str, _text("actorId")]
    actorName: Annotated[str, _text("actorName")] | None
    actorEmail: Annotated[str, _text("actorEmail")] | None
    action: Annotated[str, _text("action")]
    actionDisplayName: Annotated[str, _text("actionDisplayName")]
    target: Annotated[str, _text("target")]
    targetId: Annotated[str, _text("targetId")]
    metadata: dict[str, Any] | None
    organizationId: Annotated[str, _text("organizationId")]
    teamId: Annotated[str, _text("teamId")] | None
    createdAt: Annotated[str, _text("createdAt")]

    def to_dict(self) -> dict[str, Any]:
        """The entry as a plain dict in the API's field order."""
        return dict(self.__dict__)


# The annotations above say again which fields may be null: refuse to run if they and the
# table the quick checks read ever disagree (the quick checks would then accept what the model
# refuses, or the reverse).
_ANNOTATED_NULLABLE = frozenset(
    name for name, info in Entry.model_fields.items() if type(None) in get_args(info.annotation)
)
if _ANNOTATED_NULLABLE != NULLABLE:
    raise RuntimeError(f"Entry's nullable fields {sorted(_ANNOTATED_NULLABLE)} != model.NULLABLE")
