#!/usr/bin/env bash
# Installs the OHIF viewer (v3) that `radport serve` serves at /viewer/: the prebuilt `dist/`
# of npm's @ohif/app, fetched with `npm pack` (no global install, nothing run from the
# package), into viewer/ at the repository's root or $RADPORT_VIEWER_DIR (radport's
# --viewer-dir). The package is built to be served at `/`: its files are rewritten here for
# /viewer/ (webpack's public path, window.PUBLIC_URL, the index page's and styles' absolute
# paths), and the index page's inline scripts move into a file so that the viewer's
# Content-Security-Policy allows scripts from the server only. radport writes app-config.js
# itself (its DICOMweb); the package's stays unused.
#
# Optional: without npm (or node) the viewer is skipped, and radport runs without it. The
# tarball is kept in ~/.cache/radport (or $RADPORT_VIEWER_CACHE), and a viewer already
# installed from it is left as it is: running this again costs nothing.
set -euo pipefail

version="3.13.2"
base="/viewer/"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${RADPORT_VIEWER_DIR:-$root/viewer}"
cache="${RADPORT_VIEWER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/radport}"
stamp="@ohif/app@$version for $base"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "== npm is missing: the OHIF viewer is skipped (radport runs without it; install npm and run scripts/install-viewer.sh to add it)"
  exit 0
fi

if [ -f "$dest/.radport-viewer" ] && [ "$(cat "$dest/.radport-viewer")" = "$stamp" ]; then
  echo "== the OHIF viewer ($version) is installed in $dest"
  exit 0
fi

tarball="$cache/ohif-app-$version.tgz"
if [ ! -s "$tarball" ]; then
  echo "== fetching the OHIF viewer: npm pack @ohif/app@$version (about 50 MB)"
  mkdir -p "$cache"
  work="$(mktemp -d "$cache/pack.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack "@ohif/app@$version" --silent --no-fund --no-audit >/dev/null)
  mv "$work/ohif-app-$version.tgz" "$tarball"
  rm -rf "$work"
  trap - EXIT
fi

echo "== installing the OHIF viewer ($version) into $dest"
mkdir -p "$(dirname "$dest")"
staging="$(mktemp -d "$(dirname "$dest")/.viewer-staging.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
tar -xzf "$tarball" -C "$staging" package/dist
dist="$staging/package/dist"

# The rewrite for the base path. Every change is checked: a package whose files no longer
# look as expected fails here, not in the browser.
node - "$dist" "$base" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const [dist, base] = process.argv.slice(2);
const read = (f) => fs.readFileSync(path.join(dist, f), 'utf8');
const write = (f, s) => fs.writeFileSync(path.join(dist, f), s);
const fail = (m) => { console.error(`install-viewer: ${m}`); process.exit(1); };

// The index page: absolute paths under the base, inline scripts into radport-boot.js.
let index = read('index.html').replace(/(\s(?:href|src|content))="\/(?!\/)/g, `$1="${base}`);
const inline = [];
index = index.replace(/<script>([\s\S]*?)<\/script>/g, (_, code) => {
  inline.push(code.replace(/window\.PUBLIC_URL\s*=\s*"\/"/g, `window.PUBLIC_URL=${JSON.stringify(base)}`));
  return inline.length === 1 ? `<script src="${base}radport-boot.js"></script>` : '';
});
if (!inline.some((c) => c.includes(`PUBLIC_URL=${JSON.stringify(base)}`))) fail('index.html sets no window.PUBLIC_URL');
write('radport-boot.js', inline.map((c) => `${c};\n`).join(''));
if (!index.includes(`src="${base}app-config.js"`)) fail('index.html does not load app-config.js');
if (/(?:href|src)="(?:https?:)?\/\//.test(index)) fail('index.html loads something from another host');
write('index.html', index);

// Webpack's public path in every bundle (the app's and its workers').
let bundles = 0;
for (const f of fs.readdirSync(dist)) {
  if (f.endsWith('.js')) {
    const s = read(f);
    const t = s.replace(/__webpack_require__\.p = "\/";/g, `__webpack_require__.p = ${JSON.stringify(base)};`);
    if (t !== s) { write(f, t); bundles += 1; }
  } else if (f.endsWith('.css')) {
    write(f, read(f).replace(/url\(\/(?!\/)/g, `url(${base}`));
  }
}
if (bundles === 0) fail('no bundle sets webpack\'s public path to "/"');

// The web app manifest's paths.
const manifest = JSON.parse(read('manifest.json'));
const under = (u) => (typeof u === 'string' && u.startsWith('/') && !u.startsWith('//') ? base + u.slice(1) : u);
if (manifest.start_url) manifest.start_url = under(manifest.start_url);
if (manifest.scope) manifest.scope = under(manifest.scope);
for (const icon of manifest.icons || []) icon.src = under(icon.src);
write('manifest.json', JSON.stringify(manifest, null, 2));

// radport serves its own configuration; hosting files of other servers are not needed.
for (const f of ['app-config.js', '_headers', '_redirects', 'serve.json']) fs.rmSync(path.join(dist, f), { force: true });
console.log(`   ${bundles} bundles rewritten for ${base}`);
EOF

echo "$stamp" > "$dist/.radport-viewer"
rm -rf "$dest.old"
if [ -e "$dest" ]; then mv "$dest" "$dest.old"; fi
mv "$dist" "$dest"
rm -rf "$dest.old" "$staging"
trap - EXIT
echo "== the OHIF viewer is installed: radport serves it at $base"
