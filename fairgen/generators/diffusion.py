"""A local text-to-image diffusers pipeline (Stable Diffusion layout) as a fairgen Generator.

Classes are prompts; the latent is the pipeline's initial noise, flattened to ``[N, C*h*w]`` so
steering code sees a plain vector; the sampler is pinned (DDIM, eta 0, fixed steps and guidance
scale), so an image is a function of (initial noise, prompt index, settings). The folder is data,
never code: only the classes named below are built, from safetensors weights and JSON configs
(``local_files_only``; pickle ``.bin`` weights and ``trust_remote_code`` are never used).
Needs ``pip install 'fairgen[diffusion]'`` (diffusers and transformers).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from einops import rearrange

from plumbing.validation import check_classes, check_int, check_latents

from ..checks import MissingExtraError
from .registry import register_path_loader

EXTRA = "diffusion"  # pip install 'fairgen[diffusion]'
INDEX = "model_index.json"
# the components we build, and the only class each may name in model_index.json
COMPONENTS = {
    "unet": ("diffusers", "UNet2DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "scheduler": ("diffusers", None),  # any scheduler: only its noise schedule (betas) is read
}
WEIGHTED = ("unet", "vae", "text_encoder")
PINNED_SUFFIXES = (".json", ".txt", ".safetensors")  # every file the loader may read
SCHEDULERS = ("ddim",)
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 7.5
DEFAULT_CHUNK = 32  # images denoised at once (CFG doubles the UNet batch)


def _packages():
    """``(diffusers, transformers)``, imported only when a diffusion folder is loaded."""
    try:
        import diffusers
        import transformers
    except ImportError as error:
        raise MissingExtraError(
            f"diffusion generators need the optional dependencies diffusers and transformers "
            f"({error}); install them with: pip install 'fairgen[{EXTRA}]'"
        ) from None
    return diffusers, transformers


def is_pipeline_folder(path: Path) -> bool:
    """A folder with ``model_index.json``: the diffusers pipeline layout."""
    return path.is_dir() and (path / INDEX).is_file()


def folder_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of the pipeline: of ``model_index.json`` and every JSON, text and safetensors file in
    the component folders, each named by its relative path (cards pin it; nothing else is read)."""
    import hashlib

    from plumbing.files import sha256_file

    path = Path(path)
    files = [path / INDEX]
    for component in COMPONENTS:
        folder = path / component
        if folder.is_dir():
            files += sorted(
                f for f in folder.rglob("*") if f.is_file() and f.name.endswith(PINNED_SUFFIXES)
            )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return digest.hexdigest()


def check_folder(path: Path) -> None:
    """Raise a clear error unless ``path`` is a pipeline folder fairgen builds: the components it
    needs, each naming the expected class, and safetensors weights (pickled weights are refused)."""
    from plumbing.files import read_json

    if not is_pipeline_folder(path):
        raise FileNotFoundError(f"generator: {path} is not a diffusers pipeline folder ({INDEX})")
    index = read_json(path / INDEX, "diffusers model_index.json")
    for component, (library, cls) in COMPONENTS.items():
        entry = index.get(component)
        if not isinstance(entry, list) or len(entry) != 2:
            raise ValueError(
                f"{path / INDEX}: {component!r} must be [library, class], got {entry!r}; fairgen "
                f"builds text-to-image pipelines with {', '.join(COMPONENTS)}"
            )
        if entry[0] != library or (cls is not None and entry[1] != cls):
            raise ValueError(
                f"{path / INDEX}: {component!r} names {entry!r}; fairgen builds only "
                f"[{library!r}, {cls or 'a scheduler'!r}] (custom code is never run)"
            )
        if not (path / component).is_dir():
            raise FileNotFoundError(f"generator: {path} lacks the {component}/ folder")
    for component in WEIGHTED:
        if not any((path / component).glob("*.safetensors")):
            raise ValueError(
                f"generator: {path / component} holds no .safetensors weights; fairgen never "
                "unpickles .bin/.ckpt weights (convert them with safetensors first)"
            )


