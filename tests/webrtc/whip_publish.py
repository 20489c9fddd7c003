#!/usr/bin/env python3
"""WHIP (or SRS JSON API) publisher for sluice's WebRTC end-to-end tests, built on aiortc.

Publishes a synthetic H.264 video track (moving bar + a 16-bit frame counter drawn as
blocks along the top) and, unless --no-audio, a 440 Hz sine as Opus (48 kHz, 20 ms frames),
both sendonly, over ICE/DTLS-SRTP on 127.0.0.1 only. Non-trickle: the offer is sent after
ICE gathering has completed. Keyframes are forced at least every --keyframe-interval
seconds (default 1.0); aiortc also sends one on every PLI/FIR.

Usage (run with the venv that ci/test builds: $SLUICE_PYTHON, i.e. ci/.cache/venv/bin/python):
  # WHIP: POST the offer (application/sdp) -> 201 + answer + Location; DELETE Location at the end
  whip_publish.py --url 'http://127.0.0.1:1985/rtc/v1/whip/?app=live&stream=s' --seconds 5
  # SRS JSON API: POST {api, streamurl, sdp, clientip} to /rtc/v1/publish/ -> {code, sdp, sessionid}
  whip_publish.py --api srs --url 'http://127.0.0.1:1985/rtc/v1/whip/?app=live&stream=s' --seconds 5
  whip_publish.py --api srs --url http://127.0.0.1:1985/rtc/v1/publish/ \
      --streamurl webrtc://127.0.0.1/live/s --seconds 5
  (with --api srs and no --streamurl, --url must carry ?app=&stream= and the JSON endpoint is
  derived as http://HOST:PORT/rtc/v1/publish/, the stream URL as webrtc://HOST/APP/STREAM)
Other options: --no-audio, --width 320 --height 240 --fps 25, --timeout 15 (seconds to reach
ICE+DTLS "connected"), --no-delete, --rtx (also offer video/rtx), --bundle-policy
{max-bundle,balanced}, --verbose (offer/answer SDP and progress on stderr).

Prints exactly one JSON line on stdout, e.g.
  {"ok": true, "status": 201, "location": "...", "video_frames_sent": 125,
   "audio_frames_sent": 250, "delete_status": 200, "error": null, ...more keys}
Exit codes: 0 ok; 1 media/connection failure; 2 HTTP/signalling error (status and body
printed); 3 a non-loopback address appeared (URL, offer or answer); 4 bad usage.
"""

import asyncio
import fractions
import sys
import time

import numpy as np
from av import AudioFrame, VideoFrame
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import MediaStreamError

sys.dont_write_bytecode = True  # keep tests/webrtc free of __pycache__
import rtc_common as rc  # noqa: E402

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms


class PacedTrack(MediaStreamTrack):
    """A synthetic track sending its frames in real time: `sent` frames so far."""

    def __init__(self):
        super().__init__()
        self.sent = 0
        self._start = None

    async def _next(self, frame_seconds):
        """Waits until frame number `sent` is due (`frame_seconds` apart from the first) and
        returns that number."""
        if self.readyState != "live":
            raise MediaStreamError
        n = self.sent
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + n * frame_seconds - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return n


