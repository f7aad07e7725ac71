"""How an alert thread looks: the group's root message and the replies with its news."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from deckhand.bot.slack.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    dump,
    packed,
    section,
    took,
    when,
)

if TYPE_CHECKING:
    from deckhand.bot.alerts.routing import AlertView, GroupView

# Alert thread buttons; each value is "<group id>" ("<group id> <n>" for scale and silence).
ACTION_ALERT_ROLLBACK = "deckhand_alert_rollback"
ACTION_ALERT_RESTART = "deckhand_alert_restart"
ACTION_ALERT_SCALE = "deckhand_alert_scale"
ACTION_ALERT_STATUS = "deckhand_alert_status"
ACTION_ALERT_SILENCE = "deckhand_alert_silence"
ACTION_ALERT_UNSILENCE = "deckhand_alert_unsilence"
ALERT_ACTIONS = (ACTION_ALERT_ROLLBACK, ACTION_ALERT_RESTART, ACTION_ALERT_SCALE,
                 ACTION_ALERT_STATUS, ACTION_ALERT_SILENCE, ACTION_ALERT_UNSILENCE)
SILENCE_HOURS = (1, 4, 24)
# Alerts listed in a root; the rest are counted (a group can hold hundreds).
MAX_ALERTS_SHOWN = 20


def _alert_line(alert: AlertView) -> str:
    icon = ":white_check_mark:" if alert.status == "resolved" else ":fire:"
    head = f"{icon} *{alert.name}*" + (f" ({alert.severity})" if alert.severity else "")
    if alert.summary:
        head += f": {alert.summary}"
    lines = [head]
    if alert.description:
        lines.append(f"> {alert.description}")
    since = f"started {when(alert.starts_at)}"
    if alert.generator_url:
        since += f" · <{alert.generator_url}|source>"
    lines.append(since)
    return "\n".join(lines)


def alert_root(view: GroupView) -> tuple[str, list[dict[str, Any]]]:
    """The root message of an alert group: status, alerts, where, when, links, buttons."""
    firing = view.status == "firing"
    names = sorted({a.name for a in view.alerts})
    severities = sorted({a.severity for a in view.alerts if a.severity})
    icon = ":rotating_light:" if firing else ":white_check_mark:"
    where = " · ".join(p for p in (
        f"environment *{view.environment}*" if view.environment else "",
        f"workload *{view.workload}*" if view.workload else "") if p) or "no known workload"
    head = (f"{icon} *{view.status.upper()}* {', '.join(names)}"
            + (f" [{', '.join(severities)}]" if severities else "") + f" — {where}")
    out: list[Block] = [section(head)]
    shown = view.alerts[:MAX_ALERTS_SHOWN]
    for alert in shown:
        out.append(section(_alert_line(alert)))
    more = len(view.alerts) - len(shown) + view.truncated
    links = [f"<{view.external_url}/#/alerts?{_filter(view.group_labels)}|Alertmanager>"] if \
        view.external_url else []
    context = (f"{more} more alert(s) not listed · " if more else "") + \
        f"started {when(view.started())}"
    if not firing:
        context += f" · resolved after {took(view.duration())}"
    out.append(ContextBlock(elements=[MarkdownTextObject(text=" · ".join([context, *links]))]))
    silence = view.silence
    if silence:
        out.append(section(f":no_bell: Silenced by <@{silence['by']}> until "
                            f"{when(silence['until'])}"))
    if view.actionable:
        out.append(ActionsBlock(elements=_alert_buttons(view)))
    elif silence:
        out.append(ActionsBlock(elements=[ButtonElement(
            text="Unsilence", action_id=ACTION_ALERT_UNSILENCE, value=view.key)]))
    fallback = f"{view.status}: {', '.join(names)} ({where.replace('*', '')})"
    return fallback, dump(out)


def _alert_buttons(view: GroupView) -> list[ButtonElement]:
    key = view.key
    env = view.environment
    buttons = [
        ButtonElement(text="Roll back", action_id=ACTION_ALERT_ROLLBACK, value=key,
                      style="danger"),
        ButtonElement(text="Restart", action_id=ACTION_ALERT_RESTART, value=key),
        *[ButtonElement(text=f"Scale to {n}", action_id=f"{ACTION_ALERT_SCALE}_{n}",
                        value=f"{key} {n}") for n in view.scale_options],
        ButtonElement(text="Status", action_id=ACTION_ALERT_STATUS, value=key),
    ]
    if view.silence:
        buttons.append(ButtonElement(text="Unsilence", action_id=ACTION_ALERT_UNSILENCE,
                                     value=key))
    else:
        buttons += [ButtonElement(
            text=f"Silence {h} h", action_id=f"{ACTION_ALERT_SILENCE}_{h}", value=f"{key} {h}",
            confirm=ConfirmObject(title="Silence this alert group?",
                                  text=f"Alertmanager stops notifying about it in {env} for "
                                       f"{h} h.", confirm="Silence", deny="Cancel"))
            for h in SILENCE_HOURS]
    return buttons


def _filter(labels: dict[str, str]) -> str:
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "filter=" + quote("{" + matchers + "}", safe="")


def alert_news(joined: list[AlertView], resolved: list[AlertView], resolved_after: float | None,
               notices: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """One thread reply with what the thread was not told yet: the group's resolution (after
    how long), alerts that resolved, alerts that joined, notices (silences). Every alert is
    listed; long lists are packed into as few sections as fit."""
    parts: list[str] = []
    if resolved_after is not None:
        parts.append(f"Resolved after {took(resolved_after)}" +
                     (f" ({len(resolved)} alert(s) resolved now)" if resolved else ""))
    elif resolved:
        names = ", ".join(sorted({a.name for a in resolved}))
        parts.append(f"{len(resolved)} alert(s) resolved: {names}")
    if joined:
        parts.append(f"{len(joined)} new alert(s) in this group")
    parts += notices
    out: list[Block] = []
    if resolved_after is not None or resolved:
        out.append(section(f":white_check_mark: *{parts[0]}*"))
        if resolved:
            out += packed([f"• {a.name}" + (f": {a.summary}" if a.summary else "")
                            for a in resolved])
    if joined:
        out.append(section(f":fire: *{len(joined)} new alert(s) in this group*"))
        out += packed([_alert_line(a) for a in joined])
    out += [section(n) for n in notices]
    return " · ".join(parts), dump(out)


