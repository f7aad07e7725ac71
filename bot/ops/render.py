"""``deckhand render WORKLOAD ENV [--image REF]``: print exactly what /deploy would apply."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from deckhand.bot.config import load_config
from deckhand.bot.errors import ConfigError, RenderError
from deckhand.bot.manifests.render import render, to_yaml


def render_main(config_path: Path, workload: str, environment: str, out: TextIO,
                image: str | None = None, *, err: TextIO | None = None) -> int:
    """``deckhand render WORKLOAD ENVIRONMENT [--image REF]``: print what would be applied.

    Writes the objects to ``out`` as multi-document YAML and returns 0; on a bad config or a
    render error writes the reason to ``err`` (default stderr) and returns 2, so that the
    output piped to ``kubectl apply -f -`` is only ever manifests.
    """
    try:
        objects = render(load_config(config_path), workload, environment, image)
    except (ConfigError, RenderError) as e:
        print(f"deckhand render: {e}", file=err or sys.stderr)
        return 2
    out.write(to_yaml(objects))
    return 0
