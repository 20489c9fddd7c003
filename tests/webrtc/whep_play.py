#!/usr/bin/env python3
"""WHEP (or SRS JSON API) player for sluice's WebRTC end-to-end tests, built on aiortc.

Offers recvonly H.264 video + recvonly Opus audio over ICE/DTLS-SRTP on 127.0.0.1 only
(non-trickle: the offer goes out after ICE gathering has completed), decodes what arrives
(aiortc decodes H.264 with FFmpeg and Opus), and counts decoded frames via track.recv()
for --seconds counting from the first decoded frame of either kind. Gives up (ok=false)
when nothing has been decoded --timeout seconds (default 15) after the POST.

Usage (run with the venv that ci/test builds: $SLUICE_PYTHON, i.e. ci/.cache/venv/bin/python):
  # WHEP: POST the offer (application/sdp) -> 201 + answer + Location
  whep_play.py --url 'http://127.0.0.1:1985/rtc/v1/whep/?app=live&stream=s' --seconds 3 \
      [--expect-audio] [--delete]
  # SRS JSON API: POST {api, streamurl, sdp, clientip} to /rtc/v1/play/ -> {code, sdp, sessionid}
  whep_play.py --api srs --url 'http://127.0.0.1:1985/rtc/v1/whep/?app=live&stream=s' --seconds 3
  whep_play.py --api srs --url http://127.0.0.1:1985/rtc/v1/play/ \
      --streamurl webrtc://127.0.0.1/live/s --seconds 3
  (with --api srs and no --streamurl, --url must carry ?app=&stream= and the JSON endpoint is
  derived as http://HOST:PORT/rtc/v1/play/, the stream URL as webrtc://HOST/APP/STREAM)
--expect-audio: ok also requires decoded audio. --delete: DELETE the Location at the end
(WHEP only; without it the player just closes its peer connection, which sends a DTLS
close_notify and RTCP BYE). Other options: --timeout 15, --bundle-policy {max-bundle,balanced},
--verbose (offer/answer SDP and progress on stderr).

Prints exactly one JSON line on stdout, e.g.
  {"ok": true, "status": 201, "video_codec": "H264", "audio_codec": "opus",
   "video_frames": 75, "width": 320, "height": 240, "video_pts_monotonic": true,
   "audio_frames": 150, "audio_sample_rate": 48000, "first_video_ms": 412,
   "first_audio_ms": 398, "delete_status": 200, "error": null, ...more keys}
ok = signalling succeeded, at least one video frame decoded, video pts strictly increasing
(RTP timestamps, compared modulo 2^32), audio decoded if --expect-audio, no error.
Exit codes: 0 ok; 1 media/connection failure; 2 HTTP/signalling error (status and body
printed); 3 a non-loopback address appeared (URL, offer or answer); 4 bad usage.
"""

import asyncio
import sys
import time

from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

sys.dont_write_bytecode = True  # keep tests/webrtc free of __pycache__
import rtc_common as rc  # noqa: E402


def pts_after(pts, last):
    """True if RTP timestamp `pts` comes strictly after `last` (32-bit wrap aware)."""
    delta = (pts - last) % (1 << 32)
    return 0 < delta < (1 << 31)


class Counter:
    def __init__(self, kind, t0, first_media):
        self.kind = kind
        self.t0 = t0
        self.first_media = first_media
        self.frames = 0
        self.first_ms = None
        self.last_pts = None
        self.monotonic = True
        self.width = self.height = None
        self.sizes = set()
        self.keyframes = 0
        self.sample_rate = None
        self.channels = None
        self.stop = False

    async def consume(self, track):
        while not self.stop:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if self.stop:
                return
            if self.first_ms is None:
                self.first_ms = round((time.monotonic() - self.t0) * 1000)
                self.first_media.set()
            self.frames += 1
            if frame.pts is not None:
                if self.last_pts is not None and not pts_after(frame.pts, self.last_pts):
                    self.monotonic = False
                self.last_pts = frame.pts
            if self.kind == "video":
                self.width, self.height = frame.width, frame.height
                self.sizes.add((frame.width, frame.height))
                if getattr(frame, "key_frame", False):
                    self.keyframes += 1
            else:
                self.sample_rate = frame.sample_rate
                self.channels = len(frame.layout.channels)


