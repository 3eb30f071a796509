/* global window, document, fetch, URLSearchParams, queueMicrotask */
// The console: a hash-routed page over the service's API (same origin, session cookie). Views: runs
// (#/), one run (#/runs/<run id>) and one patient outcome (#/outcomes/<outcome id>). Ids in the URL are
// opaque uuids, never patient ids. DOM is built with textContent only: no data reaches innerHTML.

const view = document.getElementById('view');
const status = document.getElementById('status');
const BAND_ORDER = ['negligible', 'low', 'moderate', 'high', 'certain'];
const BAND_COLOURS = { negligible: '#8fbcd4', low: '#4c9f70', moderate: '#e0a526', high: '#d1495b', certain: '#7a1f3d' };
let charts = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else if (key === 'className') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) if (child !== undefined && child !== null && child !== false) node.append(child instanceof window.Node ? child : document.createTextNode(String(child)));
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    credentials: 'same-origin',
    headers: { accept: 'application/json', 'x-requested-with': 'fhir-ml-console', ...(options.body ? { 'content-type': 'application/json' } : {}) },
  });
  if (response.status === 401) {
    window.location.assign('/console/login');
    throw new Error('signed out');
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const text = body?.issue?.[0]?.details?.text ?? `HTTP ${response.status}`;
    const error = new Error(text);
    error.status = response.status;
    throw error;
  }
  return body;
}

const fmt = {
  date: (iso) => (iso ? new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : '—'),
  prob: (p) => (p === null || p === undefined ? '—' : `${(p * 100).toFixed(1)} %`),
  num: (n) => (n === null || n === undefined ? '—' : Number.isInteger(n) ? String(n) : String(Math.round(n * 1000) / 1000)),
  ms: (ms) => (ms === null || ms === undefined ? '—' : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`),
};

function stateBadge(state) {
  return el('span', { className: `state state-${state}`, text: state });
}

function table(caption, headers, rows, options = {}) {
  return el(
    'table',
    {},
    el('caption', { className: options.hideCaption ? 'sr-only' : undefined, text: caption }),
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', className: h.num ? 'num' : undefined, text: h.label ?? h })))),
    el(
      'tbody',
      {},
      rows.length
        ? rows.map((cells) => el('tr', {}, cells.map((c, i) => el(i === 0 && options.rowHeader ? 'th' : 'td', { scope: i === 0 && options.rowHeader ? 'row' : undefined, className: headers[i]?.num ? 'num' : undefined }, c))))
        : el('tr', {}, el('td', { colspan: headers.length, className: 'muted', text: options.empty ?? 'Nothing yet.' })),
    ),
  );
}

function chart(label, config, fallback) {
  const canvas = el('canvas', { role: 'img', 'aria-label': label });
  const box = el('div', { className: 'chart' }, canvas);
  const wrapper = el('figure', { className: 'card' }, el('figcaption', { text: label }), box, fallback ? el('details', {}, el('summary', { text: 'Data as a table' }), fallback) : null);
  // Drawn once the element is in the document (Chart.js measures its container).
  queueMicrotask(() => {
    if (!window.Chart) return;
    window.Chart.defaults.animation = false;
    charts.push(new window.Chart(canvas, { ...config, options: { responsive: true, maintainAspectRatio: false, ...config.options } }));
  });
  return wrapper;
}

function clear() {
  for (const c of charts) c.destroy();
  charts = [];
  view.replaceChildren();
}

async function showRuns() {
  const [{ sources }, { runs }] = await Promise.all([api('/sources'), api('/runs?limit=50')]);
  clear();
  view.append(el('h1', { text: 'Runs' }));
  view.append(
    el('section', { 'aria-labelledby': 'sources-h' }, el('h2', { id: 'sources-h', text: 'Sources' }),
      el('div', { className: 'sources' }, sources.map((s) =>
        el('div', { className: 'card' },
          el('h3', { text: s.name ? `${s.name} (${s.id})` : s.id }),
          el('dl', { className: 'facts' },
            el('dt', { text: 'Models' }), el('dd', { text: s.models.join(', ') }),
            el('dt', { text: 'Schedule' }), el('dd', { text: s.schedule ? `${s.schedule.cron} (${s.schedule.timezone})` : 'manual only' }),
            el('dt', { text: 'Population' }), el('dd', { text: s.population }),
            el('dt', { text: 'Re-score after' }), el('dd', { text: s.rescoreInterval }),
            el('dt', { text: 'Watermark' }), el('dd', { text: Object.values(s.watermarks)[0] ? fmt.date(Object.values(s.watermarks)[0]) : 'none (next run is full)' })),
          el('button', { type: 'button', className: 'secondary', disabled: !!s.activeRunId, onclick: () => startRun(s.id), text: s.activeRunId ? 'Running…' : 'Run now' }))))),
  );
  view.append(
    el('section', { 'aria-labelledby': 'runs-h' }, el('h2', { id: 'runs-h', text: 'Recent runs' }),
      table('Recent runs, newest first', ['Run', 'Source', 'State', 'Mode', 'As of', 'Started', { label: 'Patients', num: true }, { label: 'Scored', num: true }, { label: 'Skipped', num: true }, { label: 'Failed', num: true }, 'Error'],
        runs.map((r) => {
          const totals = Object.values(r.counts.outcomes).reduce((acc, m) => {
            for (const [k, v] of Object.entries(m)) acc[k] = (acc[k] ?? 0) + v;
            return acc;
          }, {});
          return [
            el('a', { href: `#/runs/${r.id}`, text: r.id.slice(0, 8), 'aria-label': `Run ${r.id.slice(0, 8)} of ${r.sourceId}, ${fmt.date(r.createdAt)}` }),
            r.sourceId, stateBadge(r.state), r.mode ?? '—', fmt.date(r.asOf), fmt.date(r.startedAt ?? r.createdAt),
            fmt.num(r.patientsTotal), fmt.num(totals.scored ?? 0), fmt.num(totals.skipped ?? 0), fmt.num(totals.failed ?? 0),
            r.errorCode ? el('span', { className: 'error', text: r.errorCode }) : '',
          ];
        }), { empty: 'No runs yet: start one with “Run now”, or wait for the schedule.' })),
  );
}

