"""Werkzeug launcher for the ``single``, ``threaded`` and ``processes`` modes.

``python -m demo_server.app.serve --mode threaded --host 127.0.0.1 --port 8000``
serves racelab's own app, configured by ``RACELAB_*`` environment variables;
with ``--app-from-env`` it serves the user's app named by ``$RACELAB_TARGET``
instead, wrapped in ``StampMiddleware`` (see ``demo_server.served.target``).
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from werkzeug.serving import run_simple

from demo_server.basics.errors import TargetError


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("single", "threaded", "processes"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--app-from-env", action="store_true",
                        help="serve the app named by $RACELAB_TARGET")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_term)
    if args.app_from_env:
        # A server imports only the app it serves: the user's, or racelab's (Flask, scenarios).
        from demo_server.served.target import stamped_app_from_env

        try:
            app = stamped_app_from_env()
        except TargetError as exc:
            print(f"racelab: {exc}", file=sys.stderr)
            sys.exit(2)
    else:
        from demo_server.app import create_app

        app = create_app()
    run_simple(
        args.host,
        args.port,
        app,
        threaded=args.mode == "threaded",
        processes=args.processes if args.mode == "processes" else 1,
        use_reloader=False,
        use_debugger=False,
    )


if __name__ == "__main__":
    main()
