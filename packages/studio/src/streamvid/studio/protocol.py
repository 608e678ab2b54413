"""The client's messages (docs/studio.md), parsed and checked with pydantic; a bad one is one readable line.

Client -> server, JSON text messages::

    {"type": "start", "prompt": "a red circle moving left", "seed": 0, "strategy": "plain", "frames": 48}
    {"type": "start", ..., "strategy": "stream_t1", "budget": 2}
    {"type": "prompt", "prompt": "a red circle moving up"}      # switch from the next chunk on
    {"type": "stop"}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, TypeAdapter, ValidationError


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Start(_Message):
    type: Literal["start"]
    prompt: str
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] = 0
    strategy: str = "plain"
    """One of `config.STRATEGIES` (checked with the rest of the request: `Engine.check`)."""
    frames: StrictInt | None = None
    """Latent frames (the server's default when absent)."""
    budget: StrictFloat | StrictInt | None = None
    """Stream-T1 / greedy: multiples of plain sampling's NFE (the server's default when absent)."""


class Prompt(_Message):
    type: Literal["prompt"]
    prompt: str


class Stop(_Message):
    type: Literal["stop"]


ClientMessage = Annotated[Start | Prompt | Stop, Field(discriminator="type")]
_ADAPTER: TypeAdapter = TypeAdapter(ClientMessage)


class ProtocolError(ValueError):
    """A message that is not one of the protocol's (the message names what and where)."""


def parse_message(text: str | None) -> Start | Prompt | Stop:
    """One client message, or `ProtocolError` with one line naming the field and what was expected."""
    if text is None:
        raise ProtocolError("messages must be JSON text; the server does not take binary messages")
    try:
        message = _ADAPTER.validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        if first["type"] == "json_invalid":
            raise ProtocolError(f"malformed message: not JSON ({first['msg']})") from None
        if first["type"] in ("union_tag_invalid", "union_tag_not_found", "model_attributes_type"):
            raise ProtocolError('malformed message: expected a JSON object with "type" one of '
                                '"start", "prompt", "stop"') from None
        raise ProtocolError(f"malformed message: {where}: {first['msg']}") from None
    return message
