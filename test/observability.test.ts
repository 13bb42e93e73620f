/** Metrics and the live dashboard, against a real multi-daemon transfer. */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { originWithRelease } from './helpers/release.js';
import { parseMetrics, sum } from './helpers/prometheus.js';
import { startSite, waitForPeers } from './helpers/site.js';
import { hasCommand, requires } from './helpers/requires.js';
import { ROOT, runShoal, tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;
const OUTPUT = process.env.SHOAL_TEST_OUTPUT ?? path.join(ROOT, 'test-output');

test('after a real 3-daemon transfer, /metrics passes promtool and its counters match what the origin served and the daemons received', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 24 * MiB, bytesPerSec: 32 * MiB });
  const { daemons } = await startSite(t, dir, 3, rel.trusted);
  await waitForPeers(daemons, 2);
  const jobs = await Promise.all(daemons.map((d) => d.client.createFetch({ manifestUrl: rel.manifestUrl })));
  await Promise.all(daemons.map((d, i) => d.client.waitFetch(jobs[i]!.id)));

  const texts = await Promise.all(daemons.map(async (d) => (await fetch(`${d.api}/metrics`)).text()));
  if (hasCommand('promtool')) {
    for (const text of texts) {
      const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      t.is(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
    }
  } else if (process.env.CI) {
    t.fail('promtool is missing in CI (.ci/system-packages installs prometheus)');
  } else {
    t.log('promtool not installed: the format is checked by our own parser only');
  }
  const all = texts.map(parseMetrics);
  // The origin's own count of what it sent equals what the daemons say they took from it.
  t.is(all.reduce((n, s) => n + sum(s, 'shoal_download_bytes_total', { source: 'origin' }), 0), origin.bytes(rel.rel));
  const chunks = Math.ceil(rel.size / rel.chunkSize);
  for (const [i, s] of all.entries()) {
    const got = sum(s, 'shoal_download_bytes_total', { source: 'origin' }) + sum(s, 'shoal_download_bytes_total', { source: 'peer' });
    const job = await daemons[i]!.client.getFetch(jobs[i]!.id);
    t.is(got, rel.size, 'each daemon received the artifact once');
    t.is(sum(s, 'shoal_download_bytes_total', { source: 'peer' }), job.bytes.peer);
    t.is(sum(s, 'shoal_chunks_verified_total'), chunks);
    t.is(sum(s, 'shoal_fetches_total', { result: 'done' }), 1);
    t.is(sum(s, 'shoal_fetches_inflight'), 0);
    t.is(sum(s, 'shoal_fetch_duration_seconds_count', { size_class: 'lt256MiB' }), 1);
    t.is(sum(s, 'shoal_peers', { state: 'healthy' }), 2);
    t.is(sum(s, 'shoal_cache_bytes'), rel.size);
    t.true(sum(s, 'shoal_cache_capacity_bytes') > rel.size);
    t.is(sum(s, 'shoal_build_info'), 1);
    t.is(sum(s, 'shoal_chunks_dropped_total'), 0);
    t.is(sum(s, 'shoal_scrub_chunks_total', { result: 'bad' }), 0);
    t.true(s.some((x) => x.name === 'process_cpu_seconds_total'), 'default process metrics');
  }
  // Peers served exactly what peers stored, and the coordinator granted every origin chunk once.
  t.is(all.reduce((n, s) => n + sum(s, 'shoal_upload_bytes_total'), 0), all.reduce((n, s) => n + sum(s, 'shoal_download_bytes_total', { source: 'peer' }), 0));
  t.is(all.reduce((n, s) => n + sum(s, 'shoal_leases_granted_total'), 0), chunks);
  t.true(all.reduce((n, s) => n + sum(s, 'shoal_origin_requests_total', { code: '206' }), 0) >= 1);
  // No unbounded label values: no peer ids, hashes or URLs.
  for (const text of texts) {
    t.false(/[0-9a-f]{64}/.test(text), 'no hashes in metrics');
    for (const d of daemons) t.false(text.includes(d.peerId), 'no peer ids in metrics');
    t.false(text.includes('http://'), 'no URLs in metrics');
  }
});

const chromium = '/usr/bin/chromium';
const hasChromium = existsSync(chromium) || process.env.CI ? undefined : 'Debian chromium is not installed (apt-get install chromium)';

