"""Result lines of pmem-bench and of the C peer, for ab.sh and split.sh.

A result line is `key=value` pairs (`workload=... threads=... ns_per_op=...`
or `MiB_per_s=...`); other lines (a program's notes, counts) are skipped.
"""
import os
import re


def parse(path):
    """{workload key: (unit, [values in file order])} of the file at `path`
    ({} if there is none). The key is the workload, with ` t=N` when it ran
    on N > 1 threads; the unit is `MiB_per_s` where the line has one, else
    `ns_per_op`."""
    rows = {}
    if not os.path.exists(path):
        return rows
    for line in open(path):
        kv = dict(re.findall(r'(\w+)=(\S+)', line))
        unit = 'MiB_per_s' if 'MiB_per_s' in kv else 'ns_per_op'
        if 'workload' not in kv or unit not in kv:
            continue
        key = kv['workload'] + ('' if kv.get('threads', '1') == '1' else ' t=' + kv['threads'])
        rows.setdefault(key, (unit, []))[1].append(float(kv[unit]))
    return rows
