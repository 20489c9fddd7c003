// What the browser-test scripts (play.mjs, webrtc.mjs) share: the Chromium they drive and its
// flags, finding playwright-core, the JSON-lines output and the run's frame (skip with exit 3
// when tools are missing, a watchdog, one final result line). Not a script: imported by them.
//
// The conventions tests/common/browser.rs relies on: one JSON object a line on stdout, the last
// one with an "ok" key is the result; exit 0 when it is ok, 1 when not, 3 (with
// {"ok":false,"skip":...}) when playwright-core or Chromium is missing.
//
// playwright-core is looked up in $NODE_PATH (ES modules ignore NODE_PATH, so this does it
// itself), then in tests/browser/node_modules. ci/test installs it with `npm ci` into
// ci/.cache/node from tests/browser/package-lock.json. No browser is ever downloaded.

import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const CHROMIUM = process.env.SLUICE_CHROMIUM || '/usr/bin/chromium';

// The machine has no network: without these, Chromium keeps trying Google's services. Pages
// play muted, and must not be throttled for being in the background.
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-background-timer-throttling',
  '--disable-backgrounding-occluded-windows',
  '--disable-renderer-backgrounding',
  '--disable-background-media-suspend',
];

// Options for chromium.launch() / launchPersistentContext(), with `extraArgs` after the common
// flags.
export function launchOptions(extraArgs = []) {
  return {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: 30_000,
  };
}

// Parses `argv` as `--key value` pairs: `handlers[key](value)` for each; any other key throws.
export function parseFlags(argv, handlers) {
  for (let i = 0; i < argv.length; i += 1) {
    const [key, value] = [argv[i], argv[i + 1]];
    const handle = Object.hasOwn(handlers, key) ? handlers[key] : null;
    if (!handle) throw new Error(`unknown argument ${key}`);
    handle(value);
    i += 1;
  }
}

export function emit(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

async function loadPlaywright() {
  const here = dirname(fileURLToPath(import.meta.url));
  const dirs = (process.env.NODE_PATH || '').split(':').filter(Boolean);
  dirs.push(join(here, 'node_modules'));
  for (const dir of dirs) {
    const entry = join(dir, 'playwright-core', 'index.mjs');
    if (existsSync(entry)) {
      return { module: await import(pathToFileURL(entry).href), from: entry };
    }
  }
  return null;
}

// Runs a browser script: loads playwright-core (or emits the skip and exits 3), arms a watchdog
// of `timeoutS` + 30 s, then `body({ chromium, playwrightFrom, started })`, which returns
// [result, exitCode] and may register cleanups (async, run in order once it ends) with
// `onCleanup(fn)`; `onExit()` runs last of all, before the result line, even on the watchdog.
// Emits the result (or {"ok":false,"error":...} when body throws) and exits.
export async function runBrowserScript({ timeoutS, onExit = () => {} }, body) {
  const started = Date.now();
  const loaded = await loadPlaywright();
  if (!loaded) {
    emit({ ok: false, skip: 'playwright-core not found (NODE_PATH or tests/browser/node_modules)' });
    process.exit(3);
  }
  if (!existsSync(CHROMIUM)) {
    emit({ ok: false, skip: `no Chromium at ${CHROMIUM}` });
    process.exit(3);
  }
  const { chromium } = loaded.module;
  const cleanups = [];

  function finish(result, code) {
    onExit();
    emit(result);
    process.exit(code);
  }

  // A hard stop on top of every wait: whatever hangs, the script ends.
  const watchdog = setTimeout(() => {
    finish({ ok: false, error: `watchdog: nothing finished within ${timeoutS + 30} s` }, 1);
  }, (timeoutS + 30) * 1000);

  let outcome;
  try {
    outcome = await body({ chromium, playwrightFrom: loaded.from, started, onCleanup: (fn) => cleanups.push(fn) });
  } catch (error) {
    outcome = [{ ok: false, error: String(error && error.stack ? error.stack : error) }, 1];
  }
  for (const cleanup of cleanups) await Promise.resolve().then(cleanup).catch(() => {});
  clearTimeout(watchdog);
  finish(...outcome);
}

// The current frame of `video` drawn on a canvas: its mean brightness and how much it varies
// (a black or flat frame is not a picture); null before the video has a size. Runs inside the
// page (addInitScript / evaluate serialise it): self-contained.
export function frameLuma(video) {
  if (!video || !video.videoWidth) return null;
  try {
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0);
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let sum = 0;
    let sumSq = 0;
    const n = data.length / 4;
    for (let i = 0; i < data.length; i += 4) {
      const y = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      sum += y;
      sumSq += y * y;
    }
    const mean = sum / n;
    return { mean: Math.round(mean), stddev: Math.round(Math.sqrt(Math.max(0, sumSq / n - mean * mean))) };
  } catch (e) {
    return { error: String(e) };
  }
}

// An init script that defines window.__frameLuma (frameLuma above) in every page.
export const FRAME_LUMA_SCRIPT = { content: `window.__frameLuma = ${frameLuma.toString()};` };

// Records a page's console lines, uncaught errors and (unless `onRequestFailed` is given, which
// then decides) failed requests into `log` ({console, uncaught, failed_requests}).
export function recordPageLog(page, log, onRequestFailed = null) {
  page.on('console', (m) => {
    if (log.console.length < 40 && m.type() !== 'debug') log.console.push(`${m.type()}: ${m.text()}`.slice(0, 400));
  });
  page.on('pageerror', (e) => log.uncaught.push(String(e.stack || e.message).split('\n').slice(0, 4).join(' | ').slice(0, 600)));
  page.on('requestfailed', onRequestFailed || ((r) => log.failed_requests.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`)));
}
