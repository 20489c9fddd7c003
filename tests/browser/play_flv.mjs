// Opens sluice's player page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) and waits until the <video> has really played: currentTime advanced by at
// least --seconds, bounded by --timeout. Prints one JSON line with the result and exits 0 when
// it played, 1 when it did not, 3 when playwright-core or Chromium is missing (a skip, unless
// the caller requires the browser).
//
//   node tests/browser/play_flv.mjs --url 'http://127.0.0.1:PORT/index.html?stream=live/NAME' \
//        [--seconds 3] [--timeout 30] [--screenshot out.png]
//
// playwright-core is looked up in $NODE_PATH (ES modules ignore NODE_PATH, so this script
// does it itself), then next to this script. ci/test installs it with `npm ci` into
// ci/.cache/node from tests/browser/package-lock.json. No browser is ever downloaded.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const CHROMIUM = process.env.SLUICE_CHROMIUM || '/usr/bin/chromium';
// The machine has no network: without these, Chromium keeps trying Google's services.
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function parseArgs(argv) {
  const opts = { url: null, seconds: 3, timeout: 30, screenshot: null };
  for (let i = 0; i < argv.length; i += 1) {
    const [key, value] = [argv[i], argv[i + 1]];
    switch (key) {
      case '--url': opts.url = value; i += 1; break;
      case '--seconds': opts.seconds = Number(value); i += 1; break;
      case '--timeout': opts.timeout = Number(value); i += 1; break;
      case '--screenshot': opts.screenshot = value; i += 1; break;
      default: throw new Error(`unknown argument ${key}`);
    }
  }
  if (!opts.url) throw new Error('--url is required');
  return opts;
}

function report(result, code) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(code);
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

const opts = parseArgs(process.argv.slice(2));
const started = Date.now();
const loaded = await loadPlaywright();
if (!loaded) {
  report({ ok: false, skip: 'playwright-core not found (NODE_PATH or tests/browser/node_modules)' }, 3);
}
if (!existsSync(CHROMIUM)) {
  report({ ok: false, skip: `no Chromium at ${CHROMIUM}` }, 3);
}
const { chromium } = loaded.module;

const profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
const consoleLines = [];
const failedRequests = [];
let context = null;

function finish(result, code) {
  rmSync(profile, { recursive: true, force: true });
  report(result, code);
}

// A hard stop on top of every wait below: whatever hangs, the script ends.
const watchdog = setTimeout(() => {
  finish({ ok: false, error: `watchdog: nothing finished within ${opts.timeout + 30} s`, console: consoleLines }, 1);
}, (opts.timeout + 30) * 1000);

async function play() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (message) => {
    if (consoleLines.length < 50) consoleLines.push(`${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => consoleLines.push(`pageerror: ${error.message}`));
  page.on('requestfailed', (request) => {
    // The page also asks the HTTP API on port 1985 for a stream list; that one may be absent.
    if (!request.url().includes(':1985/')) {
      failedRequests.push(`${request.url()}: ${request.failure()?.errorText}`);
    }
  });
  const response = await page.goto(opts.url, { waitUntil: 'load', timeout: 15_000 });
  const pageStatus = response ? response.status() : null;
  const deadline = started + opts.timeout * 1000;
  let state = null;
  let firstAdvance = null;
  let startTime = null;
  while (Date.now() < deadline) {
    state = await page.evaluate(() => {
      const video = document.querySelector('video');
      return {
        currentTime: video ? video.currentTime : null,
        readyState: video ? video.readyState : null,
        paused: video ? video.paused : null,
        videoWidth: video ? video.videoWidth : null,
        videoHeight: video ? video.videoHeight : null,
        buffered: video && video.buffered.length ? video.buffered.end(video.buffered.length - 1) : 0,
        error: video && video.error ? `${video.error.code} ${video.error.message}` : null,
        status: document.getElementById('status')?.textContent ?? null,
      };
    });
    if (state.currentTime > 0 && startTime === null) {
      startTime = state.currentTime;
      firstAdvance = Date.now() - started;
    }
    if (startTime !== null && state.currentTime - startTime >= opts.seconds) break;
    if (state.error) break;
    await page.waitForTimeout(250);
  }
  if (opts.screenshot) {
    await page.screenshot({ path: opts.screenshot });
  }
  const played = startTime !== null ? state.currentTime - startTime : 0;
  const ok = played >= opts.seconds && !state.error;
  return [{
    ok,
    url: opts.url,
    page_status: pageStatus,
    played_s: Number(played.toFixed(3)),
    first_frame_ms: firstAdvance,
    elapsed_ms: Date.now() - started,
    ...state,
    failed_requests: failedRequests,
    console: consoleLines,
    playwright: loaded.from,
  }, ok ? 0 : 1];
}

let outcome;
try {
  outcome = await play();
} catch (error) {
  outcome = [{ ok: false, error: String(error && error.stack ? error.stack : error), console: consoleLines }, 1];
}
if (context) await context.close().catch(() => {});
clearTimeout(watchdog);
finish(...outcome);
