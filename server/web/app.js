/*
 * app.js - the compatd dashboard: a hash-routed page over the /v1 API.
 *
 * Views (location.hash):
 *   #/                         galleries with backfill coverage, and the
 *                              compatibility matrix (query model x gallery)
 *   #/galleries/{g}            one gallery: coverage, query models, recent
 *                              evaluations
 *   #/history/{g}/{model}      evaluations of one (gallery, query model) pair
 *                              over time: SVG charts and a table
 *   #/evaluations/{id}         one stored report, every metric of it
 *   #/adapters                 every adapter with its fit numbers
 *   #/adapters/{name}          one adapter: its fit, and the evaluations
 *                              that mapped their probes through it
 *
 * Every view is a loader (fetches what it shows) and a renderer (builds
 * DOM from what was fetched).  The page polls the current view's loader
 * every POLL_MS and re-renders only when the data changed, so scrolling
 * and the key input survive a refresh.  A failed poll keeps the last data
 * on screen and says why in the banner: the server is unreachable, a key
 * is needed (401), or the key lacks the read scope (403).
 *
 * Text from the server only ever reaches the page through textContent and
 * setAttribute (el() and svgEl() below): never through innerHTML.
 *
 * Stable hooks for tests: data-cell="{gallery}/{query model}" (and
 * "{gallery}/{query model}/{adapter}" on the rows of adapted pairs,
 * data-row="{query model} via {adapter}" with data-adapter) with
 * data-verdict, data-cross-top1, data-baseline-top1, data-nfr and
 * data-evaluation on matrix cells; data-adapter-row="{name}" in the
 * adapters list, data-fact on an adapter's fit numbers and
 * data-adapter-evaluation="{id}" rows of its evaluations; data-coverage="{gallery}/{model}" on
 * coverage bars; data-series on chart polylines; data-label rows in the
 * by-label table; data-flip-id items; body[data-connection] and
 * body[data-view] for the page's state.
 */
