"use strict";
// The door screen: renders each state pushed on /events and plays a short sound for it.
// The server sends the words (zh and en); this file only lays them out and keeps time.
(() => {
  const body = document.body;
  const titleZh = document.getElementById("title-zh");
  const titleEn = document.getElementById("title-en");
  const reasons = document.getElementById("reasons");
  const temperature = document.getElementById("temperature");
  const message = document.getElementById("message");
  const link = document.getElementById("link");

  const IDLE = { state: "idle", title: { zh: "请出示健康码", en: "Show your code" }, lines: [],
    temperature_c: null, message: null, hold_ms: null, at: null };
  // With the stream down for this long the page cannot know what the door decided, so it
  // must not keep showing an old PASS.
  const OFFLINE_AFTER_MS = 5000;
  const OFFLINE = { state: "out_of_service", title: { zh: "暂停服务", en: "Out of service" },
    lines: [], temperature_c: null, message: null, hold_ms: null, at: null };

  // For tests and diagnostics: the last state and how long each took from show() to the DOM.
  const stats = { last: null, count: 0, latencies: [] };
  window.kioskScreen = stats;

  let holdTimer = null;
  let offlineTimer = null;
  let lastAt = null;
  let audio = null;

  function tone(freqs, seconds, type) {
    try {
      audio = audio || new AudioContext();
      if (audio.state === "suspended") audio.resume();
      let t = audio.currentTime + 0.01;
      for (const f of freqs) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = type;
        osc.frequency.value = f;
        gain.gain.setValueAtTime(0.0001, t);
        gain.gain.exponentialRampToValueAtTime(0.35, t + 0.015);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + seconds);
        osc.connect(gain).connect(audio.destination);
        osc.start(t);
        osc.stop(t + seconds + 0.02);
        t += seconds + 0.06;
      }
    } catch (err) {
      // No audio device: the colours still say it all.
    }
  }

  const SOUNDS = {
    pass: () => tone([880, 1320], 0.12, "sine"),
    stop: () => tone([330, 220], 0.38, "square"),
    not_recorded: () => tone([330, 220, 330], 0.25, "square"),
    amber: () => tone([660, 660], 0.12, "triangle"),
  };

  function render(p) {
    body.dataset.state = p.state;
    titleZh.textContent = p.title.zh;
    titleEn.textContent = p.title.en;
    reasons.replaceChildren(...(p.lines || []).map((line) => {
      const li = document.createElement("li");
      li.dataset.code = line.code;
      const zh = document.createElement("span");
      zh.className = "zh";
      zh.lang = "zh-CN";
      zh.textContent = line.zh;
      const en = document.createElement("span");
      en.className = "en";
      en.lang = "en";
      en.textContent = line.en;
      li.append(zh, en);
      return li;
    }));
    if (typeof p.temperature_c === "number") {
      temperature.textContent = `${p.temperature_c.toFixed(1)} °C`;
      temperature.hidden = false;
    } else {
      temperature.hidden = true;
      temperature.textContent = "";
    }
    // `message` is a key the server already turned into the title and lines; a page for
    // visitors shows no raw keys.
    message.hidden = true;
    clearTimeout(holdTimer);
    holdTimer = null;
    // A visitor's state gives way to the door's resting state (idle, or a door condition).
    if (typeof p.hold_ms === "number") {
      const rest = p.rest || IDLE;
      holdTimer = setTimeout(() => render(rest), p.hold_ms);
    }
  }

  function onState(p) {
    const received = performance.timeOrigin + performance.now();
    render(p);
    const shown = performance.timeOrigin + performance.now();
    stats.last = p;
    stats.count += 1;
    // The same state again (a reconnect, or a new resting state behind it) is no new event.
    if (typeof p.at === "number" && p.at !== lastAt) {
      stats.latencies.push({ state: p.state, received_ms: received - p.at * 1000,
        shown_ms: shown - p.at * 1000 });
      if (stats.latencies.length > 100) stats.latencies.shift();
    }
    // A reconnect replays the current state; it has been heard already.
    // Sounds belong to a visitor's moment, not to the door's resting state.
    const transient = typeof p.hold_ms === "number";
    if (transient && p.at !== lastAt && SOUNDS[p.state]) SOUNDS[p.state]();
    lastAt = p.at;
  }

  function connect() {
    const source = new EventSource("/events");
    source.onopen = () => {
      link.dataset.link = "up";
      clearTimeout(offlineTimer);
      offlineTimer = null;
    };
    source.onmessage = (event) => {
      let p;
      try { p = JSON.parse(event.data); } catch (err) { return; }
      onState(p);
    };
    source.onerror = () => {
      link.dataset.link = "down";
      if (offlineTimer === null) {
        offlineTimer = setTimeout(() => { render(OFFLINE); }, OFFLINE_AFTER_MS);
      }
      // EventSource retries by itself unless the server answered with an error status.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, 2000);
      }
    };
  }

  render(IDLE);
  connect();
})();
