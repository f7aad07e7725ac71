"""The fields a field manager owns in an object, and what differs in just those fields.

A plan compares the object as it is with the result of a server-side dry-run apply. Everything
outside the fields Deckhand's manifests set can change between those two reads without Deckhand
having any part in it: the volume binder fills in a claim's ``spec.volumeName``, the deployment
controller bumps its revision annotation, defaulting adds fields. Comparing whole objects reports
those as changes; comparing only the owned fields does not.

Server-side apply records which fields each manager's applied configuration sets, in
``metadata.managedFields[].fieldsV1``: a tree whose keys are

- ``f:<name>``: a field of a map (``f:spec``, ``f:app.kubernetes.io/name``);
- ``k:<json>``: the item of a list keyed by merge keys (``k:{"name":"cardano-node"}``,
  ``k:{"containerPort":3001,"protocol":"TCP"}``): the item whose fields have those values;
- ``v:<json>``: the item of a set-like list equal to that value;
- ``i:<n>``: the item at index ``n``;
- ``.``: the map or item itself (it exists), as opposed to its fields.

A node with no children other than ``.`` owns its whole value (a scalar, or an atomic map or
list). :func:`project` cuts an object down to such a tree; :func:`differences` lists the paths
where two projections differ. Everything here is pure: API-shaped dicts in, data out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

FieldSet = Mapping[str, Any]
"""A fieldsV1 tree, as the API serves it (JSON-decoded)."""

Path = tuple[str, ...]
"""Field names from the object's root, e.g. ``("spec", "ports")``; a path ends at a list."""

_MISSING = object()


def applied_fields(obj: Mapping[str, Any], manager: str) -> FieldSet | None:
    """The fields ``manager``'s server-side applies own in ``obj``, or None if it has none.

    Only the ``Apply`` entry counts: fields the same manager wrote with a plain update or patch
    (``/scale``'s replicas, ``/update``'s image) are recorded apart, and are not part of what
    the manifests set. Entries for a subresource (``scale``, ``status``) are not either.
    """
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if (entry.get("manager") == manager and entry.get("operation") == "Apply"
                and not entry.get("subresource") and entry.get("fieldsType", "FieldsV1") == "FieldsV1"):
            fields = entry.get("fieldsV1")
            return fields if isinstance(fields, Mapping) else {}
    return None


def union(*sets: FieldSet | None) -> FieldSet | None:
    """Every field owned in any of ``sets`` (None entries are skipped; all None gives None)."""
    present = [s for s in sets if s is not None]
    if not present:
        return None
    merged: dict[str, Any] = {}
    for s in present:
        for key, child in s.items():
            if key in merged:
                merged[key] = union(merged[key], child)
            else:
                merged[key] = child
    return merged


def fields_of(value: Any) -> FieldSet:
    """The fields an object sets, as a fieldsV1-style tree: maps field by field, lists of maps
    item by item (by index), anything else (scalars, lists of scalars) as a whole.

    This is the fallback when the apiserver recorded no managed fields: the rendered object is
    exactly what is applied, so its fields are the ones applying it can change.
    """
    if isinstance(value, Mapping) and value:
        return {f"f:{k}": fields_of(v) for k, v in value.items() if v is not None}
    if isinstance(value, list) and value and all(isinstance(i, Mapping) for i in value):
        return {f"i:{n}": fields_of(item) for n, item in enumerate(value)}
    return {}


def project(value: Any, fields: FieldSet) -> Any:
    """``value`` cut down to ``fields``.

    Maps keep only their owned fields (a missing or null field stays missing, and so does a map
    none of whose owned fields is there, unless the map itself is owned); lists keep only their
    owned items, in the object's order, each cut down in turn; a leaf keeps its whole value.
    Where the object's shape does not fit the tree (a list where a map was owned, say) the whole
    value is kept, so that a difference there is never hidden.
    """
    children = {k: v for k, v in fields.items() if k != "."}
    if not children:
        return value
    if all(k.startswith("f:") for k in children) and isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, child in children.items():
            name = key[2:]
            if value.get(name) is None:
                continue
            got = project(value[name], child)
            # A map owned only through its fields (no "."), none of them there: nothing owned
            # is there either, whether the map is empty or absent.
            if got == {} and "." not in child and any(c != "." for c in child):
                continue
            out[name] = got
        return out
    if all(k[:2] in ("k:", "v:", "i:") for k in children) and isinstance(value, list):
        return _project_list(value, children)
    return value


def _project_list(items: list[Any], children: Mapping[str, Any]) -> list[Any]:
    matchers = [(_matcher(key), child) for key, child in children.items()]
    out = []
    for n, item in enumerate(items):
        owned = [child for matches, child in matchers if matches(n, item)]
        if owned:
            out.append(project(item, union(*owned) or {}))
    return out


def _matcher(key: str) -> Callable[[int, Any], bool]:
    """A test (index, item) -> bool for one list-item key of a fieldsV1 tree."""
    kind, text = key[:2], key[2:]
    if kind == "i:":
        index = int(text)
        return lambda n, item: n == index
    wanted = json.loads(text)
    if kind == "v:":
        return lambda n, item: item == wanted
    return lambda n, item: (isinstance(item, Mapping)
                            and all(item.get(f) == v for f, v in wanted.items()))


def differences(before: Any, after: Any) -> list[Path]:
    """The paths where two projections differ, in the order they appear.

    Maps are compared field by field; anything else (a scalar, a list) is compared whole, so a
    change inside a list is reported at the list (``spec.ports``), which is how people name it.
    """
    return list(_diff(before, after, ()))


def _diff(a: Any, b: Any, path: Path) -> Iterator[Path]:
    if a == b:
        return
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in [*a, *(k for k in b if k not in a)]:
            yield from _diff(a.get(key, _MISSING), b.get(key, _MISSING), (*path, key))
    else:
        yield path


def owned_differences(before: Mapping[str, Any], after: Mapping[str, Any],
                      fields: FieldSet) -> list[Path]:
    """The paths where ``before`` and ``after`` differ within ``fields``."""
    return differences(project(before, fields), project(after, fields))


def dotted(path: Path) -> str:
    """A path as people write it: ``spec.ports``."""
    return ".".join(path)
