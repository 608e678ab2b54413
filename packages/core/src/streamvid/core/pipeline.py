"""`StreamVidPipeline`: text -> streamed latents -> streamed pixels, a `diffusers.DiffusionPipeline`.

The components are the causal transformer (`CausalWanModel`), the codec (pixels <-> latents) and the text
encoder; the sampler settings (few-step schedule, KV-cache layout: `SamplerConfig`) and the frame size are the
pipeline's config. Every entry point builds one: `streamvid-generate`, `streamvid-infer-t1` and the evaluation
runner through `streamvid.core.generator.build_generator(GeneratorConfig)`, a notebook through
`from_pretrained`::

    from streamvid.core import StreamVidPipeline

    pipe = StreamVidPipeline.from_pretrained("assets/shapes/stream_r1_student")
    video = pipe("a red circle moving left", num_frames=12, generator=torch.Generator().manual_seed(0)).frames[0]
    for chunk in pipe.stream("a red circle moving left", num_frames=12, prompt_switches={2: "a red circle moving up"}):
        ...  # chunk: [1, t, 3, H, W] in [0, 1], as soon as it is decoded

A pipeline folder holds ``model_index.json`` (the components' classes, ``sampler_config``, ``codec_config``,
``text_encoder_config``, ``height``, ``width``) and the transformer, either in ``transformer/`` (what
`save_pretrained` writes, diffusers' layout) or beside the index (the shipped students under ``assets/shapes/``,
whose folders are also plain model directories for ``generator.checkpoint``). The transformer's architecture is
read from its own ``config.json``; nothing restates it.

`__call__(..., search=...)` runs a test-time search instead of one sample. The search object comes from the
caller (e.g. `streamvid.tts.SearchStrategy`): the core package never imports `streamvid.tts` (the dependency
points from tts to core, docs/architecture.md). Both `__call__` and `stream` run the sampler's own chunk loop
(`StreamingSampler.stream` and, for a search, `StreamSession` steps), so there is no second loop.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from streamvid.core.causal_wan import CausalWanModel, TextContext
from streamvid.core.codecs import VideoCodec
from streamvid.core.config import ConfigError
from streamvid.core.sampler import ChunkCallback, GaussianNoise, NoiseSource, PromptSwitch, StreamingSampler
from streamvid.core.sampler_config import SamplerConfig
from streamvid.core.text import TextEncoder
from streamvid.core.text.learned import split_words

__all__ = ["OUTPUT_TYPES", "PIPELINE_INDEX", "StreamVidPipeline", "StreamVidPipelineOutput", "VideoSearch",
           "write_pipeline_index"]

PIPELINE_INDEX = "model_index.json"
"""The pipeline's config file (diffusers' ``DiffusionPipeline.config_name``)."""
OUTPUT_TYPES = ("np", "pt", "pil")
_TEXT_ENCODER_DIR = "text_encoder"


@dataclass
class StreamVidPipelineOutput(BaseOutput):
    """What `StreamVidPipeline.__call__` returns (as diffusers' `WanPipelineOutput`).

    Args:
        frames: ``output_type="np"``: float32 array ``[B, T, H, W, 3]`` in [0, 1]; ``"pt"``: tensor
            ``[B, T, 3, H, W]`` in [0, 1]; ``"pil"``: B lists of T ``PIL.Image`` s.
        search: the search's own result (e.g. `streamvid.tts.search.SearchResult`: chosen beam, tree, ledger)
            when ``search=`` was given, else None.
    """

    frames: Any
    search: Any = None


class VideoSearch(Protocol):
    """A test-time search the pipeline can run (`StreamVidPipeline.__call__(..., search=...)`).

    Called with the pipeline, one prompt, the latent frame count and the prompt switches (`PromptSwitch`, no
    text); returns an object whose ``best.video_latents()`` is the chosen video's latents ``[1, F, C, h, w]``.
    """

    def __call__(self, pipe: StreamVidPipeline, prompt: str, num_frames: int,
                 prompt_switches: Sequence[PromptSwitch]) -> Any: ...


class StreamVidPipeline(DiffusionPipeline):
    """A causal few-step video generator: transformer, codec and text encoder, streaming chunk by chunk.

    Args:
        transformer: the causal student `CausalWanModel` (eval mode, on its device and dtype).
        codec: pixels ``[B, T, 3, H, W]`` in [0, 1] <-> latents ``[B, F, C, h, w]`` (`VideoCodec`).
        text_encoder: prompts -> text-encoder states ``[B, L, D]`` (`TextEncoder`).
        sampler_config: few-step schedule and KV-cache layout (`SamplerConfig`, or its dict form).
        height, width: frame size in pixels.
        codec_config, text_encoder_config: the `CodecConfig` / `TextEncoderConfig` fields the components were
            built from (written to ``model_index.json`` so that `from_pretrained` rebuilds them).
    """

    model_cpu_offload_seq = "text_encoder->transformer"

    def __init__(self, transformer: CausalWanModel, codec: VideoCodec, text_encoder: TextEncoder,
                 sampler_config: SamplerConfig | Mapping | None = None, height: int = 32, width: int = 32,
                 codec_config: Mapping | None = None, text_encoder_config: Mapping | None = None):
        super().__init__()
        sampler_config = _sampler_config(sampler_config)
        self.register_modules(transformer=transformer, codec=codec, text_encoder=text_encoder)
        self.register_to_config(sampler_config=dataclasses.asdict(sampler_config), height=height, width=width,
                                codec_config=dict(codec_config or {}), text_encoder_config=dict(text_encoder_config or {}))
        self.sampler = StreamingSampler.from_config(transformer, sampler_config)
        self.height, self.width = height, width

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, device: str = "cpu",
                        dtype: str | None = None, torch_dtype: torch.dtype | None = None,
                        overrides: Sequence[str] = ()) -> StreamVidPipeline:
        """Load a pipeline folder (see the module docstring): the transformer's weights and architecture from its
        own folder, codec, text encoder and sampler from ``model_index.json``. Local folders only (no hub).

        Args:
            pretrained_model_name_or_path: the folder (e.g. ``assets/shapes/stream_r1_student``).
            device: ``cpu`` | ``cuda`` | ``cuda:N`` | ``auto``.
            dtype: ``float32`` | ``bfloat16`` | ``float16`` (default: float32); or ``torch_dtype`` as diffusers
                takes it (``torch.bfloat16``). Norms and the time embedding stay float32 either way.
            overrides: dot-list overrides of the generator config, as ``--set generator.<key>=...`` takes
                them, e.g. ``["sampler.cache.local_attn_frames=6"]``.
        Raises:
            FileNotFoundError: no such folder, or no ``model_index.json`` / transformer ``config.json`` in it.
            ConfigError: the index does not describe a `StreamVidPipeline`, or an override is wrong.
        """
        from streamvid.core.dtypes import DTYPES
        from streamvid.core.generator import build_generator

        if torch_dtype is not None:
            names = {v: k for k, v in DTYPES.items()}
            if torch_dtype not in names or (dtype is not None and dtype != names[torch_dtype]):
                raise ValueError(f"torch_dtype {torch_dtype} (with dtype={dtype!r}) is not one of {list(DTYPES.values())}")
            dtype = names[torch_dtype]
        cfg = generator_config_from_pretrained(pretrained_model_name_or_path, device=device, dtype=dtype,
                                               overrides=overrides)
        return build_generator(cfg)

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> None:
        """Write ``model_index.json``, the transformer (``transformer/``) and a learned text encoder's weights
        (``text_encoder/``); `from_pretrained` loads the folder back to an equal pipeline. A weight-free codec or
        text encoder (pixel codec, shapes bag of words) is described by its config alone; one read from a local
        path (Wan VAE, umT5) is referenced by that path."""
        from streamvid.core.text.learned import LearnedTextEncoder

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(out / "transformer", safe_serialization=True)
        # paths outside the folder are recorded absolute (relative ones in the index are relative to the folder)
        codec_cfg, text_cfg = (_absolute_path(self.config.codec_config),
                               _absolute_path(self.config.text_encoder_config))
        if isinstance(self.text_encoder, LearnedTextEncoder):
            self.text_encoder.save(out / _TEXT_ENCODER_DIR)
            text_cfg = {**text_cfg, "kind": "learned", "path": _TEXT_ENCODER_DIR}
        write_pipeline_index(out, codec_cfg, text_cfg, self.config.sampler_config, self.height, self.width)

    def save_index(self, directory: str | Path) -> Path:
        """Write only ``directory/model_index.json`` (`write_pipeline_index` with this pipeline's config)."""
        c = self.config
        return write_pipeline_index(directory, c.codec_config, c.text_encoder_config, c.sampler_config,
                                    self.height, self.width)

    # ------------------------------------------------------------------ the generator's parts
    @property
    def model(self) -> CausalWanModel:
        """The transformer (the name the sampler, the search and the training code use)."""
        return self.transformer

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one latent frame."""
        r = self.codec.spatial_ratio
        return self.codec.latent_channels, self.height // r, self.width // r

    def text_states(self, prompts: list[str]) -> torch.Tensor:
        """Text-encoder states ``[B, L, D]`` of ``prompts`` on the transformer's device (what the sampler and the
        search take)."""
        with torch.no_grad():
            return self.text_encoder.encode(list(prompts)).embeddings.to(self.device)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> TextContext:
        """The transformer's cross-attention context of ``prompts`` (K/V computed once per prompt)."""
        param = next(self.transformer.parameters())
        return self.transformer.encode_text(self.text_states(prompts).to(dtype=param.dtype))

    def unknown_words(self, prompt: str) -> list[str]:
        """Words of ``prompt`` the text encoder has no entry for (it ignores them or maps them to ``<unk>``),
        in prompt order; ``[]`` for an open-vocabulary encoder (umT5)."""
        known = getattr(self.text_encoder, "index", None) or getattr(self.text_encoder, "word_to_id", None)
        if known is None:
            return []
        return list(dict.fromkeys(w for w in split_words(prompt) if w.isalnum() and w not in known))

    # ------------------------------------------------------------------ streaming
    def stream_video(self, prompts: list[str], num_frames: int | None, seed: int | None = None,
                     callbacks: list[ChunkCallback] | None = None, prompt_switches: Sequence[PromptSwitch] = (),
                     noise: NoiseSource | None = None) -> Iterator[torch.Tensor]:
        """Yield decoded pixel chunks ``[B, t, 3, H, W]`` in [0, 1]; ``num_frames`` counts latent frames (None:
        endless, with a windowed cache).

        Noise comes from ``noise``, else ``GaussianNoise(seed)``. Each prompt switch's ``prompt`` is streamed by
        every row from its chunk on (encoded here unless it carries its ``text``); the sampler switches the
        session's prompt and re-encodes the cached history when ``recache_on_switch``.
        """
        text = self.encode_prompts(prompts)
        switches = [s if s.text is not None else replace(s, text=self.encode_prompts([s.prompt] * len(prompts)))
                    for s in prompt_switches]
        decoder = self.codec.decode_stream()
        chunks = self.sampler.stream(text, self.latent_shape, num_frames, len(prompts),
                                     noise if noise is not None else GaussianNoise(seed), callbacks, switches)
        for chunk in chunks:
            yield decoder.push(chunk.latents.float()).clamp(0, 1)

    def stream(self, prompt: str | list[str], num_frames: int | None = None, *,
               generator: torch.Generator | None = None, seed: int | None = None,
               prompt_switches: Mapping[int, str] | Sequence[PromptSwitch] | None = None,
               callbacks: list[ChunkCallback] | None = None) -> Iterator[torch.Tensor]:
        """Yield each decoded chunk ``[B, t, 3, H, W]`` (float in [0, 1], on the CPU) as soon as it is made.

        Args:
            prompt: one prompt or B prompts.
            num_frames: latent frames, a multiple of the chunk size; None streams without end (needs a cache
                window, ``sampler_config.cache.local_attn_frames``).
            generator: a CPU `torch.Generator` every noise draw comes from (draws are made on the CPU, so a
                seed gives the same video on any device); or ``seed``; neither: a fresh random seed.
            prompt_switches: ``{chunk: prompt}`` or `PromptSwitch` es: from that chunk on, every row follows the
                new prompt (the KV cache is re-encoded under it when ``sampler_config.recache_on_switch``).
            callbacks: called with each latent `Chunk` after its commit pass.
        """
        prompts = self._prompts(prompt)
        switches = self._switches(prompt_switches, num_frames)
        if generator is not None and seed is not None:
            raise ValueError("StreamVidPipeline.stream: give generator or seed, not both")
        if num_frames is not None:
            self._check_frames(num_frames)
        elif self.sampler.layout.local_attn_frames is None:
            raise ValueError("StreamVidPipeline.stream: num_frames=None streams without end and needs a cache "
                             "window (sampler_config.cache.local_attn_frames)")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("StreamVidPipeline.stream: the noise is drawn on the CPU (the same video on any device); "
                             "give a CPU torch.Generator")
        noise = GaussianNoise(seed=seed, generator=generator)
        for pixels in self.stream_video(prompts, num_frames, callbacks=callbacks, prompt_switches=switches,
                                        noise=noise):
            yield pixels.cpu()

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_frames: int = 12, *, generator: torch.Generator | None = None,
                 seed: int | None = None, output_type: str = "np",
                 prompt_switches: Mapping[int, str] | Sequence[PromptSwitch] | None = None,
                 search: VideoSearch | None = None, return_dict: bool = True):
        """Generate a whole video (arguments as `stream`).

        Args:
            output_type: ``np`` (``[B, T, H, W, 3]`` float32), ``pt`` (``[B, T, 3, H, W]``) or ``pil``.
            search: a test-time search (`VideoSearch`, e.g. ``streamvid.tts.SearchStrategy(reward)``): the video
                is the one it chooses, and ``output.search`` holds its result (tree, scores, ledger). One prompt.
            return_dict: False returns ``(frames,)`` as diffusers pipelines do.
        Returns:
            `StreamVidPipelineOutput` with ``.frames`` (and ``.search``).
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        result = None
        if search is None:
            chunks = self.stream(prompt, num_frames, generator=generator, seed=seed,
                                 prompt_switches=prompt_switches)
            bar = self.progress_bar(total=num_frames // self.sampler.chunk_frames)
            video = torch.cat([chunk for chunk in _counted(chunks, bar)], dim=1)
        else:
            prompts = self._prompts(prompt)
            if len(prompts) != 1:
                raise ValueError(f"StreamVidPipeline: a search takes one prompt, got {len(prompts)}")
            if generator is not None or seed is not None:
                raise ValueError("StreamVidPipeline: a search draws its candidates from its own seed "
                                 "(set it on the search object), not from generator / seed")
            self._check_frames(num_frames)
            result = search(self, prompts[0], num_frames, self._switches(prompt_switches, num_frames))
            video = self.codec.decode(result.best.video_latents().float()).clamp(0, 1).cpu()
        frames = _convert(video, output_type)
        return StreamVidPipelineOutput(frames=frames, search=result) if return_dict else (frames,)

    # ------------------------------------------------------------------ checks
    def _prompts(self, prompt: str | list[str]) -> list[str]:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError(f"StreamVidPipeline: prompt must be a non-blank string or a list of them, got {prompt!r}")
        return prompts

    def _check_frames(self, num_frames: int) -> None:
        chunk = self.sampler.chunk_frames
        if num_frames <= 0 or num_frames % chunk:
            raise ValueError(f"StreamVidPipeline: num_frames={num_frames} must be a positive multiple of the "
                             f"chunk size {chunk}")

    def _switches(self, switches: Mapping[int, str] | Sequence[PromptSwitch] | None,
                  num_frames: int | None) -> list[PromptSwitch]:
        items = PromptSwitch.from_mapping(switches) if isinstance(switches, Mapping) else list(switches or ())
        if num_frames is not None:
            for s in items:
                problem = s.problem(num_frames // self.sampler.chunk_frames)
                if problem is not None:
                    raise ValueError(f"StreamVidPipeline: prompt switch at chunk {s.chunk}: {problem}")
        return items


COMPONENT_CLASSES = {
    "codec": {"pixel": ("streamvid.core.codecs.pixel", "PixelCodec"),
              "wan_vae": ("streamvid.core.codecs.wan_vae", "WanVAECodec")},
    "text_encoder": {"learned": ("streamvid.core.text.learned", "LearnedTextEncoder"),
                     "umt5": ("streamvid.core.text.umt5", "UMT5TextEncoder"),
                     "shapes_bag": ("streamvid.core.text.bag_of_words", "BagOfWordsTextEncoder")},
}
"""The ``(module, class)`` diffusers records for each component, by the ``kind`` of its config."""


def write_pipeline_index(directory: str | Path, codec_config: Mapping, text_encoder_config: Mapping,
                         sampler_config: SamplerConfig | Mapping, height: int, width: int) -> Path:
    """Write ``directory/model_index.json`` atomically: the components' classes and the pipeline's config (the
    `CodecConfig` / `TextEncoderConfig` / `SamplerConfig` fields, frame size). Beside a transformer's
    ``config.json`` and weights (a trained student's export folder) it makes that folder a pipeline folder;
    `StreamVidPipeline.save_index` and the training stages' exports call it."""
    from streamvid.core.atomic import atomic_write

    sampler = dataclasses.asdict(sampler_config) if dataclasses.is_dataclass(sampler_config) else dict(sampler_config)
    codec, text = dict(codec_config), dict(text_encoder_config)
    index = {"_class_name": StreamVidPipeline.__name__, "_diffusers_version": _diffusers_version(),
             "transformer": ["streamvid.core.causal_wan", "CausalWanModel"],
             "codec": list(COMPONENT_CLASSES["codec"][codec["kind"]]),
             "text_encoder": list(COMPONENT_CLASSES["text_encoder"][text["kind"]]),
             "sampler_config": sampler, "codec_config": codec, "text_encoder_config": text,
             "height": int(height), "width": int(width)}
    path = Path(directory) / PIPELINE_INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(index, indent=2, default=list) + "\n")
    return path


