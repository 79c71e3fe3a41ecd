"""Pictures of how samples were made: the denoising trace written beside the sample text.

From a `sampling.trace.Trajectory` (the state at every network call, then the final tokens):

* text: a self-contained HTML page (`write_text_html`) and a PNG (`write_text_png`), one row per
  step of one sample, each position a fixed-width cell: the mask as a grey block, a token
  revealed in this step (masked in the row above) on green, a token changed into another one
  (uniform diffusion, Psi or corrector steps) on orange, the last row the final text. Rows equal
  to the one above are left out (a step that changed nothing), and of more than `max_rows` rows
  an evenly spaced selection is kept, first and last included.
* images (digits, MNIST): a PNG grid (`write_image_grid`), one row per selected step and one
  column per sample, pixel value v of K levels as grey (v / (K - 1)), masked pixels red.
* 2-D points (checkerboard, L = 2 coordinates of K bins): a PNG strip (`write_points_grid`), one
  K x K histogram of the samples whose two coordinates are both revealed, per selected step.

`write(trajectory, data, directory, stem)` picks the kind from the data and returns the paths.
Pillow draws the PNGs (a dependency of the training extra, through tensorboard).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from discrete_diffusion.sampling.trace import Trajectory

CELL_W, CELL_H, LABEL_W = 8, 14, 96  # a one-character cell
CHAR_W, MAX_CELL_CHARS = 6, 4  # a cell of c characters is CHAR_W * c + 2 pixels wide, c <= 4
MASK_RGB, REVEALED_RGB, CHANGED_RGB = (170, 170, 170), (200, 245, 195), (255, 180, 80)
NEWLINE_RGB = (70, 110, 230)
SHOWN = {"\n": "\u21b5", "\t": "\u2192", "\r": "\u21a4"}  # drawn for characters without a glyph
MASK_BLOCK = "\u2588"
IMAGE_DATA = {"digits": (8, 8), "mnist": (28, 28)}


def step_rows(trajectory: Trajectory, sample: int = 0, max_rows: int = 200
              ) -> tuple[np.ndarray, np.ndarray]:
    """(states int32 [R, L], times [R]) of one sample: the rows that differ from the row above
    (the first always), then at most `max_rows` of them, evenly spaced, first and last kept."""
    states, times = trajectory.states[:, sample], trajectory.times
    keep = [0] + [i for i in range(1, len(states)) if not np.array_equal(states[i], states[i - 1])]
    if keep[-1] != len(states) - 1:
        keep.append(len(states) - 1)  # the final tokens, even when the last call changed nothing
    if len(keep) > max_rows:
        keep = [keep[int(j)] for j in np.unique(np.linspace(0, len(keep) - 1, max_rows).round())]
    return states[keep], times[keep]


def cell_classes(rows: np.ndarray, num_tokens: int) -> np.ndarray:
    """Per cell of `rows` [R, L]: 0 unchanged, 1 mask (an id >= num_tokens), 2 revealed (masked in
    the row above), 3 changed (another token in the row above)."""
    masked = rows >= num_tokens
    above = np.concatenate([rows[:1], rows[:-1]])
    revealed = ~masked & (above >= num_tokens)
    changed = ~masked & (above < num_tokens) & (above != rows)
    return np.select([masked, revealed, changed], [1, 2, 3], 0)


def _shown(token: str) -> str:
    return "".join(SHOWN.get(c, c) for c in token) or " "


def write_text_html(path: str, rows: np.ndarray, times: np.ndarray, tokens: Sequence[str],
                    title: str) -> str:
    """The HTML page of `rows` [R, L] (see the module docstring); `tokens[v]` is id v's text."""
    kinds = cell_classes(rows, len(tokens))
    css = ("body{font-family:monospace;margin:1em} .row{white-space:pre;line-height:1.3}"
           " .lab{color:#777} .k1{background:#aaa;color:#aaa} .k2{background:#c8f5c3}"
           " .k3{background:#ffb450} .final{border-top:1px solid #444}")
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{css}</style></head><body><h3>{html.escape(title)}</h3>",
           "<p>One row per network call (rows that changed nothing left out), the final text last. "
           f"<span class='k1'>{MASK_BLOCK}</span> masked, <span class='k2'>revealed</span> in this "
           "step, <span class='k3'>changed</span> into another token in this step.</p>"]
    for r, (row, kind) in enumerate(zip(rows, kinds, strict=True)):
        final = r == len(rows) - 1
        label = "final" if final else f"{r + 1:>4} t={times[r]:.3f}"
        cells = "".join(
            f"<span class='k{k}'>{MASK_BLOCK}</span>" if k == 1 else
            f"<span class='k{k}'>{html.escape(_shown(tokens[v]))}</span>" if k else
            html.escape(_shown(tokens[v]))
            for v, k in zip(row.tolist(), kind.tolist(), strict=True))
        cls = "row final" if final else "row"
        out.append(f"<div class='{cls}'><span class='lab'>{label:<13}</span>{cells}</div>")
    out.append("</body></html>\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    return path


def cell_chars(rows: np.ndarray, tokens: Sequence[str]) -> int:
    """Characters per PNG cell: the longest token shown in `rows` (1 for characters; several for
    BPE pieces), at most MAX_CELL_CHARS; a longer token shows its first ones."""
    shown = [len(tokens[v]) for v in np.unique(rows).tolist() if v < len(tokens)]
    return max(1, min(MAX_CELL_CHARS, max(shown, default=1)))


def write_text_png(path: str, rows: np.ndarray, times: np.ndarray, tokens: Sequence[str]) -> str:
    """The PNG of `rows` [R, L]: a cell of `cell_chars` characters per position (CELL_W wide for
    one character, CHAR_W more per further one; a token's leading newline or tab as a blue bar),
    coloured as in the HTML page, the step's time at the left."""
    from PIL import Image, ImageDraw, ImageFont

    kinds = cell_classes(rows, len(tokens))
    R, L = rows.shape
    chars = cell_chars(rows, tokens)
    cell_w = CELL_W + CHAR_W * (chars - 1)
    image = Image.new("RGB", (LABEL_W + L * cell_w, R * CELL_H), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    fill = {1: MASK_RGB, 2: REVEALED_RGB, 3: CHANGED_RGB}
    for r in range(R):
        y = r * CELL_H
        label = "final" if r == R - 1 else f"{r + 1} t={times[r]:.3f}"
        draw.text((2, y), label, fill=(110, 110, 110), font=font)
        for i, (v, k) in enumerate(zip(rows[r].tolist(), kinds[r].tolist(), strict=True)):
            x = LABEL_W + i * cell_w
            if k:
                draw.rectangle((x, y, x + cell_w - 1, y + CELL_H - 1), fill=fill[k])
            if k == 1:
                continue
            text = tokens[v]
            if text[:1] in SHOWN:  # no glyph in the bitmap font: a blue bar
                draw.rectangle((x + 1, y + CELL_H - 4, x + cell_w - 2, y + CELL_H - 2),
                               fill=NEWLINE_RGB)
                text = text.lstrip("".join(SHOWN))
            text = "".join(" " if c in SHOWN else c for c in text[:chars])
            if text.strip():
                draw.text((x + 1, y), text, fill="black", font=font)
    image.save(path)
    return path


def _selected_steps(num_states: int, count: int) -> np.ndarray:
    """`count` evenly spaced state indices, the first and the final one included."""
    return np.unique(np.linspace(0, num_states - 1, min(count, num_states)).round().astype(int))


def write_image_grid(path: str, trajectory: Trajectory, shape: tuple[int, int], num_levels: int,
                     *, max_steps: int = 10, max_samples: int = 8, scale: int = 3) -> str:
    """PNG grid of image samples: row = selected step, column = sample (see the module docstring)."""
    from PIL import Image

    steps = _selected_steps(len(trajectory.states), max_steps)
    states = trajectory.states[steps, :max_samples]  # [S, N, L]
    S, N, _ = states.shape
    h, w = shape
    grid = np.full((S * (h + 1), N * (w + 1), 3), 255, np.uint8)
    for s in range(S):
        for n in range(N):
            v = states[s, n].reshape(h, w)
            grey = (255 * (1 - np.clip(v, 0, num_levels - 1) / max(num_levels - 1, 1))).astype(np.uint8)
            cell = np.repeat(grey[..., None], 3, -1)
            cell[v >= num_levels] = (220, 60, 60)
            grid[s * (h + 1):s * (h + 1) + h, n * (w + 1):n * (w + 1) + w] = cell
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                 Image.NEAREST).save(path)
    return path


def write_points_grid(path: str, trajectory: Trajectory, num_bins: int, *, max_steps: int = 10,
                      scale: int = 4) -> str:
    """PNG strip of 2-D samples: per selected step the K x K histogram of the samples whose two
    coordinates are revealed (darker = more samples)."""
    from PIL import Image

    steps = _selected_steps(len(trajectory.states), max_steps)
    K = num_bins
    strip = np.full((K, len(steps) * (K + 2), 3), 255, np.uint8)
    for j, s in enumerate(steps):
        x = trajectory.states[s]  # [N, 2]
        done = x[(x[:, 0] < K) & (x[:, 1] < K)]
        counts = np.zeros((K, K))
        np.add.at(counts, (K - 1 - done[:, 1], done[:, 0]), 1)
        grey = (255 * (1 - counts / max(counts.max(), 1))).astype(np.uint8)
        strip[:, j * (K + 2):j * (K + 2) + K] = grey[..., None]
    Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale),
                                  Image.NEAREST).save(path)
    return path


