"""Following a rollout after execution: watch the Deployment and report as it changes.

The watch is a Kubernetes watch (no polling loop); updates are passed to ``report`` at most once
a second, plus the final one, so the Slack message is edited often enough to feel live without
hitting chat.update's rate limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.kube import KubeError, KubeGateway
from bot.rollout import Progress, progress, selector_of, why_not_ready


def follow(kube: KubeGateway, namespace: str, name: str, context: str | None,
           report: Callable[[Progress, list[str]], None], timeout: float,
           earlier: dict[str, Any] | None = None, min_interval: float = 1.0) -> Progress | None:
    """Watch until the rollout is done or failed; return the last progress (None = timed out).

    ``earlier`` is the Progressing condition from before the change (see rollout.progress).
    """
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        remaining = max(1, int(deadline - time.monotonic()))
        try:
            for obj in kube.watch_deployment(namespace, name, remaining, context):
                p = progress(obj, earlier)
                final = p.done or p.failed
                if final or time.monotonic() - last_report >= min_interval:
                    reasons = [] if p.done else why_not_ready(
                        kube.list_pods(namespace, selector_of(obj), context))
                    report(p, reasons)
                    last_report = time.monotonic()
                if final:
                    return p
        except KubeError:
            time.sleep(1)  # a dropped watch is re-opened; the deadline bounds the retries
    return None
