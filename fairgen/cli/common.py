"""Options shared by every command (device, seed, --n, output folder, generator, quiet, lists)
and how they are read: one spelling and one meaning on every command, flags a mode would ignore
refused, defaults shown once in --help.

Kept free of heavy imports: ``fairgen --help`` builds every parser and must not import torch.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_GENERATOR = "world-sprites-z128"
_FALSE = {"", "0", "false", "no", "off"}
_FILE_SUFFIXES = {".png", ".jpg", ".json", ".pt", ".safetensors", ".yaml", ".md"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and appends "(default: X)" once: only where the help does not
    already speak of its default, and never for None, SUPPRESS, an empty list or an on/off flag."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or default == []
            or action.nargs == 0  # --flag (store_true/store_const): present or not
            or not action.option_strings
        ):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else "%(default)s"
        return f"{text} (default: {shown})"


def add_command(
    sub, name: str, summary: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand with the shared help formatter and ``--quiet``; ``description`` defaults to the
    summary."""
    parser = sub.add_parser(
        name,
        help=summary,
        description=description or summary[0].upper() + summary[1:] + ".",
        formatter_class=HelpFormatter,
    )
    add_quiet(parser)
    return parser


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars (also when the environment sets TQDM_DISABLE=1)",
    )


def add_n(
    parser: argparse.ArgumentParser, default: int, what: str, minimum: int = 1, flag: str = "--n"
) -> None:
    """``--n``: a count of samples or images, an integer >= ``minimum`` checked before any work."""
    parser.add_argument(flag, type=int_at_least(minimum), default=default, help=what)


def add_seed(parser: argparse.ArgumentParser, default: int = 0) -> None:
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=default,
        help="random seed (same seed, same result)",
    )


