#!/usr/bin/env python3
"""Generates runbooks for the benchmarks.

  gen_runbooks.py many DIR FILES STEPS   FILES runbooks of STEPS steps each
  gen_runbooks.py big FILE STEPS          one runbook: long chains, wide
                                          fan-outs, templates reading ancestors
  gen_runbooks.py chain FILE STEPS        STEPS sequential `true` steps
  gen_runbooks.py fanout FILE STEPS SECS  STEPS independent sleeps and a join
"""
import os
import sys


def step(name, needs, run, indent="  "):
    out = f"{indent}{name}:\n{indent}  type: shell\n"
    if needs:
        out += f"{indent}  needs: [{', '.join(needs)}]\n"
    out += f"{indent}  run: {run}\n"
    return out


def many(directory, files, steps):
    os.makedirs(directory, exist_ok=True)
    for f in range(files):
        body = f"version: 1\nname: generated-{f}\nparams:\n  namespace: {{default: omendb-prod}}\nsteps:\n"
        for s in range(steps):
            needs = [f"s{s - 1}"] if s % 5 else []
            reads = f" {{{{steps.s{s - 1}.outputs.stdout}}}}" if s % 5 else ""
            body += step(f"s{s}", needs, f"echo {{{{params.namespace}}}}{reads}")
        with open(os.path.join(directory, f"runbook-{f:04}.yaml"), "w") as out:
            out.write(body)


def big(path, steps):
    body = "version: 1\nname: big\nparams:\n  namespace: {default: omendb-prod}\nsteps:\n"
    width = 50
    for s in range(steps):
        if s < width:
            needs = []
        elif s % 100 == 0:
            # A join over the previous fan-out.
            needs = [f"s{s - k}" for k in range(1, width + 1)]
        else:
            needs = [f"s{s - width}"]
        reads = " ".join(f"{{{{steps.{n}.status}}}}" for n in needs[:3])
        body += step(f"s{s}", needs, f"echo {{{{params.namespace}}}} {reads}")
    with open(path, "w") as out:
        out.write(body)


def chain(path, steps):
    body = "version: 1\nname: chain\nsteps:\n"
    for s in range(steps):
        body += step(f"s{s}", [f"s{s - 1}"] if s else [], '"true"')
    with open(path, "w") as out:
        out.write(body)


def fanout(path, steps, secs):
    body = "version: 1\nname: fanout\nsteps:\n"
    for s in range(steps):
        body += step(f"s{s}", [], f"sleep {secs}")
    body += step("join", [f"s{s}" for s in range(steps)], '"true"')
    with open(path, "w") as out:
        out.write(body)


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "many":
        many(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif kind == "big":
        big(sys.argv[2], int(sys.argv[3]))
    elif kind == "chain":
        chain(sys.argv[2], int(sys.argv[3]))
    elif kind == "fanout":
        fanout(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)
