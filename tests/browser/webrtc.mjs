// WebRTC in headless Chromium against sluice's own pages: html/whip.html publishes Chromium's
// fake camera and microphone (--use-fake-device-for-media-stream), then html/whep.html plays the
// stream back, once per --play URL, all in one browser; each player's <video> must render at
// least --frames frames (counted with requestVideoFrameCallback) and show a picture. Then every
// page stops (the players first), which DELETEs its WHIP/WHEP resource.
//
//   node tests/browser/webrtc.mjs --publish 'http://127.0.0.1:PORT/whip.html?api=...&stream=NAME&autostart=1' \
//        --play 'http://127.0.0.1:PORT/whep.html?api=...&stream=NAME&autostart=1' [--play ...] \
//        [--frames 60] [--timeout 30] [--screenshot-dir DIR]
//
// Output, one JSON object a line on stdout:
//   {"published":true,...}      once the publisher's connection is up and it has sent video (or
//                               {"published":false,...} when it did not get there; the script
//                               still goes on to its final line), so a caller can look at the
//                               server meanwhile: the publisher keeps publishing until the end;
//   {"ok":...,"publisher":{...},"players":[...]}   at the end.
// Exit status: 0 when the publisher connected and every player played, 1 otherwise, 3 when
// playwright-core or Chromium is missing (a skip, unless the caller requires the browser).
//
// Chromium gathers host candidates from every interface it sees; --allow-loopback-in-peer-connection
// lets it use the loopback one too. The Rust side runs this in a network namespace that has only
// `lo`, so loopback is all there is.
//
// Chromium, its common flags, playwright-core and the output conventions: chromium.mjs.

import { join } from 'node:path';
import {
  emit, launchOptions, parseFlags, recordPageLog, runBrowserScript, FRAME_LUMA_SCRIPT,
} from './chromium.mjs';

const EXTRA_CHROMIUM_ARGS = [
  // A fake camera (a moving test pattern) and microphone (a beep), granted without asking.
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];
const POLL_MS = 200;

function parseArgs(argv) {
  const opts = { publish: null, plays: [], frames: 60, timeout: 30, screenshotDir: null };
  parseFlags(argv, {
    '--publish': (value) => { opts.publish = value; },
    '--play': (value) => { opts.plays.push(value); },
    '--frames': (value) => { opts.frames = Number(value); },
    '--timeout': (value) => { opts.timeout = Number(value); },
    '--screenshot-dir': (value) => { opts.screenshotDir = value; },
  });
  if (!opts.publish) throw new Error('--publish is required');
  return opts;
}

