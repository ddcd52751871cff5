/* photocorpus serve, map page: what the static report cannot do. A lasso selection (shift-drag, drawn
 * by regl-scatterplot through report.js) becomes a link to the grid of the selected photo ids. */
(function () {
  'use strict';
  var link = document.getElementById('pc-lasso-grid');
  var MAX = 10000;
  function wire() {
    var report = window.photocorpusReport;
    if (!report || !report.ready) { setTimeout(wire, 25); return; }
    report.maps.forEach(function (m) {
      m.plot.subscribe('select', function (event) {
        var points = event.points || [];
        if (points.length < 2) return;
        var ids = points.slice(0, MAX).map(function (i) { return report.photoId(i); });
        link.href = '/grid?ids=' + ids.join(',');
        link.textContent = 'open the ' + ids.length + ' selected photos in the grid';
        link.hidden = false;
        report.lassoIds = ids;
      });
      m.plot.subscribe('deselect', function () { link.hidden = true; });
    });
    report.lassoReady = true;  // automation hook: selections from now on reach the grid link
  }
  wire();
})();
