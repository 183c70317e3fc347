#!/usr/bin/env python3
"""The verdict of a BPF selftests run (scripts/bpf-selftests.sh).

Usage: bpf-selftests-verdict.py RESULTS_DIR KNOWN_FAILURES VERIFIER_RC PROGS_RC

Reads RESULTS_DIR/test_verifier.log and RESULTS_DIR/test_progs.log (the guest's
output), prints the Summary lines and every failure, marked known (listed in
KNOWN_FAILURES, lines "test_progs NAME  # reason"; a name covers its subtests)
or NEW. Exits 1 on a new failure or on a test binary that ended without a
summary (crashed, timed out); listed failures that did not occur are printed.
"""
import re, sys, pathlib
res, known_file, vrc, prc = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
known = {}
for line in open(known_file):
    line = line.split('#', 1)[0].strip()
    if line:
        prog, name = line.split(None, 1)
        known[(prog, name.strip())] = False
failed = []
for prog, pat in [("test_verifier", r"^#(\d+)/\w+ (.*) FAIL"), ("test_progs", r"^#[\d/]+\s+(\S.*?):FAIL$")]:
    text = (res / f"{prog}.log").read_text(errors="replace")
    for l in text.splitlines():
        if l.startswith("Summary:"):
            print(f"{prog}: {l}")
        m = re.match(pat, l.strip())
        if m:
            name = m.groups()[-1].strip()
            failed.append((prog, name))
# test_progs repeats failed tests in its closing "All error logs" section.
failed = list(dict.fromkeys(failed))
def known_as(prog, name):
    # A listed test covers its subtests ("name" covers "name/sub").
    for (p, k) in known:
        if p == prog and (name == k or name.startswith(k + "/")):
            return (p, k)
    return None
def parent_known(prog, name):
    # "#342 task_local_storage:FAIL" only repeats its failed subtests' verdict.
    subs = [n for p, n in failed if p == prog and n.startswith(name + "/")]
    return bool(subs) and all(known_as(prog, n) for n in subs)
new = []
for prog, name in failed:
    k = known_as(prog, name) or (parent_known(prog, name) and (prog, name + "/*"))
    if k:
        known[k] = True
    else:
        new.append((prog, name))
    print(f"{prog}: FAIL {name}" + ("  (known)" if k else "  (NEW)"))
stale = [k for k, seen in known.items() if not seen]
for prog, name in stale:
    print(f"{prog}: listed as a known failure but passed or did not run: {name}")
ok = not new
# A test binary that died without a summary is a failure too.
for prog, rc in [("test_verifier", vrc), ("test_progs", prc)]:
    text = (res / f"{prog}.log").read_text(errors="replace")
    if "Summary:" not in text:
        print(f"{prog}: no summary (exit {rc}); last lines:")
        print("\n".join(text.splitlines()[-30:]))
        ok = False
    elif rc != 0 and not [f for f in failed if f[0] == prog]:
        print(f"{prog}: exit {rc} without a FAIL line")
        ok = False
sys.exit(0 if ok else 1)
