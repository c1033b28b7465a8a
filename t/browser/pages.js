// The browser pages in headless Chromium, for t/81-browser-chromium.t.
//   node t/browser/pages.js SPEC.json
// SPEC (written by t/81) names the server's base URL, the directory for
// screenshots, the mode ("main": the test configuration; "production":
// conf/production.conf.example with a reader and a writer) and what the
// pages must show.  Prints one line per check:
//   RESULT {"ok":true|false,"name":"...","diag":"..."}
// and exits 0 once every check has run (whatever their outcome), non-zero
// only if the script itself could not run.  The pages are checked against
// docs/BROWSER.md.
'use strict';
const fs = require('fs');
const path = require('path');
const http = require('http');
const crypto = require('crypto');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const base = spec.base;
const origin = new URL(base).origin;
const TIMEOUT = 5000; // ms for one element or navigation: fail, not hang

function result(ok, name, diag) {
  console.log('RESULT ' + JSON.stringify({ ok: !!ok, name, diag: diag || '' }));
}
async function check(name, fn) {
  try {
    await fn();
    result(true, name);
    return true;
  } catch (e) {
    result(false, name, (e && e.stack) || String(e));
    return false;
  }
}
function eq(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what || 'value'}: got ${g}, want ${w}`);
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
const sha1 = (buf) => crypto.createHash('sha1').update(buf).digest('hex');
const iso = (unix) => new Date(unix * 1000).toISOString().replace(/\.000Z$/, 'Z');
// Path + query of a (possibly relative) href, resolved against the page.
const where = (page, href) => {
  const u = new URL(href, page.url());
  return u.pathname + u.search;
};
const enc = (p) => p.split('/').map(encodeURIComponent).join('/');

let shot = 0;
async function screenshot(page, name) {
  const file = path.join(spec.artifacts, `${String(++shot).padStart(2, '0')}-${name}.png`);
  try {
    await page.screenshot({ path: file, fullPage: true });
  } catch (e) {
    result(false, `screenshot ${name}`, String(e));
  }
}

// Everything a page does that it must not: dialogs (script ran), console
// errors (a CSP violation, a script error), requests to any other origin.
function guard(context, label) {
  const bad = { dialogs: [], console: [], foreign: [] };
  context.on('page', (page) => watchPage(page, bad));
  context.on('request', (r) => {
    const u = new URL(r.url());
    if (!['data:', 'about:', 'blob:'].includes(u.protocol) && u.origin !== origin)
      bad.foreign.push(r.url());
  });
  return {
    bad,
    label,
    async report() {
      await check(`${label}: no dialog ever opened`, () => eq(bad.dialogs, [], 'dialogs'));
      await check(`${label}: no console error or page error`, () => eq(bad.console, [], 'errors'));
      await check(`${label}: no request left the origin`, () => eq(bad.foreign, [], 'requests'));
    },
  };
}
function watchPage(page, bad) {
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT * 2);
  page.on('dialog', (d) => {
    bad.dialogs.push(`${d.type()}: ${d.message()} on ${page.url()}`);
    d.dismiss().catch(() => {});
  });
  page.on('console', (m) => {
    // Chromium asks for /favicon.ico by itself; the module serves none.
    if (m.type() === 'error' && !/\/favicon\.ico$/.test(m.location().url)
        && !(bad.allow && bad.allow.test(m.text())))
      bad.console.push(`${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => bad.console.push(`pageerror: ${e.message} on ${page.url()}`));
}

// Navigates by clicking LOCATOR; returns the main-frame response.
async function clickNav(page, locator) {
  const resp = page.waitForResponse((r) => r.request().isNavigationRequest()
    && r.request().frame() === page.mainFrame());
  resp.catch(() => {}); // a failed click must not leave it unhandled
  await locator.click();
  const r = await resp;
  await page.waitForLoadState('domcontentloaded');
  return r;
}
// Clicks; if that fails (the check already reported it), goes to URL so
// that the checks after it still run.
async function clickOrGo(page, name, locator, url) {
  const ok = await check(name, async () => {
    await clickNav(page, locator);
    eq(decodeURIComponent(new URL(page.url()).pathname), decodeURIComponent(new URL(url).pathname),
       'page after the click');
  });
  if (!ok) await page.goto(url).catch(() => {});
}

const rowNames = (page) => page.$$eval('table.listing tbody tr',
  (trs) => trs.map((tr) => [tr.className, (tr.querySelector('td.name a') || {}).textContent]));
const ariaSorts = (page) => page.$$eval('table.listing thead th',
  (ths) => Object.fromEntries(ths.map((th) => [th.className, th.getAttribute('aria-sort')])));

async function commonPageChecks(page, resp, label) {
  await check(`${label}: HTML page with the contract's headers`, async () => {
    const h = resp.headers();
    eq(resp.status(), 200, 'status');
    eq(h['content-type'], 'text/html; charset=utf-8', 'Content-Type');
    eq(h['cache-control'], 'no-store', 'Cache-Control');
    assert(/(^|,\s*)accept(\s*,|$)/i.test(h['vary'] || ''), `Vary has Accept: ${h['vary']}`);
    eq(h['x-content-type-options'], 'nosniff', 'X-Content-Type-Options');
    eq(h['referrer-policy'], 'same-origin', 'Referrer-Policy');
    const csp = h['content-security-policy'] || '';
    for (const d of ["default-src 'none'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"])
      assert(csp.includes(d), `CSP lacks ${d}: ${csp}`);
    assert(!/script-src/.test(csp), `CSP allows scripts: ${csp}`);
  });
  await check(`${label}: no script, a viewport meta`, async () => {
    eq(await page.locator('script').count(), 0, 'script elements');
    eq(await page.locator('meta[name="viewport"]').getAttribute('content'),
       'width=device-width, initial-scale=1', 'viewport');
  });
}

