// Opens sluice's player page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), once per --url, all pages at the same time in one browser, and watches each
// <video> until it has really played: its currentTime advanced by at least --seconds of media,
// with no stall (no stretch longer than --max-stall seconds of wall time, after playback
// started, in which currentTime did not move), bounded by --timeout.
//
//   node tests/browser/play.mjs --url 'http://127.0.0.1:PORT/index.html?stream=live/NAME&format=hls' \
//        [--url ...] [--seconds 5] [--max-stall 1.5] [--timeout 30] [--screenshot-dir DIR]
//
// Output, one JSON object a line on stdout:
//   {"ready":true,...}            once every page has loaded (its player may still be waiting for
//                                 the stream: the page polls until the playlist is there), so a
//                                 caller can start the publisher then and time publish -> play;
//   {"ok":...,"players":[...]}    at the end, one entry per --url (see `result` below).
// Exit status: 0 when every page played, 1 when one did not, 3 when playwright-core or Chromium
// is missing (a skip, unless the caller requires the browser).
//
// Times named *_epoch_ms are Date.now() in the page (the machine's clock), so a caller on the
// same machine can subtract its own timestamps (e.g. when it started the publisher).
//
// Chromium, its flags, playwright-core and the output conventions: chromium.mjs.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  emit, launchOptions, parseFlags, recordPageLog, runBrowserScript, FRAME_LUMA_SCRIPT,
} from './chromium.mjs';

const SAMPLE_MS = 250;

function parseArgs(argv) {
  const opts = { urls: [], seconds: 5, maxStall: 1.5, timeout: 30, screenshotDir: null };
  parseFlags(argv, {
    '--url': (value) => { opts.urls.push(value); },
    '--seconds': (value) => { opts.seconds = Number(value); },
    '--max-stall': (value) => { opts.maxStall = Number(value); },
    '--timeout': (value) => { opts.timeout = Number(value); },
    '--screenshot-dir': (value) => { opts.screenshotDir = value; },
  });
  if (opts.urls.length === 0) throw new Error('--url is required');
  return opts;
}

