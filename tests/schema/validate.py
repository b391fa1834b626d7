#!/usr/bin/python3
"""Validates httptraced records (JSON lines) against the record schema.

usage: validate.py SCHEMA RECORDS.jsonl

Every line of RECORDS must be one JSON object (UTF-8, no duplicate keys, no
NaN/Infinity) that validates against SCHEMA (JSON Schema draft 7, with the
ipv4/ipv6 format checks on). The file must hold at least one record and end
with a newline.

Then it proves that the check bites: a set of deliberately broken copies of a
valid record must each fail validation; a broken record that passes means the
schema has gone loose, and fails the run.

Exit status: 0 all good, 1 any failure, 2 usage.
Uses only Debian 12's python3-jsonschema (4.10).
"""

import copy
import json
import sys

import jsonschema


def reject_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def parse_line(raw):
    text = raw.decode("utf-8")  # strict: ill-formed UTF-8 raises
    record = json.loads(text, object_pairs_hook=reject_duplicates, parse_constant=reject_constant)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def error_text(error):
    path = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{path}: {error.message}"


def errors_of(validator, record):
    return sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))


# Each breaks a valid record (with request, response, url and client) in one
# way the schema must catch. fn(record) mutates it in place.
def _drop(path):
    def fn(r):
        *parents, last = path
        for p in parents:
            r = r[p]
        del r[last]
    return fn


def _set(path, value):
    def fn(r):
        *parents, last = path
        for p in parents:
            r = r.setdefault(p, {})
        r[last] = value
    return fn


def _both(*fns):
    def fn(r):
        for f in fns:
            f(r)
    return fn


BREAKAGES = [
    ("missing @timestamp", _drop(["@timestamp"])),
    ("missing httptraced", _drop(["httptraced"])),
    ("status_code as a string", _set(["http", "response", "status_code"], "200")),
    ("unknown field in http.request", _set(["http", "request", "methd"], "GET")),
    ("unknown top-level field", _set(["extra"], 1)),
    ("dotted key instead of nesting", _set(["http.request.method"], "GET")),
    ("uppercase header name", _set(["http", "request", "headers", "Host"], "example.com")),
    ("header value not a string", _set(["http", "request", "headers", "x-n"], 5)),
    ("header array of one", _set(["http", "request", "headers", "x-one"], ["a"])),
    ("header array with a number", _set(["http", "request", "headers", "x-two"], ["a", 1])),
    ("negative duration", _set(["event", "duration"], -1)),
    ("duration as a float", _set(["event", "duration"], 1.5)),
    ("timestamp without nanoseconds", _set(["@timestamp"], "2026-11-21T20:45:59Z")),
    ("timestamp with an offset", _set(["event", "start"], "2026-11-21T20:45:59.123456789+00:00")),
    ("outcome disagrees with status", _both(_set(["http", "response", "status_code"], 500),
                                            _set(["event", "outcome"], "success"))),
    ("outcome known without response", _drop(["http", "response"])),
    ("unknown role", _set(["httptraced", "role"], "proxy")),
    ("client ip not an address", _set(["client", "ip"], "not-an-ip")),
    ("client ip of the wrong family", _set(["client", "ip"], "2001:db8::1")),
    ("port out of range", _set(["server", "port"], 70000)),
    ("marker written as false", _set(["httptraced", "request"], {"incomplete": False})),
    ("empty marker object", _set(["httptraced", "request"], {})),
    ("base64 marker without content", _both(
        _set(["httptraced", "request"], {"body": {"encoding": "base64"}}),
        _set(["http", "request", "body"], {"bytes": 3}))),
    ("url missing with a request", _drop(["url"])),
    ("complete exchange without response", _both(
        _drop(["http", "response"]), _set(["event", "outcome"], "unknown"))),
    ("null instead of leaving out", _set(["process", "name"], None)),
    ("body bytes missing", _drop(["http", "request", "body", "bytes"])),
    ("empty body content", _set(["http", "response", "body", "content"], "")),
    ("client with unknown role", _set(["httptraced", "role"], "unknown")),
]


def check_breakages(validator, base):
    """Returns the names of breakages the schema failed to catch."""
    missed = []
    for name, breaker in BREAKAGES:
        broken = copy.deepcopy(base)
        breaker(broken)
        if not errors_of(validator, broken):
            missed.append(name)
    return missed


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    schema_path, records_path = argv[1], argv[2]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)

    with open(records_path, "rb") as f:
        data = f.read()
    failures = 0
    if not data:
        print(f"{records_path}: no records", file=sys.stderr)
        return 1
    if not data.endswith(b"\n"):
        print(f"{records_path}: last record does not end with a newline", file=sys.stderr)
        failures += 1

    records = []
    for number, raw in enumerate(data.split(b"\n")[:-1] if data.endswith(b"\n")
                                 else data.split(b"\n"), start=1):
        try:
            record = parse_line(raw)
        except ValueError as e:  # includes UnicodeDecodeError and JSONDecodeError
            print(f"{records_path}:{number}: not a JSON object line: {e}", file=sys.stderr)
            failures += 1
            continue
        errors = errors_of(validator, record)
        for error in errors:
            print(f"{records_path}:{number}: {error_text(error)}", file=sys.stderr)
        failures += bool(errors)
        records.append(record)

    # The self-check needs a record with everything the breakages touch.
    base = next((r for r in records
                 if "request" in r.get("http", {}) and "response" in r["http"]
                 and "client" in r and "url" in r and not r["httptraced"]["incomplete"]
                 and not errors_of(validator, r)), None)
    if base is None:
        print(f"{records_path}: no valid whole record with client and url to prove "
              "the schema check on", file=sys.stderr)
        failures += 1
    else:
        for name in check_breakages(validator, base):
            print(f"schema does not catch a broken record: {name}", file=sys.stderr)
            failures += 1

    print(f"{len(records)} record(s), {len(BREAKAGES) if base else 0} breakage(s) checked, "
          f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
