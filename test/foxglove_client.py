"""A Foxglove WebSocket client for the tests: what the Foxglove app does when it connects.

Speaks the protocol the foxglove-sdk server speaks (subprotocol `foxglove.sdk.v1`; the SDK
refuses the older `foxglove.websocket.v1` with HTTP 400): JSON `serverInfo` / `advertise` text
frames from the server, `subscribe` from the client, and binary message-data frames (opcode 1,
uint32 subscription id, uint64 timestamp ns, little endian, then the message payload).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
import json
import struct
import time

import websockets

SUBPROTOCOL = 'foxglove.sdk.v1'
MESSAGE_DATA = 1
MESSAGE_HEADER = struct.Struct('<BIQ')


@dataclass(frozen=True)
class MessageData:
    subscription: int
    timestamp_ns: int
    payload: bytes


class FoxgloveClient:
    """`async with FoxgloveClient(url) as client:` then wait for channels, subscribe, read."""

    def __init__(self, url: str, connect_timeout_s: float = 60.0) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s  # the server may still be starting
        self.channels: dict[str, dict] = {}           # topic -> advertised channel
        self.messages: dict[int, list[MessageData]] = {}  # subscription id -> received
        self._next_subscription = 1
        self._ws = None

    async def __aenter__(self) -> FoxgloveClient:
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                self._ws = await websockets.connect(self.url, subprotocols=[SUBPROTOCOL],
                                                    max_size=None)
                return self
            except OSError:  # connection refused: nothing listens yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def __aexit__(self, *exc: object) -> None:
        await self._ws.close()

    async def _receive(self, timeout_s: float) -> None:
        """Take one frame (or none within `timeout_s`) into channels / messages."""
        try:
            frame = await asyncio.wait_for(self._ws.recv(), timeout_s)
        except asyncio.TimeoutError:
            return
        if isinstance(frame, str):
            message = json.loads(frame)
            if message.get('op') == 'advertise':
                for channel in message['channels']:
                    self.channels[channel['topic']] = channel
            return
        opcode, subscription, timestamp = MESSAGE_HEADER.unpack_from(frame)
        if opcode == MESSAGE_DATA:
            self.messages.setdefault(subscription, []).append(
                MessageData(subscription, timestamp, bytes(frame[MESSAGE_HEADER.size:])))

    async def wait_for(self, condition, what: str, timeout_s: float = 30.0,
                       between=None) -> None:
        """Read frames until `condition()` holds; `between()` runs between reads (e.g. to
        publish again); AssertionError naming `what` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out after {timeout_s:.0f} s waiting for {what}; '
                                     f'advertised: {sorted(self.channels)}')
            if between is not None:
                between()
            await self._receive(0.05)

    async def wait_channels(self, topics, timeout_s: float = 30.0) -> None:
        await self.wait_for(lambda: set(topics) <= set(self.channels),
                            f'channels {sorted(topics)}', timeout_s)

    async def subscribe(self, topic: str) -> int:
        subscription = self._next_subscription
        self._next_subscription += 1
        await self._ws.send(json.dumps({'op': 'subscribe', 'subscriptions': [
            {'id': subscription, 'channelId': self.channels[topic]['id']}]}))
        return subscription