def _counted(chunks: Iterator[torch.Tensor], bar) -> Iterator[torch.Tensor]:
    with bar:
        for chunk in chunks:
            bar.update(1)
            yield chunk


def _convert(video: torch.Tensor, output_type: str):
    """``[B, T, 3, H, W]`` in [0, 1] -> the ``output_type`` form (see `StreamVidPipelineOutput`)."""
    if output_type == "pt":
        return video
    if output_type == "np":
        return video.permute(0, 1, 3, 4, 2).float().numpy()
    from PIL import Image

    from streamvid.core.video_io import to_uint8_frames

    return [[Image.fromarray(f) for f in to_uint8_frames(v)] for v in video]


def _absolute_path(section: Mapping) -> dict:
    out = dict(section)
    if out.get("path"):
        out["path"] = str(Path(out["path"]).resolve())
    return out


def _sampler_config(value: SamplerConfig | Mapping | None) -> SamplerConfig:
    if value is None or isinstance(value, SamplerConfig):
        return value or SamplerConfig()
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SamplerConfig), dict(value)))


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


def transformer_dir(folder: Path) -> Path:
    """Where a pipeline folder keeps its transformer: ``transformer/`` (diffusers' layout), else the folder."""
    sub = folder / "transformer"
    return sub if (sub / "config.json").is_file() else folder


