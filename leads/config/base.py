"""The base of every `leadflow.yaml` model: unknown keys are errors and a loaded config never changes."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A config section: a misspelt key is named as an error instead of being ignored; frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
