"""A parameter sweep as hundreds of granny functions: an SIR epidemic model over a (beta, gamma) grid.

Each call integrates a stochastic SIR model on a small contact network with numpy and returns the
epidemic's peak and final size. The sweep runs on whatever cluster ``granny.connect()`` finds: the
embedded local one by default, or GRANNY_ADDRESS/GRANNY_TOKEN.

Then it runs the same simulations one after another in this process and times that too, so the
speed-up it prints is two measurements, not an extrapolation (``--no-serial`` skips it, and the claim).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import time

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

import granny


def simulate(beta: float, gamma: float, seed: int, people: int = 20000, days: int = 60) -> dict[str, float]:
    """An agent-based stochastic SIR epidemic; returns peak infected share, its day and final size."""
    rng = np.random.default_rng(seed)
    state = np.zeros(people, dtype=np.int8)  # 0 susceptible, 1 infected, 2 recovered
    state[rng.choice(people, 20, replace=False)] = 1
    peak, peak_day = 0.0, 0
    for day in range(days):
        infected = np.count_nonzero(state == 1)
        share = infected / people
        if share > peak:
            peak, peak_day = share, day
        draws = rng.random(people)
        catch = (state == 0) & (draws < 1.0 - np.exp(-beta * share))
        heal = (state == 1) & (draws < gamma)
        state[catch] = 1
        state[heal] = 2
    return {"beta": beta, "gamma": gamma, "peak": peak, "peak_day": peak_day,
            "final": float(np.count_nonzero(state == 2)) / people}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grid", type=int, default=15, help="grid points per axis (calls = grid^2 x reps)")
    parser.add_argument("--reps", type=int, default=2, help="stochastic repetitions per grid point")
    parser.add_argument("--no-serial", dest="serial", action="store_false",
                        help="skip timing the same simulations serially here (and so the speed-up)")
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    client = granny.connect()
    hosts = client.hosts()
    console.print(f"[bold]granny[/] cluster at {client.address}: {len(hosts)} host(s), "
                  f"{sum(h.slots for h in hosts)} slots; connected in {time.perf_counter() - started:.2f}s")
    betas = np.linspace(0.1, 0.6, args.grid)
    gammas = np.linspace(0.05, 0.3, args.grid)
    params = [(float(b), float(g), seed) for b in betas for g in gammas for seed in range(args.reps)]
    t0 = time.perf_counter()
    futures = [client.submit(simulate, b, g, seed) for b, g, seed in params]
    results = []
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("simulating epidemics", total=len(futures))
        for fut in cf.as_completed(futures):
            results.append(fut.result())
            progress.advance(task)
    elapsed = time.perf_counter() - t0
    table = Table(title="Worst outbreaks in the sweep (mean over repetitions)")
    for col in ("beta", "gamma", "R0", "peak infected", "peak day", "final size"):
        table.add_column(col, justify="right")
    by_point: dict[tuple[float, float], list[dict[str, float]]] = {}
    for res in results:
        by_point.setdefault((res["beta"], res["gamma"]), []).append(res)
    rows = sorted(by_point.items(), key=lambda kv: -np.mean([x["peak"] for x in kv[1]]))[:8]
    for (b, g), runs in rows:
        table.add_row(f"{b:.3f}", f"{g:.3f}", f"{b / g:.1f}", f"{np.mean([x['peak'] for x in runs]):.1%}",
                      f"{np.mean([x['peak_day'] for x in runs]):.0f}", f"{np.mean([x['final'] for x in runs]):.1%}")
    console.print(table)
    console.print(f"granny: {len(results)} simulations in {elapsed:.2f}s ({len(results) / elapsed:,.0f} calls/s).")
    client.close()
    if args.serial:
        with console.status(f"timing the same {len(params)} simulations one after another here"):
            simulate(*params[0])  # numpy's first call pays for imports and caches: not the serial run's to pay
            local = time.perf_counter()
            for p in params:
                simulate(*p)
            serial = time.perf_counter() - local
        console.print(f"serial: the same {len(params)} simulations one after another in this process took "
                      f"{serial:.2f}s (measured), so granny was {serial / elapsed:.2f}x as fast.")


if __name__ == "__main__":
    main()
