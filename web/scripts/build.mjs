// Builds the web root, web/dist/, from src/ and the pinned noVNC package. No bundler: the pages
// are plain HTML with ES modules, and noVNC's own ES modules are copied as published.
//
// Layout (what kube-gateway serves with -public-dir, and the webAppImage contract's
// /data/web/public):
//   index.html              the login page (as upstream's image)
//   login.html              the login page
//   console.html            the VNC console
//   vms.html                "Your VMs": what a signed-in person may open, and sharing
//   noVNC/vnc_lite.html     the console again, at the path upstream links use
//   assets/                 our CSS and JS
//   vendor/novnc/           @novnc/novnc's core/ and vendor/ (pako), with its licences
//   build-info.json         what went in (versions, file list with SHA-256)
//
// Reproducible: the same sources and lock file give byte-identical output (no timestamps, files
// written in sorted order).

import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const dist = process.env.WEB_DIST ? process.env.WEB_DIST : join(root, 'dist');
const novnc = join(root, 'node_modules', '@novnc', 'novnc');

if (!existsSync(join(novnc, 'core', 'rfb.js'))) {
  console.error('build: @novnc/novnc is not installed; run `npm ci` in web/ first');
  process.exit(1);
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

// Our pages and assets.
cpSync(join(src, 'assets'), join(dist, 'assets'), { recursive: true });
const login = readFileSync(join(src, 'login.html'), 'utf8');
const consolePage = readFileSync(join(src, 'console.html'), 'utf8');
writeFileSync(join(dist, 'login.html'), login);
writeFileSync(join(dist, 'index.html'), login);
writeFileSync(join(dist, 'console.html'), consolePage);
writeFileSync(join(dist, 'vms.html'), readFileSync(join(src, 'vms.html'), 'utf8'));

// The seed-era URL /noVNC/vnc_lite.html?path=... shows our console: same page, one directory
// down, so relative asset URLs get a "../".
const nested = consolePage.replaceAll('"assets/', '"../assets/');
if (nested === consolePage) {
  console.error('build: console.html references no "assets/..." URLs; cannot relocate it');
  process.exit(1);
}
mkdirSync(join(dist, 'noVNC'), { recursive: true });
writeFileSync(join(dist, 'noVNC', 'vnc_lite.html'), nested);

// noVNC as published (ES modules), with its licences.
const vendor = join(dist, 'vendor', 'novnc');
mkdirSync(vendor, { recursive: true });
cpSync(join(novnc, 'core'), join(vendor, 'core'), { recursive: true });
cpSync(join(novnc, 'vendor'), join(vendor, 'vendor'), { recursive: true });
for (const file of ['LICENSE.txt', 'AUTHORS']) {
  cpSync(join(novnc, file), join(vendor, file));
}
cpSync(join(novnc, 'docs'), join(vendor, 'docs'), {
  recursive: true,
  filter: (p) => statSync(p).isDirectory() || /LICENSE/.test(p),
});

// A manifest of what went in.
function files(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]));
}
const pkg = (p) => JSON.parse(readFileSync(p, 'utf8'));
const manifest = {
  app: pkg(join(root, 'package.json')).version,
  novnc: pkg(join(novnc, 'package.json')).version,
  files: Object.fromEntries(
    files(dist).map((f) => [
      relative(dist, f),
      createHash('sha256').update(readFileSync(f)).digest('hex'),
    ]),
  ),
};
writeFileSync(join(dist, 'build-info.json'), JSON.stringify(manifest, null, 2) + '\n');
console.log(
  `build: ${relative(process.cwd(), dist) || '.'} ready (${Object.keys(manifest.files).length} files, noVNC ${manifest.novnc})`,
);
