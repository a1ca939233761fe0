"""The `gateway` command: serve, stream, check-config, hash-key."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from gateway import __version__
from gateway.settings import (
    ConfigError,
    Settings,
    load_settings,
    resolve_config_path,
    unknown_environment,
)

__all__ = ["main"]

log = logging.getLogger("gateway")

DEFAULT_URL = "http://127.0.0.1:8000"
KEY_VARIABLE = "GATEWAY_KEY"
FROM_SETTINGS = "default: from the configuration"
MASK = "*****"


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        print("\ngateway: name a command; `gateway serve` starts the gateway", file=sys.stderr)
        sys.exit(2)
    try:
        status = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`gateway check-config | head`): not an error worth a
        # traceback. Point stdout at /dev/null so that the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="LLM token relay gateway: streams text deltas from LLM providers to "
        "chat frontends, unchanged and immediately.",
        epilog="Run `gateway COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND", title="commands")
    _add_serve(commands)
    _add_stream(commands)
    _add_check_config(commands)
    hash_key = commands.add_parser(
        "hash-key",
        help="print the SHA-256 digest of a gateway key read from stdin",
        description="Print the digest to configure as [keys.NAME] sha256. The key is read "
        'from standard input, so that it never appears on a command line: printf %%s "$KEY" '
        "| gateway hash-key",
    )
    hash_key.set_defaults(run=_hash_key)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML configuration file (default: $GATEWAY_CONFIG, else config/gateway.toml if "
        "present, else the built-in defaults: the fake provider only)",
    )


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Serve the gateway. Each option overrides the configuration file and the "
        "GATEWAY_* environment (defaults: host 127.0.0.1, port 8000, 1 worker, log level info, "
        "text logs).",
    )
    _config_option(serve)
    serve.add_argument("--host", help=f"address to listen on ({FROM_SETTINGS}, 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port to listen on ({FROM_SETTINGS}, 8000)")
    serve.add_argument(
        "--workers", type=int, help=f"worker processes sharing the port ({FROM_SETTINGS}, 1)"
    )
    serve.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help=f"{FROM_SETTINGS}, info",
    )
    serve.add_argument(
        "--log-format", choices=["text", "json"], help=f"log lines as ({FROM_SETTINGS}, text)"
    )
    serve.set_defaults(run=_serve)


def _add_stream(commands: Any) -> None:
    stream = commands.add_parser(
        "stream",
        help="stream a completion from a running gateway",
        description="Stream a completion from a running gateway to stdout as it arrives. "
        f"The gateway key, when keys are configured, is read from ${KEY_VARIABLE} (never an "
        "argument: arguments show in `ps`). Exit status 1 on an error or a truncated stream.",
    )
    stream.add_argument(
        "--url", default=DEFAULT_URL, help=f"the gateway's address (default: {DEFAULT_URL})"
    )
    stream.add_argument(
        "--model", help="a configured model name or provider/model (default: default_model)"
    )
    stream.add_argument("--system", help="a system prompt")
    stream.add_argument("--max-tokens", type=int, metavar="N", help="cap the answer's length")
    stream.add_argument(
        "--format",
        choices=["text", "sse", "ndjson"],
        default="text",
        help="text (default) prints the answer; sse and ndjson print the frames as they arrive",
    )
    stream.add_argument("prompt", help="the prompt; - reads it from standard input")
    stream.set_defaults(run=_stream)


def _add_check_config(commands: Any) -> None:
    check = commands.add_parser(
        "check-config",
        help="validate and print the resolved configuration",
        description="Validate the configuration from every layer (file, GATEWAY_* "
        "environment) and print what it resolves to, secrets masked. Exit status 1 and every "
        "problem, each with its source, when it is invalid.",
    )
    _config_option(check)
    check.set_defaults(run=_check_config)


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
    _log_start_up(settings, str(path) if path else None)
    serve(settings, str(path) if path else None)
    return 0


def _log_start_up(settings: Settings, path: str | None) -> None:
    """What an operator needs to see once: which file, which models, what cannot work."""
    log.info(
        "configuration %s; models: %s (default %s)",
        path or "(built-in defaults)",
        ", ".join(settings.models),
        settings.default_model,
    )
    if missing := settings.missing_keys():
        log.warning("providers without a key (their models answer 404): %s", _keyless(missing))
    if unknown := unknown_environment():
        log.warning("ignored, matching no setting: %s", ", ".join(unknown))


def _keyless(missing: dict[str, str]) -> str:
    return ", ".join(f"{name} (set {variable})" for name, variable in missing.items())


def _check_config(args: argparse.Namespace) -> int:
    for name in unknown_environment():
        print(f"gateway: warning: {name} matches no setting and is ignored", file=sys.stderr)
    settings = _load(args)
    if settings is None:
        return 1
    path = resolve_config_path(args.config)
    print(f"# configuration: {path or 'built-in defaults'}")
    if missing := settings.missing_keys():
        print(f"# providers without a key: {_keyless(missing)}")
    print(json.dumps(resolved_view(settings), indent=2))
    return 0


def resolved_view(settings: Settings) -> dict[str, Any]:
    """Every setting as it resolved, with secrets masked: provider keys (SecretStr dumps as
    asterisks), key digests (only their start, enough to tell them apart), Redis passwords."""
    view: dict[str, Any] = settings.model_dump(mode="json")
    for key in view["keys"].values():
        key["sha256"] = key["sha256"][:8] + "…"
    for name, entry in settings.models.items():
        # Every entry's deployments as they serve, the one-provider shorthand included.
        view["models"][name]["deployments"] = [
            {**each.model_dump(mode="json", exclude_none=True), "name": each.label}
            for each in entry.all_deployments()
        ]
    if settings.redis_url:
        url = httpx.URL(settings.redis_url)
        if url.password:
            view["redis_url"] = str(url.copy_with(password=MASK))
    return view


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
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    body: dict[str, Any] = {"prompt": prompt}
    for field in ("model", "system", "max_tokens"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    key = os.environ.get(KEY_VARIABLE)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = args.url.rstrip("/") + "/stream"
    # No read time-out: a stream may pause; the gateway enforces the upstream's limits.
    timeout = httpx.Timeout(10.0, read=None)
    try:
        with httpx.stream(
            "POST", url, params={"format": args.format}, json=body, headers=headers, timeout=timeout
        ) as response:
            if response.status_code != 200:
                response.read()
                print(f"gateway: HTTP {response.status_code}: {response.text}", file=sys.stderr)
                return 1
            return _relay(response, args.format)
    except httpx.RemoteProtocolError:
        print("\ngateway: the stream ended before it was complete", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        print(f"gateway: cannot reach the gateway at {args.url}: {reason}", file=sys.stderr)
        return 1


def _relay(response: httpx.Response, fmt: str) -> int:
    """Copy the body to stdout as it arrives; 1 when the stream carried an in-band error."""
    if fmt == "text":
        for text in response.iter_text():
            sys.stdout.write(text)
            sys.stdout.flush()
        return 0
    failed = False
    error_line = "event: error" if fmt == "sse" else '{"error"'
    for line in response.iter_lines():
        failed = failed or line.startswith(error_line)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    if failed:
        print("gateway: the stream ended with an error", file=sys.stderr)
    return 1 if failed else 0
