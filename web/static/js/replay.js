/* The auditor's replay page: draws each process once with bpmn-js and, as the
 * step changes (slider, Anterior/Siguiente), fetches that step's panels
 * (?paso=K&parcial=1) and re-marks the diagrams: completed elements (with a
 * count when visited more than once), active ones, the element of the event,
 * and the sequence flows taken (with a count on loops).
 * Without JavaScript the same page works with links and a GET form. */
(function () {
  'use strict';

  var raiz = document.querySelector('[data-reproductor]');
  if (!raiz) { return; }
  var panel = raiz.querySelector('[data-paso-panel]');
  var deslizador = raiz.querySelector('[data-paso-deslizador]');
  var numero = raiz.querySelector('[data-paso-numero]');
  var anterior = raiz.querySelector('[data-paso-anterior]');
  var siguiente = raiz.querySelector('[data-paso-siguiente]');
  var base = raiz.dataset.url;
  var visores = {};        // process id -> {visor, marcados: [[id, clase]]}
  var versiones = null;    // versions drawn; a step on other versions reloads the page
  var pedido = 0;
  var espera = null;

  function datosDelPaso() {
    var nodo = panel.querySelector('[data-paso-datos]');
    return nodo ? JSON.parse(nodo.textContent) : null;
  }

  function insignia(texto, titulo, clase) {
    var span = document.createElement('span');
    span.className = clase;
    span.textContent = texto;
    span.title = titulo;
    return span;
  }

  function marca(v, registry, canvas, id, clase) {
    if (!registry.get(id)) { return; }
    canvas.addMarker(id, clase);
    v.marcados.push([id, clase]);
  }

  function aplica(paso) {
    Object.keys(visores).forEach(function (pid) {
      var v = visores[pid];
      if (!v.listo) { return; }
      var canvas = v.visor.get('canvas');
      var registry = v.visor.get('elementRegistry');
      var overlays = v.visor.get('overlays');
      v.marcados.forEach(function (m) { canvas.removeMarker(m[0], m[1]); });
      v.marcados = [];
      overlays.remove({ type: 'paso' });
      var p = paso.procesos[pid] || { completed: [], visits: {}, active: [], current: null, flows: {} };
      p.completed.forEach(function (id) { marca(v, registry, canvas, id, 'completado'); });
      p.active.forEach(function (id) { marca(v, registry, canvas, id, 'activo'); });
      if (p.current) { marca(v, registry, canvas, p.current, 'actual'); }
      Object.keys(p.flows).forEach(function (id) {
        marca(v, registry, canvas, id, 'flujo-tomado');
        var el = registry.get(id);
        if (el && el.waypoints && p.flows[id] > 1) {
          var xs = el.waypoints.map(function (w) { return w.x; });
          var ys = el.waypoints.map(function (w) { return w.y; });
          var i = Math.floor((el.waypoints.length - 1) / 2);
          var a = el.waypoints[i], b = el.waypoints[i + 1];
          var medio = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };  // the middle of the middle segment
          overlays.add(id, 'paso', {
            position: { left: medio.x - Math.min.apply(null, xs) - 10, top: medio.y - Math.min.apply(null, ys) - 18 },
            html: insignia('×' + p.flows[id], 'Recorrido ' + p.flows[id] + ' veces', 'visitas-badge flujo-badge')
          });
        }
      });
      Object.keys(p.visits).forEach(function (id) {
        var el = registry.get(id);
        if (!el || el.waypoints || p.visits[id] < 2) { return; }
        overlays.add(id, 'paso', {
          position: { top: -8, right: 8 },
          html: insignia(String(p.visits[id]), 'Completado ' + p.visits[id] + ' veces', 'visitas-badge')
        });
      });
    });
  }

  function enlaces(paso) {
    numero.textContent = String(paso.paso);
    deslizador.value = String(paso.paso);
    anterior.href = base + '?paso=' + Math.max(paso.paso - 1, 0);
    siguiente.href = base + '?paso=' + Math.min(paso.paso + 1, paso.total);
    anterior.setAttribute('aria-disabled', paso.paso === 0 ? 'true' : 'false');
    siguiente.setAttribute('aria-disabled', paso.paso === paso.total ? 'true' : 'false');
  }

  function irA(k) {
    var mio = ++pedido;
    numero.textContent = String(k);
    return fetch(base + '?paso=' + k + '&parcial=1', { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.text();
      })
      .then(function (html) {
        if (mio !== pedido) { return; }  // a later step was asked for meanwhile
        panel.innerHTML = html;
        var paso = datosDelPaso();
        if (JSON.stringify(paso.versiones) !== JSON.stringify(versiones)) {
          window.location.assign(base + '?paso=' + k);  // migrated: other diagrams
          return;
        }
        enlaces(paso);
        aplica(paso);
        window.history.replaceState(null, '', base + '?paso=' + k);
        raiz.dataset.paso = String(paso.paso);
      })
      .catch(function () { window.location.assign(base + '?paso=' + k); });
  }

  deslizador.addEventListener('input', function () {
    numero.textContent = deslizador.value;
    window.clearTimeout(espera);
    espera = window.setTimeout(function () { irA(Number(deslizador.value)); }, 120);
  });
  [anterior, siguiente].forEach(function (a) {
    a.addEventListener('click', function (ev) {
      ev.preventDefault();
      if (a.getAttribute('aria-disabled') === 'true') { return; }
      var k = Number(new URL(a.href, window.location.href).searchParams.get('paso'));
      deslizador.value = String(k);
      irA(k);
    });
  });

  var inicial = datosDelPaso();
  versiones = inicial.versiones;
  var pendientes = [];
  raiz.querySelectorAll('[data-replay-diagrama]').forEach(function (seccion) {
    var pid = seccion.dataset.replayDiagrama;
    var lienzo = seccion.querySelector('.lienzo');
    var visor = new window.BpmnJS({ container: lienzo });
    visores[pid] = { visor: visor, marcados: [], listo: false };
    pendientes.push(visor.importXML(JSON.parse(seccion.querySelector('[data-xml]').textContent)).then(function () {
      visor.get('canvas').zoom('fit-viewport', 'auto');
      visores[pid].listo = true;
      seccion.dataset.listo = 'si';
    }).catch(function () {
      seccion.classList.add('fallo');
      lienzo.textContent = 'No se pudo dibujar el diagrama.';
      seccion.dataset.listo = 'error';
    }));
  });
  Promise.all(pendientes).then(function () {
    aplica(inicial);
    raiz.dataset.paso = String(inicial.paso);
    raiz.dataset.listo = 'si';
  });
}());