def write(trajectory: Trajectory, data: Any, directory: str, stem: str, *,
          title: str = "") -> list[str]:
    """The trace files of `trajectory` for `data` (a DataBundle: its name, tokenizer, classes and
    sequence length choose the kind) in `directory`, named `<stem>_trace.*`; their paths. Nothing
    for a trajectory without recorded steps (a sampler that calls no network through its context,
    e.g. the autoregressive one)."""
    if len(trajectory.states) < 2:
        return []
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, f"{stem}_trace")
    name, K = data.info.get("name"), int(data.num_classes)
    if name in IMAGE_DATA:
        return [write_image_grid(base + ".png", trajectory, IMAGE_DATA[name], K)]
    if name == "checkerboard" and trajectory.states.shape[-1] == 2:
        return [write_points_grid(base + ".png", trajectory, K)]
    tokens = [data.tokenizer.decode([v]) for v in range(K)]
    rows, times = step_rows(trajectory)
    title = title or f"Denoising trace of sample 0 ({stem})"
    return [write_text_html(base + ".html", rows, times, tokens, title),
            write_text_png(base + ".png", rows, times, tokens)]


def write_beside_samples(trajectory: Trajectory, data: Any, workdir: str,
                         sample_file: str) -> list[str]:
    """`write` into workdir/samples/, named after the sample file (`step_N.txt` ->
    `step_N_trace.html`, `step_N_trace.png`); prints the paths."""
    stem = os.path.splitext(os.path.basename(sample_file))[0]
    paths = write(trajectory, data, os.path.join(workdir, "samples"), stem,
                  title=f"How sample 0 of {stem} was made")
    if paths:
        print("[samples] denoising trace: " + ", ".join(paths), flush=True)
    return paths
