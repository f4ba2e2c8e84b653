// Uploaded files: size, date, download, import, delete.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, emptyState, loading, formatSize, formatTime, timeAgo, confirmDialog, plural } from '../dom.js';
import { mayUploadSomewhere } from '../session.js';
import { link } from '../router.js';

export async function render(main) {
  const status = h('div', { 'aria-live': 'polite' });
  const list = h('div', {}, loading('Loading files…'));
  main.append(pageHeader('Files', 'Files uploaded into the archive\'s uploads area, waiting to be imported. Imports delete their file when every item was imported (unless told otherwise).',
    (mayUploadSomewhere() ? h('a', { class: 'btn primary', href: link('upload') }, 'Upload files') : null)), status, list);

  async function remove(file, button) {
    const ok = await confirmDialog('Delete this file?', `“${file.path}” (${formatSize(file.size)}) will be deleted from the uploads area. Series already imported from it stay.`);
    if (!ok) { button.focus(); return; }
    button.disabled = true;
    try {
      await api.deleteFile(file.path);
      replace(status, h('p', { class: 'notice ok', role: 'status' }, `Deleted ${file.path}.`));
      await load();
    } catch (e) {
      button.disabled = false;
      replace(status, errorBox(new Error(`Could not delete ${file.path}: ${e.message}`)));
    }
  }

  async function load() {
    try {
      const files = await api.files();
      if (!files.length) {
        replace(list, emptyState('No uploaded files', 'Upload a zip of DICOM files in Data Upload; it stays here until an import has used it.',
          (mayUploadSomewhere() ? h('a', { class: 'btn primary', href: link('upload') }, 'Start a Data Upload') : null)));
        return;
      }
      const total = files.reduce((n, f) => n + f.size, 0);
      replace(list, h('section', { class: 'panel' },
        h('p', { class: 'muted' }, `${plural(files.length, 'file')} · ${formatSize(total)}`),
        h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'files' },
          h('thead', {}, h('tr', {}, ['File', 'Size', 'Uploaded', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, files.map((f) => {
            const del = h('button', { class: 'btn small danger', type: 'button', dataset: { path: f.path } }, 'Delete');
            del.addEventListener('click', () => remove(f, del));
            return h('tr', { dataset: { path: f.path } },
              h('td', { class: 'mono' }, f.path),
              h('td', {}, formatSize(f.size)),
              h('td', { title: formatTime(f.modified) }, timeAgo(f.modified)),
              h('td', { class: 'right actions' },
                h('a', { class: 'btn small', href: api.fileUrl(f.path), download: f.path.split('/').pop() }, 'Download'),
                /\.zip$/i.test(f.path) ? h('a', { class: 'btn small', href: link('upload', [], { file: f.path, dataset: 'dicomupload', step: 3 }) }, 'Import…') : null,
                del));
          }))))));
    } catch (e) {
      replace(list, errorBox(e, load));
    }
  }
  await load();
}
