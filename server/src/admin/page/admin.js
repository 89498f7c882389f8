// The relay's admin page (docs/PROTOCOL.md §11.19). Served with a CSP that allows only this
// script and this origin: no inline code, no external assets. The admin key lives in
// sessionStorage (this tab only) and is sent only to this relay's /v1/admin/overview.
'use strict';

const STORAGE_KEY = 'haven-admin-key';
const REFRESH_MS = 5000;
let timer = null;

const $ = (id) => document.getElementById(id);

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function formatDuration(secs) {
  const d = Math.floor(secs / 86400);
  const h = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m ${secs % 60}s`;
}

function orDash(value, format = String) {
  return value === null || value === undefined ? '–' : format(value);
}

function showError(text) {
  const error = $('error');
  error.textContent = text;
  error.hidden = false;
}

function render(o) {
  $('error').hidden = true;
  $('overview').hidden = false;
  $('forget').hidden = false;
  $('generated-at').textContent = new Date(o.generated_at * 1000).toLocaleTimeString();
  $('uptime').textContent = formatDuration(o.uptime_secs);
  $('live-sockets').textContent = String(o.live_sockets);
  $('accounts').textContent = String(o.storage.accounts);
  $('devices').textContent = String(o.storage.devices);
  $('queued-envelopes').textContent = String(o.storage.queued_envelopes);
  $('devices-with-mail').textContent = String(o.storage.devices_with_mail);
  $('blob-bytes').textContent = formatBytes(o.storage.blob_bytes);
  $('vault-bytes').textContent = formatBytes(o.storage.vault_bytes);
  $('pending-reports').textContent = orDash(o.pending_reports);
  $('active-bans').textContent = orDash(o.active_bans);
  for (const row of document.querySelectorAll('#requests tbody tr')) {
    const w = o.requests[row.dataset.window];
    for (const cell of row.querySelectorAll('td')) {
      const field = cell.dataset.field;
      cell.textContent = field.endsWith('_ms') ? orDash(w[field], (v) => `${v} ms`) : String(w[field]);
    }
  }
}

function stop() {
  if (timer !== null) {
    clearTimeout(timer);
    timer = null;
  }
}

async function refresh() {
  stop();
  const key = sessionStorage.getItem(STORAGE_KEY);
  if (!key) return;
  let response;
  try {
    response = await fetch('/v1/admin/overview', {
      headers: { Authorization: `Bearer ${key}` },
      cache: 'no-store',
    });
  } catch (err) {
    showError(`Cannot reach the relay: ${err.message}`);
    timer = setTimeout(refresh, REFRESH_MS);
    return;
  }
  if (response.ok) {
    render(await response.json());
    timer = setTimeout(refresh, REFRESH_MS);
    return;
  }
  let detail = '';
  try {
    const body = await response.json();
    detail = `${body.error.code}: ${body.error.message}`;
  } catch (_) {
    detail = response.statusText;
  }
  showError(`${response.status} ${detail}`);
  if (response.status === 401) {
    // A wrong, revoked or expired key: forget it and ask again.
    sessionStorage.removeItem(STORAGE_KEY);
    $('overview').hidden = true;
    $('forget').hidden = true;
  } else {
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('key').value.trim();
    $('key').value = '';
    sessionStorage.setItem(STORAGE_KEY, key);
    refresh();
  });
  $('forget').addEventListener('click', () => {
    stop();
    sessionStorage.removeItem(STORAGE_KEY);
    $('overview').hidden = true;
    $('forget').hidden = true;
  });
  refresh();
});
