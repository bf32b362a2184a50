"""The workspace config (`leadflow.yaml`): what the business wants, validated before any data is touched.

Marketing ops own this file, so every mistake is reported with the file, the line, the key
path and what is wrong, and unknown keys are errors (a typo must not silently do nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from leadflow.leads.config.assignment import AssignmentConfig
from leadflow.leads.config.base import Strict
from leadflow.leads.config.compliance import ComplianceConfig
from leadflow.leads.config.handoff import HandoffDestination, destination_from_url
from leadflow.leads.config.nurture import Enrollment, NurtureConfig, NurtureStep, Sequence  # noqa: F401 (re-exported)
from leadflow.leads.config.scoring import DisqualifyConfig, PredictiveConfig, RecycleConfig, ScoringConfig, StagesConfig
from leadflow.leads.config.sources import HubSpotSource, PipedriveSource, SalesforceSource


class Sender(Strict):
    from_name: str
    from_email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    reply_to: str | None = None
    postal_address: str = Field(min_length=5, description="Shown in every email footer (required by law).")


class FileSource(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    kind: Literal["file"] = "file"
    path: str = Field(description="A .jsonl or .csv file, or a folder of them, relative to the config file.")


def _source_kind(value: Any) -> str:
    """The tag of a source: its `kind`, `file` when left out (the first kind there was)."""
    kind = value.get("kind", "file") if isinstance(value, dict) else getattr(value, "kind", "file")
    return f"{_KIND_TAG}{kind}"


_KIND_TAG = "kind="  # tags appear in error locations; _describe leaves them out
SourceConfig = Annotated[
    Annotated[FileSource, Tag(f"{_KIND_TAG}file")]
    | Annotated[HubSpotSource, Tag(f"{_KIND_TAG}hubspot")]
    | Annotated[SalesforceSource, Tag(f"{_KIND_TAG}salesforce")]
    | Annotated[PipedriveSource, Tag(f"{_KIND_TAG}pipedrive")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="kind must be one of file, hubspot, salesforce, pipedrive",
    ),
]


class HandoffConfig(AssignmentConfig):
    """Where SQLs go; owners, SLA, notifications and dead letters come from AssignmentConfig."""

    destination: str | None = Field(default=None, description="One file://DIR or https webhook URL (older form).")
    destinations: list[HandoffDestination] = Field(default_factory=list, description="Named destinations.")
    allow_private_addresses: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> HandoffConfig:
        if self.destination is not None and self.destinations:
            raise ValueError("give either destination (one URL) or destinations (a list), not both")
        if self.destination is not None:
            destination_from_url(self.destination)
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("destination names must be unique: each is part of its handoffs' idempotency keys")
        return self

    def resolved(self, override_url: str | None = None) -> list[HandoffDestination]:
        """The destinations of a run: LEADFLOW_HANDOFF_URL alone if set, else the list, else the one URL."""
        if override_url:
            return [destination_from_url(override_url)]
        if self.destinations:
            return list(self.destinations)
        return [destination_from_url(self.destination or "file://handoff-inbox")]


class WorkspaceConfig(Strict):
    """The whole `leadflow.yaml`."""

    sender: Sender
    sources: list[SourceConfig] = []
    plus_addressing: Literal["keep", "strip"] = Field(
        default="keep", description="strip: anna+news@x.com and anna@x.com are one lead."
    )
    scoring: ScoringConfig
    stages: StagesConfig
    recycle: RecycleConfig = RecycleConfig()
    disqualify: DisqualifyConfig = DisqualifyConfig()
    predictive: PredictiveConfig = PredictiveConfig()
    nurture: NurtureConfig = NurtureConfig()
    handoff: HandoffConfig = HandoffConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    templates_dir: str = "templates"


class ConfigError(Exception):
    """An invalid workspace config; `problems` holds one line per mistake."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: invalid config\n" + "\n".join(f"  {p}" for p in problems))


def load_config(path: Path) -> WorkspaceConfig:
    """Read and validate a workspace config, or raise ConfigError naming file, line and key path."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, ["file not found (run `leadflow init` to create one)"]) from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(path, [f"{where}not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, ["the file must be a mapping of keys (sender, scoring, stages, ...)"])
    # YAML lets a repeated key silently replace the earlier one (a whole list of rules could vanish).
    problems = _duplicate_keys(node, [], set())
    try:
        config = WorkspaceConfig.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(err, node) for err in exc.errors()]
    if problems:
        raise ConfigError(path, problems)
    return config


def _duplicate_keys(node: yaml.Node | None, loc: list[Any], seen_nodes: set[int]) -> list[str]:
    if node is None or id(node) in seen_nodes:
        return []
    seen_nodes.add(id(node))
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key, value in node.value:
            name = getattr(key, "value", None)
            if isinstance(name, str) and name in keys:
                problems.append(
                    f"line {key.start_mark.line + 1}: {_key_path([*loc, name])}: "
                    "duplicate key (only the last one would count)"
                )
            if isinstance(name, str):
                keys.add(name)
            problems += _duplicate_keys(value, [*loc, name], seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, [*loc, i], seen_nodes)
    return problems


def _describe(err: Any, root: yaml.Node | None) -> str:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", _KIND_TAG)))]
    key_path = _key_path(loc) or "(top level)"
    line = _line_of(root, loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key (check the spelling)"
    return f"line {line}: {key_path}: {message}" if line else f"{key_path}: {message}"


def _key_path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest YAML key (or list item) on the error's path.

    A key's own line, not its value's: a block value starts on the next line, and the user is
    looking for the key they misspelled.
    """
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if pair is None:
                return line
            node, line = pair[1], pair[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