// Runs inside each page from its start: samples the <video> every SAMPLE_MS and keeps the
// running account that `result` reports. window.sluice is the player page's own state (format,
// errors, latency()).
function installProbe({ maxStallMs, sampleMs }) {
  const probe = {
    navigationStart: Math.round(performance.timeOrigin),
    hooked: false,
    playingAt: null,
    firstFrameAt: null,
    waitingEvents: 0,
    startedAt: null,
    startTime: null,
    lastTime: null,
    lastWall: null,
    lastAdvanceWall: null,
    advanced: 0,
    jumps: [],
    stalls: [],
    maxGapMs: 0,
    latencies: [],
    samples: 0,
  };
  window.__probe = probe;
  const hook = (video) => {
    probe.hooked = true;
    video.addEventListener('playing', () => {
      if (probe.playingAt === null) probe.playingAt = Date.now();
    });
    video.addEventListener('waiting', () => { probe.waitingEvents += 1; });
    if (video.requestVideoFrameCallback) {
      video.requestVideoFrameCallback(() => { probe.firstFrameAt = Date.now(); });
    }
  };
  const tick = () => {
    const video = document.querySelector('video');
    if (!video) return;
    if (!probe.hooked) hook(video);
    probe.samples += 1;
    const now = Date.now();
    const t = video.currentTime;
    if (probe.startedAt === null) {
      // Playback has started once currentTime moves after the first 'playing' event (the
      // player's initial seek to the live edge happens before it).
      if (probe.playingAt !== null && probe.lastTime !== null && t > probe.lastTime && !video.paused) {
        probe.startedAt = now;
        probe.startTime = probe.lastTime;
        probe.lastAdvanceWall = now;
        probe.advanced = t - probe.lastTime;
      }
    } else {
      const delta = t - probe.lastTime;
      const wall = (now - probe.lastWall) / 1000;
      if (delta > 0) {
        // A move much faster than real time is a seek (live catch-up), not media played.
        if (delta <= wall * 2.5 + 0.1) {
          probe.advanced += delta;
        } else {
          probe.jumps.push({ at_s: (now - probe.startedAt) / 1000, by_s: delta });
        }
        probe.lastAdvanceWall = now;
      } else {
        if (delta < 0) probe.jumps.push({ at_s: (now - probe.startedAt) / 1000, by_s: delta });
        const gap = now - probe.lastAdvanceWall;
        probe.maxGapMs = Math.max(probe.maxGapMs, gap);
        if (gap > maxStallMs) {
          const at = (probe.lastAdvanceWall - probe.startedAt) / 1000;
          const last = probe.stalls[probe.stalls.length - 1];
          if (last && last.at_s === at) last.duration_s = gap / 1000;
          else probe.stalls.push({ at_s: at, duration_s: gap / 1000 });
        }
      }
      const latency = window.sluice && window.sluice.latency ? window.sluice.latency() : null;
      if (typeof latency === 'number' && Number.isFinite(latency)) probe.latencies.push(latency);
    }
    probe.lastTime = t;
    probe.lastWall = now;
  };
  setInterval(tick, sampleMs);
  probe.summary = () => {
    const video = document.querySelector('video');
    const lat = probe.latencies;
    const round = (x, n = 3) => (x === null || x === undefined ? null : Number(x.toFixed(n)));
    const sluice = window.sluice || {};
    return {
      format: sluice.format ?? null,
      stream_url: sluice.url ?? null,
      visibility: document.visibilityState,
      status: document.getElementById('status')?.textContent ?? null,
      page_errors: sluice.errors ? [...sluice.errors] : [],
      currentTime: video ? round(video.currentTime) : null,
      readyState: video ? video.readyState : null,
      paused: video ? video.paused : null,
      videoWidth: video ? video.videoWidth : null,
      videoHeight: video ? video.videoHeight : null,
      video_error: video && video.error ? `${video.error.code} ${video.error.message}` : null,
      frame: window.__frameLuma(video),
      buffered_ahead_s: video && video.buffered.length
        ? round(video.buffered.end(video.buffered.length - 1) - video.currentTime) : null,
      started: probe.startedAt !== null,
      played_s: round(probe.advanced),
      stalls: probe.stalls.map((s) => ({ at_s: round(s.at_s), duration_s: round(s.duration_s) })),
      max_gap_s: round(probe.maxGapMs / 1000),
      jumps: probe.jumps.map((j) => ({ at_s: round(j.at_s), by_s: round(j.by_s) })),
      waiting_events: probe.waitingEvents,
      navigation_epoch_ms: probe.navigationStart,
      playing_epoch_ms: probe.playingAt,
      first_frame_epoch_ms: probe.firstFrameAt,
      ttff_ms: probe.firstFrameAt !== null ? probe.firstFrameAt - probe.navigationStart : null,
      time_to_playing_ms: probe.playingAt !== null ? probe.playingAt - probe.navigationStart : null,
      latency_s: lat.length ? round(lat[lat.length - 1]) : null,
      latency_min_s: lat.length ? round(Math.min(...lat)) : null,
      latency_max_s: lat.length ? round(Math.max(...lat)) : null,
      latency_mean_s: lat.length ? round(lat.reduce((a, b) => a + b, 0) / lat.length) : null,
      samples: probe.samples,
    };
  };
}

// What kind of resource a request is, for the per-page counts.
function kindOf(url) {
  const path = new URL(url).pathname;
  if (/\.m3u8$/.test(path)) return new URL(url).search.includes('_HLS_msn') ? 'playlist_blocking' : 'playlist';
  if (/\.mpd$/.test(path)) return 'mpd';
  if (/-\d+\.\d+\.m4s$/.test(path)) return 'part';
  if (/\.ts$/.test(path)) return 'segment_ts';
  if (/\.m4s$/.test(path)) return 'segment_m4s';
  if (/init\.mp4$/.test(path)) return 'init';
  if (/\.flv$/.test(path)) return 'flv';
  return 'other';
}