def add_device(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument(
        "--device",
        default=default,
        help="torch device: auto (cuda when present, else cpu), cpu, cuda, cuda:1, mps",
    )


def add_generator(parser: argparse.ArgumentParser, default: str = DEFAULT_GENERATOR) -> None:
    parser.add_argument(
        "--generator",
        default=default,
        help="registered name (see `fairgen sample --list`) or a local weights folder/file",
    )


def add_entry_point_trust(parser: argparse.ArgumentParser) -> None:
    """``--allow-entry-point`` / ``--trust-entry-points``: let a received card's entry point run
    (off by default)."""
    parser.add_argument(
        "--allow-entry-point",
        dest="allow_entry_points",
        action="append",
        default=[],
        metavar="MODULE:CALLABLE",
        help="run this entry point when a stream card (or a resumed run) names it as its "
        "generator: "
        "it imports and runs code, so only for code you trust (repeatable)",
    )
    parser.add_argument(
        "--trust-entry-points",
        action="store_true",
        help="run any entry point a stream card or resumed run names (code chosen by the card's "
        "author)",
    )


def allowed_entry_points(args):
    """What ``--allow-entry-point`` / ``--trust-entry-points`` allow: True (any) or the names
    given."""
    if getattr(args, "trust_entry_points", False):
        return True
    return tuple(getattr(args, "allow_entry_points", None) or ())


def add_out(parser: argparse.ArgumentParser, default: str, what: str) -> None:
    """``--out`` is a folder on every command (created when missing); ``what`` says what goes in
    it."""
    parser.add_argument(
        "--out",
        default=default,
        metavar="DIR",
        help=f"output folder (created when missing): {what}",
    )


def add_list(
    parser: argparse.ArgumentParser,
    flag: str,
    help: str,
    default=None,
    choices=None,
    item=str,
    metavar: str = "NAME",
    dest: str | None = None,
) -> None:
    """A list option read one way on every command: ``a,b``, ``a b`` and ``a,b c`` all give
    ``[a, b(, c)]``; ``choices`` are checked item by item, ``item`` converts each (e.g. int)."""
    if choices:
        help = f"{help}; any of {','.join(map(str, choices))}"
    parser.add_argument(
        flag,
        action=ListAction,
        nargs="+",
        default=default,
        metavar=metavar,
        allowed=choices,
        item=item,
        help=f"{help} (comma- or space-separated)",
        **({"dest": dest} if dest else {}),
    )


class ListAction(argparse.Action):
    """Splits every value on commas and checks each item: see ``add_list``."""

    def __init__(self, option_strings, dest, allowed=None, item=str, **kwargs):
        self.allowed, self.item = allowed, item
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parts = [part.strip() for value in values for part in value.split(",")]
        items = []
        for part in parts:
            if not part:
                continue
            try:
                value = self.item(part)
            except (ValueError, argparse.ArgumentTypeError) as error:
                raise argparse.ArgumentError(self, f"item {part!r}: {error}") from None
            if self.allowed is not None and value not in self.allowed:
                known = ", ".join(map(str, self.allowed))
                raise argparse.ArgumentError(self, f"{part!r} is not one of {known}")
            items.append(value)
        if not items:
            raise argparse.ArgumentError(self, "expected at least one item")
        setattr(namespace, self.dest, items)


def typed_flags(build_parser, argv) -> set[str]:
    """The options the user typed (long spelling), found by parsing ``argv`` again with every
    default suppressed: what a command needs to refuse flags that would otherwise be ignored."""
    parser = build_parser()
    option_of: dict[str, str] = {}

    def suppress(p: argparse.ArgumentParser) -> None:
        p._defaults.clear()  # set_defaults(func=...) as well: only typed values remain
        for action in p._actions:
            action.default = argparse.SUPPRESS
            if action.option_strings:
                option_of.setdefault(action.dest, max(action.option_strings, key=len))
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    suppress(child)

    suppress(parser)
    typed = vars(parser.parse_args(argv))
    return {option_of[dest] for dest in typed if dest in option_of}


def refuse_with(args, mode: str, flags, why: str) -> None:
    """A ValueError when ``mode`` (a flag or action the user chose) meets any of ``flags`` they
    typed, which that mode would ignore; a no-op when the command was not run from argv."""
    typed = getattr(args, "typed", None) or set()
    clash = [flag for flag in flags if flag in typed]
    if clash:
        raise ValueError(f"{mode} cannot be combined with {', '.join(clash)}: {why}")


# library phrasings that name a Python argument, and what a command-line user types instead
IN_FLAGS = {"pass weights_dir=...": "give that folder as --generator FOLDER"}


def in_flags(message: str) -> str:
    """An error message from the library, with Python arguments it names put in flag terms."""
    for variable, flag in IN_FLAGS.items():
        message = message.replace(variable, flag)
    return message


def out_folder(args) -> Path:
    """The ``--out`` folder, created; a path that exists and is not a folder is a clear error."""
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder, but {out} is a file")
    if not out.exists() and out.suffix.lower() in _FILE_SUFFIXES:
        raise ValueError(
            f"--out is a folder (the command names the files in it), got {str(out)!r}, which looks "
            "like a file name"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def progress_enabled(args=None) -> bool:
    """False under ``--quiet`` or when TQDM_DISABLE is set to a true value."""
    if args is not None and getattr(args, "quiet", False):
        return False
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in _FALSE


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when present else cpu; any other name must exist here (clear ValueError)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"--device: {name!r} is not a torch device (try auto, cpu, cuda, cuda:0): {error}"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {name}: CUDA is not available on this machine (no GPU or no driver); "
                "use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    ):
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: only auto, cpu, cuda[:N] and mps are supported")
    return str(device)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def add_generator_options(parser: argparse.ArgumentParser) -> None:
    """BigGAN's --truncation and --classes, for every command that loads a generator."""
    parser.add_argument(
        "--truncation",
        type=finite_float,
        default=None,
        help="BigGAN truncation in (0, 1] (default: the generator's own, 0.5 for BigGAN)",
    )
    add_list(
        parser,
        "--classes",
        "the model's class indices to use, e.g. 207,208 (BigGAN: ImageNet ids; default: all); "
        "with --prompt-template, the class names to fill it with",
        metavar="CLASS",
    )
    parser.add_argument(
        "--prompts",
        metavar="FILE",
        default=None,
        help="text-to-image pipelines: a text file with one prompt per line, one class each",
    )
    parser.add_argument(
        "--prompt-template",
        default=None,
        help="text-to-image pipelines: e.g. 'a photo of a {}', filled with each of --classes a,b,c",
    )
    parser.add_argument(
        "--sampler-steps",
        type=positive_int,
        default=None,
        help="text-to-image pipelines: DDIM steps (default 20; pinned in the stream card)",
    )
    parser.add_argument(
        "--guidance-scale",
        type=finite_float,
        default=None,
        help="text-to-image pipelines: classifier-free guidance scale (default 7.5; pinned)",
    )


def generator_options(args) -> dict:
    """The generator options given on the command line (none when not given, so every generator
    accepts them)."""
    options = {}
    if getattr(args, "truncation", None) is not None:
        options["truncation"] = args.truncation
    prompts = prompt_options(args)
    if prompts is not None:
        options["prompts"] = prompts
    if getattr(args, "sampler_steps", None) is not None:
        options["steps"] = args.sampler_steps
    if getattr(args, "guidance_scale", None) is not None:
        options["guidance_scale"] = args.guidance_scale
    classes = getattr(args, "classes", None)
    if classes and not getattr(args, "prompt_template", None):
        if isinstance(classes, str):  # a Namespace built in Python, not by the parser
            classes = classes.split(",")
        try:
            options["classes"] = [int(c) for c in classes if str(c).strip()]
        except ValueError:
            raise ValueError(f"--classes must be a list of integers, got {classes!r}") from None
    return options


def prompt_options(args) -> list[str] | None:
    """The prompts of --prompts FILE (one per line), or --prompt-template with --classes."""
    from pathlib import Path

    file, template = getattr(args, "prompts", None), getattr(args, "prompt_template", None)
    if file is not None and template is not None:
        raise ValueError("give --prompts FILE or --prompt-template with --classes, not both")
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"--prompts {file}: no such file (one prompt per line)")
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        prompts = [p for p in prompts if p]
        if not prompts:
            raise ValueError(f"--prompts {file} holds no prompt (one per line)")
        return prompts
    if template is None:
        return None
    if template.count("{}") != 1:
        raise ValueError(f"--prompt-template must hold one '{{}}' for the class, got {template!r}")
    classes = getattr(args, "classes", None) or []
    if isinstance(classes, str):  # a Namespace built in Python, not by the parser
        classes = classes.split(",")
    names = [c.strip() for c in classes if c.strip()]
    if not names:
        raise ValueError("--prompt-template needs --classes: the comma list of class names")
    return [template.replace("{}", name) for name in names]


# ---------------------------------------------------------------- argument types


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a finite number in [0, 1]."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_at_least(low: int):
    """argparse type factory: an integer >= ``low`` (messages name the bound, argparse the flag)."""
    if low == 1:
        return positive_int
    if low == 0:
        return non_negative_int

    def at_least(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    at_least.__name__ = f"integer >= {low}"
    return at_least


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


# ---------------------------------------------------------------- grids


def add_grid_options(parser: argparse.ArgumentParser, default_n: int = 64) -> None:
    parser.add_argument(
        "--n",
        type=grid_count,
        default=default_n,
        help=f"number of images, at most {MAX_GRID_IMAGES} (for data sets use `fairgen stream "
        "--export`)",
    )
    parser.add_argument(
        "--per-page",
        type=positive_int,
        default=256,
        help=f"images per PNG page (at most {MAX_PER_PAGE}); more images are written as several "
        "pages",
    )


MAX_PER_PAGE = 1024  # a 32 x 32 grid of thumbnails; matplotlib takes minutes beyond a few thousand
MAX_GRID_IMAGES = (
    4096  # grids are for looking at; 20,000 thumbnails took minutes and showed nothing
)


def write_grids(
    images, out: Path, stem: str, per_page: int, captions=None, title: str = ""
) -> list[Path]:
    """``out/stem.png``, or ``out/stem-000.png``, ``-001``... when the images fill several pages."""
    from ..plotting import save_grid

    if per_page > MAX_PER_PAGE:
        raise ValueError(f"--per-page must be at most {MAX_PER_PAGE}, got {per_page}")
    pages = -(-len(images) // per_page)
    paths = []
    for page in range(pages):
        part = slice(page * per_page, (page + 1) * per_page)
        name = f"{stem}.png" if pages == 1 else f"{stem}-{page:03d}.png"
        suffix = "" if pages == 1 else f" (page {page + 1} of {pages})"
        paths.append(
            save_grid(
                images[part],
                out / name,
                captions=None if captions is None else captions[part],
                title=title + suffix,
            )
        )
    return paths


def grid_count(text: str) -> int:
    """argparse type: a positive number of grid images, at most MAX_GRID_IMAGES."""
    value = positive_int(text)
    if value > MAX_GRID_IMAGES:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_GRID_IMAGES} images go into grids, got {value}; "
            "write data sets with `fairgen stream --export`"
        )
    return value


def wrote(paths: list[Path]) -> str:
    return (
        f"wrote {paths[0]}"
        if len(paths) == 1
        else f"wrote {len(paths)} pages: {paths[0]} ... {paths[-1]}"
    )


def add_confirming_labelers(parser: argparse.ArgumentParser) -> None:
    """``--labeler``/``--keep-labeler``: what a stream whose eraser card is labeler-confirmed
    needs."""
    parser.add_argument(
        "--labeler",
        action="append",
        default=None,
        metavar="[ATTRIBUTE=]SPEC",
        help="the labeler a labeler-confirmed eraser card needs (world:<factor>, "
        "package.module:callable "
        "or a labeler .json); ATTRIBUTE= for cards of several attributes; repeatable. A card never "
        "runs code it names: entry points run only when given here",
    )
    parser.add_argument(
        "--keep-labeler",
        default=None,
        metavar="SPEC",
        help="the keep labeler of a labeler-confirmed card fitted with one (unconditional "
        "generators)",
    )


def confirming_labelers(args) -> dict | str | None:
    """``{attribute: spec}`` (or one spec) from ``--labeler``/``--keep-labeler``; None when neither
    is given."""
    given = getattr(args, "labeler", None) or []
    keep = getattr(args, "keep_labeler", None)
    if not given and keep is None:
        return None
    named, plain = {}, []
    for text in given:
        name, sep, spec = text.partition("=")
        if sep and name.isidentifier():
            named[name] = spec
        else:
            plain.append(text)
    if len(plain) > 1 or (plain and named):
        raise ValueError(
            "--labeler: give one SPEC, or ATTRIBUTE=SPEC for each attribute of the card"
        )
    if plain:
        named["protected"] = plain[0]
    if keep is not None:
        named["keep"] = keep
    return named
