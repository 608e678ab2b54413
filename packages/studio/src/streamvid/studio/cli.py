"""`streamvid-studio`: serve the live studio page for a generator config (docs/studio.md).

Builds the generator once, then serves http://HOST:PORT/ (the page), /ws (the WebSocket protocol), /status and the
session downloads, until Ctrl+C. Any `streamvid-generate` or `streamvid-infer-t1` YAML is a config; the `studio:`
section (host, port, limits; schema `streamvid.studio.config.StudioConfig`) has defaults. Bad input prints one
`error:` line and exits with code 2.
"""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import replace
from pathlib import Path

from streamvid.core.cli.errors import run_cli
from streamvid.core.config import ConfigError, load_config

PROG = "streamvid-studio"
EXAMPLES = """\
examples (run from the repository root):
  streamvid-studio --config configs/studio/shapes.yaml
  streamvid-studio --config configs/generate/shapes_student.yaml --port 8800 --set studio.max_streams=1
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file (schema: StudioConfig in streamvid.studio.config)")
    parser.add_argument("--host", default=None, help="address to listen on (default: studio.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: studio.port, 8765)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. studio.max_streams=4)")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    from streamvid.studio.config import StudioConfig

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    cfg = load_config(path, args.overrides, schema=StudioConfig)
    server = cfg.studio
    if args.host is not None:
        server = replace(server, host=args.host)
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port {args.port} is not a port number (0..65535)")
        server = replace(server, port=args.port)
    cfg.reward.check_paths("reward")  # the search reward's weights, before anything is built
    if cfg.short_reward is not None:
        cfg.short_reward.check_paths("short_reward")
    return replace(cfg, studio=server)


def check_free(host: str, port: int) -> None:
    """`ConfigError` when the address cannot be listened on (in use, or not an address of this machine)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}; choose another --port / --host") from None


def serve(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    check_free(cfg.studio.host, cfg.studio.port)
    import uvicorn

    from streamvid.studio.server import create_app

    app = create_app(cfg)
    print(f"{PROG}: serving {args.config} on http://{cfg.studio.host}:{cfg.studio.port}/ (Ctrl+C to stop)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=cfg.studio.host, port=cfg.studio.port, log_level="warning", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, lambda: serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