class PatternVideoTrack(PacedTrack):
    """Moving vertical bar over a gradient, with the frame number as 16 black/white blocks."""

    kind = "video"

    def __init__(self, width, height, fps):
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        y = np.tile(np.linspace(40, 200, width, dtype=np.uint8), (height, 1))
        self._y = y
        self._uv = np.full((height // 2, width), 128, dtype=np.uint8)  # U rows then V rows
        self._bar = max(4, width // 16)
        self._block = max(2, min(width // 16, height // 8))

    async def recv(self):
        n = await self._next(1 / self.fps)
        y = self._y.copy()
        x = (n * 4) % (self.width - self._bar)
        y[:, x : x + self._bar] = 235
        b = self._block
        for bit in range(16):
            if (bit + 1) * b > self.width:
                break
            y[0:b, bit * b : (bit + 1) * b] = 235 if (n >> (15 - bit)) & 1 else 16
        frame = VideoFrame.from_ndarray(np.vstack([y, self._uv]), format="yuv420p")
        frame.pts = round(n * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return frame


class SineAudioTrack(PacedTrack):
    """440 Hz sine, s16 mono, 48 kHz, 20 ms frames (aiortc's Opus encoder upmixes)."""

    kind = "audio"

    def __init__(self, freq=440.0):
        super().__init__()
        self.freq = freq

    async def recv(self):
        n = await self._next(AUDIO_SAMPLES / AUDIO_RATE)
        t = (np.arange(AUDIO_SAMPLES) + n * AUDIO_SAMPLES) / AUDIO_RATE
        samples = (np.sin(2 * np.pi * self.freq * t) * 0.3 * 32767).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = n * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.sent += 1
        return frame


KEYFRAMES = {"forced": 0}


def force_periodic_keyframes(interval):
    """Wrap aiortc's H264Encoder.encode so an IDR goes out at least every `interval` s of
    media time (libx264's own GOP would be 250 frames)."""
    original = H264Encoder.encode
    if getattr(original, "_sluice_wrapped", False):
        return

    def encode(self, frame, force_keyframe=False):
        t = float(frame.pts * frame.time_base)
        last = getattr(self, "_sluice_last_kf", None)
        if force_keyframe or last is None or t - last >= interval - 1e-6:
            self._sluice_last_kf = t
            force_keyframe = True
            KEYFRAMES["forced"] += 1
        return original(self, frame, force_keyframe)

    encode._sluice_wrapped = True
    H264Encoder.encode = encode


async def run(args, result):
    force_periodic_keyframes(args.keyframe_interval)
    video = PatternVideoTrack(args.width, args.height, args.fps)
    audio = None if args.no_audio else SineAudioTrack()
    pc = rc.new_peer_connection(args.bundle_policy)
    try:
        vt = pc.addTransceiver(video, direction="sendonly")
        rc.force_codec(vt, "video", "video/H264", rtx=args.rtx)
        if audio:
            at = pc.addTransceiver(audio, direction="sendonly")
            rc.force_codec(at, "audio", "audio/opus")

        t0 = time.monotonic()
        offer = await rc.local_offer(pc, args.verbose)
        answer = await rc.remote_answer(args, "publish", offer, result)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await rc.wait_connected(pc, args.timeout)
        except Exception as e:
            result["error"] = f"{type(e).__name__}: {e}"
            return rc.EXIT_MEDIA
        result["connected_ms"] = round((time.monotonic() - t0) * 1000)
        if args.verbose:
            rc.log(f"connected after {result['connected_ms']} ms; sending {args.seconds} s")

        await rc.hold(pc, args.seconds, result, lambda state: state == "connected", "publishing")

        try:
            stats = await pc.getStats()
            for s in stats.values():
                if getattr(s, "type", None) == "outbound-rtp":
                    result[f"{s.kind}_packets_sent"] = s.packetsSent
                    result[f"{s.kind}_bytes_sent"] = s.bytesSent
        except Exception as e:  # stats are informative only
            rc.log(f"getStats failed: {e}")
    finally:
        result["video_frames_sent"] = video.sent
        result["audio_frames_sent"] = audio.sent if audio else 0
        result["keyframes_forced"] = KEYFRAMES["forced"]
        # DELETE first (see whep_play.py), then close.
        if args.api == "whip" and not args.no_delete:
            await rc.delete_resource(args.url, result)
        await pc.close()
    if result["error"]:
        return rc.EXIT_MEDIA
    if video.sent == 0 or (audio and audio.sent == 0):
        result["error"] = "no media frames were sent"
        return rc.EXIT_MEDIA
    return rc.EXIT_OK


def main():
    p = rc.arg_parser(
        __doc__,
        url_help="WHIP URL, or the SRS /rtc/v1/publish/ URL with --api srs",
        seconds_help="how long to send once connected",
        api_choices=["whip", "srs"], api_default="whip",
        timeout_help="seconds to get connected",
    )
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--keyframe-interval", type=float, default=1.0, help="seconds between forced IDRs")
    p.add_argument("--no-delete", action="store_true", help="do not DELETE the Location at the end")
    p.add_argument("--rtx", action="store_true", help="also offer video/rtx")
    args = p.parse_args()

    result = {
        "ok": False, "status": None, "location": None, "video_frames_sent": 0,
        "audio_frames_sent": 0, "delete_status": None, "error": None,
    }
    bad_size = args.width % 2 or args.height % 2 or args.width < 64 or args.height < 16 or args.fps <= 0
    usage_error = "--width/--height must be even (width >= 64, height >= 16), --fps > 0" if bad_size else None
    return rc.run_main("whip_publish", args, result, run, usage_error)


if __name__ == "__main__":
    sys.exit(main())
