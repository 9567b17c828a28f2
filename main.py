"""Legacy one-shot runner: every enabled pipeline (or the named ones) once, then exit.

    python main.py [PIPELINE ...] [--config PATH]

Exit codes: 0 all succeeded, 1 any failed, 2 configuration error, 130 interrupted.
"""

from __future__ import annotations

import sys

from pipebot.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config: list[str] = []
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--config":
            config = ["--config", next(it, "")]
        elif arg.startswith("--config="):
            config = ["--config", arg.split("=", 1)[1]]
        else:
            rest.append(arg)
    return cli_main([*config, "run", *rest])


if __name__ == "__main__":
    sys.exit(main())
