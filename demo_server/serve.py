"""Werkzeug launcher for the ``single``, ``threaded`` and ``processes`` modes.

``python -m demo_server.serve --mode threaded --host 127.0.0.1 --port 8000``;
the app's configuration comes from ``RACELAB_*`` environment variables.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from demo_server.app import create_app


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("single", "threaded", "processes"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_term)
    app = create_app()
    app.run(
        host=args.host,
        port=args.port,
        threaded=args.mode == "threaded",
        processes=args.processes if args.mode == "processes" else 1,
        use_reloader=False,
        debug=False,
    )


if __name__ == "__main__":
    main()
