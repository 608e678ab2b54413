"""streamvid.studio: watch a stream being generated live in the browser, switch its prompt, see the search grow.

`streamvid-studio --config configs/studio/shapes.yaml` serves the page (``/``) and its WebSocket protocol
(``/ws``, docs/studio.md). Modules: `config` (`StudioConfig`), `stream` (the generation adapter: one live stream
on the sampler's public steps or Stream-T1's `search_steps`), `protocol` (client messages, checked),
`frames` (frame encoding), `server` (the FastAPI app), `cli`.
"""
