#!/usr/bin/env python3
"""analysis-tokens-table.py DIR: the markdown table of several `moetrain analyze
--what tokens` outputs, one row per model and MoE layer, each number the mean ±
sample std over seeds. DIR holds one directory per run, NAME_seed-N, each the
--out of one analysis (DIR/NAME_seed-N/analysis-tokens.csv)."""
import csv, glob, os, re, statistics, sys

COLUMNS = [  # (column of analysis-tokens.csv, heading, digits)
    ("effective experts exp H", "effective experts", 2),
    ("H(expert given token id) (nats)", "H(expert given id) (nats)", 3),
    ("share decided by token id", "share decided by id", 3),
    ("token purity", "token purity", 3),
    ("max load / mean", "max load / mean", 2),
    ("mean gate per token", "mean gate", 3),
]


def main(d):
    groups = {}  # name -> layer -> column -> [values over seeds]
    for path in sorted(glob.glob(os.path.join(d, "*_seed-*", "analysis-tokens.csv"))):
        name = re.sub(r"_seed-\d+$", "", os.path.basename(os.path.dirname(path)))
        for row in csv.DictReader(open(path)):
            cols = groups.setdefault(name, {}).setdefault(int(row["layer"]), {})
            for c, _, _ in COLUMNS:
                cols.setdefault(c, []).append(float(row[c]))
    if not groups:
        sys.exit(f"no */analysis-tokens.csv under {d}")
    print("| model | layer | seeds | " + " | ".join(h for _, h, _ in COLUMNS) + " |")
    print("|---|---:|---:|" + "---:|" * len(COLUMNS))
    for name, layers in groups.items():
        for layer, cols in sorted(layers.items()):
            cells = []
            for c, _, digits in COLUMNS:
                v = cols[c]
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                cells.append(f"{statistics.mean(v):.{digits}f} ± {sd:.{digits}f}")
            print(f"| {name} | {layer} | {len(cols[COLUMNS[0][0]])} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