async function watch(context, url, index, opts, deadline) {
  const page = await context.newPage();
  const log = { console: [], uncaught: [], failed_requests: [] };
  const abortedRequests = [];
  const badResponses = [];
  const requests = {};
  page.on('request', (request) => {
    const kind = kindOf(request.url());
    requests[kind] = (requests[kind] || 0) + 1;
  });
  recordPageLog(page, log, (request) => {
    // The page also asks the HTTP API on port 1985 for a stream list; that one may be absent.
    if (request.url().includes(':1985/')) return;
    const text = `${request.url()}: ${request.failure()?.errorText}`;
    // Players cancel requests they no longer need (LL-HLS preload hints, ABR): not a failure.
    if (request.failure()?.errorText === 'net::ERR_ABORTED') {
      if (abortedRequests.length < 20) abortedRequests.push(text);
    } else {
      log.failed_requests.push(text);
    }
  });
  page.on('response', (response) => {
    const ignored = response.url().includes(':1985/') || response.url().endsWith('/favicon.ico');
    if (response.status() >= 400 && !ignored && badResponses.length < 20) {
      badResponses.push({ url: response.url(), status: response.status(), epoch_ms: Date.now() });
    }
  });
  await page.addInitScript(FRAME_LUMA_SCRIPT);
  await page.addInitScript(installProbe, { maxStallMs: opts.maxStall * 1000, sampleMs: SAMPLE_MS });
  const response = await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
  const pageStatus = response ? response.status() : null;
  return {
    page,
    finish: async () => {
      let summary = null;
      while (Date.now() < deadline) {
        summary = await page.evaluate(() => window.__probe.summary());
        if (summary.played_s >= opts.seconds) break;
        if (summary.stalls.length > 0 || summary.video_error || summary.page_errors.length > 0) break;
        await page.waitForTimeout(SAMPLE_MS);
      }
      summary = await page.evaluate(() => window.__probe.summary());
      if (opts.screenshotDir) {
        await page.screenshot({ path: join(opts.screenshotDir, `page-${index}.png`) }).catch(() => {});
      }
      const ok = summary.played_s >= opts.seconds && summary.stalls.length === 0
        && !summary.video_error && summary.page_errors.length === 0;
      // Requests that failed after playback started are worth a look; before it, the page
      // polls for a playlist that is not there yet (404).
      const badAfterPlaying = badResponses.filter(
        (r) => summary.playing_epoch_ms !== null && r.epoch_ms >= summary.playing_epoch_ms,
      );
      return {
        ok,
        url,
        page_status: pageStatus,
        ...summary,
        requests,
        failed_requests: log.failed_requests,
        aborted_requests: abortedRequests,
        bad_responses: badResponses,
        bad_responses_after_playing: badAfterPlaying,
        uncaught: log.uncaught,
        console: log.console,
      };
    },
  };
}

const opts = parseArgs(process.argv.slice(2));
let profile = null;

async function run({ chromium, playwrightFrom, started, onCleanup }) {
  profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
  const context = await chromium.launchPersistentContext(profile, launchOptions());
  onCleanup(() => context.close());
  const blank = context.pages()[0];
  const deadline = started + opts.timeout * 1000;
  const watched = await Promise.all(opts.urls.map((url, i) => watch(context, url, i, opts, deadline)));
  if (blank) await blank.close().catch(() => {});
  emit({ ready: true, elapsed_ms: Date.now() - started, epoch_ms: Date.now() });
  const players = await Promise.all(watched.map((w) => w.finish()));
  const ok = players.every((p) => p.ok);
  return [{ ok, elapsed_ms: Date.now() - started, players, playwright: playwrightFrom }, ok ? 0 : 1];
}

await runBrowserScript({ timeoutS: opts.timeout, onExit: () => profile && rmSync(profile, { recursive: true, force: true }) }, run);