async function startRun(sourceId) {
  try {
    const { run } = await api(`/sources/${encodeURIComponent(sourceId)}/runs`, { method: 'POST', body: '{}' });
    status.textContent = `Run ${run.id.slice(0, 8)} of ${sourceId} started.`;
    window.location.hash = `#/runs/${run.id}`;
  } catch (err) {
    status.textContent = err.status === 409 ? `${sourceId} is already running.` : `Could not start a run: ${err.message}`;
  }
}

async function showRun(id, page = { offset: 0, model: undefined }) {
  const q = new URLSearchParams({ limit: '50', offset: String(page.offset) });
  if (page.model) q.set('model', page.model);
  const data = await api(`/runs/${encodeURIComponent(id)}?${q}`);
  const { run, counts, errors, exclusions, distribution, outcomes } = data;
  const trends = await Promise.all(run.modelIds.map((m) => api(`/sources/${encodeURIComponent(run.sourceId)}/trend?model=${encodeURIComponent(m)}&limit=30`).catch(() => ({ runs: [] }))));
  clear();
  view.append(el('h1', {}, `Run ${run.id.slice(0, 8)} · ${run.sourceId} `, stateBadge(run.state)));
  view.append(
    el('dl', { className: 'facts card' },
      el('dt', { text: 'As of' }), el('dd', { text: fmt.date(run.asOf) }),
      el('dt', { text: 'Mode' }), el('dd', { text: run.mode ? `${run.mode}${run.changesSince ? ` (changes since ${fmt.date(run.changesSince)})` : ''}` : '—' }),
      el('dt', { text: 'Selected' }), el('dd', { text: run.selection ? Object.entries(run.selection).filter(([k]) => k !== 'requests').map(([k, v]) => `${k}: ${v}`).join(' · ') : '—' }),
      el('dt', { text: 'Batches' }), el('dd', { text: `${counts.batches.succeeded} of ${run.batchesTotal} succeeded${counts.batches.failed ? `, ${counts.batches.failed} failed` : ''}${counts.batches.retrying ? `, ${counts.batches.retrying} waiting for a retry` : ''}` }),
      el('dt', { text: 'FHIR requests' }), el('dd', { text: fmt.num(counts.requests) }),
      el('dt', { text: 'Started / finished' }), el('dd', { text: `${fmt.date(run.startedAt)} / ${fmt.date(run.finishedAt)}` })),
  );
  if (errors.length) {
    view.append(el('section', { 'aria-labelledby': 'errors-h' }, el('h2', { id: 'errors-h', text: 'Errors' }),
      table('Errors of the run and its batches', ['Batch', 'State', { label: 'Attempts', num: true }, 'Code', 'Message'],
        errors.map((e) => [e.batch < 0 ? 'run' : String(e.batch), e.state, fmt.num(e.attempts), e.code, e.message ?? '']))));
  }
  run.modelIds.forEach((modelId, i) => {
    const dist = distribution[modelId] ?? { bands: {}, histogram: new Array(10).fill(0), scored: 0, mean: null };
    const bins = dist.histogram.map((_n, b) => `${b * 10}–${b * 10 + 10} %`);
    const trend = trends[i].runs;
    const bands = BAND_ORDER.filter((b) => trend.some((t) => t.bands[b]) || dist.bands[b]);
    const modelCounts = counts.outcomes[modelId] ?? {};
    view.append(
      el('section', { 'aria-labelledby': `model-${i}` },
        el('h2', { id: `model-${i}`, text: `${modelId}: ${fmt.num(modelCounts.scored ?? 0)} scored, ${fmt.num(modelCounts.skipped ?? 0)} skipped, ${fmt.num(modelCounts.failed ?? 0)} failed, mean ${fmt.prob(dist.mean)}` }),
        el('div', { className: 'grid' },
          chart(`${modelId}: distribution of probabilities in this run`, {
            type: 'bar',
            data: { labels: bins, datasets: [{ label: 'patients', data: dist.histogram, backgroundColor: '#0b5cad' }] },
            options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
          }, table('Probability bins', ['Probability', { label: 'Patients', num: true }], bins.map((b, k) => [b, fmt.num(dist.histogram[k])]), { hideCaption: true })),
          chart(`${modelId}: patients per risk band in this run`, {
            type: 'bar',
            data: { labels: BAND_ORDER.filter((b) => dist.bands[b]), datasets: [{ label: 'patients', data: BAND_ORDER.filter((b) => dist.bands[b]).map((b) => dist.bands[b]), backgroundColor: BAND_ORDER.filter((b) => dist.bands[b]).map((b) => BAND_COLOURS[b]) }] },
            options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
          }, table('Risk bands', ['Band', { label: 'Patients', num: true }], Object.entries(dist.bands).map(([b, n]) => [b, fmt.num(n)]), { hideCaption: true })),
          chart(`${modelId}: trend over the last runs (scored patients per band, mean probability)`, {
            data: {
              labels: trend.map((t) => fmt.date(t.asOf)),
              datasets: [
                ...bands.map((b) => ({ type: 'bar', label: b, data: trend.map((t) => t.bands[b] ?? 0), backgroundColor: BAND_COLOURS[b], stack: 'bands', yAxisID: 'y' })),
                { type: 'line', label: 'mean probability', data: trend.map((t) => (t.mean === null ? null : t.mean)), borderColor: '#1b1f24', yAxisID: 'p' },
              ],
            },
            options: { scales: { y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, p: { position: 'right', min: 0, max: 1 } } },
          }, table('Trend', ['As of', 'State', { label: 'Scored', num: true }, { label: 'Mean', num: true }], trend.map((t) => [fmt.date(t.asOf), t.state, fmt.num(t.scored), fmt.prob(t.mean)]), { hideCaption: true }))),
        table(`${modelId}: exclusions and skips by reason`, ['Kind', 'Reason', { label: 'Count', num: true }],
          exclusions.filter((x) => x.modelId === modelId).map((x) => [x.kind, x.reason, fmt.num(x.count)]), { empty: 'No exclusions.' })),
    );
  });
  const pages = Math.max(1, Math.ceil(outcomes.total / outcomes.limit));
  const current = Math.floor(outcomes.offset / outcomes.limit) + 1;
  view.append(
    el('section', { 'aria-labelledby': 'outcomes-h' }, el('h2', { id: 'outcomes-h', text: `Patients (${outcomes.total})` }),
      table('Per-patient outcomes', ['Patient', 'Model', 'Status', 'Reason', { label: 'Probability', num: true }, 'Band', 'Write', ''],
        outcomes.items.map((o) => [o.patientId, o.modelId, o.status, o.reason ?? '', fmt.prob(o.probability), o.band ?? '', o.write ?? '',
          el('a', { href: `#/outcomes/${o.id}`, text: 'Details', 'aria-label': `Details for patient ${o.patientId}, ${o.modelId}` })]), { rowHeader: true }),
      el('nav', { className: 'pager', 'aria-label': 'Pages of patients' },
        el('button', { type: 'button', className: 'secondary', disabled: current <= 1, onclick: () => showRun(id, { ...page, offset: page.offset - outcomes.limit }).catch(fail), text: 'Previous' }),
        el('span', { text: `Page ${current} of ${pages}` }),
        el('button', { type: 'button', className: 'secondary', disabled: current >= pages, onclick: () => showRun(id, { ...page, offset: page.offset + outcomes.limit }).catch(fail), text: 'Next' }))),
  );
}

