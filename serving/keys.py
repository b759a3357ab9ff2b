"""``python -m serving.keys create --name crm [--admin] [--rate R [--burst B]] [--file PATH]``.

Makes an API key; ``--rate`` gives it its own rate limit (requests per second).

The key is printed once, alone on the last line of standard output (so a script can take it
with ``tail -n 1``); only its sha256 is stored. Creating a key under an existing name replaces
the old key (rotation): the old one stops working as soon as the server sees the new file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.auth import SCOPE_ADMIN, SCOPE_SCORES, KeyStoreError, create_key
from serving.config import get_settings


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m serving.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create or rotate a key; prints it once")
    create.add_argument("--name", required=True, help="client name, e.g. crm")
    create.add_argument("--admin", action="store_true", help="add the admin scope")
    create.add_argument(
        "--rate", type=float, help="this key's rate limit, requests per second (default: server's)"
    )
    create.add_argument("--burst", type=int, help="requests the key may send at once (with --rate)")
    create.add_argument(
        "--file", type=Path, help="key store (default: CHURN_API_KEYS_FILE or var/api_keys.json)"
    )
    args = parser.parse_args(argv)

    try:
        path = args.file or get_settings().api_keys_file
        key = create_key(
            path, args.name, admin=args.admin, rate_per_second=args.rate, burst=args.burst
        )
    except (ValueError, KeyStoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scopes = f"{SCOPE_SCORES}, {SCOPE_ADMIN}" if args.admin else SCOPE_SCORES
    print(
        f"API key '{args.name}' (scopes: {scopes}) stored as a hash in {path}. "
        "It is shown once, below; send it in the X-API-Key header.",
        file=sys.stderr,
    )
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
