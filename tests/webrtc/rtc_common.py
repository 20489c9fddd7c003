"""Shared helpers for the aiortc WebRTC test clients (whip_publish.py, whep_play.py).

Not a script: imported by the scripts beside it. It
  * confines aiortc/aioice to loopback: host candidates come only from 127.0.0.1 and no
    STUN/TURN server is ever used (aioice skips 127.0.0.1 by default, so without the patch
    it would gather every other interface's address);
  * checks offers/answers and URLs for any non-loopback address (exit code 3);
  * does the signalling: WHIP/WHEP (POST application/sdp -> 201 + Location, DELETE) and
    the SRS JSON API (POST {api, streamurl, sdp, clientip} -> {code, sdp, sessionid});
  * runs a script: its common options, the offer/answer exchange, the DELETE at the end, and
    main()'s mapping of errors to exit codes around the single JSON result line it prints.

Exit codes used by the scripts: 0 ok, 1 media/connection failure (ok=false),
2 HTTP/signalling error, 3 loopback rule broken, 4 bad usage.
"""

import argparse
import asyncio
import ipaddress
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcicetransport import RTCIceGatherer
from aiortc.sdp import SessionDescription

LOOPBACK = "127.0.0.1"
EXIT_OK, EXIT_MEDIA, EXIT_HTTP, EXIT_LOOPBACK, EXIT_USAGE = 0, 1, 2, 3, 4
HTTP_TIMEOUT = 10.0


class LoopbackViolation(Exception):
    pass


class UsageError(Exception):
    pass


class SignallingError(Exception):
    def __init__(self, status, body, message=None):
        super().__init__(message or f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def restrict_to_loopback():
    """Make aioice gather host candidates on 127.0.0.1 only, and never use STUN/TURN."""
    if not hasattr(aioice.ice, "get_host_addresses"):
        raise RuntimeError(
            "aioice.ice.get_host_addresses is missing: this aioice version is not the one "
            "tests/webrtc/requirements.txt pins, cannot confine ICE to loopback"
        )

    def loopback_only(use_ipv4=True, use_ipv6=True):
        return [LOOPBACK]

    aioice.ice.get_host_addresses = loopback_only
    # RTCConfiguration(iceServers=None) means Google's STUN server; we always pass [] too.
    RTCIceGatherer.getDefaultIceServers = classmethod(lambda cls: [])


def new_peer_connection(bundle_policy="max-bundle"):
    restrict_to_loopback()
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy(bundle_policy))
    )


def sdp_addresses(sdp):
    """Every address an SDP names in c= lines and a=candidate lines (raddr too)."""
    found = []
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("c="):
            parts = line[2:].split()
            if len(parts) >= 3:
                found.append(parts[2].split("/")[0])
        elif line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) >= 6:
                found.append(parts[4])
            if "raddr" in parts:
                found.append(parts[parts.index("raddr") + 1])
    return found


def check_sdp_loopback(sdp, what):
    """Raise LoopbackViolation unless the SDP's candidates are all 127.0.0.1 (and it has some
    for an offer). c= lines may also be 0.0.0.0 (no default address)."""
    addrs = sdp_addresses(sdp)
    candidates = [l for l in sdp.splitlines() if l.startswith("a=candidate:")]
    bad = [a for a in addrs if a not in (LOOPBACK, "0.0.0.0")]
    if bad:
        raise LoopbackViolation(
            f"{what} SDP names non-loopback address(es) {sorted(set(bad))}: refusing to run "
            "(tests must only use 127.0.0.1)"
        )
    if what == "offer" and not candidates:
        raise LoopbackViolation("offer SDP has no ICE candidate at all (gathering failed?)")


def check_url_loopback(url):
    host = urllib.parse.urlsplit(url).hostname
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except (TypeError, ValueError):
        pass
    raise LoopbackViolation(f"URL host {host!r} is not loopback: refusing to run")


async def wait_gathering_complete(pc, timeout=10.0):
    """setLocalDescription already gathers in aiortc; this is belt and braces."""
    deadline = time.monotonic() + timeout
    while pc.iceGatheringState != "complete":
        if time.monotonic() > deadline:
            raise TimeoutError("ICE gathering did not complete")
        await asyncio.sleep(0.02)