async function launch(t: { teardown(fn: () => unknown): void }) {
  const { chromium: pw } = await import('playwright-core');
  const browser = await pw.launch({ executablePath: chromium, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
  t.teardown(() => browser.close());
  return browser;
}

/** An HH:MM-HH:MM window (local time, as the daemon reads it) that starts two hours from now. */
function windowLater(): string {
  const at = (h: number) => { const d = new Date(Date.now() + h * 3600_000); return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`; };
  return `${at(2)}-${at(3)}`;
}

// CI installs chromium (.ci/system-packages): there a missing one fails instead of skipping.
requires(hasChromium)('the dashboard in headless Chromium: peers, a fetch to 100 % keeping its chunk map, the savings, the whole site\'s view, the history on first paint, the full width', async (t) => {
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 32 * MiB, bytesPerSec: 8 * MiB });
  const { daemons } = await startSite(t, dir, 3, rel.trusted);
  await waitForPeers(daemons, 2);
  const browser = await launch(t);
  // bypassCSP lets the test's probes evaluate in the page; the page itself is served with a strict CSP.
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${daemons[0]!.api}/`);
  await page.waitForSelector('.conn:not(.off)');
  t.is(await page.locator('#peers tr').count(), 2, 'both peers listed');
  t.is((await page.locator('#peers .badge.healthy').count()), 2);

  const jobs = await Promise.all(daemons.map((d) => d.client.createFetch({ manifestUrl: rel.manifestUrl })));
  // Mid-transfer the fetch shows a partial percentage and a chunk map, and the current rate as a number.
  // (Page-side code as strings: this project is typed for Node, not the DOM.)
  await page.waitForFunction(`(() => {
    const pct = document.querySelector('.fetch .pct')?.textContent ?? '';
    return /^\\d+ %$/.test(pct) && parseInt(pct, 10) > 0 && parseInt(pct, 10) < 100 && !!document.querySelector('canvas.map');
  })()`, undefined, { timeout: 30_000 });
  await page.waitForFunction(`/^now: received [1-9][\\d.]* (KiB|MiB)\\/s/.test(document.getElementById('rate-now').textContent)`, undefined, { timeout: 10_000 });
  await fs.mkdir(OUTPUT, { recursive: true });
  await page.screenshot({ path: path.join(OUTPUT, 'dashboard-progress.png'), fullPage: true });
  await Promise.all(daemons.map((d, i) => d.client.waitFetch(jobs[i]!.id)));
  await page.waitForFunction(`document.querySelector('.fetch .pct')?.textContent === '100 %' && document.querySelector('.fetch .state')?.textContent === 'done'`, undefined, { timeout: 15_000 });
  // A finished fetch keeps its chunk map, complete.
  const chunks = Math.ceil(rel.size / rel.chunkSize);
  t.is(await page.locator('.fetch.done canvas.map').count(), 1, 'the chunk map stays after done');
  t.regex((await page.locator('.fetch.done .blob .meta').textContent()) ?? '', new RegExp(`· ${chunks}/${chunks} chunks · done`));
  const savings = await page.locator('#savings').textContent();
  t.regex(savings ?? '', /^\d+\.\d %$/);
  const status = await daemons[0]!.client.getFetch(jobs[0]!.id);
  t.is(savings, `${((100 * status.bytes.peer) / rel.size).toFixed(1)} %`, 'this daemon\'s figure is what it received from peers');
  // The last 24 h by kind: this fetch is a native one, its bytes split as the daemon counted them.
  await page.waitForFunction(`!!document.querySelector('#kinds tr.kind-native')`, undefined, { timeout: 5000 });
  const row = await page.locator('#kinds tr.kind-native td').allTextContents();
  t.is(row[0], 'native');
  t.is(row[6], `${Math.round((100 * status.bytes.peer) / rel.size)} %`);

  // The site view: every member's own figures, asked over the peer protocol; the origin served the release once.
  await page.waitForFunction(`document.querySelectorAll('#members tr').length === 4 && [...document.querySelectorAll('#members tr.total td')][1]?.textContent === '96.0 MiB'`, undefined, { timeout: 30_000 });
  const total = await page.locator('#members tr.total td').allTextContents();
  t.deepEqual(total.slice(0, 3), ['site', '96.0 MiB', '32.0 MiB'], 'three members got 32 MiB each; the origin served it once');
  t.is(total[6], '67 %');
  t.is(await page.locator('#site-saved').textContent(), '66.7 %', 'the hero figure is the site\'s');
  t.is(await page.locator('#members tr.self').count(), 1);
  const ids = await page.locator('#members tr:not(.total) code').allTextContents();
  t.deepEqual([...ids].sort(), daemons.map((d) => d.peerId).sort(), 'every member by its peer id');
  t.regex((await page.locator('#site-asked').textContent()) ?? '', /^peers asked \d\d:\d\d:\d\d$/);
  t.is(await page.locator('#cache').textContent(), (/cache\s+(.+?) in \d+ blob/.exec((await runShoal(['status', '--api', daemons[0]!.api])).stdout)?.[1]) ?? 'no status', '`shoal status` and the dashboard show one cache figure');
  await page.screenshot({ path: path.join(OUTPUT, 'dashboard.png'), fullPage: true });

  // A page opened after the transfer draws it at once from the daemon's history, and at 1920 px uses the width.
  const wide = await browser.newPage({ viewport: { width: 1920, height: 1080 }, bypassCSP: true });
  wide.on('pageerror', (e) => errors.push(e.message));
  await wide.goto(`${daemons[1]!.api}/`);
  await wide.waitForSelector('.conn:not(.off)', { timeout: 5000 });
  const painted = await wide.evaluate(`(() => {
    const c = document.getElementById('chart'), g = c.getContext('2d'), d = g.getImageData(0, 0, c.width, c.height).data;
    let teal = 0; for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - 0x2d) < 24 && Math.abs(d[i + 1] - 0xd4) < 24 && Math.abs(d[i + 2] - 0xbf) < 24) teal++;
    return { teal, points: [...rates.values()].filter((r) => r.peer + r.origin > 0).length };
  })()`) as { teal: number; points: number };
  t.true(painted.points >= 2, `the history holds the transfer's seconds (${painted.points})`);
  t.true(painted.teal > 100, `the chart shows it on first paint (${painted.teal} px)`);
  const layout = await wide.evaluate(`(() => {
    const cols = [...document.querySelectorAll('.column')].map((c) => c.getBoundingClientRect());
    const main = document.querySelector('main').getBoundingClientRect(), head = document.querySelector('header').getBoundingClientRect();
    return { main: main.width, header: head.width, left: cols.map((c) => Math.round(c.left)) };
  })()`) as { main: number; header: number; left: number[] };
  t.true(layout.main >= 1800, `content ${layout.main} px of 1920`);
  t.is(new Set(layout.left).size, 2, 'two columns side by side');
  await wide.screenshot({ path: path.join(OUTPUT, 'dashboard-1920.png'), fullPage: true });
  t.deepEqual(errors, []);
  t.true((await fs.stat(path.join(OUTPUT, 'dashboard.png'))).size > 10_000);
});

requires(hasChromium)('the dashboard says a fetch is stalled and why', async (t) => {
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 4 * MiB });
  // One daemon whose only origin window is hours away: nothing can arrive, and it knows why.
  const { daemons } = await startSite(t, dir, 1, rel.trusted, { originWindows: [windowLater()] });
  const job = await daemons[0]!.client.createFetch({ manifestUrl: rel.manifestUrl });
  const page = await (await launch(t)).newPage({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
  await page.goto(`${daemons[0]!.api}/`);
  await page.waitForSelector('.fetch .why.stalled', { timeout: 15_000 });
  t.is(await page.locator('.fetch .state').first().textContent(), 'stalled');
  t.regex((await page.locator('.fetch .why.stalled').textContent()) ?? '', /^stalled for \d+ s: waiting for an origin window \(originWindows\)$/);
  const st = await daemons[0]!.client.getFetch(job.id);
  t.is(st.state, 'running');
  t.is(st.stalled?.reason, 'origin-window');
  // The blob is reserved at its full size; the cache says it has not arrived.
  t.is(await page.locator('#cache-sub').textContent(), '1 blob(s), 1 still arriving (reserved in full)');
  t.regex((await runShoal(['status', '--api', daemons[0]!.api])).stdout, /cache\s+4\.0 MiB of [\d.]+ GiB in 1 blob\(s\) \(1 still arriving, reserved in full\)/);
  await fs.mkdir(OUTPUT, { recursive: true });
  await page.screenshot({ path: path.join(OUTPUT, 'dashboard-stalled.png'), fullPage: true });
});

test('the Grafana dashboard only queries metrics a daemon really exports', async (t) => {
  const dir = await tmpDir(t);
  const { daemons } = await startSite(t, dir, 1, []);
  const text = await (await fetch(`${daemons[0]!.api}/metrics`)).text();
  // Families declared by # TYPE (a labelled counter has no sample until first used), with histogram series.
  const names = new Set(parseMetrics(text).map((s) => s.name));
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(m[1]!);
    if (m[2] === 'histogram') for (const suffix of ['_bucket', '_count', '_sum']) names.add(m[1]! + suffix);
  }
  const dash = JSON.parse(await fs.readFile(path.join(ROOT, 'dashboard/grafana/shoal.json'), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
  t.true(dash.panels.length >= 10);
  const used = new Set<string>();
  for (const p of dash.panels) for (const tg of p.targets) for (const m of tg.expr.matchAll(/\bshoal_[a-z_]+/g)) used.add(m[0]);
  for (const u of used) t.true(names.has(u), `${u} is exported`);
  for (const want of ['shoal_download_bytes_total', 'shoal_chunk_verify_failures_total', 'shoal_peers', 'shoal_fetch_duration_seconds_bucket', 'shoal_cache_bytes']) t.true(used.has(want), `dashboard uses ${want}`);
});
