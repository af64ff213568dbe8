"""Fingerprints: the structured dedup key of a finding, and its short content hash."""
from __future__ import annotations

from .codec import digest
from .model import Fingerprint

KEY_LENGTH = 16


def key(fp: Fingerprint) -> str:
    """Stable across runs and machines: a hash of the fingerprint's canonical JSON."""
    return digest(fp, KEY_LENGTH)


def describe(fp: Fingerprint) -> str:
    pair = "+".join(fp.scenarios)
    err = f" [{fp.error_type}]" if fp.error_type else ""
    against = f" against the other libraries of {fp.cross_class!r}" if fp.cross_class else ""
    return f"{fp.library}:{fp.api} {fp.verdict.value} in {pair}{against} (order {fp.order}){err}"