// Runs in every page from its start: counts the frames the page's <video> presents.
function installProbe() {
  const probe = { frames: 0, firstFrameAt: null, lastFrameAt: null, maxGapMs: 0, mediaTime: null, hooked: false };
  window.__probe = probe;
  const hook = () => {
    const video = document.querySelector('video');
    if (!video || !video.requestVideoFrameCallback) return;
    probe.hooked = true;
    clearInterval(timer);
    const onFrame = (now, meta) => {
      const t = Date.now();
      if (probe.firstFrameAt === null) probe.firstFrameAt = t;
      else probe.maxGapMs = Math.max(probe.maxGapMs, t - probe.lastFrameAt);
      probe.lastFrameAt = t;
      probe.frames += 1;
      probe.mediaTime = meta.mediaTime;
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  };
  const timer = setInterval(hook, 50);
}

// What the page shows and knows, from inside it.
async function pageSummary(page) {
  return page.evaluate(async () => {
    const video = document.querySelector('video');
    const state = window.sluiceState || {};
    const frame = window.__frameLuma(video);
    const quality = video && video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const probe = window.__probe || {};
    let stats = null;
    try {
      stats = window.sluiceStats ? await window.sluiceStats() : null;
    } catch (e) {
      stats = { error: String(e) };
    }
    return {
      state: state.state ?? null,
      error: state.error ?? null,
      errors: state.errors ? [...state.errors] : [],
      warnings: state.warnings ? [...state.warnings] : [],
      status_text: document.getElementById('status')?.textContent ?? null,
      visibility: document.visibilityState,
      endpoint: state.endpoint ?? null,
      http_status: state.status ?? null,
      attempts: state.attempts ?? null,
      location: state.location ?? null,
      ice_connection_state: state.iceConnectionState ?? null,
      connection_state: state.connectionState ?? null,
      tracks: state.tracks ?? null,
      connect_ms: state.connectedAt && state.startedAt ? state.connectedAt - state.startedAt : null,
      frames: probe.frames ?? 0,
      first_frame_ms: probe.firstFrameAt && state.startedAt ? probe.firstFrameAt - state.startedAt : null,
      max_frame_gap_ms: probe.maxGapMs ?? null,
      total_video_frames: quality ? quality.totalVideoFrames : null,
      dropped_video_frames: quality ? quality.droppedVideoFrames : null,
      videoWidth: video ? video.videoWidth : null,
      videoHeight: video ? video.videoHeight : null,
      currentTime: video ? Number(video.currentTime.toFixed(3)) : null,
      paused: video ? video.paused : null,
      readyState: video ? video.readyState : null,
      frame,
      stats,
      offer: state.offer ?? null,
      answer: state.answer ?? null,
    };
  });
}

// Each page in a context (a window) of its own: requestVideoFrameCallback fires only in the
// front tab of a window, so pages sharing one would stop counting frames.
async function openPage(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const log = { console: [], uncaught: [], failed_requests: [] };
  recordPageLog(page, log);
  await page.addInitScript(FRAME_LUMA_SCRIPT);
  await page.addInitScript(installProbe);
  const response = await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
  return { page, url, log, page_status: response ? response.status() : null };
}

const opts = parseArgs(process.argv.slice(2));

async function run({ chromium, playwrightFrom, started, onCleanup }) {
  const deadline = started + opts.timeout * 1000;
  const browser = await chromium.launch(launchOptions(EXTRA_CHROMIUM_ARGS));
  onCleanup(() => browser.close());

  // The publisher: connected, and its encoder has sent video.
  const pub = await openPage(browser, opts.publish);
  let ps = null;
  while (Date.now() < deadline) {
    ps = await pageSummary(pub.page);
    const sent = ps.stats && ps.stats.video && ps.stats.video.packetsSent > 0;
    if ((ps.state === 'connected' && sent) || ['error', 'failed'].includes(ps.state) || pub.log.uncaught.length) break;
    await pub.page.waitForTimeout(POLL_MS);
  }
  const published = ps.state === 'connected';
  emit({ published, state: ps.state, error: ps.error, connect_ms: ps.connect_ms, elapsed_ms: Date.now() - started, epoch_ms: Date.now() });

  // The players, all at once.
  const players = published ? await Promise.all(opts.plays.map((url) => openPage(browser, url))) : [];
  const results = players.map(() => null);
  while (players.length && Date.now() < deadline) {
    let pending = 0;
    for (let i = 0; i < players.length; i += 1) {
      const s = await pageSummary(players[i].page);
      results[i] = s;
      const finished = (s.frames >= opts.frames && s.videoWidth > 0) || ['error', 'failed'].includes(s.state)
        || players[i].log.uncaught.length > 0;
      if (!finished) pending += 1;
    }
    if (pending === 0) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }

  // Last looks, screenshots, then stop: players first (their DELETE), then the publisher.
  const out = [];
  for (let i = 0; i < players.length; i += 1) {
    const p = players[i];
    const s = await pageSummary(p.page);
    if (opts.screenshotDir) await p.page.screenshot({ path: join(opts.screenshotDir, `whep-${i}.png`) }).catch(() => {});
    await p.page.evaluate(() => window.sluiceStop && window.sluiceStop()).catch(() => {});
    const after = await p.page.evaluate(() => ({ state: window.sluiceState.state, delete_status: window.sluiceState.deleteStatus }));
    const ok = s.frames >= opts.frames && s.videoWidth > 0 && !s.error && p.log.uncaught.length === 0;
    out.push({ ok, url: p.url, page_status: p.page_status, ...s, after_stop: after, ...p.log });
  }
  ps = await pageSummary(pub.page);
  if (opts.screenshotDir) await pub.page.screenshot({ path: join(opts.screenshotDir, 'whip.png') }).catch(() => {});
  await pub.page.evaluate(() => window.sluiceStop && window.sluiceStop()).catch(() => {});
  const pubAfter = await pub.page.evaluate(() => ({ state: window.sluiceState.state, delete_status: window.sluiceState.deleteStatus }));
  const publisher = {
    ok: published && !ps.error && pub.log.uncaught.length === 0,
    url: pub.url, page_status: pub.page_status, ...ps, after_stop: pubAfter, ...pub.log,
  };
  const ok = publisher.ok && out.length === opts.plays.length && out.every((p) => p.ok);
  return [{ ok, elapsed_ms: Date.now() - started, frames_wanted: opts.frames, publisher, players: out, chromium: browser.version(), playwright: playwrightFrom }, ok ? 0 : 1];
}

await runBrowserScript({ timeoutS: opts.timeout }, run);
