"""``fairgen audit``: leakage and group fairness of an encoder's features."""

from __future__ import annotations

from .common import add_command, add_device, add_seed


def add_parser(sub) -> None:
    p = add_command(sub, "audit", "audit an encoder for protected-attribute leakage and group fairness")
    p.add_argument("--encoder", required=True, help="encoder.safetensors from `fairgen train`")
    p.add_argument("--data", default="world", help="labelled data to audit on (built in: world)")
    p.add_argument("--bias", type=float, default=0.9, help="bias of the split the target probe is fitted on")
    p.add_argument("--n-probe", type=int, default=4000, help="labelled images the target probe is fitted on")
    p.add_argument("--n-test", type=int, default=4000, help="balanced test images")
    add_seed(p)
    add_device(p)
    p.add_argument("--erase-with", metavar="SPEC",
                   help="also audit the features after an eraser fitted on this (steered) stream's images")
    p.add_argument("--eraser-n", type=int, default=4096, help="images the feature eraser is fitted on")
    p.add_argument("--out", default="audit", help="report folder (report.json, report.md, PNGs; erased/ with --erase-with)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..world.audit import audit_encoder_on_world

    if args.data != "world":
        raise ValueError(f"--data: only the embedded 'world' is built in, got {args.data!r}")
    audit_encoder_on_world(args.encoder, args.out, device=args.device, seed=args.seed, bias=args.bias,
                           n_probe=args.n_probe, n_test=args.n_test, erase_with=args.erase_with,
                           eraser_n=args.eraser_n)
