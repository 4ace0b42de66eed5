"""Command line and start-up of fake-gemini."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import secrets
import signal
import socket
import sys
import threading

from . import VERSION, control, ctlclient, faults as faults_mod, keyring as keyring_mod
from .api import Emulator
from .clock import Clock
from .faults import FaultBook, validate_faults
from .reqlog import RequestLog
from .server import Server

DESCRIPTION = """\
A local emulator of the Gemini REST API (v1beta and v1) for tests: per-project,
per-model RPM / input-TPM / RPD limits with Google's real 429 bodies, key states
(invalid, leaked, suspended, billing), deterministic answers that say which key and
project served them, SSE and array streams, PNG images for image models, injectable
faults and a replay queue, and a request log. Loopback only.
"""

FAULT_FLAGS = (
    ("--latency-ms", "latency_ms", float, "delay before response headers (ms)"),
    ("--latency-jitter-ms", "latency_jitter_ms", float,
     "a further random delay before the headers, uniform from 0 to this (ms)"),
    ("--chunk-delay-ms", "chunk_delay_ms", float, "delay between stream chunks (ms)"),
    ("--answer-bytes", "answer_bytes", int, "size of generated answers (default 400)"),
    ("--p500", "p500", float, "probability of a 500 INTERNAL"),
    ("--p503", "p503", float, "probability of a 503 'model is overloaded'"),
    ("--p504", "p504", float, "probability of a 504 DEADLINE_EXCEEDED"),
    ("--p-reset", "p_reset", float, "probability of a connection reset"),
    ("--p-truncate", "p_truncate", float, "probability of a body cut short"),
    ("--p-malformed", "p_malformed", float, "probability of a 200 with invalid JSON"),
    ("--p-midstream", "p_midstream", float, "probability of an error inside a 200 stream"),
    ("--midstream-form", "midstream_form", str, "bare | data | random (default)"),
)


def _parser() -> argparse.ArgumentParser:
    epilog = ("KEYS FILE\n" + _indent(keyring_mod.__doc__.split("\n", 2)[2])
              + "\nFAULTS\n" + _indent(faults_mod.__doc__.split("\n", 2)[2])
              + "\nCONTROL API\n" + _indent(control.__doc__.split("\n", 2)[2]))
    parser = argparse.ArgumentParser(
        prog="fake-gemini", description=DESCRIPTION, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port (0, the default, picks a free one)")
    parser.add_argument("--keys", required=True, metavar="FILE", help="the keys file (JSON)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="loopback address to listen on (127.0.0.1, ::1 or localhost)")
    parser.add_argument("--port-file", metavar="F",
                        help="write the port here once listening (atomically), and the "
                             "control API's token beside it in F.token (mode 0600)")
    parser.add_argument("--token-file", metavar="F",
                        help="write the control API's token here instead (mode 0600)")
    parser.add_argument("--fixtures", metavar="DIR",
                        help="the only directory replay's body_file reads from (default: "
                             "tests/fixtures/gemini-errors of this repository)")
    parser.add_argument("--log", metavar="FILE",
                        help="append the request log here as JSON lines")
    parser.add_argument("--time-offset", type=float, default=0.0, metavar="SECONDS",
                        help="start the clock this many seconds from now")
    parser.add_argument("--seed", type=int, default=0, help="seed for fault draws (default 0)")
    parser.add_argument("--quiet", action="store_true",
                        help="do not print one line per request on stderr")
    parser.add_argument("--version", action="version", version=f"fake-gemini {VERSION}")
    faults = parser.add_argument_group("faults (global; see FAULTS below)")
    for flag, dest, kind, text in FAULT_FLAGS:
        faults.add_argument(flag, dest=dest, type=kind, help=text)
    return parser


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" if line else "\n" for line in text.strip("\n").splitlines())


def _bind_address(host: str) -> tuple[str, int]:
    """The address and family for a loopback host; raises ValueError otherwise."""
    if host == "localhost":
        return "127.0.0.1", socket.AF_INET
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"refusing to listen on {host!r}: only loopback addresses "
                         "(127.0.0.1, ::1, localhost) are allowed") from None
    if not addr.is_loopback:
        raise ValueError(f"refusing to listen on non-loopback address {host}: the emulator "
                         "serves tests on this machine only")
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    return str(addr), family


def _write_private(path: str, text: str) -> None:
    """Writes `text` to `path` atomically: a new file (mode 0600, never through a
    link) under a random name, renamed into place."""
    tmp = f"{path}.tmp.{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)


def _write_port_file(path: str, port: int) -> None:
    _write_private(path, f"{port}\n")


def main(argv: list | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        host, family = _bind_address(args.host)
    except ValueError as exc:
        print(f"fake-gemini: {exc}", file=sys.stderr)
        return 2
    if not math.isfinite(args.time_offset) or abs(args.time_offset) > control.MAX_CLOCK_S:
        print("fake-gemini: --time-offset must be a number of seconds within 200 years",
              file=sys.stderr)
        return 2
    cli_faults = {dest: getattr(args, dest) for _, dest, _, _ in FAULT_FLAGS
                  if getattr(args, dest) is not None}
    try:
        cli_faults = validate_faults(cli_faults)
        keys = keyring_mod.load_keys(args.keys, validate_faults)
    except (ValueError, keyring_mod.KeysFileError) as exc:
        print(f"fake-gemini: {exc}", file=sys.stderr)
        return 2
    faults = FaultBook({**keys.global_faults, **cli_faults},
                       {p.name: p.faults for p in keys.projects.values() if p.faults},
                       {k.name: k.faults for k in keys.keys if k.faults}, args.seed)
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fixtures = args.fixtures or os.path.join(repo_root, "tests", "fixtures", "gemini-errors")
    token_file = args.token_file or (ctlclient.token_path(args.port_file)
                                     if args.port_file else None)
    token = secrets.token_urlsafe(32) if token_file else None
    try:
        log = RequestLog(args.log, echo=not args.quiet)
    except OSError as exc:
        print(f"fake-gemini: cannot open the log {args.log}: {exc.strerror}", file=sys.stderr)
        return 2
    emulator = Emulator(keys, Clock(args.time_offset), faults, log, fixtures, token)
    try:
        server = Server((host, args.port), emulator, family)
    except OSError as exc:
        print(f"fake-gemini: cannot listen on {host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1

    def stop(signum, frame) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.server_address[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    try:
        if token_file:  # before the port file: who sees the port finds the token
            _write_private(token_file, token + "\n")
        if args.port_file:
            _write_port_file(args.port_file, port)
    except OSError as exc:
        print(f"fake-gemini: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        server.server_close()
        return 1
    print(f"fake-gemini listening on http://{shown}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0