(function () {
  'use strict';

  var POLL_MS = 5000;
  var KEY_STORE = 'compatd.apiKey';
  var HISTORY_LIMIT = 200;
  var FLIP_IDS_SHOWN = 2000;
  var SVG_NS = 'http://www.w3.org/2000/svg';

  var state = {
    route: null,        /* the parsed hash */
    signature: null,    /* JSON of the data on screen */
    seq: 0,             /* generation of the current refresh */
    timer: null,
    connection: '',     /* ok, unreachable, auth, forbidden, error */
    bannerText: '',
    lastUpdate: null
  };

  /* --- DOM helpers ---------------------------------------------------- */

  /* Sets attributes of node from attrs: "text" is its textContent, "class"
   * its class, null/undefined values are skipped, the rest setAttribute. */
  function setAttrs(node, attrs) {
    if (!attrs)
      return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false)
        return;
      if (k === 'text')
        node.textContent = String(v);
      else if (k === 'class')
        node.setAttribute('class', v);
      else if (k === 'onclick' || k === 'onsubmit' || k === 'oninput')
        node.addEventListener(k.slice(2), v);
      else
        node.setAttribute(k, String(v));
    });
  }

  function append(node, children) {
    children.forEach(function (c) {
      if (c === null || c === undefined || c === false)
        return;
      if (Array.isArray(c))
        append(node, c);
      else if (typeof c === 'string' || typeof c === 'number')
        node.appendChild(document.createTextNode(String(c)));
      else
        node.appendChild(c);
    });
  }

  /* el('td', {class: 'x'}, child, 'text', [more]) */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, Array.prototype.slice.call(arguments, 2));
    return node;
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, Array.prototype.slice.call(arguments, 2));
    return node;
  }

  function clear(node) {
    while (node.firstChild)
      node.removeChild(node.firstChild);
  }

  /* --- formatting ----------------------------------------------------- */

  function isNum(v) {
    return typeof v === 'number' && isFinite(v);
  }

  /* A rate as a percentage: 0.9123 -> "91.2%". */
  function pct(v, digits) {
    return isNum(v) ? (v * 100).toFixed(digits === undefined ? 1 : digits) + '%' : '—';
  }

  function num(v, digits) {
    return isNum(v) ? v.toFixed(digits === undefined ? 4 : digits) : '—';
  }

  function count(v) {
    return isNum(v) ? v.toLocaleString('en-US') : '—';
  }

  /* A difference of rates in percentage points, signed. */
  function points(a, b) {
    if (!isNum(a) || !isNum(b))
      return '—';
    var d = (a - b) * 100;
    return (d > 0 ? '+' : d < 0 ? '−' : '±') + Math.abs(d).toFixed(1) + ' pts';
  }

  /* The raw number for a data attribute (exactly what the server sent). */
  function raw(v) {
    return isNum(v) ? String(v) : 'null';
  }

  function pad2(n) {
    return (n < 10 ? '0' : '') + n;
  }

  function clock(d) {
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  /* "2026-11-21T12:00:00Z" -> "2026-11-21 12:00:00 UTC" */
  function when(s) {
    if (typeof s !== 'string' || !s)
      return '—';
    return s.replace('T', ' ').replace(/Z$/, ' UTC');
  }

  function verdictOf(compatible) {
    return compatible === true ? 'pass' : compatible === false ? 'fail' : 'none';
  }

  var VERDICT_TEXT = {pass: 'PASS', fail: 'FAIL', none: 'NO VERDICT'};

  function badge(verdict, attrs) {
    var a = {class: 'badge badge-' + verdict, 'data-verdict': verdict,
             text: VERDICT_TEXT[verdict] || verdict};
    if (attrs)
      Object.keys(attrs).forEach(function (k) { a[k] = attrs[k]; });
    return el('span', a);
  }

  function statusBadge(status) {
    var cls = {verified: 'pass', failed: 'fail', declared: 'declared', unverified: 'none'};
    return el('span', {class: 'badge badge-' + (cls[status] || 'none'),
                       'data-status': status, text: status});
  }

  /* --- links ---------------------------------------------------------- */

  function enc(s) {
    return encodeURIComponent(s);
  }

  function galleryHref(g) {
    return '#/galleries/' + enc(g);
  }

  function historyHref(g, m) {
    return '#/history/' + enc(g) + '/' + enc(m);
  }

  function evaluationHref(id) {
    return '#/evaluations/' + enc(String(id));
  }

  function adapterHref(name) {
    return '#/adapters/' + enc(name);
  }

  /* --- the API -------------------------------------------------------- */

  function storedKey() {
    try {
      return window.localStorage.getItem(KEY_STORE) || '';
    } catch (e) {
      return '';
    }
  }

  function storeKey(key) {
    try {
      if (key)
        window.localStorage.setItem(KEY_STORE, key);
      else
        window.localStorage.removeItem(KEY_STORE);
    } catch (e) {
      /* storage refused (private mode): the key lasts for this page only */
    }
    memoryKey = key;
  }

  var memoryKey = '';

  function currentKey() {
    return storedKey() || memoryKey;
  }

  /* A reply other than 2xx; status 0 when no reply came at all. */
  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }

  /* GET path as JSON; rejects with an ApiError. */
  function api(path) {
    var headers = {Accept: 'application/json'};
    var key = currentKey();
    if (key)
      headers.Authorization = 'Bearer ' + key;
    return fetch(path, {headers: headers, cache: 'no-store', credentials: 'same-origin'})
      .then(function (res) {
        return res.text().then(function (text) {
          var body = null;
          try {
            body = text ? JSON.parse(text) : null;
          } catch (e) {
            body = null;
          }
          if (res.ok && body !== null)
            return body;
          var err = body && body.error ? body.error : {};
          throw new ApiError(res.status, err.code || 'http_' + res.status,
                             err.message || (res.ok ? 'the reply is not JSON' : res.statusText));
        });
      }, function (e) {
        throw new ApiError(0, 'unreachable', String(e && e.message ? e.message : e));
      });
  }

  /* --- routing -------------------------------------------------------- */

  function parseRoute() {
    var parts;
    try {
      parts = location.hash.replace(/^#\/?/, '').split('/')
        .filter(function (p) { return p !== ''; })
        .map(decodeURIComponent);
    } catch (e) {
      return {view: 'notfound'};
    }
    if (parts.length === 0)
      return {view: 'overview'};
    if (parts[0] === 'galleries' && parts.length === 2)
      return {view: 'gallery', gallery: parts[1]};
    if (parts[0] === 'history' && parts.length === 3)
      return {view: 'history', gallery: parts[1], model: parts[2]};
    if (parts[0] === 'evaluations' && parts.length === 2 && /^[1-9][0-9]{0,17}$/.test(parts[1]))
      return {view: 'evaluation', id: parts[1]};
    if (parts[0] === 'adapters' && parts.length === 1)
      return {view: 'adapters'};
    if (parts[0] === 'adapters' && parts.length === 2)
      return {view: 'adapter', adapter: parts[1]};
    return {view: 'notfound'};
  }

  /* --- loaders: what each view fetches -------------------------------- */

  function galleryPath(g) {
    return '/v1/galleries/' + enc(g);
  }

  function loadOverview() {
    return Promise.all([api('/v1/galleries'), api('/v1/compatibility'), api('/v1/models'),
                        api('/v1/adapters')])
      .then(function (r) {
        var galleries = r[0].galleries || [];
        return Promise.all(galleries.map(function (g) {
          return api(galleryPath(g.name));
        })).then(function (details) {
          return {galleries: details, compatibility: r[1].galleries || [],
                  models: r[2].models || [], adapters: r[3].adapters || []};
        });
      });
  }

  function loadAdapters() {
    return api('/v1/adapters').then(function (r) {
      return {adapters: r.adapters || []};
    });
  }

  function loadAdapter(route) {
    var path = '/v1/adapters/' + enc(route.adapter);
    return Promise.all([api(path), api(path + '/evaluations?limit=200')]).then(function (r) {
      return {adapter: r[0], evaluations: r[1].evaluations || []};
    });
  }

  function loadGallery(route) {
    return Promise.all([
      api(galleryPath(route.gallery)),
      api(galleryPath(route.gallery) + '/evaluations?limit=20')
    ]).then(function (r) {
      return {gallery: r[0], evaluations: r[1].evaluations || [], more: r[1].next_before !== null};
    });
  }

  function loadHistory(route) {
    return Promise.all([
      api(galleryPath(route.gallery)),
      api(galleryPath(route.gallery) + '/evaluations?limit=' + HISTORY_LIMIT +
          '&query_model=' + enc(route.model))
    ]).then(function (r) {
      /* the raw model's history: an adapter's evaluations are another pair */
      return {gallery: r[0],
              evaluations: (r[1].evaluations || []).filter(function (e) { return !e.adapter; }),
              more: r[1].next_before !== null && r[1].next_before !== undefined};
    });
  }

  function loadEvaluation(route) {
    return api('/v1/evaluations/' + route.id).then(function (r) {
      return {report: r};
    });
  }

  var views = {
    overview: {load: loadOverview, render: renderOverview, title: 'Overview'},
    gallery: {load: loadGallery, render: renderGallery, title: 'Gallery'},
    history: {load: loadHistory, render: renderHistory, title: 'History'},
    evaluation: {load: loadEvaluation, render: renderEvaluation, title: 'Evaluation'},
    adapters: {load: loadAdapters, render: renderAdapters, title: 'Adapters'},
    adapter: {load: loadAdapter, render: renderAdapter, title: 'Adapter'},
    notfound: {
      load: function () { return Promise.resolve({}); },
      render: function () {
        return [el('h1', {text: 'Nothing here'}),
                el('p', null, 'No view for this address. ', el('a', {href: '#/', text: 'Back to the overview'}), '.')];
      },
      title: 'Not found'
    }
  };

  /* --- shared pieces of views ----------------------------------------- */

  function section(title, attrs) {
    var s = el('section', attrs || {class: 'card'});
    if (!attrs)
      s.setAttribute('class', 'card');
    s.appendChild(el('h2', {text: title}));
    append(s, Array.prototype.slice.call(arguments, 2));
    return s;
  }

  /* Models of gallery g ordered for coverage: the gallery model first. */
  function coverageModels(g) {
    var emb = g.embeddings || {};
    var names = Object.keys(emb).filter(function (m) { return m !== g.model; }).sort();
    return [g.model].concat(names);
  }

  /* One bar per model: embeddings of that model / items. */
  function coverageBars(g) {
    var emb = g.embeddings || {};
    var items = isNum(g.count) ? g.count : 0;
    var list = el('div', {class: 'coverage'});
    coverageModels(g).forEach(function (m) {
      var n = isNum(emb[m]) ? emb[m] : 0;
      var share = items > 0 ? n / items : 0;
      var fill = el('span', {class: 'bar-fill' + (m === g.model ? ' bar-gallery' : '')});
      fill.style.width = Math.max(0, Math.min(100, share * 100)).toFixed(2) + '%';
      list.appendChild(el('div', {
        class: 'coverage-row', 'data-coverage': g.name + '/' + m,
        'data-model': m, 'data-embeddings': n, 'data-items': items,
        title: m + ': ' + n + ' of ' + items + ' items'
      },
        el('span', {class: 'coverage-model', text: m}),
        el('span', {class: 'bar'}, fill),
        el('span', {class: 'coverage-value'},
          el('span', {class: 'coverage-pct', text: pct(items > 0 ? share : NaN, 1)}),
          el('span', {class: 'muted', text: ' ' + count(n) + ' / ' + count(items)}))));
    });
    return list;
  }

  /* What is left to finish an upgrade of g: per model other than the
   * gallery model, the items still without its embedding and the command
   * that takes the next step (backfill them, or promote the model). */
  function backfillPanel(g) {
    var emb = g.embeddings || {};
    var items = isNum(g.count) ? g.count : 0;
    var models = coverageModels(g).slice(1);
    if (!models.length)
      return el('p', {class: 'muted', text: 'Only the gallery model has embeddings: nothing to backfill.'});
    var body = el('tbody');
    models.forEach(function (m) {
      var missing = Math.max(0, items - (isNum(emb[m]) ? emb[m] : 0));
      var next = missing > 0
        ? 'compatd backfill --gallery ' + g.name + ' --model ' + m + ' --out ids.txt'
        : 'compatd promote --gallery ' + g.name + ' --model ' + m;
      body.appendChild(el('tr', {'data-backfill': g.name + '/' + m, 'data-missing': missing},
        el('td', {class: 'strong', text: m}),
        el('td', {class: 'num', 'data-field': 'missing', text: count(missing)}),
        el('td', null, el('span', missing > 0 ? {class: 'badge badge-none', text: 'backfilling'}
                                              : {class: 'badge badge-pass', text: 'ready to promote'})),
        el('td', null, el('code', {text: next}))));
    });
    return el('table', {class: 'table', id: 'backfill'},
      el('thead', null, el('tr', null, el('th', {text: 'Model'}),
        el('th', {class: 'num', text: 'Items missing'}), el('th', {text: 'State'}),
        el('th', {text: 'Next step'}))),
      body);
  }

  /* --- the overview: galleries and the compatibility matrix ------------ */

  function renderGalleries(galleries) {
    if (!galleries.length)
      return el('p', {class: 'muted', text: 'No galleries yet: POST /v1/galleries creates one.'});
    var body = el('tbody');
    galleries.forEach(function (g) {
      body.appendChild(el('tr', {'data-gallery': g.name},
        el('td', null, el('a', {href: galleryHref(g.name), class: 'strong', text: g.name})),
        el('td', {class: 'num', 'data-field': 'items', 'data-value': raw(g.count), text: count(g.count)}),
        el('td', {'data-field': 'model', text: g.model}),
        el('td', null, el('code', {'data-field': 'index', text: g.index})),
        el('td', {'data-field': 'policy', text: g.query_policy || '—'}),
        el('td', {class: 'coverage-cell'}, coverageBars(g))));
    });
    return el('table', {class: 'table', id: 'galleries'},
      el('thead', null, el('tr', null,
        el('th', {text: 'Gallery'}), el('th', {class: 'num', text: 'Items'}),
        el('th', {text: 'Gallery model'}), el('th', {text: 'Index'}),
        el('th', {text: 'Query policy'}), el('th', {text: 'Backfill coverage per model'}))),
      body);
  }

  function legend() {
    function entry(cls, title, text) {
      return el('li', null, el('span', {class: 'swatch ' + cls}), el('b', {text: title}), ' ', text);
    }
    return el('ul', {class: 'legend', id: 'legend'},
      entry('cell-pass', 'pass', 'cross top-1 (new→old) beats baseline top-1 (old→old): the BCT criterion holds'),
      entry('cell-fail', 'fail', 'criterion fails: do not query the old gallery with this model'),
      entry('cell-none', 'no verdict', 'evaluated without baseline probes'),
      entry('cell-untested', 'not evaluated', 'comparable (same dim and metric), no evaluation yet'),
      entry('cell-self', 'gallery model', 'the model the gallery is indexed with'));
  }

  /* The matrix: one row per query model, one column per gallery (and so
   * per gallery model); each evaluated cell is that pair's latest report. */
  function renderMatrix(data) {
    var compat = {};
    data.compatibility.forEach(function (c) { compat[c.gallery] = c; });
    var galleries = data.galleries;
    var models = data.models;
    if (!galleries.length || !models.length)
      return el('p', {class: 'muted', text: 'Nothing to compare yet.'});

    var modelByName = {};
    models.forEach(function (m) { modelByName[m.name] = m; });

    var head = el('tr', null, el('th', {class: 'corner'},
      el('span', {class: 'muted', text: 'query model ↓ · gallery →'})));
    galleries.forEach(function (g) {
      head.appendChild(el('th', {class: 'col-head', 'data-column': g.name},
        el('a', {href: galleryHref(g.name), text: g.name}),
        el('div', {class: 'muted small', text: 'gallery model ' + g.model})));
    });

    var body = el('tbody');
    models.forEach(function (m) {
      var row = el('tr', {'data-row': m.name},
        el('th', {class: 'row-head'}, el('span', {text: m.name}),
          m.compatible_with ? el('div', {class: 'muted small', text: 'compatible with ' + m.compatible_with}) : null));
      galleries.forEach(function (g) {
        row.appendChild(matrixCell(g, m, compat[g.name], modelByName[g.model]));
      });
      body.appendChild(row);
    });
    adaptedPairs(data).forEach(function (ap) {
      var label = ap.query_model + ' via ' + ap.adapter;
      var row = el('tr', {'data-row': label, 'data-adapter': ap.adapter, class: 'adapted-row'},
        el('th', {class: 'row-head'}, el('span', {text: ap.query_model}),
          el('div', {class: 'small'}, el('span', {class: 'muted', text: 'via '}),
            el('a', {href: adapterHref(ap.adapter), 'data-adapter-link': ap.adapter,
                     text: ap.adapter}))));
      galleries.forEach(function (g) {
        row.appendChild(adaptedCell(g, ap, compat[g.name]));
      });
      body.appendChild(row);
    });

    var foot = el('tr', {class: 'share-row'}, el('th', {class: 'row-head', text: 'pass share (AC) · AM'}));
    galleries.forEach(function (g) {
      var ac = (compat[g.name] || {}).ac || {};
      var am = (compat[g.name] || {}).am;
      foot.appendChild(el('td', {
        class: 'share', 'data-share': g.name, 'data-pairs': raw(ac.pairs),
        'data-passed': raw(ac.passed), 'data-value': raw(ac.share)
      },
        el('b', {text: isNum(ac.share) ? pct(ac.share, 0) : '—'}),
        el('span', {class: 'muted', text: ' ' + (isNum(ac.passed) ? ac.passed : 0) + ' of ' +
                                              (isNum(ac.pairs) ? ac.pairs : 0) + ' newer→older pairs pass'}),
        el('div', {class: 'am', 'data-am': g.name, 'data-value': raw(am),
                   title: 'AM: mean cross top-1 over the same newer→older pairs'},
          el('span', {class: 'muted', text: 'AM '}),
          el('b', {text: isNum(am) ? pct(am, 1) : '—'}))));
    });

    return el('div', {class: 'scroll'},
      el('table', {class: 'table matrix', id: 'matrix'}, el('thead', null, head), body,
         el('tfoot', null, foot)));
  }

  /* The (query model, adapter) pairs of the matrix's adapted rows: every
   * adapter, and every adapted pair evaluated somewhere (its adapter may
   * be deleted since), by query model then adapter. */
  function adaptedPairs(data) {
    var seen = {}, out = [];
    function add(qm, adapter, to) {
      var key = qm + '\n' + adapter;
      if (seen[key])
        return;
      seen[key] = true;
      out.push({query_model: qm, adapter: adapter, to: to});
    }
    (data.adapters || []).forEach(function (a) { add(a.from, a.name, a.to); });
    data.compatibility.forEach(function (c) {
      (c.pairs || []).forEach(function (p) {
        if (p.adapter)
          add(p.query_model, p.adapter, null);
      });
    });
    return out.sort(function (a, b) {
      var x = a.query_model + '\n' + a.adapter, y = b.query_model + '\n' + b.adapter;
      return x < y ? -1 : x > y ? 1 : 0;
    });
  }

  /* A cell of an adapted row: the pair's latest report on g, else whether
   * the adapter maps into g's model at all. */
  function adaptedCell(g, ap, compat) {
    var key = g.name + '/' + ap.query_model + '/' + ap.adapter;
    var pair = null;
    ((compat && compat.pairs) || []).forEach(function (p) {
      if (p.query_model === ap.query_model && p.adapter === ap.adapter)
        pair = p;
    });
    if (pair)
      return evaluatedCell(key, pair, el('a', {class: 'cell-history', href: adapterHref(ap.adapter),
                                               text: 'adapter ›'}));
    if (ap.to === g.model)
      return el('td', {class: 'cell cell-untested', 'data-cell': key, 'data-verdict': 'untested'},
        el('span', {class: 'muted', text: 'not evaluated'}));
    return el('td', {class: 'cell cell-na', 'data-cell': key, 'data-verdict': 'na',
                     title: ap.to ? ap.adapter + ' maps into ' + ap.to + ', not ' + g.model : ''},
      el('span', {class: 'muted', text: 'n/a'}));
  }

  function matrixCell(g, m, compat, galleryModel) {
    var key = g.name + '/' + m.name;
    var pair = null;
    ((compat && compat.pairs) || []).forEach(function (p) {
      if (p.query_model === m.name && !p.adapter)
        pair = p;
    });
    if (pair)
      return evaluatedCell(key, pair, el('a', {class: 'cell-history', href: historyHref(g.name, m.name),
                                               text: 'history ›'}));
    return unevaluatedCell(g, m, key, galleryModel);
  }

  /* A matrix cell holding a pair's latest evaluation, then more (a link). */
  function evaluatedCell(key, pair, more) {
    var verdict = pair.verdict || verdictOf(pair.compatible);
    return el('td', {
      class: 'cell cell-' + verdict, 'data-cell': key, 'data-verdict': verdict,
      'data-cross-top1': raw(pair.cross_top1), 'data-baseline-top1': raw(pair.baseline_top1),
      'data-cross-map': raw(pair.cross_map), 'data-baseline-map': raw(pair.baseline_map),
      'data-nfr': raw(pair.nfr), 'data-evaluation': pair.evaluation
    },
      el('a', {class: 'cell-link', href: evaluationHref(pair.evaluation),
               title: pair.criterion || ''},
        badge(verdict),
        el('span', {class: 'cell-line'},
          el('span', {class: 'cell-label', text: 'top-1 '}),
          el('b', {'data-field': 'cross_top1', text: pct(pair.cross_top1)}),
          el('span', {class: 'muted', text: ' vs '}),
          el('span', {'data-field': 'baseline_top1', text: pct(pair.baseline_top1)})),
        el('span', {class: 'cell-line'},
          el('span', {class: 'cell-label', text: 'NFR '}),
          el('span', {'data-field': 'nfr', text: pct(pair.nfr, 2)}),
          el('span', {class: 'muted', text: ' · #' + pair.evaluation}))),
      more);
  }

  /* A cell of a model's row without an evaluation of it on g. */
  function unevaluatedCell(g, m, key, galleryModel) {
    if (m.name === g.model)
      return el('td', {class: 'cell cell-self', 'data-cell': key, 'data-verdict': 'self'},
        el('span', {class: 'muted', text: 'gallery model'}));
    var status = null;
    (g.query_models || []).forEach(function (q) {
      if (q.model === m.name)
        status = q.status;
    });
    if (status)
      return el('td', {class: 'cell cell-untested', 'data-cell': key, 'data-verdict': 'untested',
                       'data-status': status},
        el('span', {class: 'muted', text: 'not evaluated'}),
        el('div', {class: 'small muted', text: status}));
    return el('td', {class: 'cell cell-na', 'data-cell': key, 'data-verdict': 'na',
                     title: galleryModel ? 'dim or metric differs from ' + galleryModel.name : ''},
      el('span', {class: 'muted', text: 'n/a'}));
  }

  function renderOverview(data) {
    return [
      el('h1', {text: 'Overview'}),
      section('Galleries', null, renderGalleries(data.galleries)),
      section('Compatibility matrix', null,
        el('p', {class: 'muted', text: 'Latest evaluation of each query model against each gallery: ' +
          'cross top-1 (new queries → old gallery) vs baseline top-1 (old → old), and the negative flip rate. ' +
          'A cell opens its report.'}),
        renderMatrix(data), legend()),
      section('Adapters', null,
        el('p', {class: 'muted', text: 'Linear maps from a new model\'s space into an old one: a model ' +
          'that fails the criterion may pass through one (rows "model via adapter" above).'}),
        adaptersTable(data.adapters || []))
    ];
  }

  /* --- adapters ------------------------------------------------------- */

  function adaptersTable(adapters) {
    if (!adapters.length)
      return el('p', {class: 'muted', text: 'No adapters: POST /v1/adapters (compatd adapter fit) fits one.'});
    var body = el('tbody');
    adapters.forEach(function (a) {
      var fit = a.fit || {};
      body.appendChild(el('tr', {'data-adapter-row': a.name},
        el('td', null, el('a', {href: adapterHref(a.name), class: 'strong', text: a.name})),
        el('td', {text: a.from + ' → ' + a.to}),
        el('td', {text: a.kind}),
        el('td', {class: 'num', text: count(a.pairs)}),
        el('td', {class: 'num', 'data-value': raw(fit.mean_cosine), text: num(fit.mean_cosine)}),
        el('td', {class: 'num', 'data-value': raw(fit.cv_mean_cosine), text: num(fit.cv_mean_cosine)}),
        el('td', {text: when(a.created_at)})));
    });
    return el('div', {class: 'scroll'}, el('table', {class: 'table', id: 'adapters'},
      el('thead', null, el('tr', null,
        el('th', {text: 'Adapter'}), el('th', {text: 'From → to'}), el('th', {text: 'Kind'}),
        el('th', {class: 'num', text: 'Pairs'}), el('th', {class: 'num', text: 'Mean cosine'}),
        el('th', {class: 'num', text: 'Cross-validated'}), el('th', {text: 'Created'}))),
      body));
  }

  function renderAdapters(data) {
    return [
      el('p', {class: 'crumbs'}, el('a', {href: '#/', text: 'Overview'}), ' › adapters'),
      el('h1', {text: 'Adapters'}),
      section('Adapters', null, adaptersTable(data.adapters))
    ];
  }

  function renderAdapter(data) {
    var a = data.adapter;
    var fit = a.fit || {};
    var body = el('tbody');
    data.evaluations.forEach(function (e) {
      var verdict = verdictOf(e.compatible);
      body.appendChild(el('tr', {'data-adapter-evaluation': e.id, 'data-verdict': verdict},
        el('td', null, el('a', {href: evaluationHref(e.id), text: '#' + e.id}),
          e.gallery_view === 'mixed' ? el('span', {class: 'muted small', 'data-mixed': raw(e.coverage),
                                                   text: ' mixed, coverage ' + pct(e.coverage, 0)}) : null),
        el('td', {text: when(e.created_at)}),
        el('td', null, el('a', {href: galleryHref(e.gallery), text: e.gallery})),
        el('td', {text: e.query_model}),
        el('td', {class: 'num', 'data-field': 'cross_top1', 'data-value': raw(e.cross_top1), text: pct(e.cross_top1)}),
        el('td', {class: 'num', 'data-field': 'baseline_top1', 'data-value': raw(e.baseline_top1), text: pct(e.baseline_top1)}),
        el('td', {class: 'num', 'data-field': 'nfr', 'data-value': raw(e.nfr), text: pct(e.nfr, 2)}),
        el('td', null, badge(verdict))));
    });
    var evs = data.evaluations.length
      ? el('div', {class: 'scroll'}, el('table', {class: 'table', id: 'adapter-evaluations'},
          el('thead', null, el('tr', null,
            el('th', {text: 'Evaluation'}), el('th', {text: 'Created'}), el('th', {text: 'Gallery'}),
            el('th', {text: 'Query model'}), el('th', {class: 'num', text: 'Cross top-1'}),
            el('th', {class: 'num', text: 'Baseline top-1'}), el('th', {class: 'num', text: 'NFR'}),
            el('th', {text: 'Verdict'}))),
          body))
      : el('p', {class: 'muted', text: 'No evaluation has used this adapter yet: POST an evaluation with "adapter" (compatd eval --adapter).'});
    function value(v, text) {
      return el('span', {'data-value': raw(v), text: text});
    }
    return [
      el('p', {class: 'crumbs'}, el('a', {href: '#/', text: 'Overview'}), ' › ',
        el('a', {href: '#/adapters', text: 'adapters'}), ' › adapter'),
      el('h1', {id: 'adapter-title', 'data-adapter': a.name, text: a.name}),
      facts([
        ['from', 'From', a.from],
        ['to', 'To', a.to],
        ['kind', 'Kind', a.kind],
        ['dims', 'Dims', value(a.dim_from, a.dim_from + ' → ' + a.dim_to)],
        ['ridge', 'Ridge', value(a.ridge, String(a.ridge))],
        ['pairs', 'Pairs', value(a.pairs, count(a.pairs))],
        ['mean_cosine', 'Mean cosine', value(fit.mean_cosine, num(fit.mean_cosine))],
        ['cv_mean_cosine', 'Cross-validated mean cosine',
         value(fit.cv_mean_cosine, num(fit.cv_mean_cosine))],
        ['created_at', 'Created', when(a.created_at)]
      ]),
      section('Evaluations through it', null, evs)
    ];
  }

  /* --- one gallery ---------------------------------------------------- */

  function facts(pairs) {
    var dl = el('dl', {class: 'facts'});
    pairs.forEach(function (p) {
      dl.appendChild(el('div', {class: 'fact', 'data-fact': p[0]},
        el('dt', {text: p[1]}), el('dd', null, p[2])));
    });
    return dl;
  }

  /* Live agreement per query model: searches that carried the query
   * embedded by the gallery model too (query_models[].live). */
  function liveTable(g) {
    var rows = (g.query_models || []).filter(function (q) { return q.live; });
    if (!rows.length)
      return el('p', {class: 'muted', id: 'live-agreement-none',
        text: 'No search has carried a shadow (the query embedded by the gallery model) since the daemon started.'});
    var body = el('tbody');
    rows.forEach(function (q) {
      var live = q.live;
      body.appendChild(el('tr', {'data-live-model': q.model, 'data-live-adapter': q.adapter || ''},
        el('td', {class: 'strong'}, q.model,
          q.adapter ? el('span', {class: 'muted', text: ' via '}) : null,
          q.adapter ? el('a', {href: adapterHref(q.adapter), text: q.adapter}) : null),
        el('td', {class: 'num', 'data-field': 'queries', 'data-value': raw(live.queries), text: count(live.queries)}),
        el('td', {class: 'num', 'data-field': 'overlap_at_k', 'data-value': raw(live.overlap_at_k),
                  text: pct(live.overlap_at_k)}),
        el('td', {class: 'num', 'data-field': 'top1_retained', 'data-value': raw(live.top1_retained),
                  text: pct(live.top1_retained)})));
    });
    return el('table', {class: 'table', id: 'live-agreement'},
      el('thead', null, el('tr', null, el('th', {text: 'Query model'}),
        el('th', {class: 'num', text: 'Shadowed queries'}),
        el('th', {class: 'num', text: 'Overlap@k'}), el('th', {class: 'num', text: 'Top-1 retained'}))),
      body);
  }

  function renderGallery(data, route) {
    var g = data.gallery;
    var qbody = el('tbody');
    (g.query_models || []).forEach(function (q) {
      var ev = q.evaluation;
      qbody.appendChild(el('tr', {'data-query-model': q.model},
        el('td', {class: 'strong', text: q.model}),
        el('td', null, statusBadge(q.status)),
        el('td', {class: 'num', text: ev ? pct(ev.cross_top1) : '—'}),
        el('td', {class: 'num', text: ev ? pct(ev.baseline_top1) : '—'}),
        el('td', {class: 'num', text: ev ? pct(ev.nfr, 2) : '—'}),
        el('td', null, ev ? el('a', {href: evaluationHref(ev.id), text: '#' + ev.id + ' · ' + when(ev.created_at)}) : '—'),
        el('td', null, ev ? el('a', {href: historyHref(g.name, q.model), text: 'history ›'}) : '')));
    });
    var qtable = (g.query_models || []).length
      ? el('table', {class: 'table', id: 'query-models'},
          el('thead', null, el('tr', null, el('th', {text: 'Query model'}), el('th', {text: 'Status'}),
            el('th', {class: 'num', text: 'Cross top-1'}), el('th', {class: 'num', text: 'Baseline top-1'}),
            el('th', {class: 'num', text: 'NFR'}), el('th', {text: 'Latest evaluation'}), el('th'))),
          qbody)
      : el('p', {class: 'muted', text: 'No other model has the gallery model\'s dim and metric.'});
    return [
      el('p', {class: 'crumbs'}, el('a', {href: '#/', text: 'Overview'}), ' › gallery'),
      el('h1', null, g.name),
      facts([
        ['items', 'Items', el('span', {'data-value': raw(g.count), text: count(g.count)})],
        ['model', 'Gallery model', g.model],
        ['index', 'Index', el('code', {text: g.index})],
        ['recall', 'Index recall@10', el('span', {'data-value': raw(g.index_recall),
          title: 'measured against exact search on a sample of the gallery\'s own vectors',
          text: pct(g.index_recall, 1)})],
        ['policy', 'Query policy', g.query_policy || '—'],
        ['created', 'Created', when(g.created_at)]
      ]),
      section('Backfill coverage', null, coverageBars(g)),
      section('Backfill', {class: 'card', id: 'backfill-panel'}, backfillPanel(g)),
      section('Query models', null, qtable),
      section('Live agreement', {class: 'card', id: 'live'}, liveTable(g),
        el('p', {class: 'muted small',
          text: 'Means over the last 10,000 shadowed queries since the daemon started; overlap@k is the share of the query\'s top-k also in its shadow\'s top-k.'})),
      section('Recent evaluations', null, evaluationsTable(data.evaluations, true),
        data.more ? el('p', {class: 'muted small', text: 'Showing the latest ' + data.evaluations.length + '.'}) : null)
    ];
  }

  /* A table of evaluation summaries, newest first. */
  function evaluationsTable(evs, withModel) {
    if (!evs.length)
      return el('p', {class: 'muted', text: 'No evaluations yet.'});
    var body = el('tbody');
    evs.forEach(function (e) {
      var flips = e.flips || {};
      var b = e.baseline || {};
      var c = e.cross || {};
      var verdict = verdictOf(e.compatible);
      body.appendChild(el('tr', {'data-eval-row': e.id, 'data-verdict': verdict},
        el('td', null, el('a', {href: evaluationHref(e.id), text: '#' + e.id}),
          e.gallery_view === 'mixed' ? el('span', {class: 'muted small', 'data-mixed': raw(e.coverage),
                                                   text: ' mixed, coverage ' + pct(e.coverage, 0)}) : null),
        el('td', {text: when(e.created_at)}),
        withModel ? el('td', null, el('a', {href: historyHref(e.gallery, e.query_model), text: e.query_model}),
          e.adapter ? el('span', {class: 'muted', text: ' via '}) : null,
          e.adapter ? el('a', {href: adapterHref(e.adapter), text: e.adapter}) : null) : null,
        el('td', {class: 'num', 'data-field': 'cross_top1', 'data-value': raw(c.top1), text: pct(c.top1)}),
        el('td', {class: 'num', 'data-field': 'baseline_top1', 'data-value': raw(b.top1), text: pct(b.top1)}),
        el('td', {class: 'num', text: points(c.top1, b.top1)}),
        el('td', {class: 'num', text: num(c.map)}),
        el('td', {class: 'num', text: num(b.map)}),
        el('td', {class: 'num', 'data-field': 'nfr', 'data-value': raw(flips.nfr), text: pct(flips.nfr, 2)}),
        el('td', {class: 'num', text: count(e.queries)}),
        el('td', null, badge(verdict))));
    });
    return el('div', {class: 'scroll'}, el('table', {class: 'table', id: 'evaluations'},
      el('thead', null, el('tr', null,
        el('th', {text: 'Evaluation'}), el('th', {text: 'Created'}),
        withModel ? el('th', {text: 'Query model'}) : null,
        el('th', {class: 'num', text: 'Cross top-1'}), el('th', {class: 'num', text: 'Baseline top-1'}),
        el('th', {class: 'num', text: 'Δ top-1'}), el('th', {class: 'num', text: 'Cross mAP'}),
        el('th', {class: 'num', text: 'Baseline mAP'}), el('th', {class: 'num', text: 'NFR'}),
        el('th', {class: 'num', text: 'Probes'}), el('th', {text: 'Verdict'}))),
      body));
  }

  /* --- history: charts over time -------------------------------------- */

  /* Ticks for [lo, hi]: about n round values. */
  function ticks(lo, hi, n) {
    var span = hi - lo;
    if (!(span > 0))
      return [lo];
    var step = Math.pow(10, Math.floor(Math.log10(span / n)));
    [1, 2, 2.5, 5, 10].some(function (f) {
      if (span / (step * f) <= n) {
        step *= f;
        return true;
      }
      return false;
    });
    var out = [];
    for (var v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9; v += step)
      out.push(Math.round(v / step) * step);
    return out;
  }

  /*
   * A line chart of series [{name, key, cls, values}] over points (oldest
   * first), one x position per evaluation.  fmt formats a y value.
   */
  /* A chart with its key (a swatch per series) and caption. */
  function chartFigure(svg, series, caption) {
    var key = el('div', {class: 'chart-key'});
    series.forEach(function (s) {
      key.appendChild(el('span', {class: 'key-item'}, el('span', {class: 'key-swatch ' + s.cls}), s.name));
    });
    return el('figure', {class: 'chart-box'}, svg, el('figcaption', null, key,
      el('span', {class: 'muted small', text: caption})));
  }

  function lineChart(id, points, series, lo, hi, fmt, caption) {
    var W = 900, H = 260, L = 60, R = 20, T = 16, B = 44;
    var pw = W - L - R, ph = H - T - B;
    var n = points.length;
    function x(i) {
      return L + (n === 1 ? pw / 2 : i * pw / (n - 1));
    }
    function y(v) {
      return T + ph - (v - lo) / (hi - lo) * ph;
    }
    var svg = svgEl('svg', {id: id, class: 'chart', viewBox: '0 0 ' + W + ' ' + H,
                            role: 'img', 'aria-label': caption, 'data-points': n,
                            preserveAspectRatio: 'xMidYMid meet'});
    svg.appendChild(svgEl('title', {text: caption}));
    ticks(lo, hi, 5).forEach(function (t) {
      svg.appendChild(svgEl('line', {class: 'grid', x1: L, x2: W - R, y1: y(t), y2: y(t)}));
      svg.appendChild(svgEl('text', {class: 'axis', x: L - 8, y: y(t) + 4, 'text-anchor': 'end', text: fmt(t)}));
    });
    svg.appendChild(svgEl('line', {class: 'axis-line', x1: L, x2: L, y1: T, y2: T + ph}));
    svg.appendChild(svgEl('line', {class: 'axis-line', x1: L, x2: W - R, y1: T + ph, y2: T + ph}));
    /* x labels: about 8 evaluation ids and dates */
    var every = Math.max(1, Math.ceil(n / 8));
    points.forEach(function (p, i) {
      if (i % every !== 0 && i !== n - 1)
        return;
      svg.appendChild(svgEl('text', {class: 'axis', x: x(i), y: T + ph + 16, 'text-anchor': 'middle',
                                     text: '#' + p.id}));
      svg.appendChild(svgEl('text', {class: 'axis small', x: x(i), y: T + ph + 30, 'text-anchor': 'middle',
                                     text: (p.created_at || '').slice(5, 16).replace('T', ' ')}));
    });
    series.forEach(function (s) {
      var coords = [];
      s.values.forEach(function (v, i) {
        if (isNum(v))
          coords.push(x(i).toFixed(1) + ',' + y(Math.max(lo, Math.min(hi, v))).toFixed(1));
      });
      svg.appendChild(svgEl('polyline', {class: 'series ' + s.cls, 'data-series': s.key,
                                         'data-count': coords.length, points: coords.join(' ')}));
      s.values.forEach(function (v, i) {
        if (!isNum(v))
          return;
        svg.appendChild(svgEl('circle', {class: 'dot ' + s.cls, cx: x(i), cy: y(Math.max(lo, Math.min(hi, v))), r: 3.5},
          svgEl('title', {text: s.name + ' ' + fmt(v) + ' · evaluation #' + points[i].id + ' · ' + when(points[i].created_at)})));
      });
    });
    return chartFigure(svg, series, caption);
  }

  /*
   * The backfill curve of a pair: its mixed evaluations (SPEC.md §3.8),
   * the latest at each coverage, by coverage.  The area under cross top-1
   * is the trapezoid rule over coverage (FastFill's measure), defined
   * from two points on.
   */
  function backfillPoints(evaluations) {
    var seen = {};
    return evaluations.filter(function (e) {     /* newest first */
      if (e.gallery_view !== 'mixed' || !isNum(e.coverage) || seen[e.coverage])
        return false;
      seen[e.coverage] = true;
      return true;
    }).sort(function (a, b) { return a.coverage - b.coverage; });
  }

  function backfillArea(pts) {
    var area = 0;
    for (var i = 1; i < pts.length; i++) {
      var a = (pts[i - 1].cross || {}).top1, b = (pts[i].cross || {}).top1;
      if (!isNum(a) || !isNum(b))
        return null;
      area += (pts[i].coverage - pts[i - 1].coverage) * (a + b) / 2;
    }
    return pts.length >= 2 ? area : null;
  }

  function backfillChart(pts) {
    var W = 900, H = 260, L = 60, R = 20, T = 16, B = 44;
    var pw = W - L - R, ph = H - T - B;
    function x(c) { return L + c * pw; }
    function y(v) { return T + ph - Math.max(0, Math.min(1, v)) * ph; }
    var caption = 'One point per coverage (the latest mixed evaluation there).';
    var svg = svgEl('svg', {id: 'chart-backfill', class: 'chart', viewBox: '0 0 ' + W + ' ' + H,
                            role: 'img', 'aria-label': caption, 'data-points': pts.length,
                            preserveAspectRatio: 'xMidYMid meet'});
    svg.appendChild(svgEl('title', {text: caption}));
    [0, 0.25, 0.5, 0.75, 1].forEach(function (t) {
      svg.appendChild(svgEl('line', {class: 'grid', x1: L, x2: W - R, y1: y(t), y2: y(t)}));
      svg.appendChild(svgEl('text', {class: 'axis', x: L - 8, y: y(t) + 4, 'text-anchor': 'end', text: pct(t, 0)}));
      svg.appendChild(svgEl('text', {class: 'axis', x: x(t), y: T + ph + 16, 'text-anchor': 'middle', text: pct(t, 0)}));
    });
    svg.appendChild(svgEl('text', {class: 'axis small', x: L + pw / 2, y: T + ph + 32, 'text-anchor': 'middle',
                                   text: 'coverage: share of the gallery with the query model\'s embedding'}));
    svg.appendChild(svgEl('line', {class: 'axis-line', x1: L, x2: L, y1: T, y2: T + ph}));
    svg.appendChild(svgEl('line', {class: 'axis-line', x1: L, x2: W - R, y1: T + ph, y2: T + ph}));
    var series = [
      {name: 'cross top-1', key: 'backfill-cross', cls: 's-cross', value: function (e) { return (e.cross || {}).top1; }},
      {name: 'NFR', key: 'backfill-nfr', cls: 's-nfr', value: function (e) { return (e.flips || {}).nfr; }}
    ];
    series.forEach(function (s) {
      var coords = [];
      pts.forEach(function (e) {
        var v = s.value(e);
        if (!isNum(v))
          return;
        coords.push(x(e.coverage).toFixed(1) + ',' + y(v).toFixed(1));
        svg.appendChild(svgEl('circle', {class: 'dot ' + s.cls, cx: x(e.coverage), cy: y(v), r: 3.5,
                                         'data-series': s.key, 'data-coverage': raw(e.coverage),
                                         'data-value': raw(v), 'data-evaluation': e.id},
          svgEl('title', {text: s.name + ' ' + pct(v, 1) + ' at coverage ' + pct(e.coverage, 1) +
                                ' · evaluation #' + e.id})));
      });
      svg.insertBefore(svgEl('polyline', {class: 'series ' + s.cls, 'data-series': s.key,
                                          'data-count': coords.length, points: coords.join(' ')}),
                       svg.querySelector('circle'));
    });
    return chartFigure(svg, series, caption);
  }

  function backfillSection(evaluations) {
    var pts = backfillPoints(evaluations);
    if (!pts.length)
      return null;
    var area = backfillArea(pts);
    var first = pts[0].coverage, last = pts[pts.length - 1].coverage;
    return section('Backfill curve', {id: 'backfill', class: 'card'},
      facts([
        ['backfill-points', 'Coverages evaluated', String(pts.length)],
        ['backfill-area', 'Area under cross top-1',
         el('span', {id: 'backfill-auc', 'data-value': raw(area), 'data-from': raw(first), 'data-to': raw(last),
                     text: area === null ? '– (needs two coverages)'
                                         : num(area, 4) + ' over coverage ' + pct(first, 0) + '–' + pct(last, 0)})]
      ]),
      backfillChart(pts),
      el('p', {class: 'muted small', text: 'Mixed evaluations rank the gallery as hot-refresh search does: items ' +
        'that already have the query model\'s embedding in that space, the others in the gallery model\'s.'}));
  }

  function renderHistory(data, route) {
    var curve = backfillSection(data.evaluations);
    /* the time line is of gallery_model evaluations; mixed ones make the curve */
    var evs = data.evaluations.filter(function (e) { return e.gallery_view !== 'mixed'; }).reverse();
    var head = [
      el('p', {class: 'crumbs'}, el('a', {href: '#/', text: 'Overview'}), ' › ',
        el('a', {href: galleryHref(route.gallery), text: route.gallery}), ' › history'),
      el('h1', null, route.model, el('span', {class: 'muted', text: ' → '}), route.gallery,
        el('span', {class: 'muted small', text: ' (gallery model ' + data.gallery.model + ')'}))
    ];
    if (!evs.length)
      return head.concat([el('p', {class: 'muted', text: 'No gallery_model evaluations of ' + route.model +
                                                        ' on this gallery yet.'})], curve ? [curve] : []);
    var top1 = [];
    evs.forEach(function (e) {
      top1.push((e.cross || {}).top1, (e.baseline || {}).top1);
    });
    top1 = top1.filter(isNum);
    var lo = Math.max(0, Math.floor((Math.min.apply(null, top1) - 0.02) * 20) / 20);
    var hi = Math.min(1, Math.ceil((Math.max.apply(null, top1) + 0.02) * 20) / 20);
    if (!(hi > lo)) {
      lo = 0;
      hi = 1;
    }
    var nfrs = evs.map(function (e) { return (e.flips || {}).nfr; }).filter(isNum);
    var nfrHi = nfrs.length ? Math.max.apply(null, nfrs) : 0;
    nfrHi = nfrHi > 0 ? Math.min(1, Math.ceil(nfrHi * 1.15 * 100) / 100) : 0.01;
    var latest = evs[evs.length - 1];
    return head.concat([
      facts([
        ['evaluations', 'Evaluations shown', String(evs.length) + (data.more ? ' (the latest)' : '')],
        ['latest', 'Latest verdict', badge(verdictOf(latest.compatible))],
        ['latest-cross', 'Latest cross top-1', pct((latest.cross || {}).top1)],
        ['latest-baseline', 'Latest baseline top-1', pct((latest.baseline || {}).top1)],
        ['latest-nfr', 'Latest NFR', pct((latest.flips || {}).nfr, 2)]
      ])
    ], curve ? [curve] : [], [    /* the curve first: a backfill under way is the news */
      section('Top-1 over time', null, lineChart('chart-top1', evs, [
        {name: 'cross top-1 (new→old)', key: 'cross_top1', cls: 's-cross',
         values: evs.map(function (e) { return (e.cross || {}).top1; })},
        {name: 'baseline top-1 (old→old)', key: 'baseline_top1', cls: 's-baseline',
         values: evs.map(function (e) { return (e.baseline || {}).top1; })}
      ], lo, hi, function (v) { return pct(v, 1); },
      'One point per evaluation, oldest on the left.')),
      section('Negative flip rate over time', null, lineChart('chart-nfr', evs, [
        {name: 'NFR', key: 'nfr', cls: 's-nfr',
         values: evs.map(function (e) { return (e.flips || {}).nfr; })}
      ], 0, nfrHi, function (v) { return pct(v, nfrHi < 0.05 ? 2 : 1); },
      'Share of probes right with the old model and wrong with the new one.')),
      section('Evaluations', null, evaluationsTable(data.evaluations, false))
    ]);
  }

  /* --- one evaluation ------------------------------------------------- */

  function metricKeys(r) {
    var keys = (r.ks || [1]).map(function (k) { return 'top' + k; });
    keys.push('map');
    return keys;
  }

  function metricLabel(k) {
    return k === 'map' ? 'mAP' : 'top-' + k.slice(3);
  }

  function renderEvaluation(data) {
    var r = data.report;
    var verdict = verdictOf(r.compatible);
    var sets = [['cross', 'Cross (new→old)'], ['baseline', 'Baseline (old→old)'],
                ['paragon', 'Paragon (new→new)'], ['update_gain', 'Update gain']];
    var mbody = el('tbody');
    metricKeys(r).forEach(function (k) {
      var row = el('tr', {'data-metric-row': k}, el('th', {text: metricLabel(k)}));
      sets.forEach(function (s) {
        var set = r[s[0]];
        var v = set ? set[k] : null;
        row.appendChild(el('td', {class: 'num', 'data-metric': s[0] + '.' + k, 'data-value': raw(v),
                                  text: s[0] === 'update_gain' ? num(v, 3) : num(v)}));
      });
      mbody.appendChild(row);
    });
    var metrics = el('table', {class: 'table', id: 'metrics'},
      el('thead', null, el('tr', null, el('th', {text: 'Metric'}), sets.map(function (s) {
        return el('th', {class: 'num', text: s[1]});
      }))), mbody);

    var f = r.flips;
    var flips = f ? facts([
      ['flips.negative', 'Negative flips', el('span', {'data-metric': 'flips.negative', 'data-value': raw(f.negative), text: count(f.negative)})],
      ['flips.positive', 'Positive flips', el('span', {'data-metric': 'flips.positive', 'data-value': raw(f.positive), text: count(f.positive)})],
      ['flips.nfr', 'NFR', el('span', {'data-metric': 'flips.nfr', 'data-value': raw(f.nfr), text: pct(f.nfr, 2)})],
      ['flips.nfi', 'NFI', el('span', {'data-metric': 'flips.nfi', 'data-value': raw(f.nfi), text: pct(f.nfi, 2)})],
      ['flips.pfr', 'PFR', el('span', {'data-metric': 'flips.pfr', 'data-value': raw(f.pfr), text: pct(f.pfr, 2)})]
    ]) : el('p', {class: 'muted', text: 'No baseline probes: no flips, no verdict.'});

    /* by label, most negative flips first (ties: more probes, then label) */
    var labels = (r.by_label || []).slice().sort(function (a, b) {
      return (b.negative_flips - a.negative_flips) || (b.queries - a.queries) ||
        (a.label < b.label ? -1 : a.label > b.label ? 1 : 0);
    });
    var lbody = el('tbody');
    labels.forEach(function (l, i) {
      lbody.appendChild(el('tr', {'data-label': l.label, 'data-rank': i + 1,
                                  class: l.negative_flips > 0 ? 'regressed' : null},
        el('td', {class: 'label-cell', text: l.label}),
        el('td', {class: 'num', 'data-field': 'queries', text: count(l.queries)}),
        el('td', {class: 'num', 'data-field': 'baseline_top1', 'data-value': raw(l.baseline_top1), text: pct(l.baseline_top1)}),
        el('td', {class: 'num', 'data-field': 'cross_top1', 'data-value': raw(l.cross_top1), text: pct(l.cross_top1)}),
        el('td', {class: 'num', text: points(l.cross_top1, l.baseline_top1)}),
        el('td', {class: 'num', 'data-field': 'negative_flips', 'data-value': l.negative_flips, text: count(l.negative_flips)}),
        el('td', {class: 'num', 'data-field': 'positive_flips', 'data-value': l.positive_flips, text: count(l.positive_flips)})));
    });
    var byLabel = labels.length ? el('div', {class: 'scroll tall'}, el('table', {class: 'table', id: 'by-label'},
      el('thead', null, el('tr', null, el('th', {text: 'Label'}), el('th', {class: 'num', text: 'Probes'}),
        el('th', {class: 'num', text: 'Baseline top-1'}), el('th', {class: 'num', text: 'Cross top-1'}),
        el('th', {class: 'num', text: 'Δ top-1'}), el('th', {class: 'num', text: 'Negative flips'}),
        el('th', {class: 'num', text: 'Positive flips'}))), lbody))
      : el('p', {class: 'muted', text: 'No labels.'});

    var ids = r.negative_flip_ids || [];
    var flipList = el('ul', {class: 'flip-ids', id: 'flip-ids', 'data-count': ids.length});
    ids.slice(0, FLIP_IDS_SHOWN).forEach(function (id) {
      flipList.appendChild(el('li', {'data-flip-id': id}, el('code', {text: id})));
    });

    return [
      el('p', {class: 'crumbs'}, el('a', {href: '#/', text: 'Overview'}), ' › ',
        el('a', {href: galleryHref(r.gallery), text: r.gallery}), ' › ',
        el('a', {href: historyHref(r.gallery, r.query_model), text: r.query_model + ' history'}),
        ' › evaluation'),
      el('h1', {id: 'evaluation-title', 'data-evaluation': r.id}, 'Evaluation #' + r.id + ' ',
        badge(verdict, {id: 'evaluation-verdict'})),
      el('p', {class: 'criterion', id: 'criterion', text: r.criterion || 'no criterion: evaluated without baseline probes'}),
      facts([
        ['gallery', 'Gallery', el('a', {href: galleryHref(r.gallery), text: r.gallery})],
        ['gallery_model', 'Gallery model', r.gallery_model],
        ['query_model', 'Query model', r.query_model],
        ['adapter', 'Adapter', r.adapter ? el('a', {href: adapterHref(r.adapter), text: r.adapter}) : 'none (raw probes)'],
        ['gallery_view', 'Gallery view', r.gallery_view === 'mixed'
          ? el('span', {'data-value': raw(r.coverage), text: 'mixed, coverage ' + pct(r.coverage, 1)})
          : 'gallery model'],
        ['created_at', 'Created', when(r.created_at)],
        ['compatible', 'Compatible', r.compatible === true ? 'yes' : r.compatible === false ? 'no' : 'unknown'],
        ['primary_metric', 'Primary metric', r.primary_metric || 'top1'],
        ['queries', 'Probes', el('span', {'data-value': raw(r.queries), text: count(r.queries)})],
        ['skipped', 'Skipped probes', el('span', {'data-value': raw(r.skipped), text: count(r.skipped)})],
        ['gallery_items', 'Gallery items', el('span', {'data-value': raw(r.gallery_items), text: count(r.gallery_items)})],
        ['filter', 'Gallery filter', r.filter ? el('code', {text: JSON.stringify(r.filter)}) : 'none: every labelled item']
      ]),
      section('Retrieval metrics', null, metrics,
        r.paragon ? null : el('p', {class: 'muted small', text: r.adapter
          ? 'No paragon: the probes were mapped through ' + r.adapter + ', so there is no update gain.'
          : 'No paragon: not every labelled gallery item has a ' + r.query_model + ' embedding, so there is no update gain.'})),
      section('Flips', null, flips),
      section('By label (most negative flips first)', null, byLabel),
      section('Negative flips: probe ids (' + ids.length + ')', null,
        ids.length ? flipList : el('p', {class: 'muted', text: 'No negative flips.'}),
        ids.length > FLIP_IDS_SHOWN ? el('p', {class: 'muted small', text: 'Showing the first ' + FLIP_IDS_SHOWN + ' of ' + ids.length + '.'}) : null)
    ];
  }

  /* --- the banner and the header -------------------------------------- */

  function keyForm(label) {
    var input = el('input', {type: 'password', id: 'api-key-input', autocomplete: 'off',
                             placeholder: 'cdk_…', 'aria-label': 'API key'});
    return el('form', {class: 'key-form', id: 'api-key-form', onsubmit: function (ev) {
      ev.preventDefault();
      var key = input.value.trim();
      if (!key)
        return;
      storeKey(key);
      renderKeyState();
      state.connection = '';
      refresh();
    }}, input, el('button', {type: 'submit', id: 'api-key-save', text: label}));
  }

  /* Shows kind's banner (once: a repeated poll leaves it, and its input,
   * alone). */
  function setConnection(kind, err) {
    var text = kind + '|' + (err ? err.status + err.message : '');
    document.body.setAttribute('data-connection', kind);
    if (state.connection === kind && (kind !== 'error' || state.bannerText === text))
      return;
    state.connection = kind;
    state.bannerText = text;
    var slot = document.getElementById('banner');
    clear(slot);
    var since = state.lastUpdate ? ' Showing the data of ' + clock(state.lastUpdate) + '.' : '';
    if (kind === 'unreachable') {
      slot.appendChild(el('div', {class: 'banner banner-error', id: 'banner-unreachable', role: 'alert'},
        el('b', {text: 'Server unreachable — retrying'}), el('span', {text: since})));
    } else if (kind === 'auth') {
      var had = !!currentKey();
      slot.appendChild(el('div', {class: 'banner banner-warn', id: 'banner-auth', role: 'alert'},
        el('b', {text: had ? 'The API key was refused.' : 'An API key is needed.'}),
        el('span', {text: ' ' + (had ? err.message : 'This server requires a key with the read scope.') + ' '}),
        keyForm('Use key')));
    } else if (kind === 'forbidden') {
      slot.appendChild(el('div', {class: 'banner banner-warn', id: 'banner-forbidden', role: 'alert'},
        el('b', {text: 'The API key lacks the read scope.'}),
        el('span', {text: ' ' + err.message + ' '}), keyForm('Use another key')));
    } else if (kind === 'error') {
      slot.appendChild(el('div', {class: 'banner banner-error', id: 'banner-error', role: 'alert'},
        el('b', {text: 'Server error ' + err.status + ' — retrying. '}),
        el('span', {text: err.message + '.' + since})));
    }
  }

  function renderKeyState() {
    var slot = document.getElementById('key-state');
    clear(slot);
    if (!currentKey())
      return;
    slot.appendChild(el('span', {class: 'muted', text: ' · key set '}));
    slot.appendChild(el('button', {class: 'link-button', id: 'api-key-forget', type: 'button',
                                   text: 'forget', onclick: function () {
                                     storeKey('');
                                     renderKeyState();
                                     refresh();
                                   }}));
  }

  function stamp() {
    var u = document.getElementById('updated');
    u.textContent = state.lastUpdate ? 'updated ' + clock(state.lastUpdate) : 'not updated yet';
    if (state.lastUpdate)
      u.setAttribute('data-updated', state.lastUpdate.toISOString());
  }

  /* --- the refresh loop ----------------------------------------------- */

  function show(nodes, view, route) {
    var main = document.getElementById('view');
    clear(main);
    append(main, Array.isArray(nodes) ? nodes : [nodes]);
    document.body.setAttribute('data-view', route.view);
    document.title = views[route.view].title + ' · compatd';
  }

  /* Fetches the current view and renders it if its data changed; then
   * polls again in POLL_MS.  A newer refresh (a route change) wins. */
  function refresh() {
    var seq = ++state.seq;
    var route = state.route;
    var view = views[route.view];
    clearTimeout(state.timer);
    state.timer = null;
    return view.load(route).then(function (data) {
      if (seq !== state.seq)
        return;
      setConnection('ok');
      var signature = JSON.stringify(data);
      if (signature !== state.signature) {
        state.signature = signature;
        show(view.render(data, route), view, route);
        document.body.setAttribute('data-loaded', 'true');
      }
      state.lastUpdate = new Date();
      stamp();
    }, function (err) {
      if (seq !== state.seq)
        return;
      if (!(err instanceof ApiError))
        err = new ApiError(0, 'script', String(err && err.stack ? err.stack : err));
      if (err.status === 0 && err.code === 'unreachable') {
        setConnection('unreachable', err);
        placeholder('Waiting for the server…');
      } else if (err.status === 401) {
        setConnection('auth', err);
        placeholder('Waiting for an API key.');
      } else if (err.status === 403) {
        setConnection('forbidden', err);
        placeholder('Waiting for an API key with the read scope.');
      } else if (err.status === 404 || err.status === 400 || err.status === 0) {
        /* what the view names does not exist: say so in the view */
        setConnection('ok');
        var signature = 'error:' + err.status + err.message;
        if (signature !== state.signature) {
          state.signature = signature;
          show([el('h1', {text: err.status === 0 ? 'The page failed' : 'Not found'}),
                el('p', {class: 'error-text', id: 'view-error', text: err.message}),
                el('p', null, el('a', {href: '#/', text: 'Back to the overview'}))], view, route);
        }
        state.lastUpdate = new Date();
        stamp();
      } else {
        setConnection('error', err);
      }
    }).then(function () {
      if (seq === state.seq)
        state.timer = setTimeout(refresh, POLL_MS);
    });
  }

  /* Says what the view waits for, when it has shown no data yet. */
  function placeholder(text) {
    if (document.body.hasAttribute('data-loaded'))
      return;
    var main = document.getElementById('view');
    clear(main);
    main.appendChild(el('p', {class: 'muted', id: 'view-waiting', text: text}));
    document.getElementById('updated').textContent = 'no data yet';
  }

  function navigate() {
    state.route = parseRoute();
    state.signature = null;
    var main = document.getElementById('view');
    clear(main);
    main.appendChild(el('p', {class: 'muted', text: 'Loading…'}));
    document.body.setAttribute('data-view', state.route.view);
    document.body.removeAttribute('data-loaded');
    refresh();
  }

  window.addEventListener('hashchange', navigate);
  renderKeyState();
  navigate();
})();