def generator_config_from_pretrained(folder: str | Path, *, device: str = "cpu", dtype: str | None = None,
                                     overrides: Sequence[str] = ()):
    """The `GeneratorConfig` of a pipeline folder: the transformer's ``config.json`` for ``model``, the folder
    itself as ``checkpoint``, ``model_index.json`` for the rest; ``overrides`` are dot-list strings over it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from streamvid.core.generator_config import GeneratorConfig
    from streamvid.core.model_config import WanModelConfig

    folder = Path(folder)
    index_path = folder / PIPELINE_INDEX
    if not folder.is_dir():
        raise FileNotFoundError(f"pipeline folder not found: {folder}")
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder} has no {PIPELINE_INDEX}: not a StreamVidPipeline folder (save one with "
                                "pipe.save_pretrained(dir))")
    index = json.loads(index_path.read_text())
    if index.get("_class_name") != StreamVidPipeline.__name__:
        raise ConfigError(f"{index_path}: _class_name is {index.get('_class_name')!r}, not 'StreamVidPipeline'")
    model_dir = transformer_dir(folder)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no transformer config.json (in transformer/ or beside {PIPELINE_INDEX})")
    arch = json.loads((model_dir / "config.json").read_text())
    model = {f.name: arch[f.name] for f in dataclasses.fields(WanModelConfig) if f.name in arch}
    text = dict(index.get("text_encoder_config") or {})
    codec = dict(index.get("codec_config") or {})
    for section in (text, codec):  # relative paths are relative to the pipeline folder
        if section.get("path") and not Path(section["path"]).is_absolute():
            section["path"] = str(folder / section["path"])
    data = {"model": model, "checkpoint": str(model_dir), "codec": codec, "text_encoder": text,
            "sampler": index.get("sampler_config") or {}, "height": index.get("height", 32),
            "width": index.get("width", 32), "device": device}
    if dtype is not None:
        data["dtype"] = dtype
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(GeneratorConfig), data, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(cfg)
    except (OmegaConfBaseException, ValueError) as err:
        raise ConfigError(f"{index_path}: {str(err).splitlines()[0]}") from None
