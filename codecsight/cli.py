"""The `codecsight` command. Each subcommand's arguments are declared here; the work is imported lazily so
`codecsight probe` does not pay for importing torch."""
from __future__ import annotations

import argparse
import importlib
import sys

from codecsight.errors import CodecSightError

# subcommand -> module with `add_arguments(parser)` and `run(args) -> int`
COMMANDS = {
    "watch": "codecsight.watch",
    "probe": "codecsight.probe",
    "eval": "codecsight.evaluation",
    "synth": "codecsight.synth.cli",
}
BENCHES = {
    "signals": "codecsight.bench.signals",
    "prefill": "codecsight.bench.prefill",
    "vision": "codecsight.bench.vision",
    "e2e": "codecsight.bench.e2e",
    "stages": "codecsight.bench.stages",
}


def _add(sub, table: dict[str, str]):
    for name, module in table.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.__doc__.splitlines()[0], description=mod.__doc__)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codecsight", description="Standing questions over live video with VLMs, guided by codec signals.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add(sub, COMMANDS)
    bench = sub.add_parser("bench", help="benchmarks: print a table and write JSON")
    _add(bench.add_subparsers(dest="bench", required=True), BENCHES)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args) or 0
    except CodecSightError as e:
        print(f"codecsight: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
