"""Resumable generations (SPEC §4.5): detached producers, their event logs, their readers.

The API, independent of any wire framing (`/stream`'s SSE is one consumer, the AI SDK's UI
message stream another):

    generations = Generations(config, store, drain, metrics)   # one per app (state.generations)
    generation = await generations.start(stream_id, owner, primed_relay, accounting)
    reader = await generations.attach(stream_id, owner, after)  # None: nothing to resume
    async for seq, payload in reader: ...                        # str | End | Failure
    await reader.aclose()                                        # detach (never cancels)
    await generations.cancel(stream_id, owner)                   # every reader gets Failure

Events are `(seq, payload)` (`events.py`); the log is in memory (`memory.py`), mirrored to a
Redis Stream when `redis_url` is set (`redis.py`); `tokens.py` signs EventSource tokens.
"""

from gateway.resume.events import End, Event, Failure, Payload
from gateway.resume.generation import Accounting, Generation, Generations, Reader, Stop
from gateway.resume.redis import RedisLog
from gateway.resume.tokens import TokenSigner

__all__ = [
    "Accounting",
    "End",
    "Event",
    "Failure",
    "Generation",
    "Generations",
    "Payload",
    "Reader",
    "RedisLog",
    "Stop",
    "TokenSigner",
]
