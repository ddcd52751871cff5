/* photocorpus serve: the pages' behaviour (decisions, keyboard review, export jobs).
 *
 * Safety rule, as in the explore report: user text is only ever put into the page with textContent.
 * Writes send the session cookie (automatically), the CSRF header (the csrf cookie's value, rendered
 * into <meta name="csrf-token">) and a fresh request id per click; a retry after a 503 re-sends the
 * same request id, so the server never applies one click twice.
 */
(function () {
  'use strict';

  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var statusEl = document.getElementById('pc-status');
  var api = { decisions: [], errors: [], busy: 0 };
  window.photocorpusServe = api;

  function say(text) { if (statusEl) statusEl.textContent = text; }

  function requestId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return 'r' + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function post(url, body, attempt) {
    attempt = attempt || 0;
    api.busy++;
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        api.busy--;
        if (response.status === 503 && data.retry && attempt < 5) {
          var wait = Number(response.headers.get('Retry-After') || 1) * 1000;
          say('The catalog is busy; retrying…');
          return new Promise(function (resolve) { setTimeout(resolve, wait); })
            .then(function () { return post(url, body, attempt + 1); });
        }
        if (!response.ok) throw new Error(data.error || ('HTTP ' + response.status));
        return data;
      });
    }).catch(function (err) {
      if (api.busy > 0 && attempt === 0) api.busy--;
      api.errors.push(String(err.message || err));
      say('Not saved: ' + (err.message || err));
      throw err;
    });
  }

  function decide(body) {
    body.request_id = requestId();
    return post('/api/decisions', body).then(function (data) {
      api.decisions.push(data.decision);
      say('Saved decision #' + data.decision.id + ' (' + data.decision.kind + ')');
      return data.decision;
    });
  }
  function undo(decisionId) {
    return post('/api/decisions/' + decisionId + '/undo', { request_id: requestId() }).then(function (data) {
      api.decisions.push(data.decision);
      say('Undid decision #' + decisionId);
      return data.decision;
    });
  }
  api.decide = decide;
  api.undo = undo;

  function ids(el) {
    return (el.dataset.ids || '').split(',').filter(Boolean).map(Number);
  }
  function selectedIn(el) {
    return Array.prototype.map.call(el.querySelectorAll('.pc-member.pc-selected'), function (m) {
      return Number(m.dataset.id);
    });
  }
  function toggleSelect(member) { member.classList.toggle('pc-selected'); }

  // Members of a duplicate group: a click on the caption area selects (the image still opens the photo
  // with a normal click; ctrl/shift-click or a click on the label selects).
  Array.prototype.forEach.call(document.querySelectorAll('.pc-member'), function (m) {
    m.addEventListener('click', function (e) {
      if (e.target.tagName === 'IMG' && !(e.ctrlKey || e.shiftKey || e.metaKey)) {
        if (document.body.dataset.page === 'review-duplicates') e.preventDefault(); else return;
      }
      e.preventDefault();
      toggleSelect(m);
    });
  });

  Array.prototype.forEach.call(document.querySelectorAll('.pc-undo'), function (b) {
    b.addEventListener('click', function () {
      undo(Number(b.dataset.decision)).then(function () { location.reload(); }, function () {});
    });
  });

  // ---------------------------------------------------------------- photo page
  var photo = document.getElementById('pc-photo');
  if (photo) {
    var photoId = Number(photo.dataset.id);
    var reload = function () { location.reload(); };
    Array.prototype.forEach.call(document.querySelectorAll('.pc-act'), function (b) {
      b.addEventListener('click', function () {
        decide({ kind: b.dataset.kind, photo_ids: [photoId] }).then(reload, function () {});
      });
    });
    document.getElementById('pc-set-label').addEventListener('click', function () {
      var label = document.getElementById('pc-new-label').value;
      decide({ kind: 'set_label', photo_ids: [photoId], label: label }).then(reload, function () {});
    });
    document.getElementById('pc-add-note').addEventListener('click', function () {
      var text = document.getElementById('pc-note-text').value;
      decide({ kind: 'note', photo_ids: [photoId], text: text }).then(reload, function () {});
    });
    var group = document.getElementById('pc-dup-group');
    if (group) {
      document.getElementById('pc-confirm-group').addEventListener('click', function () {
        decide({ kind: 'confirm_group', photo_ids: ids(group) }).then(reload, function () {});
      });
      document.getElementById('pc-split-selected').addEventListener('click', function () {
        var off = selectedIn(group);
        var keep = ids(group).filter(function (i) { return off.indexOf(i) < 0; });
        if (!off.length || !keep.length) { say('Select the photos to split off first (not all of them).'); return; }
        decide({ kind: 'split_group', photo_ids: keep, split_off: off }).then(reload, function () {});
      });
    }
  }

  // ---------------------------------------------------------------- review queues (keyboard)
  var queue = document.getElementById('pc-queue');
  if (queue) {
    var items = Array.prototype.slice.call(queue.querySelectorAll('.pc-queue-item'));
    var current = 0;
    var done = [];  // decision ids made on this page, for u
    var flagQueue = queue.dataset.queue;  // bots | quality | undefined (duplicates)
    api.current = function () { return current; };
    api.reviewed = function () { return queue.querySelectorAll('.pc-reviewed').length; };

    var focus = function (i) {
      if (!items.length) return;
      current = Math.max(0, Math.min(items.length - 1, i));
      items.forEach(function (el, j) { el.classList.toggle('pc-current', j === current); });
      items[current].focus({ preventScroll: true });
      items[current].scrollIntoView({ block: 'nearest' });
    };
    var mark = function (item, text, decision) {
      item.classList.add('pc-reviewed');
      item.querySelector('.pc-item-state').textContent = text;
      done.push({ item: item, id: decision.id });
    };
    var act = function (body, text) {
      var item = items[current];
      if (!item) return;
      var at = current;
      decide(body).then(function (d) { mark(item, text, d); if (current === at) focus(at + 1); }, function () {});
    };
    items.forEach(function (item, i) { item.addEventListener('click', function () { focus(i); }); });
    document.addEventListener('keydown', function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey || /INPUT|TEXTAREA|SELECT/.test(e.target.tagName)) return;
      var item = items[current];
      if (e.key === 'j') focus(current + 1);
      else if (e.key === 'k') focus(current - 1);
      else if (e.key === 'u') {
        var last = done.pop();
        if (last) undo(last.id).then(function () {
          last.item.classList.remove('pc-reviewed');
          last.item.querySelector('.pc-item-state').textContent = 'undone';
        }, function () {});
      } else if (!item) return;
      else if (flagQueue) {
        var photoIds = ids(item);
        var kind = flagQueue === 'bots' ? 'set_bot' : 'set_quality';
        // y: the automatic verdict is right; n: a person overrules it
        if (e.key === 'y') act({ kind: kind, photo_ids: photoIds, value: flagQueue === 'bots' }, 'confirmed');
        else if (e.key === 'n') act({ kind: kind, photo_ids: photoIds, value: flagQueue !== 'bots' }, 'overruled');
        else if (e.key === 'x') act({ kind: 'exclude', photo_ids: photoIds }, 'excluded');
      } else {
        var members = item.querySelectorAll('.pc-member');
        if (/^[1-9]$/.test(e.key) && members[Number(e.key) - 1]) toggleSelect(members[Number(e.key) - 1]);
        else if (e.key === 'c') act({ kind: 'confirm_group', photo_ids: ids(item) }, 'confirmed');
        else if (e.key === 's' || e.key === 'x') {
          var off = selectedIn(item);
          var keep = ids(item).filter(function (i) { return off.indexOf(i) < 0; });
          if (!off.length) { say('Select photos first (1-9 or click).'); return; }
          if (e.key === 'x') act({ kind: 'exclude', photo_ids: off }, 'excluded ' + off.length);
          else if (!keep.length) say('Keep at least one photo in the group.');
          else act({ kind: 'split_group', photo_ids: keep, split_off: off }, 'split');
        }
      }
    });
    focus(0);
    document.body.dataset.ready = '1';
  }

  // ---------------------------------------------------------------- grid: counts inside the filter
  var facetBox = document.getElementById('pc-facets');
  if (facetBox) {
    fetch('/api/facets?' + facetBox.dataset.query, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (facets) {
        facetBox.textContent = '';
        Object.keys(facets).forEach(function (name) {
          var details = document.createElement('details');
          details.open = true;
          var summary = document.createElement('summary');
          summary.textContent = name;
          details.appendChild(summary);
          var list = document.createElement('ul');
          list.className = 'pc-facets';
          facets[name].forEach(function (item) {
            var params = new URLSearchParams(facetBox.dataset.query);
            params.set(name, item.value);
            params.set('page', '1');
            var li = document.createElement('li');
            var a = document.createElement('a');
            a.href = '/grid?' + params.toString();
            a.textContent = item.value;
            var n = document.createElement('small');
            n.textContent = ' ' + item.count;
            li.appendChild(a);
            li.appendChild(n);
            list.appendChild(li);
          });
          details.appendChild(list);
          facetBox.appendChild(details);
        });
        facetBox.dataset.ready = '1';
      });
  }

  // ---------------------------------------------------------------- grid: export the current filter
  var exportBox = document.getElementById('pc-export');
  if (exportBox) {
    var progress = document.getElementById('pc-export-progress');
    var state = document.getElementById('pc-export-state');
    document.getElementById('pc-export-start').addEventListener('click', function () {
      var filters = {};
      new URLSearchParams(exportBox.dataset.filters).forEach(function (v, k) { filters[k] = v; });
      var fmt = document.getElementById('pc-export-format').value;
      post('/api/exports', { format: fmt, filters: filters }).then(function (job) {
        progress.hidden = false;
        var poll = function () {
          fetch('/api/jobs/' + job.job, { credentials: 'same-origin' }).then(function (r) { return r.json(); }).then(function (j) {
            if (j.total) { progress.max = j.total; progress.value = j.done; }
            state.textContent = j.state + (j.state === 'done' ? ': ' + j.path : '') + (j.error ? ': ' + j.error : '');
            if (j.state === 'queued' || j.state === 'running') setTimeout(poll, 500);
          });
        };
        poll();
      }, function () {});
    });
  }
})();