def _check_prompts(prompts, classes) -> list[str]:
    """The prompts in use (``classes`` picks some by index), or a ValueError naming the argument."""
    if (
        isinstance(prompts, str)
        or not isinstance(prompts, list | tuple)
        or not prompts
        or not all(isinstance(p, str) and p.strip() for p in prompts)
    ):
        raise ValueError(
            f"prompts must be a non-empty list of non-empty strings (one per class), "
            f"got {prompts!r}"
        )
    if len(set(prompts)) != len(prompts):
        raise ValueError(f"prompts must be distinct (each is a class), got {list(prompts)}")
    if classes is None:
        return list(prompts)
    if (
        isinstance(classes, str)
        or not classes
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
        or not all(0 <= c < len(prompts) for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ValueError(
            f"classes must be distinct prompt indices in [0, {len(prompts)}), got {classes!r}"
        )
    return [prompts[c] for c in classes]


def _check_settings(steps, guidance_scale, scheduler, eta, dtype) -> torch.dtype | None:
    check_int(steps, "steps", 1, 1000)
    if (
        isinstance(guidance_scale, bool)
        or not isinstance(guidance_scale, int | float)
        or not 0 <= guidance_scale < 100
    ):
        raise ValueError(f"guidance_scale must be a number in [0, 100), got {guidance_scale!r}")
    if scheduler not in SCHEDULERS:
        raise ValueError(
            f"scheduler must be one of {SCHEDULERS} (deterministic samplers), got {scheduler!r}"
        )
    if eta != 0:
        raise ValueError(f"eta must be 0 (a deterministic DDIM sampler), got {eta!r}")
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype is not None and dtype not in names and dtype not in names.values():
        raise ValueError(f"dtype must be None or one of {list(names)}, got {dtype!r}")
    return names.get(dtype, dtype)


class DiffusionGenerator:
    """A text-to-image pipeline (UNet, VAE, CLIP text encoder) sampled with DDIM at eta 0.

    ``latent_dim = C*h*w`` of the initial noise; ``num_classes`` = the number of prompts; images
    ``[N, 3, R, R]`` in [0, 1] float32 at the pipeline's resolution. The text embeddings of every
    prompt (and the empty prompt, for classifier-free guidance) are computed once, at load. On CUDA
    the UNet and VAE run in bfloat16 and channels_last unless ``dtype`` says otherwise; the DDIM
    update runs in float32. Not differentiable in ``z`` (20 UNet passes): walks are refused.
    """

    latent_space = "initial-noise"

    def __init__(
        self,
        unet,
        vae,
        scheduler,
        embeddings: torch.Tensor,
        prompts: list[str],
        *,
        name: str,
        checksum: str,
        steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        chunk: int = DEFAULT_CHUNK,
    ):
        self.name, self._checksum = name, checksum
        self.device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.prompts, self.steps, self.guidance_scale = list(prompts), steps, float(guidance_scale)
        self.num_classes = len(self.prompts)
        self.chunk = chunk
        memory = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        # cast only where needed (load_diffusion builds them in this dtype: diffusers warns)
        self.unet = _to(unet, self.device, self.dtype, memory).eval()
        self.vae = _to(vae, self.device, self.dtype, memory).eval()
        self.unet.requires_grad_(False), self.vae.requires_grad_(False)
        self.scheduler = scheduler
        self.scheduler.set_timesteps(steps)
        self._channels = unet.config.in_channels
        self._side = unet.config.sample_size
        self.latent_dim = self._channels * self._side * self._side
        self.resolution = self._side * 2 ** (len(vae.config.block_out_channels) - 1)
        self._embeddings = embeddings.to(self.device, self.dtype)  # [1 + P, seq, dim]: "" first

    @property
    def checksum(self) -> str:
        return self._checksum

    def card_options(self) -> dict:
        """The options that pin this sampler in a stream card (prompts and every setting)."""
        return {
            "prompts": list(self.prompts),
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "scheduler": "ddim",
            "eta": 0.0,
        }

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` initial noises ``[n, C*h*w]`` from N(0, I), drawn with the random generator."""
        check_int(n, "n", 0)
        where = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn(n, self.latent_dim, generator=generator, device=where)
        return z.to(self.device)

    def synthesize(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise the initial noises ``z`` under prompts ``y`` (DDIM, eta 0) and decode them."""
        check_latents(z, "z", self.latent_dim, tensor=True, allow_empty=True)
        check_classes(y, z.shape[0], self.num_classes)
        if z.requires_grad and torch.is_grad_enabled():
            raise ValueError(
                f"generator {self.name!r} (text-to-image diffusion) is not differentiable in its "
                f"latent here: a gradient through {self.steps} UNet passes is not offered, "
                "so latent "
                "walks are not supported; use neighbour, renoise or sibling views instead"
            )
        y = y.to(self.device)
        parts = [
            self._synthesize(z[i : i + self.chunk], y[i : i + self.chunk])
            for i in range(0, len(z), self.chunk)
        ]
        if not parts:
            return torch.zeros(0, 3, self.resolution, self.resolution, device=self.device)
        return torch.cat(parts)

    @torch.no_grad()
    def _synthesize(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = len(z)
        x = rearrange(
            z.to(self.device, torch.float32), "n (c h w) -> n c h w", c=self._channels, h=self._side
        )
        x = x * self.scheduler.init_noise_sigma
        guided = self.guidance_scale != 1
        text = self._embeddings[y + 1]
        if guided:
            text = torch.cat([self._embeddings[:1].expand(n, -1, -1), text])
        for t in self.scheduler.timesteps:
            inputs = torch.cat([x, x]) if guided else x
            inputs = self.scheduler.scale_model_input(inputs, t).to(self.dtype)
            noise = self.unet(inputs, t, encoder_hidden_states=text).sample.float()
            if guided:
                empty, cond = noise.chunk(2)
                noise = empty + self.guidance_scale * (cond - empty)
            x = self.scheduler.step(noise, t, x, eta=0.0).prev_sample
        x = x / self.vae.config.scaling_factor
        images = self.vae.decode(x.to(self.dtype)).sample
        return images.float().add(1).mul(0.5).clamp(0, 1)

    def __repr__(self) -> str:
        return (
            f"DiffusionGenerator(name={self.name!r}, resolution={self.resolution}, "
            f"prompts={len(self.prompts)}, steps={self.steps}, "
            f"guidance_scale={self.guidance_scale}, device={self.device}, dtype={self.dtype})"
        )


def _to(model, device, dtype, memory_format):
    model = model.to(device, memory_format=memory_format)
    return model if model.dtype == dtype else model.to(dtype)


def load_diffusion(
    path: str | os.PathLike,
    *,
    prompts,
    classes=None,
    steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    scheduler: str = "ddim",
    eta: float = 0.0,
    device: str | torch.device = "cpu",
    dtype=None,
) -> DiffusionGenerator:
    """Load a local diffusers text-to-image folder as a Generator, one class per prompt.

    Only ``model_index.json``'s unet, vae, text_encoder, tokenizer and scheduler are read, from
    the folder alone (``local_files_only``, safetensors only, no remote code)."""
    path = Path(path).expanduser()
    prompts = _check_prompts(prompts, classes)
    dtype = _check_settings(steps, guidance_scale, scheduler, eta, dtype)
    diffusers, transformers = _packages()
    check_folder(path)
    checksum = folder_sha256(path)
    device = torch.device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    # low_cpu_mem_usage needs accelerate, which fairgen does not require: said, not warned about
    local = {"local_files_only": True}
    models = {**local, "use_safetensors": True, "torch_dtype": dtype, "low_cpu_mem_usage": False}
    try:
        unet = diffusers.UNet2DConditionModel.from_pretrained(path, subfolder="unet", **models)
        vae = diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae", **models)
        encoder = transformers.CLIPTextModel.from_pretrained(
            path, subfolder="text_encoder", use_safetensors=True, **local
        )
        tokenizer = transformers.CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **local)
        ddim = diffusers.DDIMScheduler.from_pretrained(path, subfolder="scheduler", **local)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"generator: cannot build the pipeline in {path}: {error}") from None
    embeddings = encode_prompts(encoder, tokenizer, prompts, device)
    return DiffusionGenerator(
        unet,
        vae,
        ddim,
        embeddings,
        prompts,
        name=path.name,
        checksum=checksum,
        steps=steps,
        guidance_scale=guidance_scale,
        device=device,
        dtype=dtype,
    )


@torch.no_grad()
def encode_prompts(encoder, tokenizer, prompts: list[str], device) -> torch.Tensor:
    """CLIP text embeddings ``[1 + P, seq, dim]``: the empty prompt, then each prompt; one batch."""
    tokens = tokenizer(
        ["", *prompts],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    encoder = encoder.to(device).eval()
    return encoder(tokens.input_ids.to(device))[0].float()


@register_path_loader(is_pipeline_folder, checksum=folder_sha256)
def _load_path(path: Path, device="cpu", prompts=None, **options) -> DiffusionGenerator:
    if prompts is None:
        raise ValueError(
            f"generator {path} is a text-to-image pipeline: give its classes as prompts "
            "(--prompts FILE, one per line, or --prompt-template 'a photo of a {}' --classes a,b)"
        )
    return load_diffusion(path, prompts=prompts, device=device, **options)


# ---------------------------------------------------------------- random pipelines (tests, speed)

TINY = {"block_out_channels": (8, 16), "sample_size": 8, "cross_attention_dim": 16, "heads": 2}
SD15 = {"block_out_channels": (320, 640, 1280, 1280), "sample_size": 64,
        "cross_attention_dim": 768, "heads": 8}  # fmt: skip


def save_random_pipeline(folder: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """Write a pipeline folder with random weights: ``"tiny"`` (32 px, seconds on a CPU) or
    ``"sd15"`` (Stable Diffusion 1.5's UNet shape at 512 px; VAE and text encoder kept small).
    The tokenizer's vocabulary is written here (letters and digits), so nothing is downloaded."""
    import json

    diffusers, transformers = _packages()
    folder = Path(folder)
    shape = {"tiny": TINY, "sd15": SD15}[size]
    torch.manual_seed(seed)
    widths, dim = shape["block_out_channels"], shape["cross_attention_dim"]
    down = ["CrossAttnDownBlock2D"] * (len(widths) - 1) + ["DownBlock2D"]
    up = ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (len(widths) - 1)
    unet = diffusers.UNet2DConditionModel(
        sample_size=shape["sample_size"],
        layers_per_block=1 if size == "tiny" else 2,
        block_out_channels=widths,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        cross_attention_dim=dim,
        attention_head_dim=shape["heads"],
        norm_num_groups=4 if size == "tiny" else 32,
    )
    vae_widths = (8, 8, 8) if size == "tiny" else (32, 32, 64, 64)  # 32 px, 512 px
    vae = diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * len(vae_widths),
        up_block_types=("UpDecoderBlock2D",) * len(vae_widths),
        block_out_channels=vae_widths,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4 if size == "tiny" else 32,
    )
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    text = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=dim,
            intermediate_size=2 * dim,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    )
    for name, model in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        model.save_pretrained(folder / name, safe_serialization=True)
    words = folder / "tokenizer"
    words.mkdir(parents=True, exist_ok=True)
    (words / "vocab.json").write_text(json.dumps(vocab))
    (words / "merges.txt").write_text("#version: 0.2\n")
    transformers.CLIPTokenizer(
        str(words / "vocab.json"),
        str(words / "merges.txt"),
        model_max_length=77 if size != "tiny" else 16,
    ).save_pretrained(words)
    diffusers.DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    ).save_pretrained(folder / "scheduler")  # fmt: skip
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__}
    index |= {name: list(entry) for name, entry in COMPONENTS.items() if entry[1]}
    index["scheduler"] = ["diffusers", "DDIMScheduler"]
    (folder / INDEX).write_text(json.dumps(index, indent=2))
    return folder
