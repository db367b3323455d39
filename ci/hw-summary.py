#!/usr/bin/env python3
"""The closing summary of ci/test.sh: which hardware tests ran in each run.

A hardware test is one that prints `skip <test>: <why>` where it cannot
run (no RTM, fallback mode, not a model build, or a property of the
silicon the model does not simulate). The hardware tests are the names
that skipped in any of the runs; in each run, those that did not skip ran.
Usage: hw-summary.py <rtm-status> <label>=<log> ...
"""
import re
import sys
from collections import Counter

SKIP = re.compile(r"skip ([a-z0-9_]+): ([^\n]*)")


def skips(path):
    found = {}
    with open(path, errors="replace") as f:
        for line in f:
            for name, why in SKIP.findall(line):
                found.setdefault(name, why.strip())
    return found


def main():
    rtm_status = sys.argv[1]
    runs = [arg.rsplit("=", 1) for arg in sys.argv[2:]]
    skipped = {label: skips(path) for label, path in runs}
    every = set().union(*skipped.values())
    print(f"hardware tests: {len(every)} in all ({rtm_status})")
    for label, _ in runs:
        s = skipped[label]
        ran = len(every) - len(s)
        where = " on the HTM model" if "model" in label.lower() and ran else ""
        why = Counter(s.values())
        reasons = "; ".join(f"{n} {r}" for r, n in why.most_common())
        line = f"  {label}: {ran} ran{where}, {len(s)} skipped"
        print(line + (f": {reasons}" if reasons else ""))


main()
