"""training.trace_files: the denoising trace as HTML + PNG (text) and PNG grids (images, points),
read back headless."""

import html.parser
import types

import numpy as np
from PIL import Image

from discrete_diffusion.data.tokenizers import CharTokenizer
from discrete_diffusion.sampling.trace import Trajectory
from discrete_diffusion.training import trace_files as tf

TOK = CharTokenizer.from_texts(["ab c\nd"])  # ids: '\n' 0, ' ' 1, 'a' 2, 'b' 3, 'c' 4, 'd' 5
K = TOK.vocab_size  # 6; the mask id


def text_trajectory():
    """Sample 0: reveal, reveal, nothing, change 'a' -> 'b' at position 0 (a uniform-like step)."""
    rows = [[K, K, K, K], [2, K, K, K], [2, 1, K, 0], [2, 1, K, 0], [3, 1, 5, 0]]
    states = np.stack([np.array(rows), np.array(rows)[:, ::-1]], axis=1)  # [5, 2, 4]
    return Trajectory(states.astype(np.int32), np.array([1.0, 0.75, 0.5, 0.25, 0.0]))


class Rows(html.parser.HTMLParser):
    """The text of each <div class='row ...'> of the page, labels left out."""

    def __init__(self):
        super().__init__()
        self.rows, self.depth, self.label = [], 0, False

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class", "")
        if tag == "div" and cls.startswith("row"):
            self.rows.append("")
            self.depth = 1
        self.label = tag == "span" and cls == "lab"

    def handle_endtag(self, tag):
        self.label = False
        if tag == "div":
            self.depth = 0

    def handle_data(self, data):
        if self.depth and not self.label and self.rows:
            self.rows[-1] += data


def test_text_trace_html_and_png_show_every_step_and_the_final_tokens(tmp_path):
    data = types.SimpleNamespace(info={"name": "shakespeare"}, num_classes=K, tokenizer=TOK)
    traj = text_trajectory()
    paths = tf.write(traj, data, str(tmp_path), "step_7")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["step_7_trace.html", "step_7_trace.png"]
    with open(paths[0], encoding="utf-8") as f:
        text = f.read()
    page = Rows()
    page.feed(text)
    final = TOK.decode(traj.states[-1, 0].tolist())  # 'b d\n'
    shown = final.replace("\n", tf.SHOWN["\n"])
    block = tf.MASK_BLOCK
    # the unchanged step (row 4) is left out; the last row is the final text
    assert page.rows == [block * 4, "a" + block * 3, "a " + block + tf.SHOWN["\n"], shown]
    assert "<span class='k3'>b</span>" in text and "<span class='k2'>d</span>" in text
    image = np.asarray(Image.open(paths[1]).convert("RGB"))
    assert image.shape == (4 * tf.CELL_H, tf.LABEL_W + 4 * tf.CELL_W, 3)

    def corner(row, pos):  # top-left pixel of a cell: its background
        return tuple(image[row * tf.CELL_H, tf.LABEL_W + pos * tf.CELL_W])

    assert [corner(0, i) for i in range(4)] == [tf.MASK_RGB] * 4
    assert corner(1, 0) == tf.REVEALED_RGB and corner(3, 0) == tf.CHANGED_RGB
    assert corner(3, 2) == tf.REVEALED_RGB and corner(3, 1) == (255, 255, 255)


def test_png_cells_widen_for_multi_character_tokens(tmp_path):
    """BPE pieces: a cell holds the longest shown token's characters (at most MAX_CELL_CHARS), so
    the PNG is wider by CHAR_W per further character; the HTML shows whole pieces."""
    pieces = ["\nAnd", " ", " the", " king", "Sir", "o"]  # ids 0..K-1 of text_trajectory
    tok = types.SimpleNamespace(decode=lambda ids: "".join(pieces[i] for i in ids))
    data = types.SimpleNamespace(info={"name": "local"}, num_classes=K, tokenizer=tok)
    traj = text_trajectory()
    rows, _ = tf.step_rows(traj)
    chars = tf.cell_chars(rows, pieces)
    assert chars == min(tf.MAX_CELL_CHARS, max(len(pieces[v]) for v in np.unique(rows) if v < K)) > 1
    paths = tf.write(traj, data, str(tmp_path), "bpe")
    image = np.asarray(Image.open(paths[1]).convert("RGB"))
    cell_w = tf.CELL_W + tf.CHAR_W * (chars - 1)
    assert image.shape == (len(rows) * tf.CELL_H, tf.LABEL_W + rows.shape[1] * cell_w, 3)
    with open(paths[0], encoding="utf-8") as f:
        page = Rows()
        page.feed(f.read())
    final = "".join(pieces[v] for v in traj.states[-1, 0].tolist()).replace("\n", tf.SHOWN["\n"])
    assert page.rows[-1] == final  # whole pieces, newline shown
    assert tf.cell_chars(np.array([[0, 1]]), ["a", "b"]) == 1  # characters: one-character cells


def test_image_grid_and_points_strip(tmp_path):
    states = np.array([[[2, 2, 2, 2, 2, 2]], [[1, 2, 0, 2, 2, 1]], [[1, 0, 0, 1, 0, 1]]])  # K = 2
    path = tf.write_image_grid(str(tmp_path / "g.png"), Trajectory(states, np.zeros(3)), (2, 3), 2,
                               scale=1)
    grid = np.asarray(Image.open(path).convert("RGB"))
    assert grid.shape == (3 * 3, 4, 3)  # 3 steps of 2 x 3 images (+1 px gaps), 1 sample
    assert tuple(grid[0, 0]) == (220, 60, 60)  # masked: red
    assert tuple(grid[6, 0]) == (0, 0, 0) and tuple(grid[6, 1]) == (255, 255, 255)  # ink, paper
    points = np.array([[[4, 4], [4, 4]], [[0, 3], [4, 4]], [[0, 3], [1, 0]]])  # K = 4 bins
    path = tf.write_points_grid(str(tmp_path / "p.png"), Trajectory(points, np.zeros(3)), 4,
                                scale=1)
    strip = np.asarray(Image.open(path).convert("L"))
    assert strip.shape == (4, 3 * 6)
    assert strip[:, :4].min() == 255  # nothing revealed yet
    assert strip[0, 6] == 0 and strip[:, 6:10].sum() == 255 * 15  # (0, 3) at the top left
    assert strip[3, 13] == 0  # (1, 0) at the bottom in the last step
