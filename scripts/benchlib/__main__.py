"""Entry point of scripts/bench: `python -m benchlib <sub-command> [options]`."""
import signal
import sys

from . import commands, load
from .common import BenchError


def usage() -> str:
    return ("usage: scripts/bench <sub-command> [options]   (scripts/bench <sub-command> --help)\n"
            f"sub-commands: {', '.join(commands())}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    module = load(argv[0])
    if module is None:
        print(f"scripts/bench: no benchmark named {argv[0]!r}\n{usage()}", file=sys.stderr)
        return 2
    # A SIGTERM unwinds like Ctrl-C, so every benchmark tears down what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return module.main(argv[1:]) or 0
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
