"""Unknown keys in a file we read are refused, each with the closest known key suggested, so a
misspelling (``num_clases``) is an error that says its fix rather than a silent default."""

from __future__ import annotations

import difflib


def refuse_unknown_keys(data: dict, known, what: str, where: str = "") -> None:
    """Raise a ValueError naming ``what`` (and the file, ``where``), each key of ``data`` not in
    ``known`` and the closest known key (``did you mean 'num_classes'?``); nothing when every key
    is known."""
    known = sorted(known)
    unknown = sorted(str(key) for key in data if key not in known)
    if not unknown:
        return
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        parts.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    prefix = f"{where}: " if where else ""
    raise ValueError(f"{prefix}unknown {what} keys: {', '.join(parts)}; allowed: {known}")
