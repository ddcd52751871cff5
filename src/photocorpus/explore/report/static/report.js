/* photocorpus explore report: glue between the data files and regl-scatterplot.
 *
 * Safety rule: every piece of user text (captions, titles, owners, categories, queries) is put into
 * the page with textContent or as an attribute value, never as HTML.
 * Automation hook: window.photocorpusReport (ready flag, point positions, visible count), used by the
 * browser tests and benchmarks/report_100k.py.
 */
(function () {
  'use strict';

  var D = window.PHOTOCORPUS_POINTS;
  var createScatterplot = window.reglScatterplot.default || window.reglScatterplot.createScatterplot;
  var t0 = performance.now();
  var api = { ready: false, readyMs: null, n: D.n, maps: [], errors: [] };
  window.photocorpusReport = api;

  // ------------------------------------------------------------------ data decoding
  function bytesOf(b64) {
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  var TYPES = { u8: Uint8Array, u16: Uint16Array, u32: Uint32Array, f64: Float64Array };
  function typed(spec) { return new TYPES[spec.dtype](bytesOf(spec.data)); }

  var photoIds = typed(D.ids);
  var thumbIds = typed(D.thumbs);
  var hasThumb = new Uint8Array(bytesOf(D.thumbs.has));
  var facets = D.facets.map(function (f) {
    return {
      key: f.key, title: f.title, categories: f.categories, colors: f.colors, counts: f.counts,
      codes: new TYPES[f.dtype](bytesOf(f.codes))
    };
  });
  var facetByKey = {};
  facets.forEach(function (f) { facetByKey[f.key] = f; });

  function thumbPath(i) {
    var t = thumbIds[i];
    var dir = String(Math.floor(t / D.thumbDirSize));
    while (dir.length < 5) dir = '0' + dir;
    return 'thumbs/' + dir + '/' + t + '.jpg';
  }

  // ------------------------------------------------------------------ text chunks (lazy)
  var textChunks = {};
  var textWaiters = {};
  function inflateJson(b64) {
    // Chunks are gzipped JSON in base64; the browser's own DecompressionStream inflates them.
    var stream = new Blob([bytesOf(b64)]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text().then(JSON.parse);
  }
  window.photocorpusText = function (chunk, packed) {
    inflateJson(packed).then(function (rows) {
      textChunks[chunk] = rows;
      (textWaiters[chunk] || []).forEach(function (fn) { fn(rows); });
      delete textWaiters[chunk];
    }, function (err) {
      api.errors.push(String(err));
      console.error('photocorpus report: cannot read text chunk', chunk, err);
    });
  };
  function withText(i, fn) {
    var chunk = Math.floor(i / D.textChunk);
    if (textChunks[chunk]) { fn(textChunks[chunk][i - chunk * D.textChunk]); return; }
    var first = !textWaiters[chunk];
    (textWaiters[chunk] = textWaiters[chunk] || []).push(function (rows) { fn(rows[i - chunk * D.textChunk]); });
    if (first) {
      var s = document.createElement('script');
      var name = String(chunk);
      while (name.length < 5) name = '0' + name;
      s.src = 'data/text-' + name + '.js';
      document.body.appendChild(s);
    }
  }
  function safeLink(url) {
    // Relative paths into the corpus, or http(s) pages; never javascript: or data: URLs.
    if (!url) return '';
    if (/^https?:\/\//i.test(url)) return url;
    if (/^[a-z][a-z0-9+.-]*:/i.test(url)) return '';
    return url;
  }
  function openPhoto(i) {
    withText(i, function (row) {
      var link = safeLink(row[3]);
      if (link) window.open(link, '_blank', 'noopener');
    });
  }

  // ------------------------------------------------------------------ state
  var current = facetByKey[D.defaultFacet] || facets[0];
  var hidden = {};  // category code -> true
  var visibleCount = D.n;
  var visibleEl = document.getElementById('pc-visible');

  function valueA(facet) {
    var v = new Float32Array(D.n);
    for (var i = 0; i < D.n; i++) v[i] = facet.codes[i];
    return v;
  }

  // ------------------------------------------------------------------ tooltip
  var tip = document.getElementById('pc-tooltip');
  var tipImg = document.getElementById('pc-tt-img');
  var tipCaption = document.getElementById('pc-tt-caption');
  var tipFacts = document.getElementById('pc-tt-facts');
  var hoverToken = 0;

  function fact(name, value) {
    var row = document.createElement('div');
    var dt = document.createElement('dt');
    var dd = document.createElement('dd');
    dt.textContent = name;
    dd.textContent = value;
    row.appendChild(dt);
    row.appendChild(dd);
    tipFacts.appendChild(row);
  }

  function showTooltip(mapIndex, i) {
    var token = ++hoverToken;
    var m = api.maps[mapIndex];
    var pos = m.plot.getScreenPosition(i);
    var rect = m.wrap.getBoundingClientRect();
    if (hasThumb[i]) {
      tipImg.hidden = false;
      tipImg.src = thumbPath(i);
    } else {
      tipImg.hidden = true;
      tipImg.removeAttribute('src');
    }
    tipFacts.textContent = '';
    tipCaption.textContent = '';
    D.tooltipFacets.forEach(function (key) {
      var f = facetByKey[key];
      if (f) fact(f.title, f.categories[f.codes[i]]);
    });
    fact('photo id', String(photoIds[i]));
    withText(i, function (row) {
      if (token !== hoverToken) return;
      var text = row[0] || row[1] || '';
      tipCaption.textContent = text;
      tipCaption.hidden = !text;
      if (row[2]) fact('owner', row[2]);
    });
    tip.hidden = false;
    var x = rect.left + window.scrollX + (pos ? pos[0] : 0) + 14;
    var y = rect.top + window.scrollY + (pos ? pos[1] : 0) + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.scrollX + document.documentElement.clientWidth) x -= w + 28;
    if (y + h > window.scrollY + document.documentElement.clientHeight) y -= h + 28;
    tip.style.left = Math.max(window.scrollX, x) + 'px';
    tip.style.top = Math.max(window.scrollY, y) + 'px';
    api.hovered = i;
  }
  function hideTooltip() {
    hoverToken++;
    tip.hidden = true;
    api.hovered = null;
  }

  // ------------------------------------------------------------------ legend and filtering
  var legend = document.getElementById('pc-legend');
  var legendTitle = document.getElementById('pc-legend-title');

  function applyFilter() {
    var anyHidden = Object.keys(hidden).length > 0;
    var keep = [];
    if (anyHidden) {
      for (var i = 0; i < D.n; i++) if (!hidden[current.codes[i]]) keep.push(i);
    }
    visibleCount = anyHidden ? keep.length : D.n;
    api.maps.forEach(function (m) {
      if (anyHidden) m.plot.filter(keep, { preventEvent: true });
      else m.plot.unfilter({ preventEvent: true });
    });
    visibleEl.textContent = visibleCount.toLocaleString() + ' of ' + D.n.toLocaleString() + ' photos shown';
    Array.prototype.forEach.call(legend.children, function (li) {
      li.classList.toggle('pc-off', !!hidden[li.dataset.code]);
      li.setAttribute('aria-pressed', hidden[li.dataset.code] ? 'false' : 'true');
    });
    hideTooltip();
  }

  function buildLegend() {
    legend.textContent = '';
    legendTitle.textContent = current.title;
    current.categories.forEach(function (name, code) {
      var li = document.createElement('li');
      li.dataset.code = String(code);
      var toggle = document.createElement('button');
      toggle.type = 'button';
      toggle.className = 'pc-legend-toggle';
      var swatch = document.createElement('span');
      swatch.className = 'pc-swatch';
      swatch.style.background = current.colors[code];
      var label = document.createElement('span');
      label.className = 'pc-legend-name';
      label.textContent = name;
      var count = document.createElement('span');
      count.className = 'pc-legend-count';
      count.textContent = current.counts[code].toLocaleString();
      toggle.appendChild(swatch);
      toggle.appendChild(label);
      toggle.appendChild(count);
      toggle.addEventListener('click', function () {
        if (hidden[code]) delete hidden[code]; else hidden[code] = true;
        applyFilter();
      });
      var only = document.createElement('button');
      only.type = 'button';
      only.className = 'pc-legend-only';
      only.textContent = 'only';
      only.addEventListener('click', function () { isolate(code); });
      li.appendChild(toggle);
      li.appendChild(only);
      legend.appendChild(li);
    });
  }

  function isolate(code) {
    hidden = {};
    current.categories.forEach(function (_, c) { if (c !== code) hidden[c] = true; });
    applyFilter();
  }

  function setFacet(key) {
    var f = facetByKey[key];
    if (!f) return Promise.resolve();
    current = f;
    hidden = {};
    var select = document.getElementById('pc-color-by');
    if (select.value !== key) select.value = key;
    buildLegend();
    var values = valueA(f);
    return Promise.all(api.maps.map(function (m) {
      m.plot.set({ pointColor: f.colors });
      return m.plot.draw({ x: m.x, y: m.y, valueA: values }, { zDataType: 'categorical' });
    })).then(applyFilter);
  }

  // ------------------------------------------------------------------ maps
  function pointSize(n) {
    if (n > 50000) return 2;
    if (n > 10000) return 3;
    if (n > 2000) return 4;
    return 6;
  }

  var wraps = document.querySelectorAll('.pc-canvas-wrap');
  var draws = [];
  D.maps.forEach(function (spec, mapIndex) {
    var wrap = wraps[mapIndex];
    var xy = new Float32Array(bytesOf(spec.xy));
    var x = new Float32Array(D.n), y = new Float32Array(D.n);
    for (var i = 0; i < D.n; i++) { x[i] = xy[2 * i]; y[i] = xy[2 * i + 1]; }
    var canvas = wrap.querySelector('canvas');
    var rect = wrap.getBoundingClientRect();
    var plot = createScatterplot({
      canvas: canvas,
      width: Math.max(200, Math.floor(rect.width)),
      height: Math.max(200, Math.floor(rect.height)),
      pointSize: pointSize(D.n),
      colorBy: 'valueA',
      pointColor: current.colors,
      pointColorHover: '#111111',
      pointColorActive: '#111111',
      backgroundColor: '#ffffff',
      opacity: D.n > 20000 ? 0.8 : 1,
      lassoOnLongPress: false
    });
    var m = { plot: plot, wrap: wrap, x: x, y: y, key: spec.key };
    api.maps.push(m);
    plot.subscribe('pointOver', function (i) {
      showTooltip(mapIndex, i);
      api.maps.forEach(function (other, j) { if (j !== mapIndex) other.plot.hover(i, { preventEvent: true }); });
    });
    plot.subscribe('pointOut', function () {
      hideTooltip();
      api.maps.forEach(function (other, j) { if (j !== mapIndex) other.plot.hover(undefined, { preventEvent: true }); });
    });
    plot.subscribe('select', function (event) {
      if (event.points.length === 1 && !m.silentSelect) openPhoto(event.points[0]);
    });
    draws.push(plot.draw({ x: x, y: y, valueA: valueA(current) }, { zDataType: 'categorical' }));
  });

  window.addEventListener('resize', function () {
    api.maps.forEach(function (m) {
      var r = m.wrap.getBoundingClientRect();
      m.plot.set({ width: Math.max(200, Math.floor(r.width)), height: Math.max(200, Math.floor(r.height)) });
    });
  });

  // ------------------------------------------------------------------ controls
  document.getElementById('pc-color-by').addEventListener('change', function (e) { setFacet(e.target.value); });
  document.getElementById('pc-show-all').addEventListener('click', function () {
    hidden = {};
    applyFilter();
    selectPoints([]);
  });

  function selectPoints(indices) {
    api.maps.forEach(function (m) {
      m.silentSelect = true;
      if (indices.length) m.plot.select(indices, { preventEvent: true });
      else m.plot.deselect({ preventEvent: true });
      m.silentSelect = false;
    });
  }

  // Cluster galleries: open one, colour by its clustering and highlight its photos on the maps.
  Array.prototype.forEach.call(document.querySelectorAll('.pc-cluster-open'), function (button) {
    button.addEventListener('click', function () {
      var section = button.closest('.pc-galleries');
      Array.prototype.forEach.call(section.querySelectorAll('.pc-gallery'), function (g) { g.hidden = true; });
      Array.prototype.forEach.call(section.querySelectorAll('.pc-cluster-open'), function (b) { b.classList.remove('pc-active'); });
      var gallery = document.getElementById(button.dataset.gallery);
      gallery.hidden = false;
      button.classList.add('pc-active');
      var code = Number(button.dataset.code);
      var facetKey = button.dataset.facet;
      var after = current.key === facetKey ? Promise.resolve() : setFacet(facetKey);
      after.then(function () {
        var f = facetByKey[facetKey];
        var members = [];
        for (var i = 0; i < D.n; i++) if (f.codes[i] === code) members.push(i);
        selectPoints(members);
      });
    });
  });

  // Search over a precomputed query index (only present when a semantic model made one).
  var searchForm = document.getElementById('pc-search');
  if (searchForm && window.PHOTOCORPUS_SEARCH) {
    var S = window.PHOTOCORPUS_SEARCH;
    var input = document.getElementById('pc-search-input');
    var results = document.getElementById('pc-search-results');
    var status = document.getElementById('pc-search-status');
    var grid = document.getElementById('pc-search-grid');
    searchForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var q = input.value.trim();
      var hits = Object.prototype.hasOwnProperty.call(S.queries, q) ? S.queries[q] : null;
      results.hidden = false;
      grid.textContent = '';
      if (!hits) {
        status.textContent = 'No precomputed results for “' + q + '”: this report can answer only the queries listed in the box.';
        selectPoints([]);
        return;
      }
      status.textContent = hits.length + ' photos for “' + q + '”, best first (' + S.model + ').';
      selectPoints(hits);
      hits.slice(0, 24).forEach(function (i) {
        var cell = document.createElement('a');
        cell.className = 'pc-cell';
        cell.href = '#';
        cell.addEventListener('click', function (ev) { ev.preventDefault(); openPhoto(i); });
        if (hasThumb[i]) {
          var img = document.createElement('img');
          img.src = thumbPath(i);
          img.alt = 'photo ' + photoIds[i];
          cell.appendChild(img);
        }
        grid.appendChild(cell);
      });
    });
    document.getElementById('pc-search-clear').addEventListener('click', function () {
      input.value = '';
      results.hidden = true;
      selectPoints([]);
    });
  }

  // ------------------------------------------------------------------ automation hooks
  api.visibleCount = function () { return visibleCount; };
  api.facet = function () { return current.key; };
  api.indexOfPhoto = function (photoId) {
    for (var i = 0; i < D.n; i++) if (photoIds[i] === photoId) return i;
    return -1;
  };
  api.screenPosition = function (mapIndex, i) {
    // Position of point i in page coordinates (CSS pixels), or null when it is hidden/off-screen.
    var m = api.maps[mapIndex];
    var pos = m.plot.getScreenPosition(i);
    if (!pos) return null;
    var r = m.wrap.getBoundingClientRect();
    return [r.left + pos[0], r.top + pos[1]];
  };
  api.photoId = function (i) { return photoIds[i]; };
  api.codes = function () { return Array.prototype.slice.call(current.codes); };
  api.selectedCount = function () { return api.maps[0].plot.get('selectedPoints').length; };
  api.isolate = isolate;
  api.setFacet = setFacet;

  buildLegend();
  Promise.all(draws).then(function () {
    applyFilter();
    api.ready = true;
    api.readyMs = performance.now();
    api.setupMs = performance.now() - t0;
    document.body.dataset.ready = '1';
  }, function (err) {
    api.errors.push(String(err));
    console.error('photocorpus report: drawing failed', err);
  });
})();
