"""A WebRTC session within one process: two RTCPeerConnections over the host's own
addresses, H.264 only, moving pictures one way. What the tests and `bench/aiortc.py` run,
and the quickest way to see the encoder at work.

Lifecycle: `await Loopback.open(...)` connects (offer, answer, ICE, DTLS) and starts
counting the frames the receiving side decodes; `await close()` stops that, then closes the
sending connection (its sender's RTP loop ends, closing its encoder), then the receiving
one, then the picture source.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
import numpy as np
import numpy.typing as npt
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

from vramguard.sources import SyntheticSource


class Source(Protocol):
    def draw(self, target: npt.NDArray[np.uint8], index: int) -> None: ...


class MovingPictures(VideoStreamTrack):
    """Pictures from a source (vramguard's synthetic one by default: every pixel moves) at
    aiortc's 30 fps; `resize()` changes the size from the next frame on."""

    def __init__(
        self, width: int, height: int, source: Callable[[int, int], Source] = SyntheticSource
    ) -> None:
        super().__init__()
        self.frames_sent = 0
        self._make_source = source
        self.resize(width, height)

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._source = self._make_source(width, height)
        self._buffer = np.empty((height * 3 // 2, width), np.uint8)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._source.draw(self._buffer, self.frames_sent)
        frame = av.VideoFrame.from_ndarray(self._buffer, format="yuv420p")  # a copy
        frame.pts, frame.time_base = pts, time_base
        self.frames_sent += 1
        return frame


@dataclass
class Received:
    """What the receiving side decoded."""

    frames: int = 0
    keyframes: int = 0
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)  # (w, h) -> frames


@dataclass
class Loopback:
    sender_pc: RTCPeerConnection
    receiver_pc: RTCPeerConnection
    track: MovingPictures
    received: Received
    _consumer: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        width: int,
        height: int,
        before_offer: Callable[[RTCPeerConnection], Any] | None = None,
        source: Callable[[int, int], Source] = SyntheticSource,
    ) -> Loopback:
        """Connect; `before_offer(sender_pc)` runs once the track is added (`use()` there)."""
        sender_pc, receiver_pc = RTCPeerConnection(), RTCPeerConnection()
        track = MovingPictures(width, height, source)
        loopback = cls(sender_pc, receiver_pc, track, Received())
        try:
            transceiver = sender_pc.addTransceiver(track, direction="sendonly")
            h264 = [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() == "video/h264"
            ]
            transceiver.setCodecPreferences(h264)
            if before_offer is not None:
                before_offer(sender_pc)
            arrived: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

            def on_track(remote: MediaStreamTrack) -> None:
                if not arrived.done():
                    arrived.set_result(remote)

            receiver_pc.on("track", on_track)
            await sender_pc.setLocalDescription(await sender_pc.createOffer())
            await receiver_pc.setRemoteDescription(sender_pc.localDescription)
            await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
            await sender_pc.setRemoteDescription(receiver_pc.localDescription)
            remote = await asyncio.wait_for(arrived, 10)
        except BaseException:
            await loopback.close()
            raise
        loopback._consumer = asyncio.ensure_future(loopback._consume(remote))
        return loopback

    async def _consume(self, remote: MediaStreamTrack) -> None:
        received = self.received
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await remote.recv()
                assert isinstance(frame, av.VideoFrame)
                received.frames += 1
                received.keyframes += int(frame.key_frame)
                size = (frame.width, frame.height)
                received.sizes[size] = received.sizes.get(size, 0) + 1

    @property
    def sender(self) -> RTCRtpSender:
        return self.sender_pc.getSenders()[0]

    @property
    def receiver(self) -> RTCRtpReceiver:
        return self.receiver_pc.getReceivers()[0]

    async def close(self) -> None:
        """Stop counting, close the sending side (its encoder with it), then the other."""
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        await self.sender_pc.close()
        await self.receiver_pc.close()
        self.track.stop()
