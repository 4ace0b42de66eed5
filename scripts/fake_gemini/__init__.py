"""fake-gemini: a local emulator of the Gemini REST API (v1beta and v1).

The package is started by the thin launcher ``scripts/fake-gemini``; see
``fake_gemini.cli`` for the command line and the keys-file format, and
``fake_gemini.server`` for the endpoints and the ``/_emu/`` control API.

Modules, from the bottom up:

- ``models``   the built-in model table and the Model resources served by ``GET models``
- ``keyring``  the keys file: keys, their states and the projects they belong to
- ``clock``    the emulator's clock (time.time() + offset) and midnight Pacific
- ``quota``    per-project, per-model RPM / input-TPM / RPD accounting
- ``errors``   Google's error bodies, built exactly as the real server sends them
- ``prompt``   request-body validation and token counting
- ``answers``  deterministic answers, stream chunks and generated PNG images
- ``faults``   injectable faults and the replay queue
- ``reqlog``   the request log (memory and JSON lines)
- ``api``      the request logic: from a parsed request to a reply to send
- ``server``   the HTTP layer: framing, keep-alive, chunked streams, the control API
- ``cli``      argument parsing and start-up
"""

VERSION = "1.0.0"
