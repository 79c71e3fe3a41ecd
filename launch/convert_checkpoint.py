"""Convert a released MDLM / Duo / UDLM / SEDD checkpoint into a workdir of this library.

    python launch/convert_checkpoint.py --source=PATH --kind=mdlm|duo|udlm|sedd --workdir=W \
        [--num_heads=12] [--time_conditioning=true|false] [--ema=auto|true|false] \
        [--graph=absorb|uniform] [--set=data.data_dir=/data --set=sampler.num_steps=1000]
    python launch/convert_checkpoint.py --hf_repo=kuleshov-group/mdlm-owt --kind=mdlm --workdir=W

then, as with any run of ours (see docs/checkpoints.md):

    python -m discrete_diffusion.main --config=W/config.py --workdir=W --mode=sample   # or eval, train

PATH: a .safetensors file (no torch needed), a torch pickle (.ckpt/.pt/.pth/.bin: needs
`pip install "discrete_diffusion[torch]"`) or a folder with model.safetensors / pytorch_model.bin
(and its config.json, read for n_heads and time_conditioning). `--hf_repo` downloads the
repository's weights and config.json with huggingface_hub first (needs internet; not tested
here). `--set=FIELD=VALUE` overrides a config field (VALUE read as a Python literal, else a string).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HF_PATTERNS = ["*.safetensors", "*.bin", "config.json"]


def _bool_or_none(text: str) -> bool | None:
    value = {"auto": None, "true": True, "false": False}.get(text.lower(), "?")
    if value == "?":
        raise argparse.ArgumentTypeError(f"{text!r} is not one of auto, true, false")
    return value


def _override(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"--set={text!r}: expected SECTION.FIELD=VALUE")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def download(repo: str) -> str:
    """The local folder of Hugging Face repository `repo` (weights and config.json)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise SystemExit("--hf_repo needs huggingface_hub: pip install huggingface_hub") from err
    return snapshot_download(repo, allow_patterns=HF_PATTERNS)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", help="checkpoint file or folder")
    src.add_argument("--hf_repo", help="Hugging Face repository to download (needs internet)")
    ap.add_argument("--kind", required=True, help="mdlm | duo | udlm | sedd")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--num_heads", type=int, default=None)
    ap.add_argument("--time_conditioning", type=_bool_or_none, default=None)
    ap.add_argument("--ema", type=_bool_or_none, default=None)
    ap.add_argument("--graph", default=None, help="SEDD: absorb | uniform")
    ap.add_argument("--set", type=_override, action="append", default=[], dest="overrides")
    args = ap.parse_args(argv)

    from discrete_diffusion import interop
    from discrete_diffusion.interop.workdir import write_workdir

    source = args.source or download(args.hf_repo)
    loaded = interop.load(source, args.kind, num_heads=args.num_heads,
                          time_conditioning=args.time_conditioning, ema=args.ema, graph=args.graph,
                          **dict(args.overrides))
    workdir = write_workdir(loaded.config, loaded.params, args.workdir)
    info = loaded.info
    print(f"converted {info['file']} ({args.kind}; prefix {info['prefix']!r}, ema={info['ema']}, "
          f"{info['num_layers']} x {info['d_model']}, {info['num_heads']} heads, "
          f"time_conditioning={info['time_conditioning']}, K={loaded.config.process.num_classes}) "
          f"into {workdir}\n  python -m discrete_diffusion.main --config={workdir}/config.py "
          f"--workdir={workdir} --mode=sample", flush=True)
    return workdir


if __name__ == "__main__":
    main()
