"""`leadflow check` for the handoff keys: every notification URL is one apprise can send to.

Found before a run rather than as a dead letter after it: an unknown scheme, a typo in a Slack
URL, or a `${NAME}` that is set nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import apprise

from leadflow.connectors.errors import FatalNotifyError
from leadflow.connectors.notify import describe
from leadflow.handoff.notify import expand
from leadflow.leads.config.assignment import AssignmentConfig


def notify_urls(config: AssignmentConfig) -> list[tuple[str, str]]:
    """(where in leadflow.yaml, URL) for every notification URL in the handoff section."""
    found = [(f"handoff.owners[{o.id}].notify", o.notify) for o in config.owners if o.notify]
    for team in config.teams:
        found += [(f"handoff.teams[{team.name}].{key}", url) for key, url in (("notify", team.notify),
                  ("manager", team.manager)) if url]  # fmt: skip
    return found


def check_notify_urls(config: AssignmentConfig, env: Mapping[str, str]) -> list[str]:
    """One line per URL that could not be used; the URL itself is never printed (it may hold a token)."""
    problems: list[str] = []
    for where, url in notify_urls(config):
        try:
            expanded = expand(url, env)
        except FatalNotifyError as exc:  # the message names the missing variable
            problems.append(f"{where}: {exc}")
            continue
        if _quietly_instantiate(expanded) is None:
            problems.append(f"{where}: {describe(expanded)} is not a notification URL apprise supports")
    return problems


def _quietly_instantiate(url: str) -> object | None:
    """apprise logs an unsupported URL whole at ERROR (a token with it); the problem line says it without the URL."""
    logger = logging.getLogger("apprise")
    disabled = logger.disabled
    logger.disabled = True
    try:
        return apprise.Apprise.instantiate(url)
    finally:
        logger.disabled = disabled
