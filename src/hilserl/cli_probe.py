"""`hilserl probe`: can the frozen encoder tell where the cube is? (`hilserl.probe`)"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _cmd_probe(args, overrides) -> int:
    import torch

    from hilserl.cli import rich_console
    from hilserl.probe.features import BACKBONES
    from hilserl.probe.frames import ProbeInputError, read_image_folder, render_sim_frames, save_sheet
    from hilserl.probe.report import render_table, run_probe

    if overrides:
        print(f"error: hilserl probe takes no config overrides, got {' '.join(overrides)}", file=sys.stderr)
        return 2
    unknown = [b for b in args.backbones if b not in BACKBONES]
    if unknown:
        print(f"error: --backbones: unknown {', '.join(unknown)}; expected some of {', '.join(BACKBONES)}",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    console = rich_console()
    t0 = time.perf_counter()
    if args.images:
        try:
            frames = read_image_folder(args.images, args.image_size)
        except ProbeInputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        console.print(f"read {len(frames)} images from {args.images}")
    else:
        frames = render_sim_frames(args.frames, args.image_size, args.seed)
        console.print(f"rendered {len(frames)} gripper-camera frames in {time.perf_counter() - t0:.0f} s")
    out = Path(args.out)
    sheet = save_sheet(frames, out.with_name(out.stem + "_frames.png"))
    weights = {"resnet10": args.resnet10_weights} if args.resnet10_weights else {}
    result = run_probe(frames, args.backbones, args.dtype, args.folds, args.seed, weights, console.print)
    result["wall_s"] = time.perf_counter() - t0
    render_table(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    console.print(f"results: {out}\nframes:  {sheet} (the first 16, with their positions)")
    return 0


def add_parsers(sub) -> None:
    from hilserl.probe.features import BACKBONES

    p = sub.add_parser("probe", help="how well each frozen backbone's features encode the cube position (linear "
                       "probe R², cosine similarity by distance, time per frame)")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), metavar="NAME",
                   help=f"some of {', '.join(BACKBONES)} (default: all)")
    p.add_argument("--frames", type=int, default=400, help="simulation frames to render (default 400)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="probe real images instead: DIR/positions.csv with the header image,x,y[,yaw]")
    p.add_argument("--image_size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="backbone compute dtype, as policy.backbone_dtype (default auto)")
    p.add_argument("--resnet10_weights", default=None, metavar="FILE",
                   help="local .safetensors/.pth for resnet10 (default: random init, as the policy gets)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1; the timing is per this many)")
    p.add_argument("--out", default="outputs/probe/probe.json", metavar="FILE.json")
    p.set_defaults(func=_cmd_probe)
