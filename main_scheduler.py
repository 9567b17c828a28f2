"""Long-running entry point: the scheduler (and the Discord bot) in one event loop.

    SCHEDULER_MODE=scheduler  (default) run schedules until SIGTERM/SIGINT
    SCHEDULER_MODE=legacy     behave like main.py: every pipeline once, then exit

Configuration comes from the environment and ``.env``: PIPELINES_CONFIG,
SCHEDULER_DB_URL, SCHEDULER_TIMEZONE, SCHEDULER_SHUTDOWN_GRACE, DISCORD_TOKEN ...
"""

from __future__ import annotations

import os
import sys

from dotenv import load_dotenv

from main import main as legacy_main
from pipebot.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    load_dotenv()
    args = sys.argv[1:] if argv is None else argv
    mode = os.environ.get("SCHEDULER_MODE", "scheduler").strip().lower()
    if mode == "legacy":
        return legacy_main(args)
    if mode != "scheduler":
        print(f"SCHEDULER_MODE: {mode!r} is not 'scheduler' or 'legacy'", file=sys.stderr)
        return 2
    return cli_main([*args, "serve"])


if __name__ == "__main__":
    sys.exit(main())
