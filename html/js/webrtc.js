// The WebRTC client shared by whip.html (publish) and whep.html (play): the form fields, the
// status line, non-trickle signalling (one POST of the complete offer, the answer and the
// resource's Location back; DELETE on the Location when stopping or leaving the page), the
// state the tests read and the getStats() summary. Plain script, no build step: a page loads it
// with <script src="js/webrtc.js"></script> and calls sluiceWebRtcPage({...}) once.
//
// The page must have #form, #api, #app, #stream, #start, #stop, #video and #status. Query
// parameters every page takes:
//   ?api=http://HOST:1985  the HTTP API base; default: this page's host, port 1985;
//   &app=live&stream=livestream  the stream (defaults as shown);
//   &autostart=1           start at once;
//   &retry=SECONDS         keep retrying a refused or failed POST of the offer for so long.
// For tests: window.sluiceState is the state ({state, error, location, ...}; state is one of
// idle, starting, connecting, connected, disconnected, failed, stopped, error), window.pc the
// RTCPeerConnection, window.sluiceStats() a summary of getStats(), window.sluiceStart() and
// window.sluiceStop().
(function () {
  'use strict';

  // H.264 first (packetization-mode=1, constrained baseline before other profiles), then the
  // rest in the browser's order, so the server can pick H.264 and anything else still works.
  function h264First(codecs) {
    const rank = (c) => {
      if (c.mimeType.toLowerCase() !== 'video/h264') return 9;
      const fmtp = (c.sdpFmtpLine || '').toLowerCase();
      const pm1 = fmtp.includes('packetization-mode=1');
      const cb = fmtp.includes('profile-level-id=42e0');
      return (pm1 ? 0 : 4) + (cb ? 0 : fmtp.includes('profile-level-id=4200') ? 1 : 2);
    };
    return codecs.map((c, i) => [rank(c), i, c]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) => x[2]);
  }

  // Sets H.264-first codec preferences on a video transceiver from the capabilities of the first
  // of `sources` (RTCRtpSender, RTCRtpReceiver) that the browser accepts: browsers differ on
  // whether a send-only transceiver's preferences come from the sender's or the receiver's.
  function preferH264(transceiver, sources, warnings) {
    if (!transceiver.setCodecPreferences) return;
    for (const source of sources) {
      const caps = source.getCapabilities && source.getCapabilities('video');
      if (!caps) continue;
      try {
        transceiver.setCodecPreferences(h264First(caps.codecs));
        return;
      } catch (e) {
        warnings.push(`setCodecPreferences: ${e.message || e}`);
      }
    }
  }

  function waitGathering(pc, ms) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === 'complete') {
          pc.removeEventListener('icegatheringstatechange', done);
          resolve();
        }
      };
      pc.addEventListener('icegatheringstatechange', done);
      setTimeout(resolve, ms);
    });
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Sets up the page and returns its context ({params, $, video, state, setState, fail,
  // preferH264, start, stop}). `opts`:
  //   protocol        'WHIP' or 'WHEP', for messages;
  //   path            the endpoint under the API base, e.g. 'rtc/v1/whip/';
  //   link            { id, href(query) }: a link to the other page, kept in step with the form;
  //   fresh()         the page's own state fields, as they are before each start;
  //   connectedText(endpoint)  the status text once connected;
  //   beforeConnect(page)      optional, async: before the peer connection is made (a stale
  //                   start, one that stop() overtook, goes no further);
  //   addMedia(pc, page)       adds the transceivers (and any track handling) to a new connection;
  //   detach(page)    optional: called as stop() begins; may return a function to call once
  //                   the peer connection is closed (to release what the page holds);
  //   rtpStats        { type: 'inbound-rtp' or 'outbound-rtp', fields(stat) }: what sluiceStats()
  //                   reports per kind, after the codec.
  window.sluiceWebRtcPage = function sluiceWebRtcPage(opts) {
    const params = new URLSearchParams(location.search);
    const $ = (id) => document.getElementById(id);
    const video = $('video');
    const statusLine = $('status');
    const defaultApi = `${location.protocol === 'https:' ? 'https:' : 'http:'}//${location.hostname || '127.0.0.1'}:1985`;
    $('api').value = params.get('api') || defaultApi;
    $('app').value = params.get('app') || 'live';
    $('stream').value = params.get('stream') || 'livestream';

    const fresh = opts.fresh || (() => ({}));
    const state = Object.assign({
      state: 'idle', error: null, errors: [], warnings: [], endpoint: null, location: null, status: null,
      iceConnectionState: null, connectionState: null, offer: null, answer: null,
      attempts: 0, startedAt: null, connectedAt: null, deleteStatus: null,
    }, fresh());
    window.sluiceState = state;
    window.pc = null;
    let generation = 0;

    function setState(next, text) {
      state.state = next;
      statusLine.textContent = text ? `${next}: ${text}` : next;
    }

    function fail(text) {
      state.error = text;
      state.errors.push(text);
      setState('error', text);
    }

    function updateLink() {
      const q = new URLSearchParams({ api: $('api').value, app: $('app').value, stream: $('stream').value });
      $(opts.link.id).href = opts.link.href(q);
    }
    updateLink();
    ['api', 'app', 'stream'].forEach((id) => $(id).addEventListener('input', updateLink));

    // POSTs the offer; retries for `retry` seconds on a refusal or a network error.
    async function postOffer(endpoint, sdp, mine) {
      const retryMs = Number(params.get('retry') || 0) * 1000;
      const until = Date.now() + retryMs;
      for (;;) {
        state.attempts += 1;
        let why;
        try {
          const response = await fetch(endpoint, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: sdp });
          state.status = response.status;
          if (response.status === 201 || response.ok) return response;
          why = `${response.status} ${response.statusText}: ${(await response.text()).slice(0, 300)}`;
        } catch (e) {
          why = `${opts.protocol} request failed: ${e.message || e} (is the API reachable, with CORS?)`;
        }
        if (mine !== generation) return null;
        if (Date.now() + 1000 > until) throw new Error(why);
        setState('starting', `${why}; retrying`);
        await sleep(1000);
        if (mine !== generation) return null;
      }
    }

    const page = {
      params, $, video, state, setState, fail,
      preferH264: (transceiver, sources) => preferH264(transceiver, sources, state.warnings),
    };

    async function start() {
      await stop();
      const mine = ++generation;
      state.error = null;
      state.location = null;
      state.deleteStatus = null;
      Object.assign(state, fresh());
      state.startedAt = Date.now();
      state.connectedAt = null;
      const api = $('api').value.replace(/\/+$/, '');
      const endpoint = `${api}/${opts.path}?${new URLSearchParams({ app: $('app').value, stream: $('stream').value })}`;
      state.endpoint = endpoint;
      $('start').disabled = true;
      $('stop').disabled = false;
      try {
        if (opts.beforeConnect) {
          await opts.beforeConnect(page);
          if (mine !== generation) return;
        }
        const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
        window.pc = pc;
        pc.addEventListener('iceconnectionstatechange', () => { state.iceConnectionState = pc.iceConnectionState; });
        pc.addEventListener('connectionstatechange', () => {
          state.connectionState = pc.connectionState;
          if (mine !== generation) return;
          if (pc.connectionState === 'connected') {
            if (state.connectedAt === null) state.connectedAt = Date.now();
            setState('connected', opts.connectedText(endpoint));
          } else if (pc.connectionState === 'failed') {
            fail('the connection failed (ICE or DTLS)');
            state.state = 'failed';
          } else if (pc.connectionState === 'disconnected') {
            setState('disconnected');
          }
        });
        opts.addMedia(pc, page);
        await pc.setLocalDescription(await pc.createOffer());
        setState('starting', 'gathering candidates');
        await waitGathering(pc, 2000);
        if (mine !== generation) return;
        state.offer = pc.localDescription.sdp;
        setState('starting', `sending the offer to ${endpoint}`);
        const response = await postOffer(endpoint, state.offer, mine);
        if (!response || mine !== generation) return;
        const loc = response.headers.get('Location');
        state.location = loc ? new URL(loc, endpoint).href : null;
        state.answer = await response.text();
        if (mine !== generation) return;
        setState('connecting', 'answer received');
        await pc.setRemoteDescription({ type: 'answer', sdp: state.answer });
      } catch (e) {
        if (mine === generation) fail(String(e && e.message ? e.message : e));
      }
    }

    // Ends the session: DELETE on the resource the server named, awaited before the peer
    // connection closes (so the server ends the session on the DELETE, not on the connection
    // going away under it), then closes everything. On unload the DELETE goes with keepalive.
    async function stop(unloading = false) {
      generation += 1;
      const pc = window.pc;
      window.pc = null;
      const resource = state.location;
      state.location = null;
      const release = opts.detach ? opts.detach(page) : null;
      $('start').disabled = false;
      $('stop').disabled = true;
      if (resource) {
        const request = fetch(resource, { method: 'DELETE', keepalive: unloading });
        if (unloading) {
          request.catch(() => {});
        } else {
          try {
            const response = await request;
            state.deleteStatus = response.status;
            await response.text().catch(() => {});
          } catch (e) {
            state.deleteStatus = `failed: ${e.message || e}`;
          }
        }
      }
      if (pc) pc.close();
      if (release) release();
      if (!window.pc) video.srcObject = null;
      if (pc) setState('stopped');
    }

    async function stats() {
      const pc = window.pc;
      if (!pc) return null;
      const report = await pc.getStats();
      const out = { video: null, audio: null, transport: null };
      const codecs = {};
      report.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s; });
      report.forEach((s) => {
        if (s.type === opts.rtpStats.type) {
          const c = codecs[s.codecId];
          out[s.kind] = {
            codec: c ? c.mimeType : null, fmtp: c ? c.sdpFmtpLine || null : null, payloadType: c ? c.payloadType : null,
            ...opts.rtpStats.fields(s),
          };
        } else if (s.type === 'transport') {
          out.transport = { dtlsState: s.dtlsState, srtpCipher: s.srtpCipher, tlsVersion: s.tlsVersion };
        }
      });
      return out;
    }
    window.sluiceStats = stats;
    window.sluiceStart = start;
    window.sluiceStop = stop;
    page.start = start;
    page.stop = stop;

    $('form').addEventListener('submit', (e) => { e.preventDefault(); start(); });
    $('stop').addEventListener('click', () => stop());
    window.addEventListener('pagehide', () => { stop(true); });
    if (params.get('autostart') === '1') start();
    return page;
  };
}());
