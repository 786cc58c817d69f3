"""Reading a text/event-stream the way particle-api-js does (rest-api.md §5), for tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SseEvent:
    name: str
    data: dict[str, Any]


class SseReader:
    """Parses a text/event-stream the way particle-api-js does (rest-api.md §5)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.aiter_raw()
        self._buffer = b""
        self.comments: list[str] = []
        self.raw = b""

    async def next_line(self) -> str | None:
        """The next raw line without its LF, or None when the stream ends."""
        while b"\n" not in self._buffer:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                return None
            self.raw += chunk
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def next_event(self) -> SseEvent | None:
        """The next dispatched event, or None when the stream ends."""
        name: str | None = None
        data: list[str] = []
        while True:
            line = await self.next_line()
            if line is None:
                return None
            if line.startswith(":"):
                self.comments.append(line)
            elif line == "":
                if name is not None:
                    return SseEvent(name, json.loads("\n".join(data)))
                name, data = None, []
            elif line.startswith("event:"):
                name = line[len("event:") :].removeprefix(" ")
            elif line.startswith("data:"):
                data.append(line[len("data:") :].removeprefix(" "))

    async def first_bytes(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = await anext(self._chunks)
            self.raw += chunk
            self._buffer += chunk
        return self._buffer[:count]
