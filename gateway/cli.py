"""The `gateway` command: serve, stream, check-config."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from gateway.settings import ConfigError, Settings, load_settings, resolve_config_path

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    sys.exit(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="LLM token relay gateway")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML file (default: $GATEWAY_CONFIG, config/gateway.toml)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--log-format", choices=["text", "json"])
    serve.set_defaults(run=_serve)

    stream = commands.add_parser("stream", help="stream a completion from a running gateway")
    stream.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway's address")
    stream.add_argument("--model", help="a configured model name or provider/model")
    stream.add_argument("--key", help="a gateway API key, when keys are configured")
    stream.add_argument("prompt")
    stream.set_defaults(run=_stream)

    hash_key = commands.add_parser(
        "hash-key", help="print the SHA-256 digest of a gateway key read from stdin"
    )
    hash_key.set_defaults(run=_hash_key)

    check = commands.add_parser("check-config", help="validate and print the configuration")
    check.add_argument("--config")
    check.set_defaults(run=_check_config)
    return parser


def _load(args: argparse.Namespace, **overrides: Any) -> Settings | None:
    try:
        return load_settings(args.config, **overrides)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    settings = _load(
        args,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_format=args.log_format,
    )
    if settings is None:
        return 1
    from gateway.observability import configure_logging
    from gateway.server import serve

    configure_logging(settings.log_level, settings.log_format, settings.secrets())
    path = resolve_config_path(args.config)
    serve(settings, str(path) if path else None)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 1
    path = resolve_config_path(args.config)
    print(f"configuration: {path or 'built-in defaults'}")
    shown = settings.model_dump(mode="json", include={"default_model", "providers", "models"})
    print(json.dumps(shown, indent=2))
    return 0


def _hash_key(args: argparse.Namespace) -> int:
    """`printf %s "$KEY" | gateway hash-key`: the key never appears on a command line."""
    key = sys.stdin.read().strip()
    if not key:
        print("gateway: no key on standard input", file=sys.stderr)
        return 1
    from gateway.auth import hash_key

    print(hash_key(key))
    return 0


def _stream(args: argparse.Namespace) -> int:
    params = {"prompt": args.prompt, **({"model": args.model} if args.model else {})}
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    try:
        url = args.url.rstrip("/") + "/stream"
        # No read time-out: a stream may pause; the gateway enforces the upstream's limits.
        timeout = httpx.Timeout(10.0, read=None)
        with httpx.stream("GET", url, params=params, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                response.read()
                print(f"gateway: HTTP {response.status_code}: {response.text}", file=sys.stderr)
                return 1
            for text in response.iter_text():
                sys.stdout.write(text)
                sys.stdout.flush()
    except httpx.RemoteProtocolError:
        print("\ngateway: the stream ended before it was complete", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    return 0
