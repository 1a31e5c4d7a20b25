"""Benchmarks: each prints a table and writes JSON (`codecsight bench NAME --json PATH`)."""
from __future__ import annotations

import json
import os

DEFAULT_VIDEOS = os.path.join("..", "shared", "data", "videos")


def common_arguments(p):
    p.add_argument("--json", help="write the results here")
    p.add_argument("--videos", default=DEFAULT_VIDEOS, help="folder of camera clips (default: %(default)s)")


def write_json(path: str | None, result: dict):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {path}")


def device_name(device: str) -> str:
    """What the timings ran on, for the JSON and the table."""
    import torch

    return torch.cuda.get_device_name(device) if device != "cpu" else f"CPU, {torch.get_num_threads()} threads"
