"""VideoAlign's "detailed_special" prompt and the Qwen2-VL chat format (methods.md A.3.1; anchors 2.1).

The template asks for independent 0-10 ratings of Visual Quality, Motion Quality and Text Alignment, lists
sub-criteria for each, and ends each section with its reward token (``<|VQ_reward|>``, ``<|MQ_reward|>``,
``<|TA_reward|>``, in that order); the user's prompt appears only in the Text Alignment section. The wording
below is our paraphrase of that structure, not the released text: the released checkpoint was trained on
VideoAlign's own wording, so for score parity pass that text through ``VideoAlignConfig.prompt_template_file``
(a file with one ``{prompt}`` placeholder and the three tokens).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DETAILED_SPECIAL_TEMPLATE",
    "QWEN2VL_FALLBACK_CHAT",
    "REWARD_TOKENS",
    "VIDEO_PLACEHOLDER",
    "build_prompt",
    "format_chat",
    "load_template",
]

REWARD_TOKENS = ("<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>")
"""The three added special tokens; the head is read at each, giving VQ, MQ, TA."""

VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
"""How Qwen2-VL's chat template renders a video; ``<|video_pad|>`` is expanded to one token per merged patch."""

QWEN2VL_FALLBACK_CHAT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n" + VIDEO_PLACEHOLDER + "{text}<|im_end|>\n<|im_start|>assistant\n"
)
"""What Qwen2-VL-Instruct's chat template produces for one user turn (video, then text) with
``add_generation_prompt=True``; used when the tokenizer carries no chat template."""

DETAILED_SPECIAL_TEMPLATE = """\
You will judge a generated video on three separate criteria: Visual Quality, Motion Quality and Text \
Alignment. Give each criterion a rating from 0 to 10, where 0 is the worst and 10 the best. Judge each \
criterion on its own, independently of the other two.

**Visual Quality:**
Judge how the video looks, considering mostly static properties of its frames:
- **Plausibility:** no obvious anatomical or logical mistakes, such as malformed bodies or impossible scenes.
- **Clarity:** frames are sharp and easy to read, without blur or smeared regions.
- **Detail:** textures, materials, lighting and fine elements such as hair, fabric and shadows are rich.
- **Aesthetics:** colour, composition, atmosphere and depth of field are pleasing and harmonious.
- **Safety:** no harmful or inappropriate content; if there is any, give the lowest rating.
Rating of Visual Quality: <|VQ_reward|>
END

**Motion Quality:**
Judge how things move over time:
- **Stability:** subjects and background stay consistent from frame to frame, without flicker or warping.
- **Naturalness:** movements follow physical laws and look like real motion.
- **Smoothness:** motion is continuous, without jumps, stutter or sudden changes.
- **Dynamics:** the amount of motion fits the scene; a nearly static video deserves a low rating.
Rating of Motion Quality: <|MQ_reward|>
END

**Text Alignment:**
Judge how well the video matches the text prompt:
- **Subject:** the subjects named in the prompt appear with the described attributes.
- **Action:** the described actions and interactions take place.
- **Scene:** setting, style and camera behaviour agree with the description.
Text prompt: {prompt}
Rating of Text Alignment: <|TA_reward|>
END
"""


def load_template(path: str | Path | None) -> str:
    """The template in ``path`` (UTF-8 text), or `DETAILED_SPECIAL_TEMPLATE` when ``path`` is empty or None.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the template lacks the ``{prompt}`` placeholder or a reward token.
    """
    if not path:
        return DETAILED_SPECIAL_TEMPLATE
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"VideoAlign prompt template file not found: '{file}'")
    template = file.read_text(encoding="utf-8")
    missing = [t for t in ("{prompt}", *REWARD_TOKENS) if t not in template]
    if missing:
        raise ValueError(f"VideoAlign prompt template '{file}' lacks {missing}")
    return template


def build_prompt(prompt: str, template: str = DETAILED_SPECIAL_TEMPLATE) -> str:
    """The user-turn text for ``prompt``: the template with ``{prompt}`` replaced (no other formatting)."""
    return template.replace("{prompt}", prompt)


def format_chat(tokenizer, text: str) -> str:
    """One user turn (video, then ``text``) plus the assistant prefix, as a string with one video placeholder.

    Uses the tokenizer's chat template when it has one (content ``[{"type": "video"}, {"type": "text"}]``,
    ``add_generation_prompt=True``), else `QWEN2VL_FALLBACK_CHAT`.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
        chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if chat.count("<|video_pad|>") != 1:
            raise ValueError(
                "the tokenizer's chat template must render one <|video_pad|> for a video content item; "
                f"got {chat.count('<|video_pad|>')} (is this a Qwen2-VL tokenizer?)"
            )
        return chat
    return QWEN2VL_FALLBACK_CHAT.replace("{text}", text)