// In the page: tables whose shown header cells do not sit over the shown
// cells of the first row (a column hidden in one and not the other).
function misaligned() {
  const shown = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
  const out = [];
  if (!document.querySelector('table thead th')) out.push('no table with a header row');
  for (const t of document.querySelectorAll('table')) {
    const ths = [...t.querySelectorAll('thead th')].filter(shown);
    const row = t.querySelector('tbody tr');
    if (!ths.length || !row) continue;
    const tds = [...row.children].filter(shown);
    if ([...ths, ...tds].some((c) => c.colSpan > 1)) continue;
    const cls = (c) => `${c.tagName.toLowerCase()}.${c.className}`;
    if (ths.length !== tds.length) {
      out.push(`table.${t.className}: headers ${ths.map(cls)} over cells ${tds.map(cls)}`);
      continue;
    }
    ths.forEach((th, i) => {
      const a = th.getBoundingClientRect(), b = tds[i].getBoundingClientRect();
      if (Math.abs(a.left - b.left) > 1 || Math.abs(a.width - b.width) > 1)
        out.push(`table.${t.className}: ${cls(th)} at ${a.left}+${a.width}, ${cls(tds[i])} at ${b.left}+${b.width}`);
    });
  }
  return out;
}

// ---------------------------------------------------------------- main
async function mainMode(browser) {
  const ctx = await browser.newContext({ acceptDownloads: true });
  const g = guard(ctx, 'main');
  const page = await ctx.newPage();

  // 1. /snapshots/: newest first, status column, report page.
  let resp = await page.goto(base + '/snapshots/');
  await commonPageChecks(page, resp, '/snapshots/');
  await screenshot(page, 'snapshots');
  await check('/snapshots/: one row per snapshot, newest first', async () => {
    const names = await page.$$eval('table.snapshots tr.snapshot', (trs) => trs.map((t) => t.dataset.name));
    eq(names, spec.snapshots.map((s) => s.name), 'rows');
  });
  for (const s of spec.snapshots) {
    const row = page.locator(`table.snapshots tr.snapshot[data-name="${s.name}"]`);
    const info = spec.snapshot_info[s.name] || {};
    await check(`/snapshots/: ${s.name}: link, created, files, size`, async () => {
      eq(where(page, await row.locator('td.name a').getAttribute('href')), `/snapshots/${s.name}/`, 'href');
      eq((await row.locator('td.name a').textContent()).trim(), s.name, 'link text');
      eq(await row.locator('td.created time').getAttribute('datetime'), iso(info.created_unix), 'created');
      eq((await row.locator('td.files').textContent()).trim(), String(info.files), 'files');
      eq(await row.locator('td.size').getAttribute('data-bytes'), String(info.bytes), 'data-bytes');
      eq(await row.locator('td.size').getAttribute('title'), `${info.bytes} bytes`, 'title');
    });
    await check(`/snapshots/: ${s.name}: status "${s.text}"`, async () => {
      const cell = row.locator('td.status');
      eq(await cell.getAttribute('data-status'), s.status, 'data-status');
      eq((await cell.textContent()).trim(), s.text, 'text');
      if (s.status === 'discrepancies')
        eq(where(page, await cell.locator('a').getAttribute('href')), `/snapshots/${s.name}/?report`, 'report link');
      else eq(await cell.locator('a').count(), 0, 'links in the cell');
    });
  }
  const dirty = spec.snapshots.find((s) => s.status === 'discrepancies');
  await clickOrGo(page, `/snapshots/: the "${dirty.text}" link opens the report`,
    page.getByRole('link', { name: dirty.text, exact: true }), `${base}/snapshots/${dirty.name}/?report`);
  await screenshot(page, 'report');
  await check(`report of ${dirty.name}: one row per discrepancy`, async () => {
    const rows = await page.$$eval('table.report tr.discrepancy', (trs) => trs.map((tr) =>
      [tr.querySelector('td.path').textContent.trim(), tr.querySelector('td.kind').textContent.trim()]));
    eq(rows.map((r) => r.join(' ')).sort(), dirty.report.map((r) => `${r.path} ${r.kind}`).sort(), 'rows');
  });

  // 2. Into a snapshot, then two levels down, by link text.
  await page.goto(base + '/snapshots/');
  const b = spec.browse;
  let here = `/snapshots/${b.snapshot}/`;
  await clickOrGo(page, `click "${b.snapshot}" on /snapshots/`,
    page.getByRole('link', { name: b.snapshot, exact: true }), base + here);
  await screenshot(page, 'snapshot-root');
  for (const d of b.levels) {
    here += `${d}/`;
    await clickOrGo(page, `click "${d}/" down to ${here}`, page.getByRole('link', { name: `${d}/`, exact: true }),
      base + here);
  }
  resp = await page.goto(base + here); // the response, for the headers
  await commonPageChecks(page, resp, here);
  await check(`${here}: breadcrumbs, the last one the current page`, async () => {
    const crumbs = await page.$$eval('nav.breadcrumbs[aria-label="Breadcrumb"] a',
      (as) => as.map((a) => [new URL(a.href).pathname, a.getAttribute('aria-current')]));
    const paths = crumbs.map((c) => c[0]);
    for (const p of [`/snapshots/${b.snapshot}/`, `/snapshots/${b.snapshot}/${b.levels[0]}/`, here])
      assert(paths.includes(p), `no crumb to ${p}: ${JSON.stringify(crumbs)}`);
    eq(crumbs[crumbs.length - 1], [here, 'page'], 'last crumb');
    eq(crumbs.filter((c) => c[1] !== null).length, 1, 'crumbs with aria-current');
  });
  await check(`${here}: no .mirrordav, no row for ..`, async () => {
    const names = (await rowNames(page)).map((r) => r[1]);
    eq(names.length, spec.sortdir.dirs.length + spec.sortdir.files.length, 'rows');
    assert(!names.some((n) => /mirrordav|^\.\.\/?$/.test(n || '')), JSON.stringify(names));
  });

  // 3. Sort by name (default), size and time; directories first always.
  const sd = spec.sortdir;
  // The order the contract gives: by the key, ties by name ascending
  // whatever the order; directories (no size) by name then.
  const sorted = (list, key, order) => {
    const k = (x) => (key === 'name' ? x.name : key === 'size' ? (x.bytes ?? 0) : (x.mtime ?? Infinity));
    const sign = order === 'desc' ? -1 : 1;
    return list.slice().sort((x, y) => (k(x) < k(y) ? -sign : k(x) > k(y) ? sign : x.name < y.name ? -1 : 1))
      .map((x) => x.name);
  };
  const want = (key, order) => sorted(sd.files, key, order);
  const wantDirs = (key, order) => sorted(sd.dirs, key, order).map((d) => `${d}/`);
  const checkOrder = async (key, label) => {
    const sorts = await ariaSorts(page);
    const dir = sorts[key];
    assert(dir === 'ascending' || dir === 'descending', `aria-sort of th.${key}: ${JSON.stringify(sorts)}`);
    for (const k of ['name', 'size', 'mtime']) if (k !== key) eq(sorts[k], null, `aria-sort of th.${k}`);
    const order = dir === 'ascending' ? 'asc' : 'desc';
    const q = new URL(page.url()).searchParams;
    if (q.has('sort')) {
      eq(q.get('sort'), key, 'sort=');
      eq(q.get('order'), order, 'order= (as aria-sort says)');
    }
    const rows = await rowNames(page);
    const dirs = rows.filter((r) => r[0] === 'dir').map((r) => r[1]);
    const files = rows.filter((r) => r[0] === 'file').map((r) => r[1]);
    eq(rows.slice(0, dirs.length).map((r) => r[0]), dirs.map(() => 'dir'), `${label}: directories first`);
    eq(dirs, wantDirs(key, order), `${label}: directories in ${key} ${order} order`);
    eq(files, want(key, order), `${label}: files in ${key} ${order} order`);
    return order;
  };
  await check(`${here}: default order: by name, ascending`, async () => {
    eq(await checkOrder('name', 'default'), 'asc', 'default order');
  });
  await check(`${here}: cells: size (data-bytes, title, human), mtime (UTC ISO 8601), actions`, async () => {
    for (const f of sd.files) {
      const row = page.locator('table.listing tr.file').filter({
        has: page.getByRole('link', { name: f.name, exact: true }) });
      eq(await row.count(), 1, `rows for ${f.name}`);
      const size = row.locator('td.size');
      eq(await size.getAttribute('data-bytes'), String(f.bytes), `${f.name} data-bytes`);
      eq(await size.getAttribute('title'), `${f.bytes} bytes`, `${f.name} title`);
      const human = (await size.textContent()).trim();
      if (f.bytes >= 10240) assert(/^[\d.,]+\s?(KiB|MiB)$/.test(human), `${f.name}: human size "${human}"`);
      const dt = await row.locator('td.mtime time').getAttribute('datetime');
      assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(dt), `${f.name}: datetime ${dt}`);
      if (f.mtime) eq(dt, iso(f.mtime), `${f.name} mtime`);
      const fileUrl = here + encodeURIComponent(f.name);
      eq(where(page, await row.locator('td.actions a.download').getAttribute('href')), fileUrl, 'download href');
      assert((await row.locator('td.actions a.download').getAttribute('download')) !== null, 'download attribute');
      eq(where(page, await row.locator('td.actions a.versions').getAttribute('href')), `${fileUrl}?versions`,
         'versions href');
      eq(where(page, await row.locator('td.name a').getAttribute('href')), fileUrl, 'name href');
    }
    for (const { name: d, mtime } of sd.dirs) {
      const row = page.locator('table.listing tr.dir').filter({
        has: page.getByRole('link', { name: `${d}/`, exact: true }) });
      eq(await row.locator('td.mtime time').getAttribute('datetime'), iso(mtime), `${d} mtime`);
      eq(where(page, await row.locator('td.name a').getAttribute('href')), `${here}${d}/`, `${d} href`);
      eq(await row.locator('td.size').getAttribute('data-bytes'), null, `${d}: no data-bytes`);
      eq((await row.locator('td.size').textContent()).trim(), '', `${d}: empty size cell`);
    }
  });
  await screenshot(page, 'listing-by-name');
  for (const [key, label] of [['size', 'size'], ['mtime', 'time']]) {
    let first = null;
    await check(`${here}: click the ${label} header: rows and aria-sort`, async () => {
      await clickNav(page, page.locator(`table.listing thead th.${key} a`));
      first = await checkOrder(key, `by ${label}, first click`);
    });
    await screenshot(page, `listing-by-${key}`);
    await check(`${here}: the ${label} header's other order`, async () => {
      const other = first === 'desc' ? 'asc' : 'desc';
      // Clicking the sorted column's header again, if it offers the other
      // order; else the URL that the contract names for it.
      const href = await page.locator(`table.listing thead th.${key} a`).getAttribute('href');
      const q = new URL(href, page.url()).searchParams;
      if (q.get('sort') === key && q.get('order') === other)
        await clickNav(page, page.locator(`table.listing thead th.${key} a`));
      else await page.goto(`${base}${here}?sort=${key}&order=${other}`);
      eq(await checkOrder(key, `by ${label}, ${other}`), other, 'order');
    });
  }

  // 4. Download by clicking the download link.
  await page.goto(base + here);
  await check(`${here}: click "download" of ${spec.download.name}: the same bytes`, async () => {
    const row = page.locator('table.listing tr.file').filter({
      has: page.getByRole('link', { name: spec.download.name, exact: true }) });
    const dl = page.waitForEvent('download');
    dl.catch(() => {});
    await row.locator('a.download').click();
    const d = await dl;
    eq(d.suggestedFilename(), spec.download.name, 'file name');
    eq(where(page, d.url()), here + encodeURIComponent(spec.download.name), 'URL');
    const p = await d.path();
    const bytes = fs.readFileSync(p);
    eq(bytes.length, spec.download.bytes, 'length');
    eq(sha1(bytes), spec.download.sha1, 'SHA-1');
  });

  // 5. The versions page, reached from the live listing.
  const v = spec.versions;
  const vdir = v.path.replace(/[^/]*$/, '');
  const vname = v.path.slice(vdir.length);
  const liveUrl = `/dav/${enc(v.path)}`;
  await page.goto(`${base}/dav/${enc(vdir)}`);
  await clickOrGo(page, `/dav/${vdir}: the versions link of ${vname}`,
    page.locator('table.listing tr.file').filter({ has: page.getByRole('link', { name: vname, exact: true }) })
      .locator('a.versions'), `${base}${liveUrl}?versions`);
  resp = await page.goto(`${base}${liveUrl}?versions`);
  await commonPageChecks(page, resp, `${liveUrl}?versions`);
  await screenshot(page, 'versions');
  const checkVersions = async (label) => {
    await check(`${label}: h1 names ${v.path}; the current file`, async () => {
      const h1 = (await page.locator('h1').textContent()).trim();
      assert(h1.includes(`/dav/${v.path}`), `h1: ${h1}`);
      const cur = await page.locator('section.current').innerText();
      assert(cur.includes(v.live.sha1), `section.current lacks the live SHA-1: ${cur}`);
    });
    await check(`${label}: ${v.groups.reduce((n, gr) => n + gr.members.length, 0)} versions in ${v.groups.length} groups`,
      async () => {
        const groups = await page.$$eval('section.version-group', (ss) => ss.map((s) => ({
          sha1: s.dataset.sha1,
          rows: [...s.querySelectorAll('tr.version')].map((tr) => ({
            snapshot: tr.dataset.snapshot,
            bytes: (tr.querySelector('td.size') || {}).dataset?.bytes,
            sha1: ((tr.querySelector('td.sha1 code') || {}).textContent || '').trim(),
            download: tr.querySelector('a.download')?.getAttribute('href'),
            snaplink: tr.querySelector('td.snapshot a')?.getAttribute('href'),
            mtime: tr.querySelector('td.mtime time')?.getAttribute('datetime'),
          })),
        })));
        eq(groups.map((gr) => gr.sha1), v.groups.map((gr) => gr.sha1), 'groups (data-sha1)');
        eq(groups.map((gr) => gr.rows.map((r) => r.snapshot)), v.groups.map((gr) => gr.members), 'members');
        for (const [i, gr] of groups.entries()) {
          for (const r of gr.rows) {
            eq(r.bytes, String(v.groups[i].bytes), `${r.snapshot} data-bytes`);
            eq(r.sha1, v.groups[i].sha1, `${r.snapshot} sha1 cell`);
            eq(where(page, r.download), `/snapshots/${r.snapshot}/${enc(v.path)}`, `${r.snapshot} download`);
            eq(where(page, r.snaplink || ''), `/snapshots/${r.snapshot}/`, `${r.snapshot} snapshot link`);
            assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(r.mtime || ''), `${r.snapshot} mtime ${r.mtime}`);
          }
        }
        eq(await page.locator('tr.version').count(), groups.reduce((n, gr) => n + gr.rows.length, 0),
           'no version row outside a group');
      });
    await check(`${label}: one restore form per version, posting to ${liveUrl}`, async () => {
      const forms = await page.$$eval('tr.version', (trs) => trs.map((tr) => {
        const f = tr.querySelector('form.restore');
        if (!f) return null;
        const val = (n) => f.querySelector(`input[type="hidden"][name="${n}"]`)?.value;
        return { snapshot: tr.dataset.snapshot, method: f.getAttribute('method'),
          action: new URL(f.getAttribute('action'), location.href).pathname,
          act: val('action'), snap: val('snapshot'), token: !!val('token'),
          button: f.querySelector('button[type="submit"]')?.textContent.trim() };
      }));
      eq(forms.length, v.groups.reduce((n, gr) => n + gr.members.length, 0), 'version rows');
      for (const f of forms) {
        assert(f, 'a version row without a restore form');
        eq([f.method.toLowerCase(), f.action, f.act, f.snap, f.token, f.button],
           ['post', liveUrl, 'restore', f.snapshot, true, 'Restore'], `form of ${f.snapshot}`);
      }
    });
  };
  await checkVersions(`${liveUrl}?versions`);
  const old = v.groups[1].members[0];
  await check(`versions: download the ${old} version by its link: its bytes`, async () => {
    const dl = page.waitForEvent('download');
    dl.catch(() => {});
    await page.locator(`tr.version[data-snapshot="${old}"] a.download`).click();
    const d = await dl;
    eq(sha1(fs.readFileSync(await d.path())), v.groups[1].sha1, 'SHA-1');
  });
  await page.goto(`${base}/snapshots/${old}/${enc(v.path)}?versions`);
  await checkVersions(`/snapshots/${old}/${v.path}?versions`);
  await screenshot(page, 'versions-from-snapshot');

  // 7. Forged restores: refused with 403, the live file unchanged.
  await page.goto(`${base}${liveUrl}?versions`);
  const r = v.restore;
  const token = await page.locator(`tr.version[data-snapshot="${r.snapshot}"] form.restore input[name="token"]`)
    .getAttribute('value').catch(() => null);
  const liveSha1 = async () => sha1(await (await ctx.request.get(base + liveUrl)).body());
  const form = (fields) => new URLSearchParams(fields).toString();
  const forged = [
    ['without a token', { action: 'restore', snapshot: r.snapshot }, { Origin: origin }],
    ['with a wrong token', { action: 'restore', snapshot: r.snapshot, token: `x${token}` }, { Origin: origin }],
    ['with an empty token', { action: 'restore', snapshot: r.snapshot, token: '' }, { Origin: origin }],
    ['with the valid token from another Origin', { action: 'restore', snapshot: r.snapshot, token },
      { Origin: 'http://evil.example' }],
    ['with the valid token, Origin null', { action: 'restore', snapshot: r.snapshot, token }, { Origin: 'null' }],
    ['with the valid token, no Origin, a foreign Referer', { action: 'restore', snapshot: r.snapshot, token },
      { Referer: 'http://evil.example/page' }],
    ['with the valid token, neither Origin nor Referer', { action: 'restore', snapshot: r.snapshot, token }, {}],
  ];
  for (const [what, fields, headers] of forged) {
    await check(`restore POST ${what}: 403, a body naming the cause, live file unchanged`, async () => {
      assert(token, 'no token on the versions page');
      const res = await ctx.request.post(base + liveUrl, {
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
        data: form(fields), failOnStatusCode: false, maxRedirects: 0 });
      eq(res.status(), 403, 'status');
      assert((await res.text()).trim().length > 0, 'empty body');
      eq(await liveSha1(), r.live_sha1, 'live file SHA-1');
    });
  }
  // A page of another origin (another loopback port) whose form posts,
  // with the valid token, to the live file: the browser's own Origin.
  await check('restore from a page of another origin (auto-submitted form): 403, live file unchanged', async () => {
    assert(token, 'no token on the versions page');
    const attacker = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<!DOCTYPE html><form id="f" method="post" action="${base}${liveUrl}">
        <input type="hidden" name="action" value="restore"><input type="hidden" name="snapshot" value="${r.snapshot}">
        <input type="hidden" name="token" value="${token}"><button>go</button></form>
        <script>document.getElementById('f').submit()</script>`);
    });
    await new Promise((ok) => attacker.listen(0, '127.0.0.1', ok));
    const evil = `http://127.0.0.1:${attacker.address().port}/`;
    const actx = await browser.newContext();
    try {
      const ap = await actx.newPage();
      const post = ap.waitForResponse((x) => x.request().method() === 'POST', { timeout: TIMEOUT * 2 });
      post.catch(() => {});
      await ap.goto(evil);
      const res = await post;
      eq(res.request().headers()['origin'], new URL(evil).origin, 'the browser sent its own origin');
      eq(res.status(), 403, 'status');
      await screenshot(ap, 'forged-restore-cross-origin');
    } finally {
      await actx.close();
      attacker.close();
    }
    eq(await liveSha1(), r.live_sha1, 'live file SHA-1');
  });

  // The control for the refusals above: the same request with the valid
  // token and the page's own Origin restores (here the other version).
  let current = r.live_sha1;
  const ctl = v.groups.find((gr) => !gr.members.includes(r.snapshot));
  await check(`restore POST with the valid token and the page's Origin (${ctl.members[0]}): 200, restored`, async () => {
    assert(token, 'no token on the versions page');
    const res = await ctx.request.post(base + liveUrl, {
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: origin },
      data: form({ action: 'restore', snapshot: ctl.members[0], token }), failOnStatusCode: false, maxRedirects: 0 });
    eq(res.status(), 200, 'status');
    current = await liveSha1();
    eq(current, ctl.sha1, 'live file SHA-1');
  });

  // A restore is a COPY: a lock on the live file, whose token the
  // browser does not send, makes it fail (423) and changes nothing.
  await check('click Restore while a WebDAV client holds a lock on the live file: 423, unchanged', async () => {
    const lock = await ctx.request.fetch(base + liveUrl, {
      method: 'LOCK', headers: { 'Content-Type': 'application/xml', Timeout: 'Second-120' },
      data: '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
        + '<D:locktype><D:write/></D:locktype><D:owner>t/81</D:owner></D:lockinfo>',
      failOnStatusCode: false });
    eq(lock.status(), 200, 'LOCK');
    const tok = lock.headers()['lock-token'];
    // Chromium logs the refused navigation itself as a console error.
    g.bad.allow = /status of 423/;
    try {
      await page.goto(`${base}${liveUrl}?versions`);
      const res = await clickNav(page,
        page.locator(`tr.version[data-snapshot="${r.snapshot}"]`).getByRole('button', { name: 'Restore' }));
      eq(res.status(), 423, 'status');
      await screenshot(page, 'restore-locked');
      eq(await liveSha1(), current, 'live file SHA-1');
    } finally {
      g.bad.allow = null;
      const un = await ctx.request.fetch(base + liveUrl, { method: 'UNLOCK', headers: { 'Lock-Token': tok || '' },
        failOnStatusCode: false });
      eq(un.status(), 204, 'UNLOCK');
    }
  });

  // 6. Restore the oldest version by its button.
  await page.goto(`${base}${liveUrl}?versions`);
  await check(`click Restore of ${r.snapshot}: 200, "Restored ... from snapshot ${r.snapshot}"`, async () => {
    const res = await clickNav(page,
      page.locator(`tr.version[data-snapshot="${r.snapshot}"]`).getByRole('button', { name: 'Restore' }));
    eq(res.request().method(), 'POST', 'method');
    eq(res.status(), 200, 'status');
    const text = (await page.locator('p.restored').textContent()).trim().replace(/\s+/g, ' ');
    eq(text, `Restored ${v.path} from snapshot ${r.snapshot}`, 'p.restored');
    eq(where(page, await page.locator('a.restored-file').getAttribute('href')), liveUrl, 'link to the file');
  });
  await screenshot(page, 'restored');
  await check(`after the restore: GET ${liveUrl} gives the ${r.snapshot} bytes`, async () => {
    const body = await (await ctx.request.get(base + liveUrl)).body();
    eq(body.length, r.bytes, 'length');
    eq(sha1(body), r.sha1, 'SHA-1');
  });

  // A file deleted from the live tree, found through a snapshot's folder
  // and brought back: the commonest restore of all.
  const a = spec.absent;
  await page.goto(`${base}/snapshots/${a.snapshot}/${enc(a.path.replace(/[^/]*$/, ''))}`);
  await clickOrGo(page, `/snapshots/${a.snapshot}/: the versions link of ${a.path}`,
    page.locator('table.listing tr.file').filter({
      has: page.getByRole('link', { name: a.path.replace(/.*\//, ''), exact: true }) }).locator('a.versions'),
    `${base}/snapshots/${a.snapshot}/${enc(a.path)}?versions`);
  await screenshot(page, 'versions-deleted-file');
  await check(`versions of ${a.path}, deleted live: "does not exist now", one version`, async () => {
    eq((await page.locator('section.current p.absent').textContent()).trim(),
       `/dav/${a.path} does not exist now.`, 'p.absent');
    eq(await page.$$eval('tr.version', (trs) => trs.map((t) => t.dataset.snapshot)), [a.snapshot], 'versions');
  });
  await check(`restore ${a.path} from ${a.snapshot}: the file is back, with its bytes`, async () => {
    const res = await clickNav(page, page.getByRole('button', { name: 'Restore' }));
    eq(res.status(), 200, 'status');
    eq((await page.locator('p.restored').textContent()).trim(), `Restored ${a.path} from snapshot ${a.snapshot}`,
       'p.restored');
    await clickNav(page, page.locator('a.restored-file'));
    eq(where(page, page.url()), `/dav/${enc(a.path)}`, 'the link leads to the live file');
    const body = await (await ctx.request.get(`${base}/dav/${enc(a.path)}`)).body();
    eq(sha1(body), a.sha1, 'SHA-1 of the live file');
  });

  // Hostile names, live and in a snapshot.
  for (const dir of [`/dav/${spec.hostile.dir}/`, `/snapshots/${spec.hostile.snapshot}/${spec.hostile.dir}/`]) {
    await hostile(page, dir);
  }
  await g.report();
  await ctx.close();

  // Without JavaScript: browse and sort.
  const nojs = await browser.newContext({ javaScriptEnabled: false });
  const gn = guard(nojs, 'without JavaScript');
  const np = await nojs.newPage();
  await np.goto(base + '/snapshots/');
  here = `/snapshots/${b.snapshot}/`;
  await clickOrGo(np, `without JavaScript: click "${b.snapshot}"`,
    np.getByRole('link', { name: b.snapshot, exact: true }), base + here);
  for (const d of b.levels) {
    here += `${d}/`;
    await clickOrGo(np, `without JavaScript: click "${d}/"`, np.getByRole('link', { name: `${d}/`, exact: true }),
      base + here);
  }
  await check('without JavaScript: sort by size by clicking its header', async () => {
    await clickNav(np, np.locator('table.listing thead th.size a'));
    const sorts = await ariaSorts(np);
    assert(/^(ascending|descending)$/.test(sorts.size || ''), `aria-sort: ${JSON.stringify(sorts)}`);
    const files = (await rowNames(np)).filter((x) => x[0] === 'file').map((x) => x[1]);
    eq(files, want('size', sorts.size === 'ascending' ? 'asc' : 'desc'), 'files');
  });
  await screenshot(np, 'nojs-by-size');
  await np.goto(`${base}${liveUrl}?versions`);
  await check('without JavaScript: the versions page has its restore buttons', async () => {
    eq(await np.getByRole('button', { name: 'Restore' }).count(), 3, 'buttons');
  });
  await gn.report();
  await nojs.close();

  // A phone: 390x844, the page itself never scrolls sideways.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true,
    hasTouch: true, deviceScaleFactor: 2 });
  const gp = guard(phone, 'phone');
  const pp = await phone.newPage();
  for (const [name, url] of [['snapshots', '/snapshots/'], ['listing', `/snapshots/${b.snapshot}/${b.levels.join('/')}/`],
    ['hostile', `/dav/${spec.hostile.dir}/`], ['versions', `${liveUrl}?versions`]]) {
    await pp.goto(base + url);
    await check(`phone 390x844: ${url}: laid out at 390 px, no sideways scrolling of the page`, async () => {
      const m = await pp.evaluate(() => ({ inner: window.innerWidth,
        scroll: document.documentElement.scrollWidth, body: document.body.scrollWidth }));
      eq(m.inner, 390, 'layout viewport width (viewport meta)');
      assert(m.scroll <= 390 && m.body <= 390, `page wider than the screen: ${JSON.stringify(m)}`);
      assert(await pp.locator('table').first().isVisible(), 'table not visible');
    });
    await check(`phone 390x844: ${url}: every shown header sits over its column`, async () => {
      eq(await pp.evaluate(misaligned), [], 'misaligned columns');
    });
    await screenshot(pp, `phone-${name}`);
  }
  await gp.report();
  await phone.close();

  // Dark mode through prefers-color-scheme (and light stays light).
  for (const scheme of ['dark', 'light']) {
    const c = await browser.newContext({ colorScheme: scheme });
    const p = await c.newPage();
    for (const url of ['/snapshots/', `${liveUrl}?versions`, `/dav/${enc(vdir)}`]) {
      await p.goto(base + url);
      await check(`${scheme} mode: ${url}: ${scheme} background, contrasting text`, async () => {
        const { bg, fg } = await p.evaluate(() => {
          const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
          let bg = null;
          for (const el of [document.body, document.documentElement]) {
            const c = rgb(getComputedStyle(el).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0)) { bg = c; break; }
          }
          // Transparent all the way: the canvas, dark only under a dark color-scheme.
          if (!bg) bg = /dark/.test(getComputedStyle(document.documentElement).colorScheme)
            && matchMedia('(prefers-color-scheme: dark)').matches ? [18, 18, 18] : [255, 255, 255];
          return { bg, fg: rgb(getComputedStyle(document.querySelector('td, p, h1') || document.body).color) };
        });
        const lum = (c) => (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;
        if (scheme === 'dark') {
          assert(lum(bg) < 0.25, `background ${bg} not dark`);
          assert(lum(fg) > 0.5, `text ${fg} not light`);
        } else {
          assert(lum(bg) > 0.75, `background ${bg} not light`);
          assert(lum(fg) < 0.5, `text ${fg} not dark`);
        }
      });
      await screenshot(p, `${scheme}-${url.replace(/[^a-z]+/g, '-')}`);
    }
    await c.close();
  }
}

// Hostile names: listed as text, each link opens the right thing.
async function hostile(page, dir) {
  const h = spec.hostile;
  const names = Object.keys(h.files);
  let resp = await page.goto(base + dir.split('/').map(encodeURIComponent).join('/'));
  await check(`${dir}: a listing page`, () => eq(resp.status(), 200, 'status'));
  await screenshot(page, `hostile-${dir.startsWith('/dav') ? 'live' : 'snapshot'}`);
  await check(`${dir}: every name listed as text, exactly`, async () => {
    const got = await page.$$eval('table.listing td.name a', (as) => as.map((a) => a.textContent));
    eq(got.slice().sort(), [...names, ...h.dirs.map((d) => `${d}/`)].sort(), 'link texts');
  });
  await check(`${dir}: no element made of a name (img, on* attributes), every href http(s)`, async () => {
    const r = await page.evaluate(() => ({
      img: document.querySelectorAll('img').length,
      on: [...document.querySelectorAll('*')].flatMap((e) => [...e.attributes].map((a) => a.name))
        .filter((n) => /^on/i.test(n)),
      hrefs: [...document.querySelectorAll('[href], [src], [action]')]
        .map((e) => e.href || e.src || e.action).filter((u) => !/^https?:/.test(u)),
    }));
    eq(r, { img: 0, on: [], hrefs: [] }, 'page');
  });
  for (const n of names) {
    await check(`${dir}: click "${n}": that file`, async () => {
      await page.goto(base + dir.split('/').map(encodeURIComponent).join('/'));
      const res = await clickNav(page, page.locator('table.listing td.name').getByRole('link', { name: n, exact: true }));
      eq(res.status(), 200, 'status');
      const segs = new URL(page.url()).pathname.split('/');
      eq(decodeURIComponent(segs[segs.length - 1]), n, 'URL names the file');
      eq((await res.body()).toString('utf8'), h.files[n], 'content');
    });
  }
  for (const d of h.dirs) {
    await check(`${dir}: click "${d}/": that folder`, async () => {
      await page.goto(base + dir.split('/').map(encodeURIComponent).join('/'));
      const res = await clickNav(page, page.getByRole('link', { name: `${d}/`, exact: true }));
      eq(res.status(), 200, 'status');
      const segs = new URL(page.url()).pathname.split('/');
      eq(decodeURIComponent(segs[segs.length - 2]), d, 'URL names the folder');
      eq(await page.getByRole('link', { name: 'inside.txt', exact: true }).count(), 1, 'its file listed');
      const crumb = await page.locator('nav.breadcrumbs [aria-current="page"]').textContent();
      assert(crumb.includes(d), `current crumb: ${crumb}`);
      eq(await page.locator('img').count(), 0, 'img elements');
    });
  }
  const evil = names.find((n) => n.startsWith('<img'));
  await check(`${dir}: the versions page of "${evil}" shows its name as text`, async () => {
    await page.goto(base + dir.split('/').map(encodeURIComponent).join('/'));
    await clickNav(page, page.locator('table.listing tr.file').filter({
      has: page.getByRole('link', { name: evil, exact: true }) }).locator('a.versions'));
    assert((await page.locator('h1').textContent()).includes(evil), 'h1 lacks the name');
    eq(await page.locator('img').count(), 0, 'img elements');
  });
}

// ---------------------------------------------------------------- production
async function productionMode(browser) {
  const url = `/dav/${enc(spec.path)}`;
  const opts = (who) => ({ ignoreHTTPSErrors: true, httpCredentials: { username: who[0], password: who[1] } });
  const wctx = await browser.newContext(opts(spec.writer));
  const gw = guard(wctx, 'production writer');
  const wp = await wctx.newPage();
  await wp.goto(`${base}${url}?versions`);
  await screenshot(wp, 'writer-versions');
  let token = null;
  await check(`writer ${spec.writer[0]}: the versions page offers Restore`, async () => {
    eq(await wp.getByRole('button', { name: 'Restore' }).count(), 1, 'Restore buttons');
    token = await wp.locator('form.restore input[name="token"]').getAttribute('value');
  });

  const rctx = await browser.newContext(opts(spec.reader));
  const gr = guard(rctx, 'production reader');
  const rp = await rctx.newPage();
  const resp = await rp.goto(`${base}/dav/`);
  await check(`reader ${spec.reader[0]}: sees the live listing`, async () => {
    eq(resp.status(), 200, 'status');
    assert(await rp.getByRole('link', { name: spec.path, exact: true }).count() === 1, 'file not listed');
  });
  await rp.goto(`${base}/snapshots/`);
  await check(`reader ${spec.reader[0]}: sees /snapshots/`, async () => {
    eq(await rp.locator(`tr.snapshot[data-name="${spec.snapshot}"]`).count(), 1, 'snapshot row');
  });
  await rp.goto(`${base}${url}?versions`);
  await screenshot(rp, 'reader-versions');
  await check(`reader ${spec.reader[0]}: the versions page, without restore form or button`, async () => {
    eq(await rp.locator('tr.version').count(), 1, 'version rows');
    eq(await rp.locator('form').count(), 0, 'forms');
    eq(await rp.getByRole('button').count(), 0, 'buttons');
    eq(await rp.locator('input[name="token"]').count(), 0, 'tokens');
  });
  const liveSha1 = async () => sha1(await (await rctx.request.get(base + url)).body());
  for (const [what, tok] of [['without a token', undefined], [`with ${spec.writer[0]}'s token`, token],
    ['with a made-up token', 'A'.repeat(64)]]) {
    await check(`reader ${spec.reader[0]}: same-origin restore POST ${what}: 403, unchanged`, async () => {
      const fields = { action: 'restore', snapshot: spec.snapshot };
      if (tok !== undefined) fields.token = tok;
      const res = await rctx.request.post(base + url, {
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: origin, Referer: `${base}${url}?versions` },
        data: new URLSearchParams(fields).toString(), failOnStatusCode: false, maxRedirects: 0 });
      eq(res.status(), 403, 'status');
      eq(await liveSha1(), spec.live_sha1, 'live file SHA-1');
    });
  }
  await gr.report();
  await rctx.close();

  // The writer's own restore works, so the refusals above are the reader's.
  await check(`writer ${spec.writer[0]}: Restore works`, async () => {
    const res = await clickNav(wp, wp.getByRole('button', { name: 'Restore' }));
    eq(res.status(), 200, 'status');
    assert(await wp.locator('p.restored').count() === 1, 'no p.restored');
  });
  await screenshot(wp, 'writer-restored');
  await gw.report();
  await wctx.close();
}

(async () => {
  fs.mkdirSync(spec.artifacts, { recursive: true });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // As root, Chromium refuses to start with its sandbox.
    args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
  });
  try {
    if (spec.mode === 'main') await mainMode(browser);
    else if (spec.mode === 'production') await productionMode(browser);
    else throw new Error(`unknown mode ${spec.mode}`);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