def force_codec(transceiver, kind, mime, rtx=False):
    """Keep only `mime` (e.g. video/H264) (plus rtx when asked) in the offer."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    prefs = [c for c in caps if c.mimeType.lower() == mime.lower()]
    if not prefs:
        raise RuntimeError(f"aiortc has no {mime} codec")
    if rtx:
        prefs += [c for c in caps if c.mimeType.lower() == f"{kind}/rtx"]
    transceiver.setCodecPreferences(prefs)


def negotiated_codecs(answer_sdp):
    """{'video': 'H264', 'audio': 'opus'} from the answer: first payload type of each
    accepted (port != 0) m-line."""
    out = {}
    try:
        desc = SessionDescription.parse(answer_sdp)
    except Exception:
        return out
    for media in desc.media:
        if media.port == 0 or not media.rtp.codecs:
            continue
        first = media.fmt[0] if media.fmt else None
        codec = next((c for c in media.rtp.codecs if c.payloadType == first), media.rtp.codecs[0])
        out.setdefault(media.kind, codec.mimeType.split("/", 1)[1])
    return out


# ---------------------------------------------------------------------------------------
# signalling


def _http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:  # refused, reset, timed out
        raise SignallingError(None, "", f"{method} {url} failed: {getattr(e, 'reason', e)}")


async def http(method, url, body=None, headers=None):
    return await asyncio.to_thread(_http, method, url, body, headers)


def srs_urls(url, streamurl, action):
    """(api_url, streamurl) for the SRS JSON flow, `action` being 'play' or 'publish'.

    --url may be the JSON endpoint itself (http://H:P/rtc/v1/play/) with --streamurl given,
    or a WHIP/WHEP URL (http://H:P/rtc/v1/whep/?app=A&stream=S) from which both are derived:
    api = http://H:P/rtc/v1/<action>/, streamurl = webrtc://H/A/S."""
    parts = urllib.parse.urlsplit(url)
    if streamurl:
        return url, streamurl
    q = urllib.parse.parse_qs(parts.query)
    app = q.get("app", [None])[0]
    stream = q.get("stream", [None])[0]
    if not app or not stream:
        raise UsageError(
            "--api srs needs either --streamurl webrtc://HOST/APP/STREAM or a --url with "
            "?app=APP&stream=STREAM"
        )
    api = urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/rtc/v1/{action}/", "", ""))
    return api, f"webrtc://{parts.hostname}/{app}/{stream}"


async def exchange(api, url, streamurl, action, offer_sdp, result):
    """Send the offer, return the answer SDP. Fills result['status'], ['location'] and, for
    SRS, ['sessionid']. Raises SignallingError on any HTTP/API error."""
    if api == "whip":
        status, headers, body = await http(
            "POST", url, offer_sdp.encode(), {"Content-Type": "application/sdp"}
        )
        result["status"] = status
        if status != 201:
            raise SignallingError(status, body)
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        location = next((v for k, v in headers.items() if k.lower() == "location"), None)
        result["location"] = location
        if not ctype.lower().startswith("application/sdp"):
            raise SignallingError(status, body, f"201 with Content-Type {ctype!r}, not application/sdp")
        if not location:
            raise SignallingError(status, body, "201 without a Location header")
        return body
    api_url, stream = srs_urls(url, streamurl, action)
    check_url_loopback(api_url)
    payload = {"api": api_url, "streamurl": stream, "sdp": offer_sdp, "clientip": None}
    status, _headers, body = await http(
        "POST", api_url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    result["status"] = status
    if status != 200:
        raise SignallingError(status, body)
    try:
        reply = json.loads(body)
    except ValueError:
        raise SignallingError(status, body, f"reply is not JSON: {body[:200]!r}")
    if reply.get("code") != 0:
        raise SignallingError(status, body, f"SRS API code {reply.get('code')}: {body[:500]}")
    result["sessionid"] = reply.get("sessionid")
    if not reply.get("sdp"):
        raise SignallingError(status, body, "SRS API reply has no sdp")
    return reply["sdp"]


async def delete(url, location):
    target = urllib.parse.urljoin(url, location)
    check_url_loopback(target)
    status, _h, _b = await http("DELETE", target)
    return status


async def wait_connected(pc, timeout):
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed"):
            raise ConnectionError(f"peer connection {pc.connectionState}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"not connected after {timeout:.0f} s (ICE {pc.iceConnectionState}, "
                f"connection {pc.connectionState})"
            )
        await asyncio.sleep(0.02)


def emit(result):
    print(json.dumps(result), flush=True)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def strip_ws(text, limit=500):
    return re.sub(r"\s+", " ", text or "").strip()[:limit]


# ---------------------------------------------------------------------------------------
# the scripts' common frame


def arg_parser(doc, url_help, seconds_help, api_choices, api_default, timeout_help, api_help=None):
    """The options both scripts take; each adds its own."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help=url_help)
    p.add_argument("--seconds", type=float, required=True, help=seconds_help)
    p.add_argument("--api", choices=api_choices, default=api_default, help=api_help)
    p.add_argument("--streamurl", help="webrtc://HOST/APP/STREAM for --api srs")
    p.add_argument("--timeout", type=float, default=15.0, help=timeout_help)
    p.add_argument("--bundle-policy", choices=["max-bundle", "balanced"], default="max-bundle")
    p.add_argument("--verbose", action="store_true")
    return p


async def local_offer(pc, verbose):
    """Creates and sets the offer, waits for ICE gathering; the complete offer SDP (checked
    for loopback)."""
    await pc.setLocalDescription(await pc.createOffer())
    await wait_gathering_complete(pc)
    offer = pc.localDescription.sdp
    if verbose:
        log("offer:\n" + offer)
    check_sdp_loopback(offer, "offer")
    return offer


async def remote_answer(args, action, offer, result):
    """Sends the offer (`action`: 'play' or 'publish' for the SRS API), checks the answer and
    fills result['video_codec'] and ['audio_codec']; the answer SDP. The caller sets it."""
    answer = await exchange(
        "srs" if args.api == "srs" else "whip", args.url, args.streamurl, action, offer, result
    )
    if args.verbose:
        log(f"answer (HTTP {result['status']}):\n" + answer)
    check_sdp_loopback(answer, "answer")
    codecs = negotiated_codecs(answer)
    result["video_codec"] = codecs.get("video")
    result["audio_codec"] = codecs.get("audio")
    return answer


async def hold(pc, seconds, result, still_ok, doing):
    """Lets `seconds` pass, ending early with result['error'] set when the connection's state
    is no longer `still_ok`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not still_ok(pc.connectionState):
            result["error"] = f"connection became {pc.connectionState} while {doing}"
            break
        await asyncio.sleep(min(0.1, max(0.0, end - time.monotonic())))


async def delete_resource(url, result):
    """DELETEs result['location'] (if any) into result['delete_status']; a failure becomes
    result['error'] unless there is one already."""
    if not result.get("location"):
        return
    try:
        result["delete_status"] = await delete(url, result["location"])
    except Exception as e:
        result["error"] = result["error"] or f"DELETE failed: {e}"


def run_main(prog, args, result, run, usage_error=None):
    """Runs `run(args, result)` (async, returns the exit code) and prints `result` with ok set;
    returns the exit code. Errors map to the exit codes in this module's docstring."""
    if usage_error is None and args.streamurl and args.api != "srs":
        usage_error = "--streamurl only goes with --api srs"
    if usage_error:
        result["error"] = usage_error
        emit(result)
        return EXIT_USAGE
    try:
        check_url_loopback(args.url)
        code = asyncio.run(run(args, result))
    except LoopbackViolation as e:
        print(f"{prog}: {e}", file=sys.stderr)
        result["error"] = str(e)
        code = EXIT_LOOPBACK
    except SignallingError as e:
        print(f"{prog}: {e}" if e.status is None else f"{prog}: HTTP {e.status}: {e.body}", file=sys.stderr)
        result["error"] = str(e)
        code = EXIT_HTTP
    except UsageError as e:
        result["error"] = str(e)
        code = EXIT_USAGE
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
        code = EXIT_MEDIA
    result["ok"] = code == EXIT_OK
    emit(result)
    return code
