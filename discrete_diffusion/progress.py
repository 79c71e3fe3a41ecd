"""Progress lines with an ETA for long work (training, evaluation, frontier sweeps), by tqdm.

    progress.line("frontier", 3, 24, elapsed_s=62.0, unit="point")
    -> 'frontier: 3/24 points (12%) [01:02<07:14, 20.67s/point]'

tqdm's meter (`tqdm.format_meter`) gives the elapsed time, the remaining time
(total - done) / rate and the rate, with rate = done / elapsed unless given (training passes its
recent steps/s, which leaves compilation out). A time budget (`budget_s`, e.g.
config.training.max_train_minutes) that ends the work before `total` is reached adds when it does:

    'train: 1600/8000 steps (20%) [08:20<33:20, 3.20step/s]; the time budget ends it in 01:40'

Printed as ordinary log lines, so they read the same in a terminal and in a log file.
"""

from __future__ import annotations

import tqdm

FORMAT = "{desc}: {n_fmt}/{total_fmt} UNITS ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}]"


def line(desc: str, done: int, total: int, elapsed_s: float, *, unit: str,
         rate: float | None = None, budget_s: float = 0.0, plural: str | None = None) -> str:
    """`desc: done/total units (p%) [elapsed<remaining, rate]`, remaining = (total - done) / rate
    (rate: units per second, default done / elapsed_s; `plural`: default unit + 's'); with
    `budget_s` > 0 and less time left in it than that, also when the budget ends the work
    (`budget_s - elapsed_s`)."""
    text = tqdm.tqdm.format_meter(done, total, elapsed_s, prefix=desc, unit=unit, rate=rate,
                                  bar_format=FORMAT.replace("UNITS", plural or unit + "s"))
    rate = rate if rate else (done / elapsed_s if elapsed_s > 0 else 0.0)
    left = budget_s - elapsed_s
    if budget_s > 0 and rate > 0 and left < (total - done) / rate:
        text += f"; the time budget ends it in {tqdm.tqdm.format_interval(max(left, 0.0))}"
    return text
