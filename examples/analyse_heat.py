"""Analyses a heat run (examples/heat.c, or heat_mpi.c on any number of
ranks): loads every checkpoint of the store memory-mapped where it can,
prints the heat over time, and plots the field at a few steps with the
total and peak heat against time into a PNG.

    python examples/analyse_heat.py DIR [OUT.png]

The store is opened read only, so this runs while the simulation is
still writing to it.  A checkpoint of heat_mpi is a distributed snapshot
(its field a virtual dataset over one part file per rank): it needs no
MPI to read, its field maps with no copy when one part holds all of it (a
run on one rank), and is otherwise copied from the parts."""
import sys

import numpy as np

import tsnap


def field(store, step):
    """(u, mapped): the field of `step`, mapped from its file with no copy
    where it lies flat in one file, else copied (a field over several parts)."""
    try:
        return store.load(step, "u", mmap=True), True
    except tsnap.NotMappableError:
        return store.load(step, "u"), False


def series(directory):
    """(steps, times, fields, mapped): every committed step, its time and
    its field, and how many of the fields are mapped rather than copied."""
    with tsnap.Store(directory, readonly=True) as store:
        steps = store.steps()
        if not steps:
            raise SystemExit(f"analyse_heat: no checkpoints in {directory}")
        loaded = [field(store, s) for s in steps]
        fields = [u for u, _ in loaded]
        times = []
        for s in steps:
            with tsnap.open(store.path(s)) as f:
                times.append(float(f.attrs["time"]))
    return steps, np.array(times), fields, sum(m for _, m in loaded)


def plot(steps, times, fields, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = sorted({0, len(steps) // 3, 2 * len(steps) // 3, len(steps) - 1})
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(4 * (len(shown) + 1), 3.6))
    vmax = max(float(fields[i].max()) for i in shown) or 1.0
    for ax, i in zip(axes, shown):
        im = ax.imshow(fields[i], cmap="inferno", vmin=0, vmax=vmax, origin="lower")
        ax.set_title(f"step {steps[i]}  (t = {times[i]:.1f})")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:-1], shrink=0.8, label="u")
    ax = axes[-1]
    ax.plot(times, [float(f.sum()) for f in fields], "o-", label="total heat")
    ax.set_xlabel("time (dx² / α)")
    ax.set_ylabel("total heat")
    ax2 = ax.twinx()
    ax2.plot(times, [float(f.max()) for f in fields], "s--", color="tab:red", label="peak")
    ax2.set_ylabel("peak u")
    ax.set_title("heat leaves through the border")
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv):
    if len(argv) not in (2, 3):
        raise SystemExit("usage: python examples/analyse_heat.py DIR [OUT.png]")
    directory = argv[1]
    out = argv[2] if len(argv) == 3 else "heat.png"
    steps, times, fields, mapped = series(directory)
    print(f"analyse_heat: {len(steps)} checkpoints in {directory}, steps {steps[0]}..{steps[-1]}"
          f" ({mapped} mapped, {len(steps) - mapped} copied)")
    for s, t, f in zip(steps, times, fields):
        print(f"  step {s:>8}  t = {t:10.2f}  total heat {float(f.sum()):14.6f}"
              f"  peak {float(f.max()):10.6f}")
    plot(steps, times, fields, out)
    print(f"analyse_heat: wrote {out}")


if __name__ == "__main__":
    main(sys.argv)
