"""Codec-signal benchmark: change-map recall/precision against pixels, extraction cost, sampled pipeline speed."""
from __future__ import annotations


def add_arguments(p):
    p.add_argument("--json", help="write the results here")


def run(args) -> int:
    raise NotImplementedError("bench signals is being built")
