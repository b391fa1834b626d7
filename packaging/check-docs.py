#!/usr/bin/env python3
"""Checks that the packaged configuration file and man page document every flag
`httptraced --help` lists, each with the binary's own default.

  check-docs.py HTTPTRACED_BINARY CONF MANPAGE

The conf must hold exactly one commented line `#--flag=DEFAULT` per flag and no
other flag; the man page must name every flag and give its default. Exit 1
with the differences otherwise.
"""
import re
import subprocess
import sys


def help_flags(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False)
    text = out.stdout + out.stderr
    flags = {}
    for m in re.finditer(r"--(\w+) \((.*?)\);\s+default: (.*?);", text, re.S):
        default = m.group(3)
        if default.startswith('"') and default.endswith('"'):
            default = default[1:-1]
        flags[m.group(1)] = default
    if "log_dir" not in flags or len(flags) < 10:
        sys.exit(f"check-docs: could not parse `{binary} --help`:\n{text}")
    return flags


def main():
    binary, conf_path, man_path = sys.argv[1:4]
    flags = help_flags(binary)
    problems = []

    conf = {}
    for n, line in enumerate(open(conf_path, encoding="utf-8"), 1):
        m = re.fullmatch(r"#?--(\w+)=(.*)", line.rstrip("\n"))
        if m:
            if m.group(1) in conf:
                problems.append(f"{conf_path}:{n}: --{m.group(1)} listed twice")
            conf[m.group(1)] = m.group(2)
            if not line.startswith("#"):
                problems.append(f"{conf_path}:{n}: --{m.group(1)} is set; the packaged file "
                                "sets nothing (all defaults)")
    for name, default in flags.items():
        if name not in conf:
            problems.append(f"{conf_path}: --{name} (default {default!r}) is not documented")
        elif conf[name] != default:
            problems.append(f"{conf_path}: --{name} shows {conf[name]!r}, the default is "
                            f"{default!r}")
    for name in conf.keys() - flags.keys():
        problems.append(f"{conf_path}: --{name} is not a flag of httptraced")

    man = open(man_path, encoding="utf-8").read()
    # Each flag is a tagged paragraph: .TP / \fB\-\-name\fR=... / text naming "Default: ...".
    for name, default in flags.items():
        roff_name = name.replace("-", "\\-")
        m = re.search(r"^\\fB\\-\\-" + re.escape(roff_name) + r"\\fR.*?\n(.*?)(?=^\.TP|^\.SH)",
                      man, re.S | re.M)
        if not m:
            problems.append(f"{man_path}: --{name} has no entry")
            continue
        body = m.group(1).replace("\\-", "-").replace("\\(dq", '"')
        shown = re.search(r"Default: (.*?)\.?\s*$", body, re.S | re.M)
        want = f'"{default}"' if default == "" else default
        if not shown or re.sub(r"\\f[BIR]", "", shown.group(1)).strip() != want:
            problems.append(f"{man_path}: --{name} must say `Default: {want}.`, has "
                            f"{shown.group(1) if shown else 'none'!r}")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"check-docs: {len(flags)} flags documented with their defaults in {conf_path} "
          f"and {man_path}")


if __name__ == "__main__":
    main()