async def run(args, result):
    t0 = time.monotonic()
    first_media = asyncio.Event()
    counters = {"video": Counter("video", t0, first_media), "audio": Counter("audio", t0, first_media)}
    tasks = []
    pc = rc.new_peer_connection(args.bundle_policy)

    @pc.on("track")
    def on_track(track):
        if args.verbose:
            rc.log(f"remote {track.kind} track")
        if track.kind in counters:
            tasks.append(asyncio.ensure_future(counters[track.kind].consume(track)))

    try:
        vt = pc.addTransceiver("video", direction="recvonly")
        rc.force_codec(vt, "video", "video/H264")
        at = pc.addTransceiver("audio", direction="recvonly")
        rc.force_codec(at, "audio", "audio/opus")

        offer = await rc.local_offer(pc, args.verbose)

        t0 = time.monotonic()  # first_*_ms count from the POST
        for c in counters.values():
            c.t0 = t0
        answer = await rc.remote_answer(args, "play", offer, result)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            remaining = args.timeout - (time.monotonic() - t0)
            await asyncio.wait_for(first_media.wait(), timeout=max(0.1, remaining))
        except asyncio.TimeoutError:
            result["error"] = (
                f"no media decoded within {args.timeout:.0f} s of the POST (ICE "
                f"{pc.iceConnectionState}, connection {pc.connectionState})"
            )
        except Exception as e:
            result["error"] = f"{type(e).__name__}: {e}"
        else:
            if args.verbose:
                rc.log(f"first media after {round((time.monotonic() - t0) * 1000)} ms")
            await rc.hold(pc, args.seconds, result, lambda state: state not in ("failed", "closed"), "playing")
    finally:
        for c in counters.values():
            c.stop = True
        v, a = counters["video"], counters["audio"]
        result.update(
            video_frames=v.frames, width=v.width, height=v.height,
            video_pts_monotonic=v.monotonic, audio_frames=a.frames,
            audio_sample_rate=a.sample_rate, first_video_ms=v.first_ms,
            first_audio_ms=a.first_ms, video_keyframes=v.keyframes,
            video_sizes=sorted([list(s) for s in v.sizes]), audio_channels=a.channels,
            audio_pts_monotonic=a.monotonic, connection_state=pc.connectionState,
        )
        # End the session as a WHEP client does (DELETE), then close the connection: closed
        # first, the server may end the session on the DTLS close before the DELETE arrives.
        if args.delete and args.api == "whip":
            await rc.delete_resource(args.url, result)
        await pc.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if not result["error"]:
        if v.frames == 0:
            result["error"] = "no video frame decoded"
        elif not v.monotonic:
            result["error"] = "video pts not strictly increasing"
        elif args.expect_audio and a.frames == 0:
            result["error"] = "no audio frame decoded"
    return rc.EXIT_MEDIA if result["error"] else rc.EXIT_OK


def main():
    p = rc.arg_parser(
        __doc__,
        url_help="WHEP URL, or the SRS /rtc/v1/play/ URL with --api srs",
        seconds_help="how long to play after the first frame",
        api_choices=["whip", "whep", "srs"], api_default="whep",
        api_help="whep (default; 'whip' is an alias) or srs",
        timeout_help="seconds from POST to first frame",
    )
    p.add_argument("--expect-audio", action="store_true", help="ok requires decoded audio too")
    p.add_argument("--delete", action="store_true", help="DELETE the Location at the end")
    args = p.parse_args()
    if args.api == "whep":
        args.api = "whip"  # same HTTP flow

    result = {
        "ok": False, "status": None, "location": None, "video_codec": None, "audio_codec": None,
        "video_frames": 0, "width": None, "height": None, "video_pts_monotonic": True,
        "audio_frames": 0, "audio_sample_rate": None, "first_video_ms": None,
        "first_audio_ms": None, "delete_status": None, "error": None,
    }
    return rc.run_main("whep_play", args, result, run)


if __name__ == "__main__":
    sys.exit(main())
