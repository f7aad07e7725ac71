"""Image references: what /deploy and /update accept as ``image=``, and values files as images.

An image reference arrives from people (/deploy ... image=<ref>) and from values files, and ends
up in a Deployment. It must be exactly what the OCI/Docker reference grammar allows, restricted
to sha256 digests, and pinned (a tag or a digest):

  reference  := name [ ":" tag ] [ "@" digest ]
  name       := [ domain "/" ] component ( "/" component )*          (at most 255 characters)
  domain     := host [ ":" port ]    (the first part is a domain if it holds "." or ":", is
                                      "localhost", or has uppercase letters)
  component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
  tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
  digest     := "sha256:" [0-9a-f]{64}

IPv6 literal registries ([::1]:5000/app) are not accepted; nobody here needs them.
"""

from __future__ import annotations

import re

from deckhand.bot.errors import ImageRefError

MAX_NAME_LENGTH = 255

_ALLOWED_CHAR = re.compile(r"[A-Za-z0-9._:/@-]")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
# ASCII only: Python's \w would also accept letters no registry does.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


def validate_image_ref(ref: str) -> str:
    """Return ``ref`` unchanged if it is a valid, pinned image reference.

    Args:
        ref: e.g. ``ghcr.io/intersectmbo/cardano-node:10.1.4`` or ``app@sha256:<64 hex>``.

    Returns:
        The same string, so the function can serve as a pydantic ``AfterValidator``.

    Raises:
        ImageRefError: with the first problem found, e.g. ``contains ';'`` or ``empty tag``.
    """
    reason = _image_problem(ref)
    if reason:
        raise ImageRefError(f"invalid image reference {ref!r}: {reason}")
    return ref


def _image_problem(ref: str) -> str | None:
    if not ref:
        return "it is empty"
    for ch in ref:
        if ch.isspace():
            return "it contains whitespace"
        if not _ALLOWED_CHAR.fullmatch(ch):
            return f"it contains {ch!r}, which no image reference may contain"
    rest, at, digest = ref.partition("@")
    if at and "@" in digest:
        return "it contains more than one '@'"
    if at and not _DIGEST.fullmatch(digest):
        return f"digest {digest!r} must be 'sha256:' followed by 64 lowercase hex digits"
    # The tag is whatever follows the first ':' of the last path part; a ':' before the last
    # '/' belongs to the registry's port.
    head, slash, last = rest.rpartition("/")
    last_component, colon, tag = last.partition(":")
    if colon and not tag:
        return "empty tag after ':'"
    if colon and not _TAG.fullmatch(tag):
        return (f"tag {tag!r} must be 1-128 letters, digits, '_', '.' or '-', not starting "
                f"with '.' or '-'")
    if not colon and not at:
        # An implicit :latest is a moving target: nothing could later roll back to it.
        return "it has no tag or digest; name a version (e.g. ':10.1.4') or a digest"
    name = f"{head}{slash}{last_component}"
    if len(name) > MAX_NAME_LENGTH:
        return f"the repository name is longer than {MAX_NAME_LENGTH} characters"
    return _image_name_problem(name)


def _image_name_problem(name: str) -> str | None:
    first, slash, rest = name.partition("/")
    is_domain = bool(slash) and ("." in first or ":" in first or first == "localhost"
                                 or first != first.lower())
    if is_domain:
        host, colon, port = first.partition(":")
        if not _HOST.fullmatch(host):
            return f"registry host {host!r} is not a valid host name"
        if colon and not (port.isdigit() and 1 <= int(port) <= 65535):
            return f"registry port {port!r} must be a number from 1 to 65535"
    path = rest if is_domain else name
    for component in path.split("/"):
        if not component:
            return f"repository path {path!r} has an empty component"
        if component != component.lower():
            return f"repository path {path!r} must be lowercase"
        if not _COMPONENT.fullmatch(component):
            return (f"repository path component {component!r} must be lowercase letters and "
                    f"digits joined by '.', '_', '__' or '-'")
    return None
