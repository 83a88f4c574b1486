#!/usr/bin/env python3
"""Validates response bodies of `hirehook sim` with Kombo's official Python SDK.

    check_sim_with_kombo_sdk.py FILE... (or DIR..., or - for one body on stdin)

Each file holds one response body of `GET /ats/applications`. A body whose top-level
`status` is "error" is validated as the SDK's error body (`errors.KomboAtsErrorData`),
anything else as a page (`models.GetAtsApplicationsPositiveResponse`). Both go through
`kombo.utils.unmarshal_json`, the function the SDK itself calls on a response, so a body
passes here exactly when the SDK would accept it. A directory stands for its `*.json`
files.

Needs `kombo==1.4.0` (pip) and no network. Exit status: 0 when every body parses, 1 when
one does not (each failure is printed with the offending path, e.g.
`page-3.json: data.results[7].current_stage.custom_fields: Field required`), 2 on bad
usage or a missing SDK.
"""

import json
import pathlib
import re
import sys

EXPECTED_SDK_VERSION = "1.4.0"
# Errors listed per failing body; the summary at the end counts them all.
MAX_ERRORS_PER_BODY = 10
LIST_INDEX = re.compile(r"\[\d+\]")


def load_sdk():
    try:
        from kombo import errors, models
        from kombo._version import __version__
        from kombo.utils import unmarshal_json
    except ImportError as err:
        sys.exit(f"error: the kombo SDK is not importable ({err}); pip install kombo=={EXPECTED_SDK_VERSION}")
    if __version__ != EXPECTED_SDK_VERSION:
        sys.exit(f"error: kombo {__version__} is installed, expected {EXPECTED_SDK_VERSION}")
    return models.GetAtsApplicationsPositiveResponse, errors.KomboAtsErrorData, unmarshal_json


def inputs(args):
    """(name, text) of every body named on the command line."""
    for arg in args:
        if arg == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        path = pathlib.Path(arg)
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for file in files:
            yield str(file), file.read_text(encoding="utf-8")


def json_path(loc):
    """`('body', 'data', 'results', 7, 'job')` -> `data.results[7].job`."""
    out = ""
    # The first element is the SDK's wrapper field `body`. Union members add their class
    # names to the location; they stay, as they say which shape was tried.
    for part in loc[1:]:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 2 if not args else 0
    page_model, error_model, unmarshal_json = load_sdk()
    import pydantic

    checked = failed = 0
    # Offending paths with list indices left out, over all bodies: the summary.
    shapes = {}
    for name, text in inputs(args):
        checked += 1
        try:
            is_error = json.loads(text).get("status") == "error"
        except (ValueError, AttributeError) as err:
            failed += 1
            print(f"FAIL {name}: not a JSON object: {err}")
            continue
        model = error_model if is_error else page_model
        try:
            unmarshal_json(text, model)
        except pydantic.ValidationError as err:
            failed += 1
            print(f"FAIL {name} (as {model.__name__}): {err.error_count()} error(s)")
            for i, e in enumerate(err.errors()):
                path = json_path(e["loc"])
                shape = f"{LIST_INDEX.sub('[]', path)}: {e['msg']}"
                shapes[shape] = shapes.get(shape, 0) + 1
                if i < MAX_ERRORS_PER_BODY:
                    got = "absent" if e["type"] == "missing" else json.dumps(e.get("input"), default=str)[:120]
                    print(f"  {path}: {e['msg']} (got {got})")
                elif i == MAX_ERRORS_PER_BODY:
                    print(f"  ... and {err.error_count() - i} more")
    if checked == 0:
        print("error: no bodies given (no *.json in the directories?)")
        return 2
    if shapes:
        print("offending paths over all bodies:")
        for shape, count in sorted(shapes.items(), key=lambda kv: -kv[1]):
            print(f"  {count:6}x {shape}")
    print(f"kombo {EXPECTED_SDK_VERSION}: {checked - failed} of {checked} bodies parse")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
