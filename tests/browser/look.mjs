// What a user sees in headless Chromium, as JSON on stdout, for the pytest browser tests.
//
//   node look.mjs report FILE.html... for each page: its visible text, each graph step's name, status text and
//                                     colours, the errors shown, and every request the page made
//   node look.mjs mermaid FILE.json   renders each Mermaid diagram of a JSON list with the npm mermaid package:
//                                     the error, or the node labels drawn
//   node look.mjs site DIR START...   every page of a static site (the package's pkgdown site) reachable from
//                                     START: its title, headings and text, its broken links, failed requests
//
// playwright-core and mermaid come from .tools (make setup); Chromium is Debian's. The machine has no network,
// so Chromium runs with everything that would call home turned off, in a fresh profile.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(root, '.tools', 'node_modules', 'package.json'));
const { chromium } = require('playwright-core');

const [mode, ...files] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'metaflow-r-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  let result = [];
  if (mode === 'site') {
    result = await crawlSite(context, files[0], files.slice(1));
  } else {
    for (const file of files) {
      const page = await context.newPage();
      await page.setViewportSize({ width: 1200, height: 900 });
      result.push(mode === 'report' ? await lookAtReport(page, file) : await renderMermaid(page, file));
      await page.close();
    }
  }
  process.stdout.write(JSON.stringify(result));
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}

async function lookAtReport(page, file) {
  const requests = [];
  page.on('request', (request) => requests.push(request.url()));
  await page.goto('file://' + path.resolve(file));
  const steps = [];
  for (const node of await page.locator('svg.dag g.step').all()) {
    const rect = node.locator('rect');
    steps.push({
      name: await node.locator('text.name').textContent(),
      subtitle: await node.locator('text.sub').textContent(),
      visible: await rect.isVisible(),
      fill: await rect.evaluate((el) => getComputedStyle(el).fill),
      box: await rect.boundingBox(),
    });
  }
  const rows = [];
  for (const row of await page.locator('tr.step-row').all()) {
    const cells = await row.locator('td').allInnerTexts();
    rows.push({ step: cells[0], status: cells[1], tasks: cells[2],
                badge: await row.locator('.badge').evaluate((el) => getComputedStyle(el).backgroundColor) });
  }
  const errors = [];
  for (const box of await page.locator('.error').all()) {
    errors.push({ text: await box.innerText(), visible: await box.isVisible() });
  }
  return {
    title: await page.title(),
    text: await page.locator('body').innerText(),
    steps,
    rows,
    errors,
    bars: await page.locator('svg.timeline rect').count(),
    requests,
  };
}

async function renderMermaid(page, file) {
  const diagrams = JSON.parse(fs.readFileSync(file, 'utf8'));
  await page.setContent('<!DOCTYPE html><html><body><div id="out"></div></body></html>');
  await page.addScriptTag({ path: path.join(root, '.tools', 'node_modules', 'mermaid', 'dist', 'mermaid.min.js') });
  return page.evaluate(async (texts) => {
    window.mermaid.initialize({ startOnLoad: false });
    const results = [];
    for (const [i, text] of texts.entries()) {
      try {
        const { svg } = await window.mermaid.render('diagram' + i, text);
        const holder = document.getElementById('out');
        holder.innerHTML = svg;
        const labels = [...holder.querySelectorAll('g.node')].map((n) => n.textContent.trim());
        results.push({ ok: true, labels, edges: holder.querySelectorAll('path.flowchart-link').length });
      } catch (error) {
        results.push({ ok: false, error: String(error.message || error) });
      }
    }
    return results;
  }, diagrams);
}

// node look.mjs site DIR START.html...: every page of a static site reachable from START pages through
// links inside DIR, each loaded in Chromium: its title, headings and text, its links inside DIR that lead
// nowhere, and the requests it made that failed.
async function crawlSite(context, dir, starts) {
  const root = path.resolve(dir);
  const queue = starts.map((start) => path.resolve(start));
  const seen = new Set(queue);
  const pages = [];
  while (queue.length) {
    const file = queue.shift();
    const page = await context.newPage();
    const failed = [];
    page.on('requestfailed', (request) => failed.push(request.url()));
    await page.goto('file://' + file);
    const links = await page.$$eval('a[href]', (anchors) => anchors.map((a) => a.href));
    const broken = [];
    for (const link of links) {
      if (!link.startsWith('file://')) continue;
      const target = decodeURIComponent(new URL(link).pathname);
      if (!target.startsWith(root)) continue;
      if (!fs.existsSync(target)) { broken.push(link); continue; }
      const html = fs.statSync(target).isDirectory() ? path.join(target, 'index.html') : target;
      if (html.endsWith('.html') && fs.existsSync(html) && !seen.has(html)) {
        seen.add(html);
        queue.push(html);
      }
    }
    pages.push({ file: path.relative(root, file), title: await page.title(),
                 headings: await page.locator('h1, h2').allInnerTexts(),
                 text: await page.locator('body').innerText(), broken, failed });
    await page.close();
  }
  return pages;
}
