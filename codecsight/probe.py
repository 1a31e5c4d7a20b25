"""Inspect a video source: codec, GOP structure, changed-token shares, throughput."""
from __future__ import annotations


def add_arguments(p):
    p.add_argument("source", help="file path, rtsp:// or http(s):// URL, or - for a byte stream on stdin")


def run(args) -> int:
    raise NotImplementedError("probe is being built")
