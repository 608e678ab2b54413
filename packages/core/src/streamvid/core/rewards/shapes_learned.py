"""`ShapesLearnedReward`: a small video network trained to predict the oracle's three axes from pixels + prompt.

It stands in for a pretrained reward model (VideoAlign and the like): it scores well on the shapes world but
is imperfect, and its pixel gradients are a network's, not the analytic ones (`ShapesAnalyticReward`).
Trained by the ``streamvid-train shapes-reward`` stage (`streamvid.distill.shapes_reward_stage`, ``make
shapes-reward``); the shipped checkpoint lies in ``assets/shapes_learned_reward/`` next to this file, and
``build_reward("shapes_learned")`` loads it.

Network (`ShapesRewardNet`), for ``video [B, T, 3, H, W]`` in [0, 1]:

- per frame, the frame and its difference to the previous frame (6 channels, zero difference for frame 0)
  pass four 3x3 convs (stride 1, 2, 2, 2); the last map is pooled to 4x4 and flattened (where the object
  is); the first two add spatial statistics per channel, the mean and the mean log-energy ``mean log(1e-4 +
  (u - mean u)^2)`` (dominated by the many background pixels, so faint noise and soft edges show); a linear
  layer makes ``[B, T, D]``;
- two residual temporal convs (kernel 3) over frames -> trunk ``g [B, T, D]``; `features` is its mean over
  frames ``[B, D]`` and never sees the prompt (for Fréchet distances between video sets);
- prompt branch: `encode_prompts` parses each prompt into colour, shape and per-frame direction ids
  (segments mapped to frames with `segment_frame_ranges`);
- ``text``: linear heads on ``g`` classify the video's colour, shape (pooled) and per-frame direction; the
  logit is ``a * mean(P(prompt colour), P(prompt shape), mean_t P(prompt direction_t)) + b`` (the oracle's
  text axis is that mean of three agreements), so unseen colour-shape pairs generalise;
- ``visual``, ``motion``: the ids are embedded and summed to ``p [B, T, D]``, fused as ``g * (1 + W p)``,
  pooled (mean and max over frames) and passed through an MLP. Sigmoids give the axes in [0, 1].

A checkpoint directory holds ``reward.safetensors`` (the state dict) and ``reward.json`` (``{"net":
ShapesRewardNetConfig fields, ...}``; training writes its settings and metrics beside them).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from streamvid.core.checkpoints import save_safetensors
from streamvid.core.rewards.base import AXES, BaseReward, check_reward_inputs
from streamvid.core.rewards.configs import ShapesLearnedRewardConfig
from streamvid.core.world.prompts import parse_prompt
from streamvid.core.world.render import DIRECTIONS, PALETTE, SHAPES, segment_frame_ranges

__all__ = [
    "DEFAULT_CHECKPOINT",
    "ShapesLearnedReward",
    "ShapesLearnedRewardConfig",
    "ShapesRewardNet",
    "ShapesRewardNetConfig",
    "encode_prompts",
]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "shapes_learned_reward"
"""The shipped checkpoint directory (package data of ``streamvid.core.rewards``)."""
WEIGHTS_FILE = "reward.safetensors"
CONFIG_FILE = "reward.json"


@dataclass
class ShapesRewardNetConfig:
    """Sizes of `ShapesRewardNet` (stored under ``"net"`` in ``reward.json``)."""

    channels: tuple[int, int, int, int] = (16, 32, 48, 64)
    """Output channels of the four per-frame convs (strides 1, 2, 2, 2)."""
    dim: int = 128
    """Width ``D`` of the frame, trunk and prompt embeddings."""
    grid: int = 4
    """The last conv map is average-pooled to ``grid x grid`` before flattening (keeps position)."""


def encode_prompts(
    prompts: list[str], num_frames: int, device: torch.device | str = "cpu"
) -> dict[str, Tensor]:
    """Parse ``B`` prompts -> ``colour [B]``, ``shape [B]`` and per-frame ``direction [B, T]`` ids (long).

    Ids index `PALETTE`, `SHAPES` and `DIRECTIONS`; segment ``k`` of a prompt covers frames
    ``segment_frame_ranges(T, K)[k]`` (a prompt with more segments than frames keeps the first ``T``).
    """
    colours, shapes, directions = [], [], []
    for prompt in prompts:
        spec = parse_prompt(prompt)
        k = min(len(spec.segments), num_frames)
        row = [0] * num_frames
        for (a, b), name in zip(segment_frame_ranges(num_frames, k), spec.segments):
            row[a:b] = [list(DIRECTIONS).index(name)] * (b - a)
        colours.append(list(PALETTE).index(spec.colour))
        shapes.append(SHAPES.index(spec.shape))
        directions.append(row)
    as_long = {"dtype": torch.long, "device": device}
    return {
        "colour": torch.tensor(colours, **as_long),
        "shape": torch.tensor(shapes, **as_long),
        "direction": torch.tensor(directions, **as_long).view(len(prompts), num_frames),
    }


class ShapesRewardNet(nn.Module):
    """Video + prompt ids -> axis logits ``[B, 3]`` (order ``visual, motion, text``); see the module docstring."""

    def __init__(self, config: ShapesRewardNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ShapesRewardNetConfig()
        c1, c2, c3, c4 = config.channels
        d = config.dim
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(6, c1, 3, 1, 1),
                nn.Conv2d(c1, c2, 3, 2, 1),
                nn.Conv2d(c2, c3, 3, 2, 1),
                nn.Conv2d(c3, c4, 3, 2, 1),
            ]
        )
        self.frame_proj = nn.Linear(c4 * config.grid**2 + 2 * (c1 + c2), d)
        self.temporal = nn.ModuleList([nn.Conv1d(d, d, 3, 1, 1) for _ in range(2)])
        self.colour_head = nn.Linear(d, len(PALETTE))
        self.shape_head = nn.Linear(d, len(SHAPES))
        self.direction_head = nn.Linear(d, len(DIRECTIONS))
        self.text_affine = nn.Parameter(torch.tensor([8.0, -4.0]))
        self.colour_emb = nn.Embedding(len(PALETTE), d)
        self.shape_emb = nn.Embedding(len(SHAPES), d)
        self.direction_emb = nn.Embedding(len(DIRECTIONS), d)
        self.prompt_proj = nn.Linear(d, d)
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 2))

    def trunk(self, video: Tensor) -> Tensor:
        """Prompt-free per-frame features: ``video [B, T, 3, H, W]`` in [0, 1] -> ``[B, T, D]``."""
        b, t = video.shape[:2]
        x = video * 2 - 1
        diff = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], 1)
        h = torch.cat([x, diff], 2).flatten(0, 1)  # [B * T, 6, H, W]
        stats = []
        for i, conv in enumerate(self.convs):
            u = conv(h)
            if i < 2:  # spatial mean, and mean log-energy (dominated by the background: sees faint noise)
                mean = u.mean((2, 3), keepdim=True)
                stats += [mean.flatten(1), torch.log(1e-4 + (u - mean).pow(2)).mean((2, 3))]
            h = F.gelu(u)
        h = F.adaptive_avg_pool2d(h, self.config.grid).flatten(1)
        frames = self.frame_proj(torch.cat([h, *stats], 1)).view(b, t, -1)
        g = frames.transpose(1, 2)  # [B, D, T]
        for conv in self.temporal:
            g = g + F.gelu(conv(g))
        return g.transpose(1, 2)

    def heads(self, video: Tensor, colour: Tensor, shape: Tensor, direction: Tensor) -> dict[str, Tensor]:
        """All outputs: ``logits [B, 3]`` (visual, motion, text) and the attribute logits the text axis is
        built from, ``colour [B, 7]``, ``shape [B, 3]``, ``direction [B, T, 4]`` (inputs as in `forward`)."""
        g = self.trunk(video)
        pooled = g.mean(1)
        att = {
            "colour": self.colour_head(pooled),
            "shape": self.shape_head(pooled),
            "direction": self.direction_head(g),
        }
        agree = (
            att["colour"].softmax(-1).gather(1, colour[:, None])[:, 0]
            + att["shape"].softmax(-1).gather(1, shape[:, None])[:, 0]
            + att["direction"].softmax(-1).gather(2, direction[..., None])[..., 0].mean(1)
        ) / 3
        text = self.text_affine[0] * agree + self.text_affine[1]
        p = self.colour_emb(colour)[:, None] + self.shape_emb(shape)[:, None] + self.direction_emb(direction)
        z = g * (1 + self.prompt_proj(p))
        visual_motion = self.head(torch.cat([z.mean(1), z.amax(1)], 1))
        return {"logits": torch.cat([visual_motion, text[:, None]], 1), **att}

    def forward(self, video: Tensor, colour: Tensor, shape: Tensor, direction: Tensor) -> Tensor:
        """Axis logits ``[B, 3]`` from ``video [B, T, 3, H, W]``, ``colour [B]``, ``shape [B]``,
        ``direction [B, T]`` (ids from `encode_prompts`)."""
        return self.heads(video, colour, shape, direction)["logits"]


def load_reward_net(directory: str | Path) -> ShapesRewardNet:
    """Load a `ShapesRewardNet` from ``directory`` (``reward.json`` + ``reward.safetensors``)."""
    directory = Path(directory)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"shapes learned reward checkpoint incomplete in {directory}: missing {missing} (expected "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}; train one with `streamvid-train shapes-reward --config "
            f"configs/train/shapes_reward.yaml --set output_dir={directory}`)"
        )
    meta = json.loads((directory / CONFIG_FILE).read_text())
    if "net" not in meta:
        raise ValueError(f"{directory / CONFIG_FILE} has no 'net' key (the ShapesRewardNetConfig fields)")
    net_cfg = ShapesRewardNetConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in meta["net"].items()}
    )
    net = ShapesRewardNet(net_cfg)
    net.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    return net.eval()


def save_reward_net(net: ShapesRewardNet, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``net`` to ``directory`` as ``reward.safetensors`` + ``reward.json`` (``extra`` keys added)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(net.state_dict(), directory / WEIGHTS_FILE)
    meta = {"net": dataclasses.asdict(net.config), "axes": list(ShapesLearnedReward.axes), **(extra or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


class ShapesLearnedReward(BaseReward):
    """Learned shapes-world reward: ``video [B, T, 3, H, W]`` in [0, 1] -> axes ``[B]`` in [0, 1].

    Args:
        config: `ShapesLearnedRewardConfig` (its ``path`` is only read by `from_config`).
        net: the network; `from_config` (``build_reward("shapes_learned", path=...)``) loads it from a
            checkpoint directory.
    """

    axes = AXES
    config_class = ShapesLearnedRewardConfig

    def __init__(self, config: ShapesLearnedRewardConfig, net: ShapesRewardNet) -> None:
        super().__init__(config)
        self.net = net.eval()

    @classmethod
    def from_config(cls, config: ShapesLearnedRewardConfig) -> ShapesLearnedReward:
        """Load the network from ``config.path`` (default: `DEFAULT_CHECKPOINT`)."""
        return cls(config, load_reward_net(config.path or DEFAULT_CHECKPOINT))

    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Write the network to ``directory`` so that ``build_reward("shapes_learned", path=directory)`` loads it back."""
        return save_reward_net(self.net, directory, extra)

    def score_axes(self, video: Tensor, prompts: list[str]) -> dict[str, Tensor]:
        """Per-axis rewards ``{axis: [B]}`` of ``video [B, T, 3, H, W]`` against ``B`` prompts."""
        ids = encode_prompts(prompts, video.shape[1], video.device)
        probs = torch.sigmoid(self.net(video.float(), ids["colour"], ids["shape"], ids["direction"]))
        return {axis: probs[:, i] for i, axis in enumerate(self.axes)}

    def features(self, video: Tensor, prompts: list[str] | None = None) -> Tensor:
        """Trunk embedding ``[B, D]`` (mean over frames) of ``video [B, T, 3, H, W]`` in [0, 1].

        The trunk never sees the prompt, so the features compare video distributions (Fréchet distance);
        ``prompts`` is accepted for a uniform call signature and only checked for length.
        """
        check_reward_inputs(video, prompts if prompts is not None else [""] * video.shape[0])
        return self.net.trunk(video.float()).mean(1)