async function showOutcome(id) {
  const { outcome, run, detail } = await api(`/outcomes/${encodeURIComponent(id)}`);
  clear();
  const ra = detail.riskAssessment;
  const prediction = ra?.prediction?.[0];
  view.append(el('p', {}, el('a', { href: `#/runs/${run.id}`, text: `← Run ${run.id.slice(0, 8)}` })));
  view.append(el('h1', { text: `Patient ${outcome.patientId} · ${outcome.modelId}` }));
  view.append(
    el('section', { 'aria-labelledby': 'score-h', className: 'card' }, el('h2', { id: 'score-h', text: 'Score' }),
      el('dl', { className: 'facts' },
        el('dt', { text: 'Status' }), el('dd', { text: outcome.status + (outcome.reason ? ` (${outcome.reason})` : '') + (detail.skipDetail ? `: ${detail.skipDetail}` : '') }),
        el('dt', { text: 'Probability' }), el('dd', { id: 'score-probability', text: fmt.prob(prediction?.probabilityDecimal ?? outcome.probability) }),
        el('dt', { text: 'Risk band' }), el('dd', { text: prediction?.qualitativeRisk?.coding?.[0]?.code ?? outcome.band ?? '—' }),
        el('dt', { text: 'As of' }), el('dd', { text: fmt.date(run.asOf) }),
        el('dt', { text: 'Model' }), el('dd', { text: `${outcome.modelId} ${outcome.modelVersion ?? ''}` })),
      el('h3', { text: 'Rationale' }),
      el('p', { id: 'rationale', className: 'rationale', text: prediction?.rationale ?? (outcome.explanation ? outcome.explanation.map((c) => `${c.featureId} ${c.contribution >= 0 ? '+' : ''}${c.contribution.toFixed(3)}`).join(', ') : 'No rationale recorded.') })),
  );
  view.append(
    el('section', { 'aria-labelledby': 'ra-h' }, el('h2', { id: 'ra-h', text: 'Written RiskAssessment' }),
      ra
        ? el('div', { className: 'card' },
            el('dl', { className: 'facts' },
              el('dt', { text: 'Resource' }), el('dd', { id: 'risk-assessment-id', text: `RiskAssessment/${ra.id}` }),
              el('dt', { text: 'Written' }), el('dd', { id: 'risk-assessment-from', text: detail.riskAssessmentFrom === 'earlier' ? 'by an earlier run (this run found the inputs unchanged)' : 'by this run' }),
              el('dt', { text: 'Status' }), el('dd', { text: ra.status }),
              el('dt', { text: 'Occurrence' }), el('dd', { text: fmt.date(ra.occurrenceDateTime) }),
              el('dt', { text: 'Method' }), el('dd', { text: ra.method?.text ?? '' }),
              el('dt', { text: 'Basis' }), el('dd', { text: `${ra.basis?.length ?? 0} resources` }),
              el('dt', { text: 'Horizon' }), el('dd', { text: prediction?.whenPeriod ? `${fmt.date(prediction.whenPeriod.start)} – ${fmt.date(prediction.whenPeriod.end)}` : '—' })),
            el('details', {}, el('summary', { text: 'Resource JSON' }), el('pre', { text: JSON.stringify(ra, null, 2) })))
        : el('p', { className: 'muted', text: outcome.status === 'scored' ? 'Not found on the server (written by another as-of, or deleted).' : 'Nothing was written for this patient.' })),
  );
  if (detail.carePlans.length) {
    view.append(el('section', { 'aria-labelledby': 'cp-h' }, el('h2', { id: 'cp-h', text: 'CarePlan proposals' }),
      table('CarePlans that cite this assessment', ['CarePlan', 'Status', 'Intent', 'Activities'], detail.carePlans.map((c) => [`CarePlan/${c.id}`, c.status, c.intent, String(c.activity?.length ?? 0)]))));
  }
  view.append(
    el('section', { 'aria-labelledby': 'features-h' }, el('h2', { id: 'features-h', text: 'Features' }),
      el('p', { className: 'muted', text: 'Read again from the source at the run’s as-of; data changed since the run may differ.' }),
      el('div', { className: 'grid' },
        table('Features with units', ['Feature', { label: 'Value', num: true }, 'Unit', 'Model input'], detail.features.map((f) => [f.id, f.value === null ? 'missing' : fmt.num(f.value), f.unit ?? '', f.input ? 'yes' : 'no']), { rowHeader: true }),
        table('Model inputs', ['Column', { label: 'Value', num: true }, 'Imputed'], detail.columns.map((c) => [c.id, fmt.num(c.value), c.imputed ? 'imputed' : '']), { rowHeader: true }))),
  );
  view.append(
    el('section', { 'aria-labelledby': 'data-h' }, el('h2', { id: 'data-h', text: `Data: ${detail.counts.fetched} fetched = ${detail.counts.used} used + ${detail.counts.excluded} excluded` }),
      table('Used resources', ['Resource'], detail.used.map((r) => [r]), { empty: 'None.' }),
      table('Excluded resources and why', ['Resource', 'Reason', 'Feature', 'Detail'], detail.excluded.map((x) => [x.reference, x.reason, x.featureId ?? '', x.detail ?? '']), { empty: 'None.' }),
      detail.partIssues.length ? table('Parts dropped from used resources', ['Resource', 'Reason', 'Detail'], detail.partIssues.map((x) => [x.reference, x.reason, x.detail ?? ''])) : null),
  );
}

function fail(err) {
  if (err?.message === 'signed out') return;
  clear();
  view.append(el('h1', { text: 'Something went wrong' }), el('p', { className: 'error', role: 'alert', text: err?.message ?? String(err) }));
}

async function route() {
  const hash = window.location.hash || '#/';
  const run = /^#\/runs\/([0-9a-f-]{36})$/.exec(hash);
  const outcome = /^#\/outcomes\/([0-9a-f-]{36})$/.exec(hash);
  status.textContent = 'Loading…';
  try {
    if (run) await showRun(run[1]);
    else if (outcome) await showOutcome(outcome[1]);
    else await showRuns();
    status.textContent = '';
    document.getElementById('main').focus({ preventScroll: true });
  } catch (err) {
    status.textContent = '';
    fail(err);
  }
}

window.addEventListener('hashchange', () => void route());
// Chart.js is a classic deferred script; modules run after it, so it is there.
void route();
